"""Training: AdamW with warm-up and cosine decay, gradient clipping, atomic checkpoints, exact resume.

A run folder holds:
    config.toml        the run's configuration (written first; a folder with one is a run)
    metrics.jsonl      one JSON object per logged step
    checkpoint/        the latest checkpoint: weights, optimizer, recurrent state (memories), data position,
                       random generators (dropout)
    model.safetensors  the final weights (with config.toml: a saved model, see load_model)
    train.json         the run's summary, written last
"""

import json
import math
import os
import resource
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model

from memorizing.config import HF_PREFIX, Config, is_pretrained
from memorizing.data.corpora import CorpusError, load_corpus, split_documents, splits_by_position
from memorizing.data.lanes import LaneStream
from memorizing.distributed import Ranks, setup, teardown
from memorizing.errors import TrainingDiverged, UserError
from memorizing.evaluate import evaluate, evaluation_documents
from memorizing.files import atomic_write
from memorizing.metrics_log import MetricsLog
from memorizing.model.transformer import CONFIG_FILE, MemorizingTransformer, save_model
from memorizing.model.warm_start import load_weights_from, trainable
from memorizing.progress import progress as progress_reporter
from memorizing.resources import check_fits

CHECKPOINT, METRICS, SUMMARY = "checkpoint", "metrics.jsonl", "train.json"


def reset_peak_memory() -> None:
    """Start measuring peak memory afresh (per run, also when runs share a process)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets the peak resident set size (VmHWM)
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mib() -> dict:
    """Peak resident memory of this process since reset_peak_memory (and of the GPU, if one is used)."""
    peak = {}
    try:
        status = Path("/proc/self/status").read_text()
        peak["peak_rss_mib"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        peak["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return peak


def learning_rate(step: int, config: Config) -> float:
    """Linear warm-up to train.lr, then cosine decay to a tenth of it at train.steps."""
    t = config.train
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    progress = (step - t.warmup) / max(1, t.steps - t.warmup)
    return t.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(model, config: Config) -> torch.optim.AdamW:
    """AdamW over the parameters that train (train.freeze): matrices decay; gains, biases and gates do not."""
    params = trainable(model, config.train.freeze)
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.train.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=config.train.lr, betas=(0.9, 0.95))


def training_documents(config: Config, corpus: list):
    """The training split, refused when no document is longer than one segment (memory would never be used)."""
    documents = split_documents(corpus, "train", config.data.corpus)
    if all(len(d.data) <= config.data.segment for d in documents):
        raise CorpusError(f"corpus {config.data.corpus!r}: every train document is at most one segment long "
                          f"(data.segment = {config.data.segment}), so memory would never be used: lower "
                          f"data.segment or use longer documents.")
    return documents


def summed_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of the next-token losses where `mask` is True (padding excluded)."""
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * mask.flatten()).sum()


# ---- checkpoints ------------------------------------------------------------------------------------------
def random_state() -> dict[str, torch.Tensor]:
    """This process's random generators (dropout, e.g. in a pretrained GPT-2, draws from them), for checkpoints."""
    generators = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        generators["cuda"] = torch.cuda.get_rng_state()  # the current device's
    return generators


def set_random_state(generators: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(generators["cpu"])
    if "cuda" in generators and torch.cuda.is_available():
        torch.cuda.set_rng_state(generators["cuda"])


def save_checkpoint(out: Path, model, optimizer, state, stream: LaneStream, step: int, extra: dict,
                    ranks: Ranks = Ranks()) -> None:
    """Write the checkpoint into a fresh folder, then swap it in: a crash leaves the old or the new one.
    Every rank adds its lanes' recurrent state (XL caches, kNN memories) and its random generators; rank 0 writes
    the rest."""
    tmp, final, old = out / f".{CHECKPOINT}.tmp", out / CHECKPOINT, out / f".{CHECKPOINT}.old"
    if ranks.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    ranks.barrier()
    save_file(state.tensors(), str(tmp / f"state-{ranks.rank}.safetensors"))
    save_file(random_state(), str(tmp / f"random-{ranks.rank}.safetensors"))
    ranks.barrier()
    if ranks.main:
        save_safetensors_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "trainer.json").write_text(json.dumps({"step": step, "world": ranks.world,
                                                      "stream": stream.state_dict(), **extra}))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    ranks.barrier()


