"""The ablation lab: plan reading, mapping to configs, resumable and shardable studies, reports."""

import json
import math

import pytest

from memorizing.ablation import runner
from memorizing.ablation.mapping import resolve
from memorizing.ablation.plan import PlanError, load_plan, parse_markdown
from memorizing.ablation.registry import COMPONENTS
from memorizing.cli import main
from memorizing.config import preset

SEED_TITLES = ["Remove kNN Memory Branch", "Fixed Gate for Memory-Local Attention Combination",
               "Remove Key/Query Normalization", "Exact kNN Search versus Approximate kNN",
               "Incorporate Position Bias for External Memory"]


def test_seed_plan_is_read_exactly():
    plan = load_plan(None)
    assert plan.name == "seed" and [s.title for s in plan.sections] == SEED_TITLES  # not its reasoning trace
    assert [s.action for s in plan.sections] == ["REMOVE", "REPLACE", "REMOVE", "REPLACE", "ADD"]
    assert plan.sections[1].values == ["fixed_gate=0.0", "fixed_gate=0.5", "fixed_gate=1.0"]
    assert plan.sections[4].values == ["T5 relative position bias", "Learned absolute position bias"]
    assert all(s.metrics == "perplexity" for s in plan.sections)
    resolutions = resolve(plan.sections, preset("cpu"))
    assert [r.component.name for r in resolutions] == ["memory", "gate", "qk_norm", "search", "position_bias"]
    assert [[v.changes for v in r.variants] for r in resolutions] == [
        [{"memory.enabled": False}],
        [{"memory.combine": "fixed", "memory.gate": g} for g in (0.0, 0.5, 1.0)],
        [{"memory.qk_norm": False}],
        [{"memory.search": "exact"}, {"memory.search": "bucketed"}],
        [{"memory.position_bias": "t5-relative"}, {"memory.position_bias": "learned-absolute"}]]
    assert [v.equals_baseline for v in resolutions[3].variants] == [False, True]


