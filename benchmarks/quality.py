"""Learning quality against the best-known recipe: this package's plain and memory models and those of
memorizing-transformers-pytorch 0.4.1, on the same data in the same order with the same optimizer.

One shared shape (4 layers, width 256, 4 heads of 64, segment 256, XL cache 256, 8 lanes; memory of 8192 entries
per lane, top-32; ours at layer 1 with the `cpu` preset's queries and keys, the peer's at layer 3, its default
place) on the default corpus (the Python standard library). All four models train with
AdamW (lr 1e-3 after a linear warm-up, then constant, so that step S means the same schedule for every model;
betas 0.9/0.95, weight decay 0.1 on matrices, gradient clipping at 0.5), reading the training split through the
same lanes in the same order. They take turns, one step each (so that the machine's slow spells fall on all
alike), until each has spent --seconds of its own step time. Two figures:
  - training loss at equal steps: each model's mean loss over steps S - 49 .. S (S = --steps);
  - held-out bits per byte at equal wall-clock: after --seconds of training, the first --eval-bytes bytes of the
    --eval-docs longest test documents, read one per lane with memory (and XL cache) filling and clearing per
    document as in training.
The last line of output is one JSON object.

    pip install memorizing-transformers-pytorch==0.4.1 einops-exts   # the peer, for this benchmark only
    python benchmarks/quality.py [--steps 300] [--seconds 420] [--eval-docs 8] [--eval-bytes 32768] [--no-peer]
                                 [--set KEY=VALUE]
"""

import argparse
import contextlib
import json
import math
import tempfile
import time

import torch
import torch.nn.functional as F

from memorizing import MemorizingTransformer, preset
from memorizing.config import DataConfig
from memorizing.data.corpora import load_corpus, split_documents
from memorizing.data.lanes import LaneStream
from memorizing.evaluate import evaluate
from memorizing.train import make_optimizer

LANES, SEGMENT, DIM, DEPTH, HEADS, HEAD_DIM, MEMORY, TOP_K = 8, 256, 256, 4, 4, 64, 8192, 32
LR, WARMUP, CLIP = 1e-3, 100, 0.5


def learning_rate(step: int) -> float:
    return LR * min(1.0, (step + 1) / WARMUP)


class Contender:
    """One model being trained: its step function, its clock and its losses."""

    def __init__(self, name: str, model, step_loss, evaluate_bpb):
        self.name, self.model = name, model
        self.step_loss, self.evaluate_bpb = step_loss, evaluate_bpb  # batch -> loss tensor; docs -> bits per byte
        self.optimizer = make_optimizer(model, preset("tiny"))  # AdamW, decay on matrices, betas 0.9/0.95
        self.stream = LaneStream(training_documents(), LANES, SEGMENT, seed=0, loop=True)
        self.losses, self.seconds = [], 0.0

    def step(self) -> None:
        started = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(len(self.losses))
        loss = self.step_loss(next(self.stream))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.optimizer.step()
        self.seconds += time.perf_counter() - started
        self.losses.append(loss.item())


def training_documents():
    return split_documents(load_corpus(DataConfig()), "train")


def held_out_documents(count: int, length: int):
    """The `count` longest test documents, each cut to its first `length` bytes."""
    documents = sorted(split_documents(load_corpus(DataConfig()), "test"), key=lambda d: -len(d.data))
    return [d.head(length + 1) for d in documents[:count]]


# Our queries and keys as the `cpu` preset makes them, read from it: over the last bytes (model.qk_conv), and in
# the memory layer, placed as there, keys equal to queries (memory.shared_qk). --set replaces or adds settings of
# our two models.
_CPU = preset("cpu")
RECIPE = [f"model.qk_conv={_CPU.model.qk_conv}", f"memory.shared_qk={str(_CPU.memory.shared_qk).lower()}",
          f"memory.layers={','.join(map(str, _CPU.memory.layers))}"]


def ours(memory: bool, sets: list[str]) -> Contender:
    config = preset("tiny").override([
        f"model.dim={DIM}", f"model.depth={DEPTH}", f"model.heads={HEADS}", f"model.head_dim={HEAD_DIM}",
        f"model.xl_cache={SEGMENT}", f"data.segment={SEGMENT}", f"data.lanes={LANES}",
        f"memory.enabled={str(memory).lower()}", f"memory.size={MEMORY}", f"memory.top_k={TOP_K}",
        "memory.search=bucketed", *RECIPE, *sets])
    model = MemorizingTransformer(config)
    state = model.init_state(LANES)

    def step_loss(batch):
        nonlocal state
        logits, state = model(batch.tokens, state, batch.reset)
        nll = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="none")
        return (nll * batch.mask.flatten()).sum() / batch.mask.sum()

    def evaluate_bpb(documents):
        return evaluate(model, documents, LANES, SEGMENT)["bits_per_token"]

    return Contender(f"ours, {'memory' if memory else 'plain'}", model, step_loss, evaluate_bpb)


