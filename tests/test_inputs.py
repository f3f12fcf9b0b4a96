"""Property-based: random and mutated plans, configs and --set values give a result or a clear error with exit
status 2, never a traceback."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memorizing import Config, ConfigError
from memorizing.ablation.mapping import REASONS, resolve
from memorizing.ablation.plan import PlanError, parse_markdown, parse_toml
from memorizing.cli import main
from memorizing.config import SECTIONS, all_keys

SEED = (Path(__file__).parent.parent / "src" / "memorizing" / "plans" / "seed.md").read_text()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = st.one_of(st.integers(-10 ** 12, 10 ** 12), st.floats(allow_nan=True), st.booleans(), st.text(max_size=12),
                   st.lists(st.integers(-3, 20), max_size=4), st.none())


TINY = Config.from_dict({"model": {"depth": 2}, "memory": {"layers": "last"}})
PLAN_WORDS = st.sampled_from(["###", "- **Action**: REMOVE", "REPLACE", "ADD", "**Ablated Part**:", "Values:", "|",
                              "1.",
                              "kNN memory", "gate", "top-k", "16K", "2^14", "k=8", "layer 3", "exact", "IVF", "HNSW",
                              "→", "{4, 16}", "instead of 32", "(baseline)", "\n", "\n\n", "  - ", "<td>", "**", ":"])


@FAST
@given(st.one_of(st.text(max_size=400), st.lists(PLAN_WORDS, max_size=40).map(" ".join)))
@example("- ACTION:0:K0 VALUE:LAYER:0")  # an invalid layer among values that name several components
def test_random_text_is_a_plan_or_a_plan_error(text):
    try:
        sections = parse_markdown(text)
    except PlanError:
        return
    assert all(isinstance(s.title, str) and s.line >= 1 for s in sections)
    for r in resolve(sections, TINY):  # every section resolves to variants or a refusal with a known reason
        assert (r.refusal is None) == bool(r.variants)
        assert r.refusal is None or r.refusal.reason in REASONS and r.refusal.message


@st.composite
def mutated_seed(draw):
    lines = SEED.splitlines()
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "truncate", "insert", "swap-words"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "truncate":
            lines[i] = lines[i][:draw(st.integers(0, max(0, len(lines[i]))))]
        elif kind == "insert":
            lines.insert(i, draw(st.text(max_size=40)))
        else:
            words = lines[i].split(" ")
            lines[i] = " ".join(draw(st.permutations(words)))
        if not lines:
            lines = [""]
    return "\n".join(lines)


@FAST
@given(mutated_seed())
def test_mutated_seed_plans_dry_run_or_exit_2(text):
    with tempfile.TemporaryDirectory() as folder:
        plan = Path(folder) / "plan.md"
        plan.write_text(text)
        assert main(["ablate", str(plan), "--preset", "tiny", "--dry-run"]) in (0, 2)


@FAST
@given(st.dictionaries(st.sampled_from([*SECTIONS, "extra"]),
                       st.one_of(values, st.dictionaries(st.sampled_from([k.split(".")[1] for k in all_keys()] + ["x"]),
                                                         values, max_size=4)), max_size=3))
def test_random_config_tables_validate_or_raise_config_error(data):
    try:
        config = Config.from_dict(data)
    except ConfigError:
        return
    assert config.validate() is config


@FAST
@given(st.text(max_size=200))
def test_random_toml_plans_are_plans_or_plan_errors(text):
    try:
        parse_toml(text)
    except PlanError:
        pass


@FAST
@given(st.sampled_from(all_keys()), st.text(max_size=10))
def test_random_set_values_exit_0_or_2(key, value):
    assert main(["ablate", "--preset", "tiny", "--dry-run", "--set", f"{key}={value}"]) in (0, 2)


@pytest.mark.parametrize("text", ["[model\n", "model = 3", "[model]\ndim = 'wide'", "[memory]\nlayers = [1, true]"])
def test_broken_config_files_exit_2(tmp_path, capsys, text):
    config = tmp_path / "c.toml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert str(config) in capsys.readouterr().err  # the message names the file
