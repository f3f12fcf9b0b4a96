"""Training throughput: this package with memory, without memory, and memorizing-transformers-pytorch 0.4.1.

One shared configuration (6 layers, width 256, 4 heads of 64, segment 256, 8 lanes, 8192 memory entries per lane
at one layer, top-32, XL cache 256), random bytes, AdamW. Each model first trains until its memory is full
(memory.size / segment steps); then the three take turns, one step each, for --steps rounds, and each one's
median step time counts (turns, so that a slow spell of the machine falls on all three alike). Also measures
the machine's own fp32 matmul rate, and the FLOP/s that plain training achieves against it. The last line of
output is one JSON object.

    pip install memorizing-transformers-pytorch==0.4.1 einops-exts   # the peer, for this benchmark only
    python benchmarks/train_throughput.py [--steps 10] [--memory-size 8192] [--search bucketed|exact|ivf] [--device cpu]
                                          [--bf16] [--no-peer] [--profile]
"""

import argparse
import contextlib
import json
import statistics
import tempfile
import time

import torch

from memorizing import MemorizingTransformer, preset

LANES, SEGMENT, DIM, DEPTH, HEADS, HEAD_DIM, TOP_K = 8, 256, 256, 6, 4, 64, 32


def our_config(memory: bool, memory_size: int, search: str):
    return preset("tiny").override([
        f"model.dim={DIM}", f"model.depth={DEPTH}", f"model.heads={HEADS}", f"model.head_dim={HEAD_DIM}",
        f"model.xl_cache={SEGMENT}", f"data.segment={SEGMENT}", f"data.lanes={LANES}",
        f"memory.enabled={str(memory).lower()}", f"memory.size={memory_size}", f"memory.top_k={TOP_K}",
        "memory.layers=auto", f"memory.search={search}"])


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def take_turns(steps: dict, rounds: int, device: str) -> dict:
    """Median seconds per step of each of `steps` (name -> step function), timed one step each in turn."""
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def ours(memory: bool, memory_size: int, search: str, device: str, bf16: bool):
    """A training step of this package, after its memory has been filled; and the model."""
    config = our_config(memory, memory_size, search)
    model = MemorizingTransformer(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    state = model.init_state(LANES)
    no_reset = torch.zeros(LANES, dtype=torch.bool, device=device)

    def step():
        nonlocal state
        tokens = torch.randint(0, 256, (LANES, SEGMENT + 1), device=device)
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=bf16):
            logits, state = model(tokens[:, :-1], state, no_reset)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(memory_size // SEGMENT + 2 if memory else 2):
        step()
    if memory:
        assert int(state.memories()[0].fill().min()) == memory_size, "memory not full before timing"
    return step, model


def peer(memory_size: int, rounds: int, device: str, stack: contextlib.ExitStack):
    """A training step of memorizing-transformers-pytorch, its memory filled to just below capacity (it empties
    itself when full), with room for `rounds` more segments."""
    from memorizing_transformers_pytorch import MemorizingTransformer as PeerTransformer
    layer = round(0.75 * DEPTH)
    folder = stack.enter_context(tempfile.TemporaryDirectory())
    model = PeerTransformer(num_tokens=256, dim=DIM, depth=DEPTH, heads=HEADS, dim_head=HEAD_DIM,
                            memorizing_layers=(layer,), max_knn_memories=memory_size,
                            num_retrieved_memories=TOP_K, xl_max_memories=SEGMENT,
                            knn_memories_directory=folder).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    knn_memories = stack.enter_context(model.knn_memories_context(batch_size=LANES))
    xl = None

    def step():
        nonlocal xl
        tokens = torch.randint(1, 256, (LANES, SEGMENT + 1), device=device)
        loss, xl = model(tokens[:, :-1], knn_memories=knn_memories, xl_memories=xl, labels=tokens[:, 1:])
        xl = [m.detach() for m in xl]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(max(1, memory_size // SEGMENT - rounds - 1)):
        step()
    return step


def top_operators(step, steps: int, device: str, rows: int = 15) -> str:
    """torch.profiler's table of the operators that took the most time over `steps` calls of `step`."""
    with torch.profiler.profile() as profiler:
        for _ in range(steps):
            step()
        synchronize(device)
    key = "self_cpu_time_total" if device == "cpu" else "self_device_time_total"
    return profiler.key_averages().table(sort_by=key, row_limit=rows)


def matmul_gflops(device: str, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):  # warm-up
        a @ b
    return 2 * n ** 3 / take_turns({"matmul": lambda: a @ b}, 10, device)["matmul"] / 1e9


def training_flops(model) -> float:
    """FLOPs of one training step of the plain model: 6 per parameter per token, plus attention scores."""
    tokens = LANES * SEGMENT
    matrix_params = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n)
    attention = 2 * 2 * LANES * HEADS * HEAD_DIM * SEGMENT * (SEGMENT + SEGMENT) * DEPTH  # QK^T and PV, forward
    head = 2 * tokens * DIM * 256
    return 3 * (2 * matrix_params * tokens + attention + head)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed rounds (one step of each model per round)")
    parser.add_argument("--memory-size", type=int, default=8192)
    parser.add_argument("--search", default="bucketed", choices=["exact", "bucketed", "ivf"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="autocast to bf16 (GPUs)")
    parser.add_argument("--no-peer", action="store_true", help="skip memorizing-transformers-pytorch")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, print the top operators of 3 steps of each of this package's models")
    args = parser.parse_args()
    torch.manual_seed(0)
    tokens = LANES * SEGMENT
    with contextlib.ExitStack() as stack:
        steps = {"memory": ours(True, args.memory_size, args.search, args.device, args.bf16)[0]}
        steps["plain"], plain_model = ours(False, args.memory_size, args.search, args.device, args.bf16)
        if not args.no_peer:
            steps["peer"] = peer(args.memory_size, args.steps, args.device, stack)
        seconds = take_turns(steps, args.steps, args.device)
        if args.profile:
            for name in ("memory", "plain"):
                print(f"ours, {name}: top operators over 3 steps", flush=True)
                print(top_operators(steps[name], 3, args.device), flush=True)
    with_memory, plain, peer_seconds = seconds["memory"], seconds["plain"], seconds.get("peer")
    print(f"ours, memory {args.memory_size} ({args.search}): {with_memory * 1e3:.0f} ms/step", flush=True)
    print(f"ours, no memory: {plain * 1e3:.0f} ms/step", flush=True)
    if peer_seconds:
        print(f"memorizing-transformers-pytorch 0.4.1: {peer_seconds * 1e3:.0f} ms/step", flush=True)
    machine = matmul_gflops(args.device)
    achieved = training_flops(plain_model) / plain / 1e9
    print(json.dumps({
        "device": args.device, "memory_size": args.memory_size, "search": args.search, "bf16": args.bf16,
        "threads": torch.get_num_threads(),
        "ours_tokens_per_s": tokens / with_memory, "ours_plain_tokens_per_s": tokens / plain,
        "peer_tokens_per_s": tokens / peer_seconds if peer_seconds else None,
        "speedup_vs_peer": peer_seconds / with_memory if peer_seconds else None,
        "memory_overhead": with_memory / plain,
        "matmul_gflops": machine, "plain_model_gflops": achieved, "plain_fraction_of_matmul": achieved / machine,
    }))


if __name__ == "__main__":
    main()
