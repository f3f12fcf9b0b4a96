"""Study reports: each variant against the baseline, at equal steps and at equal compute, with tables and figures.

- Equal steps: test perplexity after every variant's steps (warm start: the same trunk, then the same number of
  fine-tuning steps), with 95% intervals over seeds and the paired difference to the baseline (statistics.py),
  and bits per byte of the test text beside it (per token perplexity depends on the tokenizer; bits per byte
  compares runs with different tokenizers, and equals log2 of the perplexity for byte models).
- Equal compute: every run records its validation perplexity against its own training time; each variant's
  validation perplexity is read off that curve at the training time of the fastest variant, so that a variant
  that costs more per step gets no more compute than the cheapest one had.
- What the memory buys: the baseline against the same network without the memory branch and against the same
  network reading nothing (gate 0), with the baseline's seed spread beside the memory's effect.
"""

import json
import math
import re
import statistics
from pathlib import Path

from memorizing.ablation.statistics import LEVEL, holm, interpolate, mean_ci, paired
from memorizing.ablation.study_folder import STUDY, read_ledger, run_id
from memorizing.config import is_pretrained
from memorizing.errors import UserError
from memorizing.files import atomic_write

CONTROLS = "What the memory buys"  # the ablation title of the controls (runner.controls)


# ---- report.json ---------------------------------------------------------------------------------------------
def summarise(study: dict, records: dict[str, dict]) -> dict:
    """report.json's content from the study and the finished runs."""
    seeds = study["seeds"]
    ok = lambda key, seed: records.get(run_id(key, seed), {}).get("status") == "ok"
    runs_of = lambda key: [records[run_id(key, s)] for s in seeds if ok(key, s)]
    base_key = study["variants"][0]["key"]
    base = {r["seed"]: r for r in runs_of(base_key)}
    first_name, variants, missing = {}, [], []
    for v in study["variants"]:
        runs = runs_of(v["key"])
        missing += [run_id(v["key"], s) for s in seeds if run_id(v["key"], s) not in records]
        failed = [records[run_id(v["key"], s)] for s in seeds
                  if run_id(v["key"], s) in records and not ok(v["key"], s)]
        same = first_name.setdefault(v["key"], v["name"])
        row = {"name": v["name"], "ablation": v["ablation"], "replacement": v["replacement"],
               "config_changes": v["config_changes"], "description": v.get("description"),
               "equals_baseline": v.get("equals_baseline", False),
               "same_config_as": None if same == v["name"] else same,
               "seeds": [r["seed"] for r in runs], "ppl": [r["ppl"] for r in runs],
               "bits_per_byte": [bits_per_byte(r, study) for r in runs],
               "failed_seeds": [{"seed": r["seed"], "error": r.get("error")} for r in failed]}
        if runs:
            row |= _measures(runs, row["bits_per_byte"])
            pairs = [(r["ppl"], base[r["seed"]]["ppl"]) for r in runs if r["seed"] in base]
            if pairs and v["key"] != base_key:
                row["delta_vs_baseline"] = paired([a for a, _ in pairs], [b for _, b in pairs])
        variants.append(row)
    report = {"baseline": study["variants"][0]["name"], "plan": study["plan"], "preset": study["preset"],
              "corpus": study["corpus"], "sets": study["sets"], "seeds": seeds, "command": study.get("command"),
              "start": study.get("start", "scratch"), "trunk_steps": study.get("trunk_steps"),
              "finetune_steps": study.get("finetune_steps"), "init_from": study.get("init_from"),
              "complete": not missing, "missing_runs": sorted(set(missing)), "variants": variants}
    _equal_time(report, study, records)
    _multiplicity(report)
    report["memory_effect"] = _memory_effect(report)
    return report


def bits_per_byte(record: dict, study: dict) -> float | None:
    """A run's bits per byte of the test text; ledgers written before runs recorded it hold it for byte models
    only, as their bits per token (pretrained models' tokens are not bytes: None)."""
    if "bits_per_byte" in record:
        return record["bits_per_byte"]
    return None if is_pretrained(study.get("init_from")) else record["bits_per_token"]


