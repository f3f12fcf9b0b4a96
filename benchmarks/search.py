"""kNN search over a memory layer's memory: exact against the approximate back-ends, recall and speed.

Shapes as in a real memory layer: 8 lanes, 8 heads, head size 64, the queries of one 512-token segment against
--memory-size entries per lane and head. Keys and queries come from a synthetic distribution that mimics a
trained memory layer with qk-norm: unit keys drawn around 1024 topic centres per (lane, head) (cosine about 0.7
to their centre), and unit queries that are noisy copies of stored keys (cosine about 0.8), so every query has
true near neighbours among many similar distractors. The last line of output is one JSON object.

    python benchmarks/search.py --memory-size 65536
"""

import argparse
import json
import resource
import time

import torch

from memorizing.memory.search import recall_at_k, search
from memorizing.memory.store import KNNMemory

LANES, HEADS, HEAD_DIM, QUERIES, TOP_K = 8, 8, 64, 512, 32


def synthetic(size: int, generator: torch.Generator):
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)
    centres = unit(torch.randn(LANES, HEADS, 1024, HEAD_DIM, generator=generator))
    pick = torch.randint(0, 1024, (LANES, HEADS, size), generator=generator)
    keys = unit(centres.gather(2, pick[..., None].expand(-1, -1, -1, HEAD_DIM))
                + 0.6 * unit(torch.randn(LANES, HEADS, size, HEAD_DIM, generator=generator)))
    stored = torch.randint(0, size, (LANES, HEADS, QUERIES), generator=generator)
    queries = unit(keys.gather(2, stored[..., None].expand(-1, -1, -1, HEAD_DIM))
                   + 0.5 * unit(torch.randn(LANES, HEADS, QUERIES, HEAD_DIM, generator=generator)))
    return queries, keys


def seconds(fn, repeat: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-size", type=int, default=65536)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    queries, keys = synthetic(args.memory_size, torch.Generator().manual_seed(0))
    queries, keys = queries.to(args.device), keys.to(args.device)
    valid = torch.ones(LANES, args.memory_size, dtype=torch.bool, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(backend, buckets=4):
        def run():
            search(queries, keys, valid, TOP_K, backend, buckets)
            sync()
        return seconds(run)

    exact = timed("exact")
    print(f"exact: {exact * 1e3:.1f} ms for {LANES}x{HEADS}x{QUERIES} queries over {args.memory_size} entries")
    results = []
    for buckets in (1, 2, 4, 8):
        recall = recall_at_k(queries, keys, valid, TOP_K, "bucketed", buckets)
        t = timed("bucketed", buckets)
        results.append({"backend": f"bucketed (search_buckets={buckets})", "recall_at_k": recall,
                        "speedup_vs_exact": exact / t})
        print(f"bucketed, {buckets} buckets per neighbour: recall@{TOP_K} {recall:.3f}, {t * 1e3:.1f} ms "
              f"({exact / t:.2f}x exact)", flush=True)
    good = [r for r in results if r["recall_at_k"] >= 0.9] or results
    best = max(good, key=lambda r: r["speedup_vs_exact"])

    memory = KNNMemory(LANES, HEADS, 65536, HEAD_DIM, device=args.device)
    memory.keys.normal_()
    memory.values.normal_()  # touch every page
    print(json.dumps({
        "device": args.device, "memory_size": args.memory_size, "best_backend": best["backend"],
        "recall_at_k": best["recall_at_k"], "speedup_vs_exact": best["speedup_vs_exact"],
        "exact_ms": exact * 1e3, "backends": results,
        "bytes_per_entry": memory.nbytes() / (LANES * 65536),  # per lane entry, all heads
        "memory_65k_8_lanes_mib": memory.nbytes() / 2 ** 20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