def load_checkpoint(out: Path, model, optimizer, state, stream: LaneStream, ranks: Ranks = Ranks()) -> dict:
    final, old = out / CHECKPOINT, out / f".{CHECKPOINT}.old"
    if ranks.main and not final.exists() and old.exists():  # crashed between the two renames: old is complete
        old.rename(final)
    ranks.barrier()
    try:
        trainer = json.loads((final / "trainer.json").read_text())
        if trainer.get("world", 1) != ranks.world:
            raise UserError(f"--resume: the checkpoint in {final} was written by {trainer.get('world', 1)} "
                            f"process(es); resume it with the same number (now {ranks.world}).")
        device = next(model.parameters()).device
        missing, unexpected = load_safetensors_model(model, str(final / "model.safetensors"), strict=False,
                                                     device=str(device))
        if missing or unexpected:
            raise ValueError(f"weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        state.load_tensors({k: v.to(device) for k, v in
                            load_file(str(final / f"state-{ranks.rank}.safetensors")).items()})
        if (final / f"random-{ranks.rank}.safetensors").exists():  # checkpoints written before it lack it
            set_random_state(load_file(str(final / f"random-{ranks.rank}.safetensors")))
        optimizer.load_state_dict(torch.load(final / "optimizer.pt", weights_only=True, map_location=device))
        stream.load_state_dict(trainer["stream"])
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"the checkpoint in {final} is corrupted or truncated ({type(e).__name__}: {e}): "
                        f"restore it, or start a new run in another --out folder.") from None
    return trainer


# ---- the loop ---------------------------------------------------------------------------------------------
def check_run_folder(out: Path, config: Config, resume: bool) -> None:
    """Refuse before any work: a fresh run into an existing run folder, or a resume with another config."""
    saved = out / CONFIG_FILE
    if resume:
        if not saved.exists():
            raise UserError(f"--resume: {out} holds no run (no {CONFIG_FILE}): start it without --resume.")
        previous = Config.load(saved).to_dict()
        if previous != config.to_dict():
            diffs = [f"{s}.{k}: run has {previous[s].get(k)!r}, given {v!r}" for s, values in config.to_dict().items()
                     for k, v in values.items() if previous.get(s, {}).get(k) != v]
            raise UserError(f"--resume: the given config differs from the run's in {out} ({'; '.join(diffs)}): "
                            f"resume with the run's own config (drop --config/--set), or use a new --out.")
    elif saved.exists():
        raise UserError(f"{out} already holds a run: pass --resume to continue it, or choose another --out.")


def has_checkpoint(out: Path) -> bool:
    """Whether the run folder holds a checkpoint (or the previous one, kept while a new one is written)."""
    return any((out / name).exists() for name in (CHECKPOINT, f".{CHECKPOINT}.old"))


def train_to_end(config: Config, out: str | Path, progress: bool = True, log=print) -> dict:
    """The summary of the finished run in `out`, training it first: from the start, or from its checkpoint if it
    was interrupted (a folder started but never checkpointed holds nothing to keep and starts over)."""
    out = Path(out)
    if not (out / SUMMARY).exists():
        resume = has_checkpoint(out)
        if not resume and out.exists():
            shutil.rmtree(out)
        train(config, out, resume=resume, progress=progress, log=log)
    return json.loads((out / SUMMARY).read_text())


def read_metrics(out: str | Path) -> list[dict]:
    """The logged steps of the run in `out` (metrics.jsonl)."""
    return [json.loads(line) for line in (Path(out) / METRICS).read_text().splitlines()]