def _measures(runs: list[dict], bits: list[float | None]) -> dict:
    """Means over a variant's finished seeds (`bits`: their bits per byte)."""
    mean = lambda field: statistics.fmean(r[field] for r in runs)
    row = {}
    row["ppl_mean"], row["ppl_ci95"] = mean_ci([r["ppl"] for r in runs])
    row["bits_per_token_mean"] = mean("bits_per_token")
    if None not in bits:
        row["bits_per_byte_mean"], row["bits_per_byte_ci95"] = mean_ci(bits)
    positions = sorted(runs[0]["by_position"], key=_bucket_start)  # in document order
    row["ppl_by_position"] = {p: statistics.fmean(r["by_position"][p]["ppl"] for r in runs if p in r["by_position"])
                              for p in positions}
    row["position_tokens"] = {p: runs[0]["by_position"][p]["tokens"] for p in positions}
    row["documents"] = runs[0].get("documents")
    for field in ("search_recall_at_k", "recall_span_loss", "recall_exact_match", "recall_source_found"):
        values = [r[field] for r in runs if r.get(field) is not None]
        row[field] = statistics.fmean(values) if values else None
    far = [r["far_repeats"] for r in runs if r.get("far_repeats")]
    if far:
        row["far_repeats"] = {key: _mean_or_none([f.get(key) for f in far]) for key in
                              ("loss", "share", "rest_loss", "source_found", "right_byte_weight",
                               "rest_right_byte_weight")}
    by_offset = [r["recall_span_loss_by_offset"] for r in runs if r.get("recall_span_loss_by_offset")]
    row["recall_span_loss_by_offset"] = ([_mean_or_none(list(column))
                                          for column in zip(*by_offset)] if by_offset else None)
    full = [r["search_recall_by_fill"]["full"] for r in runs if (r.get("search_recall_by_fill") or {}).get("full")]
    row["search_recall_full"] = statistics.fmean(full) if full else None
    for field in ("parameters", "tokens_per_s", "peak_rss_mib", "train_seconds", "wall_s", "steps"):
        row[field] = mean(field)
    row["gates"] = runs[0]["gates"]
    row["stability"] = {"max_grad_norm": max(r["stability"]["max_grad_norm"] for r in runs),
                        "loss_spikes": sum(r["stability"]["loss_spikes"] for r in runs)}
    row["valid_ppl_equal_steps"] = _mean_or_none([_final_valid(r) for r in runs])
    return row


def _bucket_start(label: str) -> int:
    """The first byte of a position bucket from its label: '0-512' -> 0, '2K-8K' -> 2048, '8K+' -> 8192."""
    start = label.split("-")[0].rstrip("+")
    return int(start[:-1]) * 1024 if start.endswith("K") else int(start)


def _final_valid(record: dict) -> float | None:
    points = [p["valid_ppl"] for p in record.get("curve", []) if "valid_ppl" in p]
    return points[-1] if points else None


def _valid_at(record: dict, seconds: float) -> float | None:
    """A run's validation perplexity at `seconds` of its training, read off its curve (log-linear)."""
    points = [(p["train_seconds"], math.log(p["valid_ppl"])) for p in record.get("curve", [])
              if "valid_ppl" in p and "train_seconds" in p]
    value = interpolate(points, seconds)
    return None if value is None else math.exp(value)


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _equal_time(report: dict, study: dict, records: dict) -> None:
    """Each variant's validation perplexity at the training time of the fastest variant (equal compute)."""
    timed = [v for v in report["variants"] if v.get("valid_ppl_equal_steps") is not None and not v["same_config_as"]]
    if not timed:
        return
    fastest = min(timed, key=lambda v: v["train_seconds"])
    seconds = fastest["train_seconds"]
    report["equal_time"] = {"seconds": seconds, "fastest": fastest["name"]}
    keys = {v["name"]: v["key"] for v in study["variants"]}
    at = lambda name, seed: _valid_at(records[run_id(keys[name], seed)], seconds)
    base = report["variants"][0]
    base_values = {s: at(base["name"], s) for s in base["seeds"]}
    for v in report["variants"]:
        if v.get("valid_ppl_equal_steps") is None:
            continue
        name = v["same_config_as"] or v["name"]
        values = {s: at(name, s) for s in v["seeds"]}
        v["valid_ppl_equal_time"] = _mean_or_none(list(values.values()))
        shared = [s for s in v["seeds"] if values[s] is not None and base_values.get(s) is not None]
        if v is not base and shared:
            v["delta_equal_time"] = paired([values[s] for s in shared], [base_values[s] for s in shared])


