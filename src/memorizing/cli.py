"""The `memorizing` command: train, eval, generate, ablate, report, keys."""

import argparse
import json
import sys
from pathlib import Path

from memorizing.config import STUDY_DEFAULTS
from memorizing.errors import TrainingDiverged, UserError

CORPUS_HELP = "python-stdlib (default), text:PATH, recall, pg19, enwik8 or arxiv"
INIT_HELP = ("start from a trained run folder (RUN_DIR), or from a pretrained Hugging Face causal LM with the memory "
             "branch added (hf:PATH, a folder with config.json or a .gguf file; needs the extra hf)")


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="a TOML config (sections model, memory, data, train)")
    p.add_argument("--preset", choices=["tiny", "cpu", "paper"], help="start from a preset")
    p.add_argument("--corpus", metavar="SPEC", help=CORPUS_HELP)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set memory.size=4096 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memorizing", description="Memorizing Transformers: train, evaluate, "
                                     "sample, and run ablation studies.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model into a run folder")
    _config_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    p.add_argument("--init-from", metavar="SOURCE", help=INIT_HELP)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("eval", help="evaluate a trained model; writes DIR/eval.json")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--corpus", metavar="SPEC", help=f"default: the run's corpus; {CORPUS_HELP}")
    p.add_argument("--split", default="test", help="train, valid or test (default test)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="settings that keep the weights, e.g. memory.search=exact or data.eval_tokens=0")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("generate", help="sample text from a trained model, writing memory as it goes")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--prompt", default="", help="text to start from")
    p.add_argument("--tokens", type=int, default=256, help="bytes to generate (default 256)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest bytes (0 = all)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("ablate", help="run an ablation plan and write a report")
    p.add_argument("plan", nargs="?", help="a plan (Markdown as planners write it, or TOML); default: the seed plan")
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"], help="the baseline (default cpu)")
    p.add_argument("--corpus", metavar="SPEC", help=CORPUS_HELP)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="change the baseline for every variant")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--out", default="runs/ablation", metavar="DIR", help="the study folder")
    p.add_argument("--dry-run", action="store_true", help="print how each section was read (component, the words "
                   "and values that decided it) and its variants with their config changes; train nothing")
    p.add_argument("--resolve", metavar="OUT.toml", help="write the plan as understood to OUT.toml in the TOML plan "
                   "format (running that file gives the same study); train nothing")
    p.add_argument("--jobs", type=int, help="runs at once, each with its share of the CPU cores (default: one per "
                   "core on a CPU machine, 1 with a GPU)")
    p.add_argument("--shard", default="1/1", metavar="I/N", help="run only share I of N of the runs")
    by_preset = {key: ", ".join(f"{name} {d[key]}" for name, d in STUDY_DEFAULTS.items())
                 for key in ("start", "finetune_steps")}
    p.add_argument("--start", choices=["warm", "scratch"], help="warm: per seed, pretrain one trunk without memory "
                   "(train.steps), then fine-tune every variant from it; scratch: train every variant from "
                   f"initialisation (default: the preset's; {by_preset['start']})")
    p.add_argument("--finetune-steps", type=int, metavar="N", help="steps of each variant after its trunk (warm, "
                   f"--init-from; default: the preset's; {by_preset['finetune_steps']})")
    p.add_argument("--init-from", metavar="SOURCE", help="fine-tune every variant from this trained run folder, "
                   "or from a pretrained model (hf:PATH, see train --init-from)")
    p.add_argument("--no-controls", action="store_true", help="leave out the two controls a study with memory "
                   "adds (the baseline without its memory branch, and with its gate fixed at 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("report", help="merge study folders (shards) into one report")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: the first DIR)")

    sub.add_parser("keys", help="list every config key with its default")
    return parser


def cmd_train(args) -> int:
    from memorizing.config import Config
    from memorizing.run_config import build_config
    from memorizing.train import train
    out = Path(args.out)
    if args.resume and not (args.config or args.preset or args.corpus or args.sets or args.init_from):
        if not (out / "config.toml").exists():
            raise UserError(f"--resume: {out} holds no run (no config.toml): start it without --resume.")
        config = Config.load(out / "config.toml")
    else:
        config = build_config(args.config, args.preset, args.corpus, args.sets, init_from=args.init_from)
    summary = train(config, out, resume=args.resume, progress=not args.quiet)
    print(f"trained {summary['steps']} steps: loss {summary['final_loss']:.4f}, "
          f"{summary['tokens_per_s']:,.0f} tokens/s; model saved in {out}")
    return 0


