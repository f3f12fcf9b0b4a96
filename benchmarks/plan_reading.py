"""How well the plan reader reads plans it has not seen: every section of every plan in a folder (NN_name.md with
its expectations in NN_name.expect.toml, the format of tests/plans) is mapped against the `paper` preset and
checked as tests/test_plan_corpus.py checks the corpus. Prints each section that differs from its expectation,
then the share of sections mapped exactly as expected or refused for the expected reason, and how many were mapped
silently wrong (the worst outcome: a study would run an experiment the plan did not ask for).

    python benchmarks/plan_reading.py benchmarks/held-out-plans/set-b

benchmarks/held-out-plans holds two sets, each written from the plan contract alone by someone who had not seen
the reader or the other plans; set a was measured, then used to fix the reader; set b was measured after that.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_plan_corpus import check_section, expected_sections  # noqa: E402

from memorizing import preset  # noqa: E402
from memorizing.ablation.mapping import resolve  # noqa: E402
from memorizing.ablation.plan import parse_markdown  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="plans NN_name.md with NN_name.expect.toml beside them")
    args = parser.parse_args()
    baseline = preset("paper")
    right = silent = total = 0
    plans = sorted(p for p in args.folder.glob("*.md") if p.with_name(p.stem + ".expect.toml").exists())
    if not plans:
        sys.exit(f"{args.folder}: no plan with its .expect.toml beside it")
    for plan in plans:
        expected = expected_sections(plan)
        total += len(expected)
        try:
            resolutions = resolve(parse_markdown(plan.read_text(), str(plan)), baseline)
        except Exception as error:  # a plan the reader cannot read at all counts as every section wrong
            print(f"{plan.name}: not read: {error}")
            continue
        for i, want in enumerate(expected):
            why = check_section(want, resolutions[i], baseline) if i < len(resolutions) else "not read"
            if why is None:
                right += 1
                continue
            silent += "SILENTLY" in why
            print(f"{plan.name} {want['title']!r}: {why[:240]}")
    print(f"{right}/{total} sections right ({right / total:.0%}); mapped silently wrong: {silent}")


if __name__ == "__main__":
    main()