def _multiplicity(report: dict) -> None:
    """Holm-adjust the p-values of all paired comparisons with the baseline (equal steps), once each."""
    tests = {v["name"]: v["delta_vs_baseline"]["p"] for v in report["variants"]
             if v.get("delta_vs_baseline", {}).get("p") is not None and not v["same_config_as"]
             and not v["equals_baseline"]}
    adjusted = holm(tests)
    for v in report["variants"]:
        d = v.get("delta_vs_baseline")
        if d is not None:
            name = v["same_config_as"] or v["name"]
            d["p_holm"] = adjusted.get(name)
            d["resolved"] = d["p_holm"] is not None and d["p_holm"] < 1 - LEVEL
    report["comparisons"] = len(tests)


def _no_memory_control(report: dict) -> dict | None:
    """The control without the memory branch (runner.controls), if the study has it."""
    return next((v for v in report["variants"] if v["ablation"] == CONTROLS
                 and v["config_changes"] == {"memory.enabled": False}), None)


def _memory_effect(report: dict) -> dict | None:
    """The memory's effect (no memory against the baseline) beside the baseline's spread over seeds."""
    base = report["variants"][0]
    none = _no_memory_control(report)
    if none is None or "delta_vs_baseline" not in none or len(base["ppl"]) < 2:
        return None
    spread = statistics.stdev(base["ppl"])
    effect = none["delta_vs_baseline"]["mean"]
    return {"baseline_seed_sd": spread, "effect": effect,
            "spread_over_effect": spread / abs(effect) if effect else None}


# ---- report.md -----------------------------------------------------------------------------------------------
def _fmt_ci(mean, ci, digits: int = 3, n: int = 2) -> str:
    """'mean [low, high]' over n seeds; with one seed there is no interval to give."""
    if n < 2:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _fmt_paired(d: dict) -> str:
    """A paired difference (statistics.paired) as 'mean [low, high]'."""
    return _fmt_ci(d["mean"], d["ci95"], n=d["pairs"])


def _delta(d: dict | None) -> str:
    if not d:
        return "—"
    mark = " **" if d.get("resolved") else (" *" if d["excludes_zero"] else "")
    p = f"; p {d['p']:.3g}" if d.get("p") is not None else ""
    holm_p = f", Holm {d['p_holm']:.3g}" if d.get("p_holm") is not None else ""
    return f"{_fmt_paired(d)}{mark}{p}{holm_p}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "ablation"


def _start_sentence(report: dict) -> str:
    if report["start"] == "warm":
        return (f"Every seed pretrains one trunk without memory for {report['trunk_steps']} steps; every variant "
                f"is then fine-tuned from its seed's trunk for {report['finetune_steps']} steps (the paper's "
                f"fine-tuning setting, section 4). Variants that change the trunk itself (its qk-norm, segment, XL "
                f"cache or width) pretrain their own. This answers: given a trained network, what does each part "
                f"of the memory buy when it is added and trained on? Seeds vary the trunk's initialisation (and "
                f"the data order, unless data.order_seed fixes it); comparisons are paired by trunk. `--start "
                f"scratch` trains every variant from initialisation instead and answers what each part buys when "
                f"the network learns with it.")
    if report["start"] == "init":
        source = "pretrained model" if is_pretrained(report["init_from"]) else "trained run"
        return (f"Every variant is fine-tuned for {report['finetune_steps']} steps from the {source} "
                f"`{report['init_from']}`.")
    return ("Every variant trains from initialisation; seeds vary initialisation (and the data order, unless "
            "data.order_seed fixes it), paired across variants.")


