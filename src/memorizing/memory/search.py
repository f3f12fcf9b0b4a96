"""Top-k search over a lane's memory, exact or approximate, and recall measurement.

`search(queries [B, H, L, D], keys [B, H, S, D], valid [B, S], k, backend, buckets)` (keys: a memory's slots in
storage order, store.py) -> (slots [B, H, L, k], scores [B, H, L, k]), best first; a score is the inner product of
query and key (both already normalised when qk_norm is on), -inf where a lane holds fewer than k entries. The
back-ends `_exact` and `_bucketed` choose the top k from one block of scores. Search carries no gradient: the memory
branch takes these scores as its logits and gives them their gradient itself (gathered.py).

- `exact`: dense scores and torch.topk, on the model's device.
- `bucketed`: the approximate top-k the paper ran on TPU (meliad): memory entries are dealt into
  G = k * search_buckets interleaved buckets, each bucket keeps only its best entry, and the top k of those
  bucket winners are returned. Two true neighbours that share a bucket cost one of them, so recall rises with
  `search_buckets` (about 0.9 at 4-8 for k = 32), and the selection works on G bucket winners instead of all
  entries. The memory stores each bucket as a contiguous block of slots, so a bucket's winner is a reduction
  over the last dimension.
- `ivf` (ivf.py): an inverted-file index kept beside the memory; sub-linear, for long memories on CPUs.
"""

import torch

from memorizing.memory.scratch import scratch

# Bound on one block of scores, in elements, so that long memories do not blow up RAM.
_SCORE_BLOCK = 1 << 26


def _exact(scores: torch.Tensor, k: int, buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    return scores.topk(k, dim=-1)


def _bucketed(scores: torch.Tensor, k: int, buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [N, L, S], S = buckets * rows, bucket g = slots g*rows .. (g+1)*rows - 1 -> (top, slot) [N, L, k]."""
    pairs, length, slots = scores.shape
    rows = slots // buckets
    best = scores.view(pairs, length, buckets, rows).amax(-1)  # [N, L, G] each bucket's winning score
    top, bucket = best.topk(k, dim=-1)  # [N, L, k]
    # The winning slot inside each chosen bucket: an argmax over that bucket's contiguous block of scores.
    block = torch.arange(pairs * length, device=scores.device).view(pairs, length, 1) * buckets + bucket
    chosen = torch.index_select(scores.view(-1, rows), 0, block.flatten(), out=scratch((block.numel(), rows), scores))
    row = chosen.max(-1).indices.view(pairs, length, k)  # max's indices: faster than argmax on CPUs
    return top, bucket * rows + row


BACKENDS = {"exact": _exact, "bucketed": _bucketed}


@torch.no_grad()
def search(queries: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor, k: int, backend: str = "exact",
           buckets: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k slots of `keys` for each query; `buckets` is the memory's bucket count (KNNMemory.buckets)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown search back-end {backend!r}")
    lanes, heads, length, head_dim = queries.shape
    slots = keys.shape[2]
    k = min(k, slots)
    if backend == "bucketed" and not (k <= buckets and slots % buckets == 0):
        raise ValueError(f"bucketed search of top-{k} needs at least {k} buckets that divide the {slots} slots, "
                         f"not {buckets}: pass the memory's bucket count (KNNMemory.buckets)")
    queries = queries.to(keys.dtype).reshape(lanes * heads, length, head_dim)  # [N, L, D], N = lanes * heads
    keys = keys.reshape(lanes * heads, slots, head_dim)  # [N, S, D]
    # Empty slots score -inf. A full memory, the common case, needs no mask (checked on the CPU only: on a GPU
    # the check would cost a host round trip, more than the mask).
    needs_mask = keys.device.type != "cpu" or not bool(valid.all())
    empty = ~valid.repeat_interleave(heads, dim=0)[:, None, :] if needs_mask else None  # [N, 1, S]
    # Blocks of whole (lane, head) pairs keep the matmuls large; only a very long memory splits the queries.
    pair_block = max(1, _SCORE_BLOCK // (length * slots))
    query_block = length if pair_block > 1 else max(1, _SCORE_BLOCK // slots)
    indices, top_scores = [], []
    for p in range(0, lanes * heads, pair_block):
        row_indices, row_scores = [], []
        for t in range(0, length, query_block):
            q, kk = queries[p:p + pair_block, t:t + query_block], keys[p:p + pair_block]
            scores = torch.bmm(q, kk.transpose(1, 2), out=scratch((q.shape[0], q.shape[1], slots), q))
            if empty is not None:
                scores.masked_fill_(empty[p:p + pair_block], float("-inf"))
            top, index = BACKENDS[backend](scores, k, buckets)  # [n, l, k] each
            row_indices.append(index)
            row_scores.append(top)
        indices.append(torch.cat(row_indices, dim=1))
        top_scores.append(torch.cat(row_scores, dim=1))
    shape = (lanes, heads, length, k)
    return torch.cat(indices).view(shape), torch.cat(top_scores).view(shape)


@torch.no_grad()
def recall_counts(queries: torch.Tensor, memory, k: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per lane [B]: how many of the exact top-k neighbours (that exist) in `memory` (a KNNMemory) `backend` also
    returns, and how many exist, for queries [B, H, L, D]."""
    true_index, true_scores = memory.search(queries, k, "exact")
    index, scores = memory.search(queries, k, backend)
    true_found, found = true_scores > float("-inf"), scores > float("-inf")
    # hit[..., i] = the i-th true neighbour appears among the back-end's found results.
    hit = ((true_index[..., :, None] == index[..., None, :]) & found[..., None, :]).any(-1) & true_found
    return hit.flatten(1).sum(1), true_found.flatten(1).sum(1)


def recall_at_k(queries: torch.Tensor, memory, k: int, backend: str) -> float:
    """Fraction of the exact top-k neighbours (that exist) in `memory` which `backend` also returns."""
    hits, total = recall_counts(queries, memory, k, backend)
    return (hits.sum() / total.sum().clamp(min=1)).item()