def train(config: Config, out: str | Path, resume: bool = False, progress: bool = True, log=print) -> dict:
    """Train (or, with resume, continue) a run into the folder `out`; returns the run's summary.
    Under torchrun every process calls this: see distributed.py."""
    out = Path(out)
    config.validate()
    if is_pretrained(config.train.init_from):  # model.* must be the pretrained model's
        from memorizing.model.pretrained import check_config, source_config
        check_config(config, source_config(config.train.init_from))
    check_run_folder(out, config, resume)
    corpus = load_corpus(config.data)
    if splits_by_position(corpus) and int(os.environ.get("RANK", "0")) == 0:
        log(f"corpus {config.data.corpus!r} has {len(corpus)} documents, too few to hold out whole ones: each is "
            f"split by position, its first 90% for training, the next 5% for valid and the last 5% for test")
    documents = training_documents(config, corpus)
    valid_documents = (evaluation_documents(corpus, config.data, "valid", config.data.eval_tokens // 8,
                                            fix="train.eval_every has nothing to validate on; lower "
                                                "data.eval_min_length or set train.eval_every = 0")
                       if config.train.eval_every else [])  # eval_tokens 0: all of them
    ranks, device = setup(config.device(), config.data.lanes)
    try:
        summary = _train(config, out, resume, progress and ranks.main, log if ranks.main else (lambda *_: None),
                         documents, valid_documents, ranks, device)
    except BaseException:
        teardown(ranks, finished=False)
        raise
    teardown(ranks, finished=True)
    return summary