def markdown(report: dict, study: dict, figures: dict[str, str]) -> str:
    lines = [f"# Ablation study: {report['plan']}", ""]
    setting = f"preset `{report['preset']}` on corpus `{report['corpus']}`"
    if report["sets"]:
        setting += " with " + ", ".join(f"`{s}`" for s in report["sets"])
    base = report["variants"][0]
    docs = f" ({base.get('documents')} held-out documents)" if base.get("documents") else ""
    unit = "token of the pretrained model's tokenizer" if is_pretrained(report.get("init_from")) else "byte"
    lines += [f"Baseline: {setting}; seeds {report['seeds']}. {_start_sentence(report)}", "",
              f"Perplexity is per {unit} on the test split{docs}; bits per byte is the test loss per byte of "
              f"the documents' text, comparable across tokenizers (for byte models, log2 of the perplexity); "
              f"intervals are 95% Student-t over seeds; Δ is the "
              f"difference to the baseline paired by seed, with the paired t-test's p and its Holm adjustment over "
              f"the report's {report.get('comparisons', 0)} comparisons: ** resolved after adjustment, * interval "
              f"excludes 0 before it. Equal time is the validation perplexity at the training time of the fastest "
              f"variant" + (f" ({report['equal_time']['fastest']}, {report['equal_time']['seconds']:.0f} s)"
                            if report.get("equal_time") else "") + ".", ""]
    command = report.get("command") or (f"memorizing ablate {study.get('plan_path') or ''} --preset "
                                         f"{report['preset']} --corpus {report['corpus']} --seeds "
                                         f"{len(report['seeds'])}".replace("  ", " "))
    lines += ["Reproduce with:", "", f"    {command}", ""]
    if not report["complete"]:
        lines += [f"**Incomplete**: {len(report['missing_runs'])} runs have not finished "
                  f"({', '.join(report['missing_runs'][:6])}{'...' if len(report['missing_runs']) > 6 else ''}).", ""]
    lines += _conclusions(report)
    header = ("| variant | config changes | perplexity, equal steps (95% CI) | bits/byte (95% CI) | "
              "Δ vs baseline (95% CI; p) | equal time | recall@k, full memory | tokens/s |")
    rule = "|---|---|---|---|---|---|---|---|"

    def row(v):
        if "ppl_mean" not in v:
            return f"| {v['name']} | {_changes(v)} | (no finished run) | | | | | |"
        recall = (f"{v['search_recall_full']:.3f}" if v.get("search_recall_full") is not None else
                  f"{v['search_recall_at_k']:.3f}" if v.get("search_recall_at_k") is not None else "—")
        shared = f" (= {v['same_config_as']})" if v["same_config_as"] else ""
        time_ = f"{v['valid_ppl_equal_time']:.3f}" if v.get("valid_ppl_equal_time") is not None else "—"
        seeds = len(v["ppl"])
        bits = (_fmt_ci(v["bits_per_byte_mean"], v["bits_per_byte_ci95"], 4, seeds) if "bits_per_byte_mean" in v
                else "—")
        ppl = _fmt_ci(v["ppl_mean"], v["ppl_ci95"], n=seeds)
        return (f"| {v['name']}{shared} | {_changes(v)} | {ppl} | {bits} | "
                f"{_delta(v.get('delta_vs_baseline'))} | {time_} | {recall} | {v['tokens_per_s']:,.0f} |")

    for title in study["ablations"]:
        rows = [v for v in report["variants"] if v["ablation"] == title]
        lines += [f"## {title}", ""]
        lines += [f"- **{v['name']}**: {v['description']}" for v in rows if v.get("description")]
        lines += ["", header, rule, row(base)] + [row(v) for v in rows]
        if title in figures:
            lines += ["", f"![{title}]({figures[title]})"]
        lines.append("")
    lines += _cost_table(report) + _position_table(report) + _recall_table(report)
    for name in ("curves", "curves_time", "by_position"):
        if name in figures:
            lines += [f"![{name}]({figures[name]})", ""]
    return "\n".join(lines)


