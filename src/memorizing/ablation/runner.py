"""Run a study: the baseline and every variant of a plan, times seeds, resumable and shardable.

Study folder:
    study.json     the plan as variants and configs (written first; a rerun must match it)
    plan.resolved.toml  the plan as it was understood, in the TOML plan format (runs the same study)
    ledger.jsonl   append-only, one checksummed line per finished run (ok or failed)
    runs/KEY-sN/   each run's training folder (resumed from its checkpoint after an interruption)
    report.md, report.json, *.png   written from the ledger(s) by report.py

Variants whose configs coincide share one run key, so they are trained once and reported under each name.
Every run with seed s uses train.seed = s for both initialisation and data order, so comparisons are paired.
"""

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from memorizing.ablation.configs import apply_changes
from memorizing.ablation.mapping import Resolution, Variant, resolve
from memorizing.ablation.plan import Plan, PlanError, load_plan, resolved_toml
from memorizing.config import Config, build_config
from memorizing.errors import UserError
from memorizing.files import atomic_write

STUDY, LEDGER, RUNS, RESOLVED = "study.json", "ledger.jsonl", "runs", "plan.resolved.toml"


def config_key(config: Config) -> str:
    """Identifies a configuration apart from its seed."""
    data = config.to_dict()
    data["train"].pop("seed")
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Understood:
    """A plan as the lab reads it against a baseline: each section's resolution (variants or a refusal)."""
    plan: Plan
    baseline: Config
    resolutions: list[Resolution]

    def problems(self) -> list[str]:
        return [problem_line(r) for r in self.resolutions if r.refusal is not None]


REASON_LABEL = {"not-available": "not available", "equals-baseline": "equals the baseline",
                "ambiguous": "ambiguous", "unknown": "unknown", "invalid": "invalid"}


def problem_line(r: Resolution) -> str:
    return f"line {r.section.line} ({r.section.title!r}): {REASON_LABEL[r.refusal.reason]}: {r.refusal.message}"


def understand(plan: str | None, preset: str, corpus: str | None, sets: list[str]) -> Understood:
    """Read the plan and resolve every section against the baseline (the preset with the --set changes)."""
    loaded = load_plan(plan)
    baseline = build_config(None, preset, corpus, sets)
    return Understood(loaded, baseline, resolve(loaded.sections, baseline))


def plan_error(understood: Understood) -> PlanError:
    problems = understood.problems()
    total = len(understood.resolutions)
    return PlanError(f"{understood.plan.source}: {len(problems)} of {total} section{'s' if total > 1 else ''} cannot "
                     f"be run, so nothing was run:\n  " + "\n  ".join(problems) +
                     f"\n`memorizing ablate {understood.plan.path or ''} --dry-run` shows how each section was read."
                     .replace("  --dry-run", " --dry-run"))


def plan_study(plan: str | None, preset: str, corpus: str | None, sets: list[str], seeds: int,
               understood: Understood | None = None, partial: bool = False) -> dict:
    """The study as data: variants with their config changes and run keys, and one config per key. A plan with
    a refused section raises PlanError listing every problem (`partial` keeps the sections that resolved)."""
    if seeds < 1:
        raise UserError(f"--seeds {seeds} is invalid: give at least 1 (3 or more for confidence intervals).")
    understood = understood or understand(plan, preset, corpus, sets)
    if understood.problems() and not partial:
        raise plan_error(understood)
    baseline = understood.baseline
    variants = [Variant("baseline", "baseline", None, {}, "the full model of the preset")]
    for r in understood.resolutions:
        variants += r.variants
    configs, rows = {}, []
    for v in variants:
        config = apply_changes(baseline, v.changes)
        key = config_key(config)
        configs[key] = config.to_dict()
        rows.append({"name": v.name, "ablation": v.ablation, "replacement": v.replacement,
                     "config_changes": {k: _jsonable(val) for k, val in v.changes.items()}, "key": key,
                     "description": v.description, "equals_baseline": v.equals_baseline})
    names = [r["name"] for r in rows]
    for r in rows:  # names must be unique: qualify repeated ones with their ablation
        if names.count(r["name"]) > 1 and r["ablation"] != "baseline":
            r["name"] = f"{r['name']} ({r['ablation']})"
    return {"plan": understood.plan.name, "plan_path": plan, "preset": preset, "corpus": baseline.data.corpus,
            "sets": sets, "seeds": [baseline.train.seed + s for s in range(seeds)],
            "ablations": [r.section.title for r in understood.resolutions if r.refusal is None],
            "variants": rows, "configs": configs}


def _jsonable(value):
    return value if isinstance(value, (int, float, bool, str, list)) or value is None else str(value)


def all_runs(study: dict) -> list[tuple[str, int]]:
    return sorted((key, seed) for key in study["configs"] for seed in study["seeds"])