def cmd_eval(args) -> int:
    from memorizing.evaluate import evaluate_run
    from memorizing.files import atomic_write
    from memorizing.progress import progress
    with progress(not args.quiet, unit="tok", unit_scale=True, desc=f"eval {args.split}") as bar:
        result = evaluate_run(args.dir, args.split, args.corpus, args.sets, progress=bar)
    atomic_write(Path(args.dir) / "eval.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
    print(f"{args.split}: perplexity {result['ppl']:.4f}, {result['bits_per_token']:.4f} bits/token, "
          f"{result['bits_per_byte']:.4f} bits/byte over"
          f" {result['tokens']:,} tokens in {result['documents']} documents")
    for name, bucket in result["by_position"].items():
        print(f"  position {name:>9}: perplexity {bucket['ppl']:.4f} ({bucket['tokens']:,} tokens)")
    if "recall_span_loss" in result:
        print(f"  recalled spans: {result['recall_span_loss']:.3f} nats per byte, exact match "
              f"{result['recall_exact_match']:.3f}" + (f", memory retrieves an earlier occurrence for "
                                                        f"{result['recall_source_found']:.3f} of them"
                                                        if "recall_source_found" in result else ""))
        if result.get("recall_span_loss_by_offset"):
            print("  recalled spans by position in the value: " + ", ".join(
                "—" if x is None else f"{x:.2f}" for x in result["recall_span_loss_by_offset"]) + " nats")
    if "far_repeats" in result:
        far = result["far_repeats"]
        print(f"  far repeats ({far['share']:.0%} of the bytes: the {far['context']} before them occurred farther back "
              f"than the {far['window']}-byte local context, followed by the same byte): {far['loss']:.3f} nats, "
              f"the other bytes {far['rest_loss']:.3f}")
        if "source_found" in far:
            print(f"  memory retrieves the earlier occurrence for {far['source_found']:.3f} of the far repeats; its "
                  f"weight on entries holding the byte to predict: {far['right_byte_weight']:.3f} on far repeats, "
                  f"{far['rest_right_byte_weight']:.3f} on the other bytes")
    if "search_recall_at_k" in result:
        full = result["search_recall_by_fill"].get("full")
        print(f"  {result['search']} search recall@k: {result['search_recall_at_k']:.3f}"
              + (f", at full memory {full:.3f}" if full is not None else ""))
    print(f"written to {Path(args.dir) / 'eval.json'}")
    return 0


def cmd_generate(args) -> int:
    from memorizing.generate import generate
    from memorizing.model.transformer import load_model
    if args.tokens < 0:
        raise UserError(f"--tokens {args.tokens} is invalid: give a number of bytes >= 0.")
    model = load_model(args.dir)
    if hasattr(model, "tokenizer"):
        raise UserError(f"{args.dir} holds a pretrained model with memory (train.init_from = "
                        f"{model.config.train.init_from!r}): generate samples byte models only; use the model's "
                        f"own generate() in transformers for sampling.")
    text = generate(model, args.prompt.encode(), args.tokens, args.temperature, args.top_k, args.seed)
    sys.stdout.write(args.prompt + text.decode("utf-8", errors="replace") + "\n")
    return 0


def cmd_keys(args) -> int:
    from memorizing.config import Config
    for section, values in Config().to_dict().items():
        for key, value in values.items():
            print(f"{section}.{key} = {value!r}")
    print("memory.gate = (unset; required with memory.combine = 'fixed')")
    return 0


def cmd_ablate(args) -> int:
    from memorizing.ablation.runner import StudyOptions, run_study
    command = "memorizing " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("memorizing") else None
    return run_study(StudyOptions(
        plan=args.plan, preset=args.preset, corpus=args.corpus, sets=args.sets, seeds=args.seeds, out=args.out,
        dry_run=args.dry_run, resolve=args.resolve, jobs=args.jobs, shard=args.shard, start=args.start,
        finetune_steps=args.finetune_steps, init_from=args.init_from, controls=not args.no_controls,
        quiet=args.quiet, command=command))


def cmd_report(args) -> int:
    from memorizing.ablation.report import merge_reports
    return merge_reports(args.dirs, args.out)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "generate": cmd_generate, "keys": cmd_keys,
            "ablate": cmd_ablate, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"memorizing {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"memorizing {args.command}: training diverged: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk or an unwritable folder: say so, never hide it
        print(f"memorizing {args.command}: error: could not read or write {e.filename or ''}: {e.strerror or e}; "
              f"finished work is kept (checkpoints and the study ledger are written atomically).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"memorizing {args.command}: interrupted; finished work is kept (train: --resume continues).",
              file=sys.stderr)
        return 130