def _conclusions(report: dict) -> list[str]:
    """What the study can and cannot conclude, from its own numbers."""
    lines = ["## What this study resolves", ""]
    resolved = [v for v in report["variants"] if (v.get("delta_vs_baseline") or {}).get("resolved")
                and not v["same_config_as"]]
    unresolved = [v for v in report["variants"] if "delta_vs_baseline" in v and not v["same_config_as"]
                  and not v["equals_baseline"] and v not in resolved]
    for v in resolved:
        d = v["delta_vs_baseline"]
        direction = "worse" if d["mean"] > 0 else "better"
        lines.append(f"- **{v['name']}** ({v['ablation']}): perplexity {abs(d['mean']):.3f} {direction} than the "
                     f"baseline, resolved at 95% after the Holm adjustment (p {d['p_holm']:.3g}).")
    if unresolved:
        count = len(report["seeds"])
        lines.append(f"- Not resolved at this size ({count} seed{'s' if count != 1 else ''}): "
                     + "; ".join(f"{v['name']} ({_fmt_paired(v['delta_vs_baseline'])})"
                                 for v in unresolved)
                     + ". Their intervals bound the effect; they do not show it is zero.")
    effect = report.get("memory_effect")
    if effect:
        lines.append(f"- The baseline's seed spread (sd {effect['baseline_seed_sd']:.3f}) is "
                     f"{effect['spread_over_effect']:.2f} of the memory's effect ({effect['effect']:+.3f} without "
                     f"memory).")
    controls = {v["config_changes"].get("memory.combine"): v for v in report["variants"] if v["ablation"] == CONTROLS}
    none = _no_memory_control(report)
    if none and "delta_equal_time" in none:
        d = none["delta_equal_time"]
        verdict = ("memory pays for its cost" if d["ci95"][0] > 0 else
                   "the network without memory is better for the same compute" if d["ci95"][1] < 0 else
                   "neither is resolved better for the same compute")
        lines.append(f"- At equal compute ({report['equal_time']['seconds']:.0f} s of training), no memory against "
                     f"the baseline: {_fmt_paired(d)} validation perplexity: {verdict} on this "
                     f"machine.")
    if controls.get("fixed") is not None:
        lines.append("- `reads nothing (gate 0)` keeps the memory layer and writes memory but never reads it: its "
                     "difference to the baseline is what reading the memory buys, apart from the network's shape.")
    lines += ["- A study this size answers for this model, corpus and budget; the paper's models are 100x larger "
              "and trained 1000x longer.", ""]
    return lines


def _cost_table(report: dict) -> list[str]:
    lines = ["## Cost and stability", "",
             "| variant | steps | train s/run | peak RSS MiB | max grad norm | loss spikes | failed runs | "
             "memory gate per head |", "|---|---|---|---|---|---|---|---|"]
    for v in report["variants"]:
        if "ppl_mean" in v and not v["same_config_as"]:
            gates = "; ".join(f"L{k}: " + ", ".join(f"{g:.2f}" for g in gs) for k, gs in v["gates"].items()) or "—"
            lines.append(f"| {v['name']} | {v['steps']:.0f} | {v['train_seconds']:.0f} | {v['peak_rss_mib']:.0f} | "
                         f"{v['stability']['max_grad_norm']:.2f} | {v['stability']['loss_spikes']} | "
                         f"{len(v['failed_seeds'])} | {gates} |")
    return lines + [""]


def _position_table(report: dict) -> list[str]:
    base = report["variants"][0]
    positions = list(base.get("ppl_by_position", {}))
    if not positions:
        return []
    tokens = base["position_tokens"]
    far = base.get("far_repeats")
    lines = ["## Perplexity by position in the document", "",
             "Bytes from the document's start (tokens per bucket: " + ", ".join(f"{p} {tokens[p]:,}" for p in positions)
             + ")." + (f" Far repeats: the {far['share']:.0%} of the bytes whose 8 bytes before occurred farther back "
                       "than the local context (segment and XL cache), followed by the same byte, which only a copy "
                       "from beyond the local context predicts; their loss in nats per byte, and the other bytes'; "
                       "and the weight the first memory layer's best head puts on retrieved entries that hold the byte "
                       "to predict, on far repeats and on the other bytes (a memory that copies puts more on far "
                       "repeats)." if far else ""),
             "", "| variant | " + " | ".join(positions)
             + (" | far repeats, nats | other bytes, nats | memory's weight on the right byte, far repeats | "
                "the same, other bytes |" if far else " |"),
             "|---|" + "---|" * (len(positions) + (4 if far else 0))]
    for v in report["variants"]:
        if "ppl_by_position" in v and not v["same_config_as"]:
            repeats = v.get("far_repeats") or {}
            extra = "".join(" | —" if repeats.get(key) is None else f" | {repeats[key]:.3f}" for key in
                            ("loss", "rest_loss", "right_byte_weight", "rest_right_byte_weight")) if far else ""
            lines.append(f"| {v['name']} | " + " | ".join(f"{v['ppl_by_position'].get(p, float('nan')):.3f}"
                                                         for p in positions) + extra + " |")
    return lines + [""]