def relative_cost(config_dict: dict) -> float:
    """A rough training cost of a config, for scheduling: tokens trained, doubled where the memory is searched."""
    config = Config.from_dict(config_dict)
    tokens = config.train.steps * config.data.lanes * config.data.segment
    return tokens * (2 if config.memory_searched() else 1)


def run_id(key: str, seed: int) -> str:
    return f"{key}-s{seed}"


# ---- the ledger --------------------------------------------------------------------------------------------
def _checksum(record: dict) -> str:
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def append_ledger(folder: Path, record: dict) -> None:
    line = json.dumps({**record, "checksum": _checksum(record)}, sort_keys=True)
    with open(folder / LEDGER, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_ledger(folder: Path, warn=None) -> dict[str, dict]:
    """Finished runs by id; a torn or altered line is named and skipped (its run is redone)."""
    records = {}
    path = folder / LEDGER
    if not path.exists():
        return records
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            checksum = record.pop("checksum")
            if checksum != _checksum(record):
                raise ValueError("checksum mismatch")
        except (json.JSONDecodeError, KeyError, ValueError, AttributeError) as e:
            if warn:
                warn(f"{path}, line {number}: damaged ledger line skipped ({e}); that run will be redone.")
            continue
        records[record["run"]] = record
    return records


# ---- one run -----------------------------------------------------------------------------------------------
def execute_run(folder: str, key: str, seed: int, config_dict: dict, progress: bool, threads: int) -> dict:
    """Train (or resume) and evaluate one run; returns its ledger record. Runs in a worker process too."""
    from memorizing.data.corpora import load_corpus, split_documents
    from memorizing.evaluate import evaluate
    from memorizing.model.transformer import load_model
    from memorizing.train import SUMMARY, train

    torch.set_num_threads(threads)
    config = Config.from_dict(config_dict)
    config.train.seed = seed
    run_dir = Path(folder) / RUNS / run_id(key, seed)
    started = time.time()
    record = {"run": run_id(key, seed), "key": key, "seed": seed}
    try:
        if not (run_dir / SUMMARY).exists():
            resume = (run_dir / "checkpoint").exists() or (run_dir / ".checkpoint.old").exists()
            if not resume and run_dir.exists():
                shutil.rmtree(run_dir)  # started but never checkpointed: nothing to keep
            train(config, run_dir, resume=resume, progress=progress, log=lambda *_: None)
        summary = json.loads((run_dir / SUMMARY).read_text())
        model = load_model(run_dir)
        documents = split_documents(load_corpus(config.data), "test", config.data.corpus)
        result = evaluate(model, documents, config.data.lanes, config.data.segment, config.data.eval_tokens,
                          measure_recall=bool(model.memory_layers) and config.memory.search != "exact")
        curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        record.update(status="ok", ppl=result["ppl"], bits_per_token=result["bits_per_token"],
                      tokens=result["tokens"], by_position=result["by_position"],
                      search_recall_at_k=result.get("search_recall_at_k"),
                      recall_span_loss=result.get("recall_span_loss"), parameters=summary["parameters"],
                      tokens_per_s=summary["tokens_per_s"], peak_rss_mib=summary["peak_rss_mib"],
                      train_seconds=summary["train_seconds"], gates=summary["gates"],
                      stability={"max_grad_norm": summary["max_grad_norm"], "loss_spikes": summary["loss_spikes"],
                                 "non_finite": False},
                      curve=[{k: r[k] for k in ("step", "loss", "valid_ppl") if k in r} for r in curve])
    except UserError:
        raise
    except Exception as e:  # a diverged or crashed run is recorded as failed; the study carries on
        record.update(status="failed", error=f"{type(e).__name__}: {e}",
                      stability={"non_finite": "non-finite" in str(e)})
    record["wall_s"] = time.time() - started
    return record


# ---- the study ---------------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(p) for p in text.split("/"))
        if not 1 <= i <= n:
            raise ValueError
        return i, n
    except ValueError:
        raise UserError(f"--shard {text!r} is invalid: write I/N with 1 <= I <= N, e.g. --shard 2/4.") from None


def run_study(args) -> int:
    from memorizing.ablation.report import write_report
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds} is invalid: give at least 1 (3 or more for confidence intervals).")
    understood = understand(args.plan, args.preset, args.corpus, args.sets)
    shard_i, shard_n = parse_shard(args.shard)
    if args.dry_run:  # what was understood, then the problems (exit status 2) or the resolved plan
        study = plan_study(args.plan, args.preset, args.corpus, args.sets, args.seeds, understood, partial=True)
        runs = all_runs(study)
        print_variants(study, len(runs), len(runs[shard_i - 1::shard_n]), understood)
    study = plan_study(args.plan, args.preset, args.corpus, args.sets, args.seeds, understood)
    resolved = resolved_toml(understood.plan, understood.resolutions, args.preset, args.sets)
    if args.resolve:
        atomic_write(Path(args.resolve), lambda tmp: Path(tmp).write_text(resolved))
        print(f"resolved plan: {len(study['variants']) - 1} variants in {len(understood.resolutions)} ablations "
              f"written to {args.resolve}; `memorizing ablate {args.resolve} --preset {args.preset}` runs the same "
              f"study")
    if args.dry_run or args.resolve:
        return 0
    jobs = args.jobs if args.jobs is not None else 1 if torch.cuda.is_available() else os.cpu_count() or 1
    if jobs < 1:
        raise UserError(f"--jobs {jobs} is invalid: give 1 or more.")
    runs = all_runs(study)
    mine = runs[shard_i - 1::shard_n]

    folder = Path(args.out)
    study["command"] = "memorizing " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("memorizing") else None
    existing = folder / STUDY
    if existing.exists():
        previous = json.loads(existing.read_text())
        if previous.get("configs") != study["configs"] or _identity(previous) != _identity(study):
            raise UserError(f"{folder} holds another study (its plan or settings differ): rerun the same command "
                            f"to continue it, or choose another --out.")
        study["command"] = previous.get("command") or study["command"]
    else:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(existing, lambda tmp: Path(tmp).write_text(json.dumps(study, indent=2)))
    if not (folder / RESOLVED).exists():
        atomic_write(folder / RESOLVED, lambda tmp: Path(tmp).write_text(resolved))

    warn = lambda message: print(f"memorizing ablate: warning: {message}", file=sys.stderr)
    done = read_ledger(folder, warn)
    todo = [(k, s) for k, s in mine if run_id(k, s) not in done]
    todo.sort(key=lambda run: -relative_cost(study["configs"][run[0]]))  # longest first: no idle worker at the end
    print(f"study {folder}: {len(study['variants'])} variants, {len(study['configs'])} distinct configs x "
          f"{len(study['seeds'])} seeds = {len(runs)} runs; this shard {len(mine)}, {len(mine) - len(todo)} done, "
          f"{len(todo)} to run")
    jobs = max(1, min(jobs, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    quiet = args.quiet
    with tqdm(total=len(mine), initial=len(mine) - len(todo), unit="run", desc="study", disable=quiet,
              position=0) as bar:
        def finished(record):
            append_ledger(folder, record)
            bar.update(1)
            if record["status"] != "ok":
                warn(f"run {record['run']} failed: {record['error']}")

        if jobs == 1:
            for key, seed in todo:
                bar.set_postfix_str(run_id(key, seed))
                finished(execute_run(str(folder), key, seed, study["configs"][key], not quiet, threads))
        else:
            # spawn, not fork: a forked child of a process that has run OpenMP threads can hang
            with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(execute_run, str(folder), key, seed, study["configs"][key], False, threads)
                           for key, seed in todo]
                for future in as_completed(futures):
                    finished(future.result())
    write_report([folder], folder)
    print(f"report: {folder / 'report.md'}")
    return 0


def _identity(study: dict) -> list:
    """What makes two studies the same: each variant's name, ablation and configuration (not its wording)."""
    return [(v["name"], v["ablation"], v["key"]) for v in study.get("variants", [])]


def print_variants(study: dict, total: int, mine: int, understood: Understood | None = None) -> None:
    """The dry run: for each section, what it was read as and the words that decided it, then its variants and
    what each one means."""
    print(f"plan {study['plan']}: baseline = preset {study['preset']} on {study['corpus']}"
          f"{' with ' + ', '.join(study['sets']) if study['sets'] else ''}; seeds {study['seeds']}")
    seen: dict[str, str] = {}

    def variant_line(v):
        same = seen.setdefault(v["key"], v["name"])
        changes = ", ".join(f"{k} = {val!r}" for k, val in v["config_changes"].items()) or "(the baseline)"
        shared = f"   [same config as {same!r}: trained once]" if same != v["name"] else ""
        print(f"  [{v['ablation']}] {v['name']}: {changes}{shared}")
        if v.get("description") and v["ablation"] != "baseline":
            print(f"      = {v['description']}")

    rows = iter(study["variants"])
    variant_line(next(rows))  # the baseline
    for r in understood.resolutions if understood else []:
        head = f"line {r.section.line} {r.section.title!r}"
        if r.refusal is not None:
            print(f"{head}: REFUSED ({r.refusal.reason}): {r.refusal.message}")
            continue
        what = r.component.label if r.component else "config keys"
        print(f"{head}: {what}, {r.action}; decided by {'; '.join(r.evidence)}")
        for _ in r.variants:
            variant_line(next(rows))
    for v in rows:  # without the plan's reading (a study read back from study.json)
        variant_line(v)
    print(f"{len(study['configs'])} distinct configs x {len(study['seeds'])} seeds = {total} runs"
          f"{f' ({mine} in this shard)' if mine != total else ''}; nothing trained (--dry-run)")
