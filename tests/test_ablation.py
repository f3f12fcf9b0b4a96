"""The ablation lab: plan reading, mapping to configs, resumable and shardable studies, reports."""

import json

import pytest

from memorizing.ablation import runner
from memorizing.ablation.components import COMPONENTS, match_component
from memorizing.ablation.plan import PlanError, load_plan, parse_markdown
from memorizing.cli import main

SEED_TITLES = ["Remove kNN Memory Branch", "Fixed Gate for Memory-Local Attention Combination",
               "Remove Key/Query Normalization", "Exact kNN Search versus Approximate kNN",
               "Incorporate Position Bias for External Memory"]


def test_seed_plan_is_read_exactly():
    ablations, name = load_plan(None)
    assert [a.title for a in ablations] == SEED_TITLES
    assert [a.action for a in ablations] == ["REMOVE", "REPLACE", "REMOVE", "REPLACE", "ADD"]
    assert ablations[1].replacements == ["fixed_gate=0.0", "fixed_gate=0.5", "fixed_gate=1.0"]
    assert ablations[4].replacements == ["T5 relative position bias", "Learned absolute position bias"]
    assert all(a.metrics == ["perplexity"] for a in ablations)
    assert [match_component(a).name for a in ablations] == ["memory", "gate", "qk_norm", "search", "position_bias"]


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
    assert {"memory.enabled", "memory.combine", "memory.qk_norm", "memory.search", "memory.position_bias",
            "memory.size", "memory.top_k", "memory.layers", "model.xl_cache", "data.segment"} <= keys


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
    ("the gating of the memory size", "matches several components equally"),
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
    (ablation,) = parse_markdown(text)
    assert (ablation.title, ablation.action, ablation.part) == ("Remove XL", "REMOVE", "the Transformer-XL cache")
    assert match_component(ablation).name == "xl_cache"
    with pytest.raises(PlanError, match="no ablation found"):
        parse_markdown("just prose")


# ---- a tiny study, end to end --------------------------------------------------------------------------------
def study_argv(plan, corpus, out, *extra):
    return ["ablate", str(plan), "--preset", "tiny", "--corpus", corpus, "--seeds", "2", "--out", str(out),
            "--quiet", "--jobs", "1", "--set", "train.steps=3", "--set", "data.eval_tokens=512", *extra]


def test_study_report_resume_and_shards(tmp_path, corpus, monkeypatch):
    plan = tmp_path / "plan.md"
    plan.write_text(PLAN)
    assert main(study_argv(plan, corpus, tmp_path / "full")) == 0
    report = json.loads((tmp_path / "full" / "report.json").read_text())
    assert report["baseline"] == "baseline" and report["complete"]
    names = [v["name"] for v in report["variants"]]
    assert names == ["baseline", "64", "128"]
    for v in report["variants"]:
        assert {"name", "ablation", "replacement", "config_changes", "seeds", "ppl", "ppl_mean", "ppl_ci95",
                "delta_vs_baseline"} <= v.keys()
        assert len(v["ppl"]) == 2 and v["ppl_ci95"][0] <= v["ppl_mean"] <= v["ppl_ci95"][1]
    assert report["variants"][1]["config_changes"] == {"memory.size": 64}
    markdown = (tmp_path / "full" / "report.md").read_text()
    assert "## Memory size" in markdown and "ppl-memory-size.png" in markdown
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
