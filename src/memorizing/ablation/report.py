"""Study reports: statistics over seeds, paired differences to the baseline, tables and figures.

Confidence intervals are Student-t 95% intervals over seeds; the difference to the baseline is paired by seed
(every variant sees the same data order and initialisation seed), which removes the seed-to-seed spread that
the variants share.
"""

import json
import math
import re
import statistics
from pathlib import Path

from memorizing.ablation.runner import STUDY, read_ledger, run_id
from memorizing.errors import UserError
from memorizing.evaluate import POSITION_BUCKETS, bucket_name
from memorizing.files import atomic_write

POSITION_NAMES = [bucket_name(a, b) for a, b in POSITION_BUCKETS]  # in document order

# Two-sided 95% Student-t critical values by degrees of freedom (1..30); beyond 30 the normal value.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_ci(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95% confidence interval; with one value the interval is that value."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, [m, m]
    half = (T95[len(values) - 2] if len(values) <= 31 else 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return m, [m - half, m + half]


def summarise(study: dict, records: dict[str, dict]) -> dict:
    """report.json's content from the study and the finished runs."""
    seeds = study["seeds"]
    base_key = study["variants"][0]["key"]
    ok = lambda key, seed: records.get(run_id(key, seed), {}).get("status") == "ok"
    base = {s: records[run_id(base_key, s)]["ppl"] for s in seeds if ok(base_key, s)}
    first_name = {}
    variants, missing = [], []
    for v in study["variants"]:
        runs = [records[run_id(v["key"], s)] for s in seeds if ok(v["key"], s)]
        missing += [run_id(v["key"], s) for s in seeds if run_id(v["key"], s) not in records]
        failed = [records[run_id(v["key"], s)] for s in seeds
                  if run_id(v["key"], s) in records and not ok(v["key"], s)]
        row = {"name": v["name"], "ablation": v["ablation"], "replacement": v["replacement"],
               "config_changes": v["config_changes"], "description": v.get("description", ""),
               "seeds": [r["seed"] for r in runs],
               "ppl": [r["ppl"] for r in runs], "same_config_as": first_name.setdefault(v["key"], v["name"]),
               "failed_seeds": [{"seed": r["seed"], "error": r.get("error")} for r in failed]}
        if row["same_config_as"] == v["name"]:
            row["same_config_as"] = None
        if runs:
            row["ppl_mean"], row["ppl_ci95"] = mean_ci(row["ppl"])
            row["bits_per_token_mean"] = statistics.fmean(r["bits_per_token"] for r in runs)
            paired = [r["ppl"] - base[r["seed"]] for r in runs if r["seed"] in base]
            if paired:
                d_mean, d_ci = mean_ci(paired)
                row["delta_vs_baseline"] = {"mean": d_mean, "ci95": d_ci, "pairs": len(paired),
                                            "excludes_zero": len(paired) > 1 and (d_ci[0] > 0 or d_ci[1] < 0)}
            positions = [p for p in POSITION_NAMES if p in runs[0]["by_position"]]
            row["ppl_by_position"] = {p: statistics.fmean(r["by_position"][p]["ppl"] for r in runs
                                                          if p in r["by_position"]) for p in positions}
            for field in ("search_recall_at_k", "recall_span_loss"):  # the latter on the `recall` corpus only
                values = [r[field] for r in runs if r.get(field) is not None]
                row[field] = statistics.fmean(values) if values else None
            for field in ("parameters", "tokens_per_s", "peak_rss_mib", "train_seconds", "wall_s"):
                row[field] = statistics.fmean(r[field] for r in runs)
            row["gates"] = runs[0]["gates"]
            row["stability"] = {"max_grad_norm": max(r["stability"]["max_grad_norm"] for r in runs),
                                "loss_spikes": sum(r["stability"]["loss_spikes"] for r in runs),
                                "non_finite_runs": len(failed)}
        variants.append(row)
    return {"baseline": study["variants"][0]["name"], "plan": study["plan"], "preset": study["preset"],
            "corpus": study["corpus"], "sets": study["sets"], "seeds": seeds, "command": study.get("command"),
            "complete": not missing, "missing_runs": sorted(set(missing)), "variants": variants}


def _fmt_ci(mean, ci) -> str:
    return f"{mean:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "ablation"


def markdown(report: dict, study: dict, figures: dict[str, str]) -> str:
    lines = [f"# Ablation study: {report['plan']}", ""]
    setting = f"preset `{report['preset']}` on corpus `{report['corpus']}`"
    if report["sets"]:
        setting += " with " + ", ".join(f"`{s}`" for s in report["sets"])
    lines += [f"Baseline: {setting}; seeds {report['seeds']} (paired: every variant sees the same data order "
              f"and initialisation seed). Perplexity is per byte on the test split; intervals are 95% Student-t "
              f"over seeds; Δ is the paired difference to the baseline, marked * where its interval excludes 0.", ""]
    command = report.get("command") or (f"memorizing ablate {study.get('plan_path') or ''} --preset "
                                         f"{report['preset']} --corpus {report['corpus']} --seeds "
                                         f"{len(report['seeds'])}".replace("  ", " "))
    lines += ["Reproduce with:", "", f"    {command}", ""]
    if not report["complete"]:
        lines += [f"**Incomplete**: {len(report['missing_runs'])} runs have not finished "
                  f"({', '.join(report['missing_runs'][:6])}{'...' if len(report['missing_runs']) > 6 else ''}).", ""]
    base = report["variants"][0]
    header = ("| variant | config changes | perplexity (95% CI) | Δ vs baseline (95% CI) | recall@k | tokens/s "
              "| parameters |")
    rule = "|---|---|---|---|---|---|---|"

    def row(v):
        if "ppl_mean" not in v:
            return f"| {v['name']} | {_changes(v)} | (no finished run) | | | | |"
        d = v.get("delta_vs_baseline")
        delta = "—" if v is base or not d else (_fmt_ci(d["mean"], d["ci95"]) + (" *" if d["excludes_zero"] else ""))
        recall = f"{v['search_recall_at_k']:.3f}" if v.get("search_recall_at_k") is not None else "exact" \
            if "memory.enabled" not in v["config_changes"] else "—"
        shared = f" (= {v['same_config_as']})" if v["same_config_as"] else ""
        return (f"| {v['name']}{shared} | {_changes(v)} | {_fmt_ci(v['ppl_mean'], v['ppl_ci95'])} | {delta} | "
                f"{recall} | {v['tokens_per_s']:,.0f} | {v['parameters']:,.0f} |")

    for title in study["ablations"]:
        mine = [v for v in report["variants"] if v["ablation"] == title]
        lines += [f"## {title}", ""]
        lines += [f"- {v['name']}: {v['description']}" for v in mine if v.get("description")]
        lines += [""] if any(v.get("description") for v in mine) else []
        lines += [header, rule, row(base)] + [row(v) for v in mine]
        if title in figures:
            lines += ["", f"![{title}]({figures[title]})"]
        lines.append("")
    lines += ["## Cost and stability", "",
              "| variant | train s/run | peak RSS MiB | max grad norm | loss spikes | failed runs | memory gate per head |",
              "|---|---|---|---|---|---|---|"]
    for v in report["variants"]:
        if "ppl_mean" in v:
            gates = "; ".join(f"L{k}: " + ", ".join(f"{g:.2f}" for g in gs) for k, gs in v["gates"].items()) or "—"
            lines.append(f"| {v['name']} | {v['train_seconds']:.0f} | {v['peak_rss_mib']:.0f} | "
                         f"{v['stability']['max_grad_norm']:.2f} | {v['stability']['loss_spikes']} | "
                         f"{len(v['failed_seeds'])} | {gates} |")
    lines.append("")
    for name in ("curves", "by_position"):
        if name in figures:
            lines += [f"![{name}]({figures[name]})", ""]
    positions = list(base.get("ppl_by_position", {}))
    if positions:
        lines += ["## Perplexity by position in the document", "",
                  "| variant | " + " | ".join(positions) + " |", "|---|" + "---|" * len(positions)]
        for v in report["variants"]:
            if "ppl_by_position" in v:
                lines.append(f"| {v['name']} | " + " | ".join(f"{v['ppl_by_position'].get(p, float('nan')):.3f}"
                                                             for p in positions) + " |")
        lines.append("")
    return "\n".join(lines)


def _changes(v) -> str:
    return ", ".join(f"`{k} = {val}`" for k, val in v["config_changes"].items()) or "—"


def figures(report: dict, study: dict, records: dict, folder: Path) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}
    base = report["variants"][0]
    for title in study["ablations"]:
        rows = [base] + [v for v in report["variants"] if v["ablation"] == title]
        rows = [v for v in rows if "ppl_mean" in v]
        if len(rows) < 2:
            continue
        fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(rows), 3.4))
        means = [v["ppl_mean"] for v in rows]
        errors = [[m - v["ppl_ci95"][0] for m, v in zip(means, rows)], [v["ppl_ci95"][1] - m for m, v in zip(means, rows)]]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color=["#888"] + ["#3a7"] * (len(rows) - 1))
        ax.set_xticks(range(len(rows)), [v["name"] for v in rows], rotation=20, ha="right", fontsize=8)
        low = min(v["ppl_ci95"][0] for v in rows)
        high = max(v["ppl_ci95"][1] for v in rows)
        ax.set_ylim(max(0, low - 0.15 * (high - low + 1e-9)), high + 0.15 * (high - low + 1e-9))
        ax.set_ylabel("test perplexity (95% CI)")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        name = f"ppl-{_slug(title)}.png"
        fig.savefig(folder / name, dpi=120)
        plt.close(fig)
        made[title] = name

    fig, ax = plt.subplots(figsize=(7, 4))
    field = "loss"
    for v in report["variants"]:
        if v["same_config_as"] or "ppl_mean" not in v:
            continue
        curves = [records[run_id(_key(study, v["name"]), s)]["curve"] for s in v["seeds"]]
        field = "valid_ppl" if any("valid_ppl" in p for p in curves[0]) else "loss"
        points = {}
        for curve in curves:
            for p in curve:
                if field in p:
                    points.setdefault(p["step"], []).append(p[field])
        steps = sorted(points)
        ax.plot(steps, [statistics.fmean(points[s]) for s in steps], label=v["name"], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("validation perplexity" if field == "valid_ppl" else "training loss (nats/byte)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "curves.png", dpi=120)
    plt.close(fig)
    made["curves"] = "curves.png"

    fig, ax = plt.subplots(figsize=(7, 4))
    positions = []
    for v in report["variants"]:
        if v["same_config_as"] or "ppl_by_position" not in v:
            continue
        positions = list(v["ppl_by_position"])
        ax.plot(range(len(positions)), list(v["ppl_by_position"].values()), marker="o", label=v["name"], lw=1)
    ax.set_xticks(range(len(positions)), positions)
    ax.set_xlabel("position in the document (bytes)")
    ax.set_ylabel("test perplexity")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "by_position.png", dpi=120)
    plt.close(fig)
    made["by_position"] = "by_position.png"
    return made


def _key(study: dict, name: str) -> str:
    return next(v["key"] for v in study["variants"] if v["name"] == name)


def write_report(folders: list[Path], out: Path) -> dict:
    """Merge the ledgers of `folders` (shards of one study) and write report.md, report.json and figures."""
    studies = []
    for folder in folders:
        path = Path(folder) / STUDY
        if not path.exists():
            raise UserError(f"{folder} holds no study ({STUDY}): pass folders written by `memorizing ablate --out`.")
        studies.append(json.loads(path.read_text()))
    study = studies[0]
    for folder, other in zip(folders[1:], studies[1:]):
        if other["configs"] != study["configs"] or other["variants"] != study["variants"]:
            raise UserError(f"{folder} holds a different study from {folders[0]}: only shards of the same plan and "
                            f"settings can be merged.")
    records = {}
    for folder in folders:
        records.update(read_ledger(Path(folder)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = summarise(study, records)
    made = figures(report, study, records, out)
    atomic_write(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(markdown(report, study, made)))
    return report


def merge_reports(folders: list[str], out: str | None) -> int:
    target = Path(out or folders[0])
    if out and Path(out) not in map(Path, folders):
        target.mkdir(parents=True, exist_ok=True)
        first = json.loads((Path(folders[0]) / STUDY).read_text()) if (Path(folders[0]) / STUDY).exists() else None
        if first is not None:
            atomic_write(target / STUDY, lambda tmp: Path(tmp).write_text(json.dumps(first, indent=2)))
    report = write_report([Path(f) for f in folders], target)
    done = sum(len(v["seeds"]) for v in report["variants"] if not v["same_config_as"])
    missing = len(report["missing_runs"])
    print(f"report from {len(folders)} folder(s), {done} finished runs, {missing} missing: {target / 'report.md'}")
    return 0
