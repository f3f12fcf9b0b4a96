"""Training: AdamW with warm-up and cosine decay, gradient clipping, atomic checkpoints, exact resume.

A run folder holds:
    config.toml        the run's configuration (written first; a folder with one is a run)
    metrics.jsonl      one JSON object per logged step
    checkpoint/        the latest checkpoint: weights, optimizer, recurrent state (memories), data position
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
from tqdm import tqdm

from memorizing.config import Config
from memorizing.data.corpora import CorpusError, load_corpus, split_documents
from memorizing.data.lanes import LaneStream
from memorizing.errors import UserError
from memorizing.evaluate import evaluate
from memorizing.model.transformer import CONFIG_FILE, MemorizingTransformer, atomic_write, save_model

CHECKPOINT, METRICS, SUMMARY = "checkpoint", "metrics.jsonl", "train.json"


class TrainingDiverged(RuntimeError):
    """The loss or gradient became non-finite; the last good checkpoint is kept."""


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
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices decay; gains, biases and gates do not
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.train.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=config.train.lr, betas=(0.9, 0.95))


def training_documents(config: Config, split: str = "train"):
    documents = split_documents(load_corpus(config.data), split, config.data.corpus)
    if all(len(d.data) <= config.data.segment for d in documents):
        raise CorpusError(f"corpus {config.data.corpus!r}: every {split} document is at most one segment long "
                          f"(data.segment = {config.data.segment}), so memory would never be used: lower "
                          f"data.segment or use longer documents.")
    return documents


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * mask.flatten()).sum() / mask.sum().clamp(min=1)


# ---- checkpoints ------------------------------------------------------------------------------------------
def save_checkpoint(out: Path, model, optimizer, state, stream: LaneStream, step: int, extra: dict) -> None:
    """Write the checkpoint into a fresh folder, then swap it in: a crash leaves the old or the new one."""
    tmp, final, old = out / f".{CHECKPOINT}.tmp", out / CHECKPOINT, out / f".{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_safetensors_model(model, str(tmp / "model.safetensors"))
    save_file(state.tensors(), str(tmp / "state.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "trainer.json").write_text(json.dumps({"step": step, "stream": stream.state_dict(), **extra}))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, model, optimizer, state, stream: LaneStream) -> dict:
    final, old = out / CHECKPOINT, out / f".{CHECKPOINT}.old"
    if not final.exists() and old.exists():  # crashed between the two renames: the old one is complete
        old.rename(final)
    if not final.exists():
        raise UserError(f"{out} has no checkpoint to resume from: start the run without --resume.")
    try:
        trainer = json.loads((final / "trainer.json").read_text())
        missing, unexpected = load_safetensors_model(model, str(final / "model.safetensors"), strict=False,
                                                     device=str(model.embed.weight.device))
        if missing or unexpected:
            raise ValueError(f"weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        device = model.embed.weight.device
        state.load_tensors({k: v.to(device) for k, v in load_file(str(final / "state.safetensors")).items()})
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


def train(config: Config, out: str | Path, resume: bool = False, progress: bool = True, log=print) -> dict:
    out = Path(out)
    config.validate()
    check_run_folder(out, config, resume)
    documents = training_documents(config)
    valid_documents = split_documents(load_corpus(config.data), "valid", config.data.corpus) \
        if config.train.eval_every else []

    reset_peak_memory()
    torch.manual_seed(config.train.seed)
    device = config.device()
    model = MemorizingTransformer(config).to(device)
    optimizer = make_optimizer(model, config)
    t = config.train
    stream = LaneStream(documents, config.data.lanes, config.data.segment, seed=t.seed, loop=True)
    state = model.init_state(config.data.lanes)
    forward = torch.compile(model) if t.compile else model

    start, stats = 0, {"max_grad_norm": 0.0, "loss_spikes": 0, "train_seconds": 0.0, "smoothed_loss": None}
    if resume:
        trainer = load_checkpoint(out, model, optimizer, state, stream)
        start, stats = trainer["step"], trainer["stats"]
        _truncate_metrics(out / METRICS, start)
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG_FILE, lambda tmp: Path(tmp).write_text(config.to_toml()))
        (out / METRICS).write_text("")

    log(f"model: {model.num_parameters():,} parameters, memory layers "
        f"{[i + 1 for i in model.memory_layers] or 'none'}; {len(documents)} training documents")
    tokens_per_step = config.data.lanes * config.data.segment
    bar = tqdm(total=t.steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True)
    with open(out / METRICS, "a") as metrics:
        for step in range(start, t.steps):
            began = time.perf_counter()
            batch = next(stream)
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=t.precision == "bf16"):
                logits, state = forward(batch.tokens.to(device), state, batch.reset.to(device))
            loss = masked_loss(logits.float(), batch.targets.to(device), batch.mask.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or float("inf")))
            if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
                raise TrainingDiverged(f"step {step + 1}: non-finite {'loss' if not math.isfinite(loss.item()) else 'gradient'} "
                                       f"(loss {loss.item()}, gradient norm {grad_norm}); the last good checkpoint "
                                       f"in {out / CHECKPOINT} is kept: lower train.lr or raise train.warmup.")
            optimizer.step()
            elapsed = time.perf_counter() - began
            stats["train_seconds"] += elapsed
            stats["max_grad_norm"] = max(stats["max_grad_norm"], grad_norm)
            value = loss.item()
            smoothed = stats["smoothed_loss"]
            if smoothed is not None and step > t.warmup and value > 1.5 * smoothed:
                stats["loss_spikes"] += 1
            stats["smoothed_loss"] = value if smoothed is None else 0.95 * smoothed + 0.05 * value
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens_per_step / elapsed:,.0f}")

            record = None
            if (step + 1) % t.log_every == 0 or step + 1 == t.steps:
                fills = [m.fill().float().mean().item() / m.size for m in state.memories()]
                record = {"step": step + 1, "loss": value, "lr": lr, "grad_norm": grad_norm,
                          "tokens_per_s": tokens_per_step / elapsed,
                          "memory_fill": sum(fills) / len(fills) if fills else None,
                          "gates": {str(k): v for k, v in model.gates().items()}}
            if t.eval_every and ((step + 1) % t.eval_every == 0 or step + 1 == t.steps):
                valid = evaluate(model, valid_documents, config.data.lanes, config.data.segment,
                                 max(1, config.data.eval_tokens // 4))
                record = (record or {"step": step + 1}) | {"valid_loss": valid["loss"], "valid_ppl": valid["ppl"]}
            if record:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            if (step + 1) % t.checkpoint_every == 0 or step + 1 == t.steps:
                metrics.flush()
                os.fsync(metrics.fileno())
                save_checkpoint(out, model, optimizer, state, stream, step + 1, {"stats": stats})
    bar.close()

    save_model(model, out)
    summary = {
        "steps": t.steps,
        "final_loss": stats["smoothed_loss"],
        "parameters": model.num_parameters(),
        "tokens_per_s": tokens_per_step * max(1, t.steps - start) / max(stats["train_seconds"], 1e-9),
        **peak_memory_mib(),
        "gates": {str(k): v for k, v in model.gates().items()},
        **stats,
    }
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