def test_dry_run_lists_variants_with_changes_and_trains_nothing(tmp_path, capsys):
    assert main(["ablate", "--dry-run", "--out", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    for line in ["no memory: memory.enabled = False", "fixed_gate=0.5: memory.combine = 'fixed', memory.gate = 0.5",
                 "no qk_norm: memory.qk_norm = False", "exact_kNN: memory.search = 'exact'",
                 "approximate_kNN: memory.search = 'bucketed'   [same config as 'baseline': trained once]",
                 "memory.position_bias = 't5-relative'", "memory.position_bias = 'learned-absolute'",
                 "9 distinct configs x 3 seeds = 27 runs"]:
        assert line in out
    assert not (tmp_path / "study").exists()


def test_every_paper_knob_is_a_component():
    keys = {k for c in COMPONENTS for k in c.keys}
    assert {"memory.enabled", "memory.combine", "memory.qk_norm", "model.qk_norm", "memory.search",
            "memory.position_bias", "memory.size", "memory.top_k", "memory.layers", "model.xl_cache", "data.segment",
            "memory.reset"} <= keys


PLAN = """### Memory size
- **Ablated Part**: memory size (entries per lane)
- **Action**: REPLACE
- **Replacement**:
  - 64
  - 128
- **Metrics**: perplexity
"""


@pytest.mark.parametrize("part, words", [
    ("the colour of the logo", "matches no component"),
    ("the memory size or the number of neighbours", "matches several components equally"),
])
def test_unmatched_or_ambiguous_parts_quote_the_plan_and_list_components(tmp_path, capsys, part, words):
    plan = tmp_path / "plan.md"
    plan.write_text(PLAN.replace("memory size (entries per lane)", part).replace("### Memory size", "### X"))
    assert main(["ablate", str(plan), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert words in err and "line 1" in err and part in err and "qk_norm (key/query normalisation)" in err


def test_unknown_replacement_value_is_refused(tmp_path, capsys):
    plan = tmp_path / "plan.md"
    plan.write_text(PLAN.replace("  - 128", "  - enormous"))
    assert main(["ablate", str(plan), "--dry-run"]) == 2
    assert "'enormous' is not understood for memory size" in capsys.readouterr().err


TOML_PLAN = """
[[ablation]]
title = "Top-k"
[[ablation.variant]]
name = "k=4"
set = { "memory.top_k" = 4 }
[[ablation.variant]]
name = "k=2"
set = { "KEY" = 2 }
"""


def test_toml_plan_names_keys_directly(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text(TOML_PLAN.replace("KEY", "memory.top_k"))
    assert main(["ablate", str(plan), "--preset", "tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "k=4: memory.top_k = 4" in out and "k=2: memory.top_k = 2" in out
    plan.write_text(TOML_PLAN.replace("KEY", "memory.topk"))
    assert main(["ablate", str(plan), "--preset", "tiny", "--dry-run"]) == 2
    assert "unknown config key 'memory.topk'" in capsys.readouterr().err


def test_markdown_reader_ignores_html_and_prose():
    text = "<div><h2>Plan</h2>\nSome prose.\n\n### Remove XL\n- **Ablated Part**: the Transformer-XL cache\n" \
           "- **Action**: REMOVE\n- **Metrics**: perplexity\n</div>"
    (section,) = parse_markdown(text)
    assert (section.title, section.action, section.part) == ("Remove XL", "REMOVE", "the Transformer-XL cache")
    (r,) = resolve([section], preset("paper"))
    assert r.component.name == "xl_cache" and r.variants[0].changes == {"model.xl_cache": 0}
    with pytest.raises(PlanError, match="no ablation found"):
        parse_markdown("just prose")


BAD_PLAN = """### Memory size
- **Ablated Part**: memory size
- **Action**: REPLACE
- **Replacement**: 8K entries

### HNSW
- **Ablated Part**: kNN search
- **Action**: REPLACE
- **Replacement**: HNSW

### No position bias
- **Ablated Part**: position bias for retrieved memories
- **Action**: REMOVE

### Remove the gate
- **Ablated Part**: learned gate
- **Action**: REMOVE
"""


def test_every_problem_of_a_plan_is_reported_in_one_pass_with_its_line(tmp_path, capsys):
    plan = tmp_path / "plan.md"
    plan.write_text(BAD_PLAN)
    assert main(["ablate", str(plan), "--preset", "tiny", "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert "3 of 4 sections cannot be run" in err
    for words in ["line 6 ('HNSW'): not available: HNSW search is not available",
                  "line 11 ('No position bias'): equals the baseline:",
                  "line 15 ('Remove the gate'): ambiguous: leaves open what to run"]:
        assert words in err
    assert not (tmp_path / "study").exists()
    # the dry run still shows what was understood, then the same problems, with exit status 2
    assert main(["ablate", str(plan), "--preset", "tiny", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "8K entries: memory.size = 8192" in captured.out and "REFUSED (not-available)" in captured.out
    assert "line 6 ('HNSW')" in captured.err


def test_resolve_writes_a_toml_plan_that_runs_the_same_study(tmp_path, capsys):
    out = tmp_path / "seed.resolved.toml"
    assert main(["ablate", "--resolve", str(out), "--preset", "cpu"]) == 0
    text = out.read_text()
    assert '[[ablation]]\ntitle = "Remove kNN Memory Branch"' in text
    assert "# key/query normalisation removed in the memory layer (layer 1); other layers keep it" in text
    assert 'name = "approximate_kNN"' in text and "equals_baseline = true" in text
    markdown = runner.plan_study(None, "cpu", None, [], 3)
    again = runner.plan_study(str(out), "cpu", None, [], 3)
    assert again["configs"] == markdown["configs"]
    assert again["variants"] == markdown["variants"] and again["ablations"] == markdown["ablations"]
    plan = tmp_path / "bad.md"
    plan.write_text(BAD_PLAN)
    assert main(["ablate", str(plan), "--resolve", str(tmp_path / "bad.toml")]) == 2
    assert not (tmp_path / "bad.toml").exists()


# ---- a tiny study, end to end --------------------------------------------------------------------------------
def study_argv(plan, corpus, out, *extra):
    return ["ablate", str(plan), "--preset", "tiny", "--corpus", corpus, "--seeds", "2", "--out", str(out),
            "--quiet", "--jobs", "1", "--no-controls", "--set", "train.steps=3", "--set", "data.eval_tokens=512",
            *extra]


def test_study_report_resume_and_shards(tmp_path, corpus, monkeypatch):
    plan = tmp_path / "plan.md"
    plan.write_text(PLAN)
    assert main(study_argv(plan, corpus, tmp_path / "full")) == 0
    report = json.loads((tmp_path / "full" / "report.json").read_text())
    assert report["baseline"] == "baseline" and report["complete"]
    study = json.loads((tmp_path / "full" / "study.json").read_text())
    assert study["variants"][1]["description"] == "memory of 64 entries per lane and head (baseline 256)"
    resolved = (tmp_path / "full" / "plan.resolved.toml").read_text()  # the plan as understood, beside the report
    assert 'name = "64"' in resolved and '"memory.size" = 64' in resolved
    names = [v["name"] for v in report["variants"]]
    assert names == ["baseline", "64", "128"]
    for v in report["variants"]:
        assert {"name", "ablation", "replacement", "config_changes", "seeds", "ppl", "ppl_mean", "ppl_ci95"} <= v.keys()
        assert ("delta_vs_baseline" in v) == (v["name"] != "baseline")
        assert len(v["ppl"]) == 2 and v["ppl_ci95"][0] <= v["ppl_mean"] <= v["ppl_ci95"][1]
        # bytes are the tokens: bits per byte is log2 of the perplexity, run by run
        assert v["bits_per_byte"] == pytest.approx([math.log2(p) for p in v["ppl"]], rel=1e-9)
        assert v["bits_per_byte_ci95"][0] <= v["bits_per_byte_mean"] <= v["bits_per_byte_ci95"][1]
    assert report["variants"][1]["config_changes"] == {"memory.size": 64}
    markdown = (tmp_path / "full" / "report.md").read_text()
    assert "## Memory size" in markdown and "ppl-memory-size.png" in markdown and "| bits/byte (95% CI) |" in markdown
    assert "- **64**: memory of 64 entries per lane and head (baseline 256)" in markdown
    assert (tmp_path / "full" / "ppl-memory-size.png").stat().st_size > 1000

    # Interrupted study: drop the last two ledger lines and tear the one before; a rerun redoes just those.
    ledger = tmp_path / "full" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(lines[:-3] + [lines[-3][:40]]) + "\n")
    calls = []
    real = runner.execute_run
    monkeypatch.setattr(runner, "execute_run", lambda *a: calls.append(a[1:3]) or real(*a))
    assert main(study_argv(plan, corpus, tmp_path / "full")) == 0
    assert len(calls) == 3
    again = json.loads((tmp_path / "full" / "report.json").read_text())
    assert [v["ppl"] for v in again["variants"]] == [v["ppl"] for v in report["variants"]]

    # The same study in two shards, merged, gives the same report.
    monkeypatch.setattr(runner, "execute_run", real)
    assert main(study_argv(plan, corpus, tmp_path / "a", "--shard", "1/2", "--jobs", "2")) == 0
    assert main(study_argv(plan, corpus, tmp_path / "b", "--shard", "2/2")) == 0
    assert not json.loads((tmp_path / "a" / "report.json").read_text())["complete"]
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    # (shard a ran in worker processes with one thread each: float sums may differ in the last digits)
    for a, b in zip(merged["variants"], report["variants"]):
        assert a["ppl"] == pytest.approx(b["ppl"], rel=1e-5)

    # A different plan into the same folder is refused.
    plan.write_text(PLAN.replace("  - 128", "  - 256"))
    assert main(study_argv(plan, corpus, tmp_path / "full")) == 2


def test_a_warm_study_fine_tunes_every_variant_from_its_seeds_trunk(tmp_path, corpus):
    """--start warm: per seed one trunk without memory, trained train.steps and shared by the variants that differ
    only in the memory branch; each variant starts from its seed's trunk and trains --finetune-steps."""
    plan = tmp_path / "plan.md"
    plan.write_text(PLAN)
    out = tmp_path / "warm"
    assert main(study_argv(plan, corpus, out, "--start", "warm", "--finetune-steps", "2", "--set", "train.steps=40",
                           "--set", "train.log_every=1")) == 0
    study = json.loads((out / "study.json").read_text())
    assert study["start"] == "warm" and study["trunk_steps"] == 40 and study["finetune_steps"] == 2
    (trunk_key, trunk), = study["trunks"].items()  # memory size is the memory's alone: one trunk for all
    assert trunk["memory"]["enabled"] is False and trunk["train"]["steps"] == 40

    def metrics(run: str) -> list[dict]:
        return [json.loads(line) for line in (out / "runs" / run / "metrics.jsonl").read_text().splitlines()]

    for seed in (0, 1):
        first = metrics(f"trunk-{trunk_key}-s{seed}")
        assert first[-1]["step"] == 40
        for variant in study["variants"]:
            tuned = metrics(f"{variant['key']}-s{seed}")
            assert [m["step"] for m in tuned] == [1, 2]
            # its first step already has the trunk's 40 steps of learning (a fresh network starts near ln 256)
            assert tuned[0]["loss"] < first[0]["loss"] - 1.0, (tuned[0]["loss"], first[0]["loss"])
    assert "pretrains one trunk without memory for 40 steps" in (out / "report.md").read_text()


def test_a_diverging_variant_is_recorded_as_failed_and_the_study_carries_on(tmp_path, corpus):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[ablation]]\ntitle = "LR"\n[[ablation.variant]]\nname = "huge lr"\n'
                    'set = { "train.lr" = 1e30, "train.warmup" = 0, "train.grad_clip" = 0.0 }\n')
    assert main(study_argv(plan, corpus, tmp_path / "study")) == 0
    report = json.loads((tmp_path / "study" / "report.json").read_text())
    baseline, huge = report["variants"]
    assert len(baseline["ppl"]) == 2 and huge["ppl"] == []
    assert len(huge["failed_seeds"]) == 2 and "non-finite" in huge["failed_seeds"][0]["error"]
    assert "(no finished run)" in (tmp_path / "study" / "report.md").read_text()


def test_a_single_seed_is_never_shown_with_an_interval():
    """With one seed there is no spread to estimate: the report gives the value and says so, never '[x, x]',
    which would read as certainty."""
    from memorizing.ablation.report import _delta
    from memorizing.ablation.statistics import paired
    one, two = _delta(paired([6.0], [5.5])), _delta(paired([6.0, 6.2], [5.5, 5.6]))
    assert one == "0.500 (1 seed)" and "[" not in one
    assert two.startswith("0.550 [") and "p " in two
