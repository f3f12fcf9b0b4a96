"""Run a study: the baseline and every variant of a plan, times seeds, resumable and shardable (the study
folder's files: study_folder.py).

Variants whose configs coincide share one run key, so they are trained once and reported under each name.
Every run with seed s uses train.seed = s for both initialisation and data order, so comparisons are paired.
"""

import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from memorizing.ablation.configs import apply_changes
from memorizing.ablation.mapping import Resolution, Variant, resolve
from memorizing.ablation.plan import Plan, PlanError, load_plan, resolved_toml
from memorizing.ablation.report import CONTROLS, write_report
from memorizing.ablation.study_folder import (RESOLVED, RUNS, STUDY, TRUNK, append_ledger, read_ledger, run_id,
                                              trunk_of)
from memorizing.config import HF_PREFIX, STUDY_DEFAULTS, Config, is_pretrained
from memorizing.run_config import build_config
from memorizing.errors import UserError
from memorizing.files import atomic_write
from memorizing.progress import progress


def source(init_from: str) -> str:
    """--init-from as the runs read it: a run folder or 'hf:PATH', with an absolute path."""
    path = init_from.removeprefix(HF_PREFIX)
    return (HF_PREFIX if is_pretrained(init_from) else "") + str(Path(path).expanduser().resolve())


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


def understand(plan: str | None, preset: str, corpus: str | None, sets: list[str],
               init_from: str | None = None) -> Understood:
    """Read the plan and resolve every section against the baseline (the preset with the --set changes; with
    `init_from` = 'hf:PATH', in the pretrained model's shape)."""
    loaded = load_plan(plan)
    pretrained = source(init_from) if is_pretrained(init_from) else None
    baseline = build_config(None, preset, corpus, sets, init_from=pretrained)
    return Understood(loaded, baseline, resolve(loaded.sections, baseline))


def plan_error(understood: Understood) -> PlanError:
    problems = understood.problems()
    total = len(understood.resolutions)
    return PlanError(f"{understood.plan.source}: {len(problems)} of {total} section{'s' if total > 1 else ''} cannot "
                     f"be run, so nothing was run:\n  " + "\n  ".join(problems) +
                     f"\n`memorizing ablate {understood.plan.path or ''} --dry-run` shows how each section was read."
                     .replace("  --dry-run", " --dry-run"))


def controls(baseline: Config) -> list[Variant]:
    """The controls every study with memory reports, so that what the memory buys reads off the table: the same
    network without the memory branch, and the same network reading nothing (gate fixed at 0)."""
    if not baseline.memory.enabled:
        return []
    return [Variant("control: no memory", CONTROLS, None, {"memory.enabled": False},
                    "the memory branch removed; everything else, qk-norm included, as in the baseline"),
            Variant("control: reads nothing (gate 0)", CONTROLS, None, {"memory.combine": "fixed", "memory.gate": 0.0},
                    "the same network with its memory gate fixed at 0: memory is written but never read")]


def trunk_config(config: Config, baseline: Config, steps: int) -> Config:
    """The trunk a variant fine-tunes from: its own network without the memory branch, trained `steps` steps.
    Settings that only the memory branch reads are the baseline's, so that variants which differ only there
    share one trunk; the memory layers' placement counts only where their qk-norm differs from the others'."""
    trunk = config.copy()
    for name, value in baseline.memory.__dict__.items():
        if name not in ("qk_norm", "layers") or (name == "layers" and trunk.memory.qk_norm == trunk.model.qk_norm):
            setattr(trunk.memory, name, value)
    trunk.memory.enabled = False
    trunk.train.steps, trunk.train.init_from, trunk.train.freeze = steps, "", "none"
    trunk.train.warmup = min(trunk.train.warmup, steps)
    return trunk.validate()