def _train(config, out, resume, progress, log, documents, valid_documents, ranks: Ranks, device: str) -> dict:
    t = config.train
    lanes = ranks.lanes(config.data.lanes)  # this process's lanes of the global batch
    check_fits(config, device)
    reset_peak_memory()
    if resume and not has_checkpoint(out):
        log(f"{out}: stopped before its first checkpoint; starting it again from step 0")
        resume = False
    torch.manual_seed(t.seed)
    if is_pretrained(t.init_from):  # a pretrained model with the memory branch added (also on resume)
        from memorizing.model.pretrained import PretrainedMemorizing
        model = PretrainedMemorizing.from_source(t.init_from, config).to(device)
        log(f"pretrained {type(model.lm).__name__} from {t.init_from.removeprefix(HF_PREFIX)}; memory branch in "
            f"layers {[i + 1 for i in model.memory_layers] or 'none'}")
    else:
        model = MemorizingTransformer(config).to(device)
    if t.init_from and not is_pretrained(t.init_from) and not resume:  # a resumed run has its own weights
        fresh = load_weights_from(model, t.init_from)
        log(f"weights from {t.init_from}; starting from their initialisation: {', '.join(fresh) or 'nothing'}")
    optimizer = make_optimizer(model, config)
    order_seed = t.seed if config.data.order_seed < 0 else config.data.order_seed
    stream = LaneStream(documents, config.data.lanes, config.data.segment, seed=order_seed, loop=True,
                        encode=getattr(model, "encode", None))
    state = model.init_state(lanes.stop - lanes.start)
    forward = torch.nn.parallel.DistributedDataParallel(model) if ranks.world > 1 else model
    forward = torch.compile(forward) if t.compile else forward

    start, stats = 0, {"max_grad_norm": 0.0, "loss_spikes": 0, "train_seconds": 0.0, "smoothed_loss": None}
    if resume:
        trainer = load_checkpoint(out, model, optimizer, state, stream, ranks)
        start, stats = trainer["step"], trainer["stats"]
        if ranks.main:
            _truncate_metrics(out / METRICS, start)
    elif ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG_FILE, lambda tmp: Path(tmp).write_text(config.to_toml()))
        (out / METRICS).write_text("")
    ranks.barrier()

    log(f"model: {model.num_parameters():,} parameters, memory layers "
        f"{[i + 1 for i in model.memory_layers] or 'none'}; {len(documents)} training documents"
        f"{f'; {ranks.world} processes' if ranks.world > 1 else ''}")
    tokens_per_step = config.data.lanes * config.data.segment
    bar = progress_reporter(progress, total=t.steps, initial=start, unit="steps", desc="train")
    metrics = MetricsLog(out / METRICS, t.tensorboard) if ranks.main else None
    # A run whose time budget (train.time_budget) ran out has ended, at the step its checkpoint records.
    for step in range(start, stats.get("budget_step", t.steps)):
        began = time.perf_counter()
        batch = next(stream)  # the global batch; this process keeps its lanes
        tokens, targets = batch.tokens[lanes].to(device), batch.targets[lanes].to(device)
        mask, reset = batch.mask[lanes].to(device), batch.reset[lanes].to(device)
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=t.precision == "bf16"):
            logits, state = forward(tokens, state, reset)
        # Mean over the global batch's real tokens; DDP averages over processes, hence the factor world.
        loss_sum = summed_loss(logits.float(), targets, mask)
        count = max(1, int(batch.mask.sum()))
        optimizer.zero_grad(set_to_none=True)
        (loss_sum * ranks.world / count).backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or float("inf")))
        value = float(ranks.sum(loss_sum.detach())) / count
        if not (math.isfinite(value) and math.isfinite(grad_norm)):
            raise TrainingDiverged(f"step {step + 1}: non-finite {'loss' if not math.isfinite(value) else 'gradient'}"
                                   f" (loss {value}, gradient norm {grad_norm}); the last good checkpoint in "
                                   f"{out / CHECKPOINT} is kept: lower train.lr or raise train.warmup.")
        optimizer.step()
        elapsed = time.perf_counter() - began
        stats["train_seconds"] += elapsed
        stats["max_grad_norm"] = max(stats["max_grad_norm"], grad_norm)
        smoothed = stats["smoothed_loss"]
        if smoothed is not None and step > t.warmup and value > 1.5 * smoothed:
            stats["loss_spikes"] += 1
        stats["smoothed_loss"] = value if smoothed is None else 0.95 * smoothed + 0.05 * value
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens_per_step / elapsed:,.0f}")
        last = step + 1 == t.steps
        if t.time_budget and ranks.sum(torch.tensor(float(stats["train_seconds"] >= t.time_budget),
                                                         device=device)) > 0:
            stats["budget_step"], last = step + 1, True  # every process stops at the same step

        if ranks.main:
            record = None
            if (step + 1) % t.log_every == 0 or last:
                fills = [m.fill().float().mean().item() / m.size for m in state.memories()]
                record = {"step": step + 1, "loss": value, "lr": lr, "grad_norm": grad_norm,
                          "tokens_per_s": tokens_per_step / elapsed,
                          "memory_fill": sum(fills) / len(fills) if fills else None,
                          "train_seconds": stats["train_seconds"],
                          "gates": {str(k): v for k, v in model.gates().items()}}
            if t.eval_every and ((step + 1) % t.eval_every == 0 or last):
                valid = evaluate(model, valid_documents, config.data.lanes, config.data.segment,
                                 length=config.data.eval_length)
                record = (record or {"step": step + 1, "train_seconds": stats["train_seconds"]}) | {
                    "valid_loss": valid["loss"], "valid_ppl": valid["ppl"]}
            if record:
                metrics.write(record)
        if (step + 1) % t.checkpoint_every == 0 or last:
            if metrics:
                metrics.sync()
            save_checkpoint(out, model, optimizer, state, stream, step + 1, {"stats": stats}, ranks)
        if last:
            break
    bar.close()
    if metrics:
        metrics.close()

    summary = {
        "steps": stats.get("budget_step", t.steps),
        "final_loss": stats["smoothed_loss"],
        "parameters": model.num_parameters(),
        "tokens_per_s": tokens_per_step * stats.get("budget_step", t.steps) / max(stats["train_seconds"], 1e-9),
        "processes": ranks.world,
        **peak_memory_mib(),
        "gates": {str(k): v for k, v in model.gates().items()},
        **stats,
    }
    if ranks.main:
        save_model(model, out)
        atomic_write(out / SUMMARY, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    return summary


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from (and any torn last line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            break
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept)))