def _recall_table(report: dict) -> list[str]:
    """On corpora that mark recalled spans (`recall`): what each variant predicts of the values recalled from
    beyond the local context, by position inside the value, and whether its memory retrieved the binding."""
    rows = [v for v in report["variants"] if v.get("recall_span_loss") is not None and not v["same_config_as"]]
    if not rows:
        return []
    width = max(len(v.get("recall_span_loss_by_offset") or []) for v in rows)

    def cell(x, digits=3):
        return "—" if x is None else f"{x:.{digits}f}"

    lines = ["## Recalled values", "",
             "Nats per recalled byte (guessing a digit: ln 10 = 2.303), by position inside the value, the values "
             "predicted exactly (every byte the model's first choice), and the spans for which the first memory "
             "layer retrieved an earlier occurrence of the binding (mean over seeds).", "",
             "| variant | nats per byte | " + " | ".join(f"byte {i + 1}" for i in range(width)) +
             " | exact match | binding retrieved |", "|---|---|" + "---|" * width + "---|---|"]
    for v in rows:
        by_offset = (v.get("recall_span_loss_by_offset") or []) + [None] * width
        lines.append(f"| {v['name']} | {cell(v['recall_span_loss'])} | "
                     + " | ".join(cell(x, 2) for x in by_offset[:width])
                     + f" | {cell(v.get('recall_exact_match'))} | {cell(v.get('recall_source_found'))} |")
    return lines + [""]


def _changes(v) -> str:
    return ", ".join(f"`{k} = {val}`" for k, val in v["config_changes"].items()) or "—"


# ---- figures -------------------------------------------------------------------------------------------------
def figures(report: dict, study: dict, records: dict, folder: Path) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}
    base = report["variants"][0]
    for title in study["ablations"]:
        rows = [v for v in [base] + [v for v in report["variants"] if v["ablation"] == title] if "ppl_mean" in v]
        if len(rows) < 2:
            continue
        fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(rows), 3.4))
        means = [v["ppl_mean"] for v in rows]
        errors = [[m - v["ppl_ci95"][0] for m, v in zip(means, rows)],
                  [v["ppl_ci95"][1] - m for m, v in zip(means, rows)]]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color=["#888"] + ["#3a7"] * (len(rows) - 1))
        ax.set_xticks(range(len(rows)), [v["name"] for v in rows], rotation=20, ha="right", fontsize=8)
        low, high = min(v["ppl_ci95"][0] for v in rows), max(v["ppl_ci95"][1] for v in rows)
        ax.set_ylim(max(0, low - 0.15 * (high - low + 1e-9)), high + 0.15 * (high - low + 1e-9))
        ax.set_ylabel("test perplexity (95% CI)")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        name = f"ppl-{_slug(title)}.png"
        fig.savefig(folder / name, dpi=120)
        plt.close(fig)
        made[title] = name

    keys = {v["name"]: v["key"] for v in study["variants"]}
    for name, x_field, x_label in (("curves", "step", "step"), ("curves_time", "train_seconds", "training seconds")):
        fig, ax = plt.subplots(figsize=(7, 4))
        field = "loss"
        for v in report["variants"]:
            if v["same_config_as"] or "ppl_mean" not in v:
                continue
            curves = [records[run_id(keys[v["name"]], s)]["curve"] for s in v["seeds"]]
            field = "valid_ppl" if any("valid_ppl" in p for p in curves[0]) else "loss"
            if x_field == "train_seconds" and field != "valid_ppl":
                break
            points = {}
            for curve in curves:
                for i, p in enumerate(c for c in curve if field in c and x_field in c):
                    points.setdefault(i, []).append((p[x_field], p[field]))
            xs = [statistics.fmean(x for x, _ in points[i]) for i in sorted(points)]
            ys = [statistics.fmean(y for _, y in points[i]) for i in sorted(points)]
            ax.plot(xs, ys, label=v["name"], lw=1)
        else:
            if x_field == "train_seconds" and report.get("equal_time"):
                ax.axvline(report["equal_time"]["seconds"], color="#888", lw=0.8, ls="--")
            ax.set_xlabel(x_label)
            ax.set_ylabel("validation perplexity" if field == "valid_ppl" else "training loss (nats/byte)")
            ax.legend(fontsize=7, ncol=2)
            fig.tight_layout()
            fig.savefig(folder / f"{name}.png", dpi=120)
            made[name] = f"{name}.png"
        plt.close(fig)

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


# ---- writing -------------------------------------------------------------------------------------------------
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