def plan_study(plan: str | None, preset: str, corpus: str | None, sets: list[str], seeds: int,
               understood: Understood | None = None, partial: bool = False, start: str | None = None,
               finetune_steps: int | None = None, init_from: str | None = None, with_controls: bool = True) -> dict:
    """The study as data: variants with their config changes and run keys, one config per key, and the trunks
    the variants start from. A plan with a refused section raises PlanError listing every problem (`partial`
    keeps the sections that resolved). `with_controls` adds the controls of `controls`. `start`: "warm" (a trunk
    per seed), "scratch", or set by `init_from` (every variant fine-tunes from that run folder)."""
    if seeds < 1:
        raise UserError(f"--seeds {seeds} is invalid: give at least 1 (3 or more for confidence intervals).")
    understood = understood or understand(plan, preset, corpus, sets, init_from)
    if understood.problems() and not partial:
        raise plan_error(understood)
    defaults = STUDY_DEFAULTS.get(preset, STUDY_DEFAULTS["cpu"])
    start = "init" if init_from else start or defaults["start"]
    finetune_steps = defaults["finetune_steps"] if finetune_steps is None else finetune_steps
    if finetune_steps < 1:
        raise UserError(f"--finetune-steps {finetune_steps} is invalid: give at least 1.")
    baseline = understood.baseline
    pretrained = None  # with init_from = 'hf:PATH', its config: each variant is checked against it before any run
    if is_pretrained(init_from):
        from memorizing.model.pretrained import check_config, source_config
        pretrained = source_config(source(init_from))
    variants = [Variant("baseline", "baseline", None, {}, "the full model of the preset")]
    variants += controls(baseline) if with_controls else []
    for r in understood.resolutions:
        variants += r.variants
    configs, trunks, rows = {}, {}, []
    for v in variants:
        config = apply_changes(baseline, v.changes)
        trunk = None
        if start == "warm":
            trunk = trunk_config(config, baseline, baseline.train.steps)
            trunks[config_key(trunk)] = trunk.to_dict()
            config.train.init_from = f"{TRUNK}:{config_key(trunk)}"
        elif start == "init":
            config.train.init_from = source(init_from)
            if pretrained is not None:
                check_config(config, pretrained)
        if start != "scratch":
            config.train.steps = finetune_steps
            config.train.warmup = min(config.train.warmup, finetune_steps // 4)
            config.train.eval_every = max(1, finetune_steps // 3) if config.train.eval_every else 0
        key = config_key(config)
        configs[key] = config.to_dict()
        rows.append({"name": v.name, "ablation": v.ablation, "replacement": v.replacement,
                     "config_changes": {k: _jsonable(val) for k, val in v.changes.items()}, "key": key,
                     "trunk": config_key(trunk) if trunk else None,
                     "description": v.description, "equals_baseline": v.equals_baseline})
    names = [r["name"] for r in rows]
    for r in rows:  # names must be unique: qualify repeated ones with their ablation
        if names.count(r["name"]) > 1 and r["ablation"] != "baseline":
            r["name"] = f"{r['name']} ({r['ablation']})"
    ablations = ([CONTROLS] if len(variants) > 1 and variants[1].ablation == CONTROLS else []) + \
        [r.section.title for r in understood.resolutions if r.refusal is None]
    return {"plan": understood.plan.name, "plan_path": plan, "preset": preset, "corpus": baseline.data.corpus,
            "sets": sets, "seeds": [baseline.train.seed + s for s in range(seeds)], "start": start,
            "trunk_steps": baseline.train.steps if start == "warm" else None,
            "finetune_steps": finetune_steps if start != "scratch" else None,
            "init_from": source(init_from) if init_from else None,
            "ablations": ablations, "variants": rows, "configs": configs, "trunks": trunks}


def _jsonable(value):
    return value if isinstance(value, (int, float, bool, str, list)) or value is None else str(value)


def all_runs(study: dict) -> list[tuple[str, int]]:
    """The variants' runs (key, seed); the trunks they start from are trained first (trunk_runs)."""
    return sorted((key, seed) for key in study["configs"] for seed in study["seeds"])


def trunk_runs(study: dict, runs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The trunk runs that `runs` start from."""
    return sorted({(trunk, seed) for key, seed in runs
                   if (trunk := trunk_of(study["configs"][key]["train"].get("init_from", ""))) is not None})


def relative_cost(config_dict: dict) -> float:
    """A rough training cost of a config, for scheduling: tokens trained, doubled where the memory is searched."""
    config = Config.from_dict(config_dict)
    tokens = config.train.steps * config.data.lanes * config.data.segment
    return tokens * (2 if config.memory_searched() else 1)


# ---- one run -----------------------------------------------------------------------------------------------
def execute_run(folder: str, key: str, seed: int, config_dict: dict, progress: bool, threads: int,
                trunk: bool = False) -> dict:
    """Train (or resume) and evaluate one run; returns its ledger record. Runs in a worker process too. A trunk
    is trained, not evaluated; a run that starts from a trunk reads it from the study folder."""
    from memorizing.evaluate import evaluate_run
    from memorizing.train import read_metrics, train_to_end

    torch.set_num_threads(threads)
    config = Config.from_dict(config_dict)
    config.train.seed = seed
    trunk_key = trunk_of(config.train.init_from)
    if trunk_key is not None:
        config.train.init_from = str((Path(folder) / RUNS / run_id(trunk_key, seed, trunk=True)).resolve())
    run_dir = Path(folder) / RUNS / run_id(key, seed, trunk)
    started = time.time()
    record = {"run": run_id(key, seed, trunk), "key": key, "seed": seed}
    try:
        summary = train_to_end(config, run_dir, progress=progress, log=lambda *_: None)
        record.update(status="ok", parameters=summary["parameters"], tokens_per_s=summary["tokens_per_s"],
                      peak_rss_mib=summary["peak_rss_mib"], train_seconds=summary["train_seconds"],
                      steps=summary["steps"])
        if not trunk:
            result = evaluate_run(run_dir)
            curve = read_metrics(run_dir)
            record.update(ppl=result["ppl"], bits_per_token=result["bits_per_token"],
                          bits_per_byte=result["bits_per_byte"], tokens=result["tokens"],
                          documents=result["documents"], by_position=result["by_position"],
                          **{k: result.get(k) for k in ("search_recall_at_k", "search_recall_by_fill",
                                                         "recall_span_loss", "recall_exact_match",
                                                         "recall_source_found", "recall_span_loss_by_offset",
                                                         "far_repeats")},
                          gates=summary["gates"],
                          stability={"max_grad_norm": summary["max_grad_norm"], "loss_spikes": summary["loss_spikes"],
                                     "non_finite": False},
                          curve=[{k: r[k] for k in ("step", "train_seconds", "loss", "valid_ppl") if k in r}
                                 for r in curve])
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


@dataclass
class StudyOptions:
    """What `memorizing ablate` was asked for (its flags, one field each)."""
    plan: str | None = None  # None: the built-in seed plan
    preset: str = "cpu"
    corpus: str | None = None
    sets: list[str] | None = None
    seeds: int = 3
    out: str = "runs/ablation"
    dry_run: bool = False
    resolve: str | None = None
    jobs: int | None = None  # None: one per core on a CPU machine, 1 with a GPU
    shard: str = "1/1"
    start: str | None = None
    finetune_steps: int | None = None
    init_from: str | None = None
    controls: bool = True
    quiet: bool = False
    command: str | None = None  # the command line, recorded in the study


def run_study(args: StudyOptions) -> int:
    args.sets = args.sets or []
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds} is invalid: give at least 1 (3 or more for confidence intervals).")
    understood = understand(args.plan, args.preset, args.corpus, args.sets, args.init_from)
    for warning in understood.plan.warnings:
        print(f"memorizing ablate: warning: {warning}", file=sys.stderr)
    shard_i, shard_n = parse_shard(args.shard)
    options = {"start": args.start, "finetune_steps": args.finetune_steps, "init_from": args.init_from,
               "with_controls": args.controls}
    if args.dry_run:  # what was understood, then the problems (exit status 2) or the resolved plan
        study = plan_study(args.plan, args.preset, args.corpus, args.sets, args.seeds, understood, partial=True,
                           **options)
        runs = all_runs(study)
        print_variants(study, len(runs), len(runs[shard_i - 1::shard_n]), understood)
    study = plan_study(args.plan, args.preset, args.corpus, args.sets, args.seeds, understood, **options)
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
    trunks = trunk_runs(study, mine)  # every shard trains the trunks its runs need (they are deterministic)

    folder = Path(args.out)
    study["command"] = args.command
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
    trunks_todo = [(k, s) for k, s in trunks if run_id(k, s, trunk=True) not in done]
    todo = [(k, s) for k, s in mine if run_id(k, s) not in done]
    todo.sort(key=lambda run: -relative_cost(study["configs"][run[0]]))  # longest first: no idle worker at the end
    start = f" from {len(study['trunks']) * len(study['seeds'])} trunks" if study["trunks"] else ""
    print(f"study {folder}: {len(study['variants'])} variants, {len(study['configs'])} distinct configs x "
          f"{len(study['seeds'])} seeds = {len(runs)} runs{start}; this shard {len(mine)}, {len(mine) - len(todo)} "
          f"done, {len(todo)} to run")
    quiet = args.quiet
    with progress(not quiet, total=len(trunks) + len(mine), unit="runs", desc="study", position=0,
                  initial=len(trunks) - len(trunks_todo) + len(mine) - len(todo)) as bar:
        def finished(record):
            append_ledger(folder, record)
            bar.update(1)
            if record["status"] != "ok":
                warn(f"run {record['run']} failed: {record['error']}")

        failed_trunks = _run_all(folder, [(k, s, study["trunks"][k], True) for k, s in trunks_todo], jobs, quiet,
                                 finished)
        todo = [(k, s) for k, s in todo if (trunk_of(study["configs"][k]["train"]["init_from"]), s)
                not in failed_trunks]
        _run_all(folder, [(k, s, study["configs"][k], False) for k, s in todo], jobs, quiet, finished)
    write_report([folder], folder)
    print(f"report: {folder / 'report.md'}")
    return 0


def _run_all(folder: Path, runs: list[tuple], jobs: int, quiet: bool, finished) -> set:
    """Execute (key, seed, config, trunk) runs, `jobs` at a time; returns the (key, seed) of those that failed."""
    jobs = max(1, min(jobs, len(runs)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failed = set()

    def record(r):
        finished(r)
        if r["status"] != "ok":
            failed.add((r["key"], r["seed"]))

    if jobs == 1:
        for key, seed, config, trunk in runs:
            record(execute_run(str(folder), key, seed, config, not quiet, threads, trunk))
    elif runs:
        # spawn, not fork: a forked child of a process that has run OpenMP threads can hang
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(execute_run, str(folder), key, seed, config, False, threads, trunk)
                       for key, seed, config, trunk in runs]
            for future in as_completed(futures):
                record(future.result())
    return failed


def _identity(study: dict) -> list:
    """What makes two studies the same: each variant's name, ablation and configuration (not its wording)."""
    return [(v["name"], v["ablation"], v["key"]) for v in study.get("variants", [])]


def print_variants(study: dict, total: int, mine: int, understood: Understood | None = None) -> None:
    """The dry run: for each section, what it was read as and the words that decided it, then its variants and
    what each one means."""
    start = {"warm": f"per seed a trunk without memory ({study['trunk_steps']} steps), then every variant fine-tuned "
                     f"{study['finetune_steps']} steps from it",
             "init": f"every variant fine-tuned {study['finetune_steps']} steps from {study['init_from']}",
             "scratch": "every variant trained from initialisation"}[study.get("start", "scratch")]
    print(f"plan {study['plan']}: baseline = preset {study['preset']} on {study['corpus']}"
          f"{' with ' + ', '.join(study['sets']) if study['sets'] else ''}; seeds {study['seeds']}; {start}")
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
    rows = list(rows)
    for v in [v for v in rows if v["ablation"] == CONTROLS]:
        variant_line(v)
    rows = iter(v for v in rows if v["ablation"] != CONTROLS)
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
    trunks = f" after {len(study['trunks']) * len(study['seeds'])} trunk runs" if study.get("trunks") else ""
    print(f"{len(study['configs'])} distinct configs x {len(study['seeds'])} seeds = {total} runs{trunks}"
          f"{f' ({mine} in this shard)' if mine != total else ''}; nothing trained (--dry-run)")