def peer(memory: bool, stack: contextlib.ExitStack) -> Contender:
    """memorizing-transformers-pytorch, its kNN memory and XL cache cleared per lane at each new document (it
    has no validity mask for the XL cache: a cleared cache is zeros)."""
    from memorizing_transformers_pytorch import MemorizingTransformer as PeerTransformer
    layer = round(0.75 * DEPTH)
    model = PeerTransformer(num_tokens=256, dim=DIM, depth=DEPTH, heads=HEADS, dim_head=HEAD_DIM,
                            memorizing_layers=(layer,) if memory else (), max_knn_memories=MEMORY,
                            num_retrieved_memories=TOP_K, xl_max_memories=SEGMENT,
                            knn_memories_directory=stack.enter_context(tempfile.TemporaryDirectory()))
    knn = stack.enter_context(model.knn_memories_context(batch_size=LANES)) if memory else []
    xl = None

    def forward(batch):
        nonlocal xl
        lanes = batch.reset.nonzero().flatten().tolist()
        if lanes:
            if memory:
                knn.clear_memory(lanes)
            if xl is not None:
                xl = [m.masked_fill(batch.reset.view(-1, 1, 1, 1), 0) for m in xl]
        logits, xl = model(batch.tokens, knn_memories=knn, xl_memories=xl)
        xl = [m.detach() for m in xl]
        return logits

    def step_loss(batch):
        nll = F.cross_entropy(forward(batch).flatten(0, 1), batch.targets.flatten(), reduction="none")
        return (nll * batch.mask.flatten()).sum() / batch.mask.sum()

    @torch.no_grad()
    def evaluate_bpb(documents):
        nonlocal xl
        xl = None
        if memory:
            knn.clear_memory()
        total, count = 0.0, 0
        for batch in LaneStream(documents, LANES, SEGMENT, loop=False):
            nll = F.cross_entropy(forward(batch).flatten(0, 1), batch.targets.flatten(), reduction="none")
            total += (nll * batch.mask.flatten()).sum().item()
            count += int(batch.mask.sum())
        return total / count / math.log(2)

    return Contender(f"peer, {'memory' if memory else 'plain'}", model, step_loss, evaluate_bpb)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="S: training loss compared at equal steps")
    parser.add_argument("--seconds", type=float, default=420, help="step time each model trains before eval")
    parser.add_argument("--eval-docs", type=int, default=8)
    parser.add_argument("--eval-bytes", type=int, default=32768)
    parser.add_argument("--no-peer", action="store_true", help="skip memorizing-transformers-pytorch")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of our models, after the recipe's (e.g. model.qk_conv=0)")
    args = parser.parse_args()
    held_out = held_out_documents(args.eval_docs, args.eval_bytes)
    with contextlib.ExitStack() as stack:
        contenders = []
        for memory in (False, True):
            torch.manual_seed(0)
            contenders.append(ours(memory, args.sets))
            if not args.no_peer:
                torch.manual_seed(0)
                contenders.append(peer(memory, stack))
        running = list(contenders)
        while running:  # take turns until every model has spent its time
            for c in list(running):
                c.step()
                if c.seconds >= args.seconds:
                    running.remove(c)
                    print(f"{c.name}: {len(c.losses)} steps in {c.seconds:.0f} s", flush=True)
        steps = min([args.steps] + [len(c.losses) for c in contenders])
        if steps < args.steps:
            print(f"note: the slowest model did {steps} steps in {args.seconds:.0f} s: losses compared at step {steps}")
        results = []
        for c in contenders:
            c.model.eval()
            results.append({"model": c.name, "parameters": sum(p.numel() for p in c.model.parameters()),
                            "ms_per_step": 1e3 * c.seconds / len(c.losses), "steps": len(c.losses),
                            "train_loss_at_equal_steps": sum(c.losses[steps - 50:steps]) / 50,
                            "held_out_bits_per_byte": c.evaluate_bpb(held_out)})
    print(f"| model | parameters | ms/step | steps in {args.seconds:.0f} s | training loss, steps {steps - 49}-{steps} "
          f"| held-out bits/byte after {args.seconds:.0f} s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['parameters']:,} | {r['ms_per_step']:.0f} | {r['steps']} | "
              f"{r['train_loss_at_equal_steps']:.3f} | {r['held_out_bits_per_byte']:.3f} |")
    print(json.dumps({"equal_steps": steps, "seconds": args.seconds, "eval_documents": len(held_out),
                      "eval_bytes": sum(len(d.data) - 1 for d in held_out), "results": results}))


if __name__ == "__main__":
    main()
