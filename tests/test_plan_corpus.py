"""The plan corpus: plans written in deliberately different styles (tests/plans/NN_name.md), each with what a
careful reader expects of every section (NN_name.expect.toml), written from the user-facing contract alone.

Every section is checked against the `paper` preset baseline: a mapped section by the effective configs of its
variants, in plan order (changes applied to the baseline, so `memory.layers = "last"` and `[12]` are the same at
depth 12, and a shorter segment shortens the XL cache), with `equals_baseline` where the plan asks for the
baseline's own setting; a refused section by its reason and the words its message must contain. A resolved plan
written as TOML runs the same variants."""

import re
import tomllib
from pathlib import Path

import pytest

from memorizing import preset
from memorizing.ablation.configs import apply_changes, effective
from memorizing.ablation.mapping import REASONS, resolve
from memorizing.ablation.plan import Plan, load_plan, parse_markdown, parse_toml, resolved_toml
from memorizing.ablation.unread import unread_lines

PLANS = sorted((Path(__file__).parent / "plans").glob("*.md"))
# Probes written by the reader's implementer in further styles (JSON, setext headings, inline enumerations, field
# sub-headings, terse arrows, plans wrapped in Baseline/Summary sections; then one or more per class of failure
# found on held-out plans: field lists, placeholders, Unicode punctuation, baseline references, tables, described
# position biases, layer qualifiers, shared concepts, literal keys, training settings in prose, relative values,
# paper references): regression tests, kept apart from the independent corpus above.
PROBES = sorted((Path(__file__).parent / "plans" / "probes").glob("*.md"))


@pytest.fixture(scope="module")
def baseline():
    return preset("paper")


def expected_sections(plan: Path) -> list[dict]:
    return tomllib.loads(plan.with_name(plan.stem + ".expect.toml").read_text())["section"]


def same_title(expected: str, got: str) -> bool:
    """Titles as a reader would match them: '1. Remove X' is 'Remove X', a sentence starts with its title."""
    a, b = (re.sub(r"[^a-z0-9]", "", t.lower()) for t in (expected, got))
    return a in b or b in a


def check_section(expected: dict, r, baseline) -> str | None:
    """What is wrong with one section's resolution, or None."""
    if not same_title(expected["title"], r.section.title):
        return f"read as section {r.section.title!r}"
    if expected["outcome"] == "refuse":
        if r.refusal is None:
            return "mapped, SILENTLY WRONG: " + "; ".join(str(v.changes) for v in r.variants)
        if r.refusal.reason != expected["reason"]:
            return f"refused as {r.refusal.reason}, not {expected['reason']}: {r.refusal.message}"
        missing = [m for m in expected.get("mentions", []) if m.lower() not in r.refusal.message.lower()]
        return f"refusal does not mention {missing}: {r.refusal.message}" if missing else None
    if r.refusal is not None:
        return f"refused ({r.refusal.reason}): {r.refusal.message}"
    want = [(effective(apply_changes(baseline, v["set"])), v.get("equals_baseline", False))
            for v in expected["variant"]]
    got = [(effective(apply_changes(baseline, v.changes)), v.equals_baseline) for v in r.variants]
    if want != got:
        return "mapped, SILENTLY WRONG: " + "; ".join(
            f"{v.changes}{' (= baseline)' if v.equals_baseline else ''}" for v in r.variants)
    return None


@pytest.mark.parametrize("plan", PLANS + PROBES, ids=lambda p: p.stem)
def test_every_section_maps_or_is_refused_as_expected(plan, baseline):
    expected = expected_sections(plan)
    resolutions = resolve(parse_markdown(plan.read_text(), str(plan)), baseline)
    assert [r.section.title for r in resolutions] and len(resolutions) == len(expected), \
        f"read {len(resolutions)} sections {[r.section.title for r in resolutions]}, expected {len(expected)}"
    problems = [f"line {r.section.line} {e['title']!r}: {why}" for e, r in zip(expected, resolutions)
                if (why := check_section(e, r, baseline))]
    assert not problems, "\n".join(problems)


def test_the_corpus_is_large_and_uses_every_refusal_reason():
    sections = [s for plan in PLANS for s in expected_sections(plan)]
    assert len(PLANS) >= 40 and len(sections) >= 200
    reasons = {s["reason"] for s in sections if s["outcome"] == "refuse"}
    assert reasons == set(REASONS) - {"invalid"}


@pytest.mark.parametrize("plan", PLANS + PROBES, ids=lambda p: p.stem)
def test_the_resolved_plan_runs_the_same_variants(plan, baseline):
    """--resolve writes the mapped sections as a TOML plan; reading it back gives the same variants, names,
    descriptions and configs."""
    resolutions = [r for r in resolve(parse_markdown(plan.read_text()), baseline) if r.refusal is None]
    if not resolutions:
        pytest.skip("no section of this plan maps")
    text = resolved_toml(Plan(plan.stem, str(plan), str(plan), []), resolutions, "paper", [])
    tomllib.loads(text)  # valid TOML
    again = resolve(parse_toml(text), baseline)
    assert all(r.refusal is None for r in again)
    for a, b in zip(resolutions, again):
        assert a.section.title == b.section.title
        assert [(v.name, v.replacement, v.description, v.equals_baseline) for v in a.variants] == \
            [(v.name, v.replacement, v.description, v.equals_baseline) for v in b.variants]
        assert [effective(apply_changes(baseline, v.changes)) for v in a.variants] == \
            [effective(apply_changes(baseline, v.changes)) for v in b.variants]


@pytest.mark.parametrize("plan", PLANS + PROBES, ids=lambda p: p.stem)
def test_no_line_that_looks_like_an_ablation_is_left_unread(plan):
    text = plan.read_text()
    assert unread_lines(text, parse_markdown(text)) == []


def test_lines_that_no_section_reads_are_warned_about(tmp_path):
    """Terse notes above the first heading are not read as sections (the text before a heading is a preamble):
    the plan says so, line by line, instead of dropping them without a word."""
    plan = tmp_path / "queue.md"
    plan.write_text("Queue for next week (defaults otherwise):\n\nnbr sweep: k in {4, 8, 128}.\n"
                    "no-xl: turn the XL cache off.\n\n## Exact search\n- **Action**: REPLACE\n- **Values**: exact\n")
    loaded = load_plan(str(plan))
    assert [s.title for s in loaded.sections] == ["Exact search"]
    (warning,) = loaded.warnings
    assert "2 lines" in warning and "line 3: 'nbr sweep" in warning and "line 4: 'no-xl" in warning
    assert load_plan(str(Path(__file__).parent / "plans" / "01_seed-format.md")).warnings == []
