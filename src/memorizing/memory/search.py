"""Top-k search over a lane's memory, exact or approximate, and recall measurement.

Every back-end has the same signature: queries [B, H, L, D], keys [B, H, M, D], valid [B, M] ->
(indices [B, H, L, k], found [B, H, L, k]); `found` is False where a lane holds fewer than k entries. Scores are
inner products (queries and keys are already normalised when qk_norm is on). Search carries no gradient: the
memory branch recomputes the logits of the retrieved keys so that gradient reaches the queries.

- `exact`: dense scores and torch.topk, on the model's device.
- `bucketed`: the approximate top-k the paper ran on TPU (meliad): memory slots are dealt into
  k * search_buckets interleaved buckets, each bucket keeps only its best entry, and the top k of those bucket
  winners are returned. Two true neighbours that share a bucket cost one of them, so recall rises with
  `search_buckets` (about 0.9 at 4-8 for k = 32) and the selection cost falls with fewer buckets.
"""

import torch

# Bound on the [chunk, M] score block per (lane, head), in elements, so long memories do not blow up RAM.
_SCORE_BLOCK = 1 << 26


def _scores(queries: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, H, L, M] inner products, -inf at empty slots (a full memory, the common case, needs no mask)."""
    scores = queries @ keys.transpose(-1, -2)  # [B, H, L, M]
    if not bool(valid.all()):
        scores.masked_fill_(~valid[:, None, None, :], float("-inf"))
    return scores


def _exact(queries, keys, valid, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _scores(queries, keys, valid).topk(k, dim=-1)


def _bucketed(queries, keys, valid, k: int, buckets_per_neighbour: int) -> tuple[torch.Tensor, torch.Tensor]:
    size = keys.shape[2]
    buckets = min(size, k * buckets_per_neighbour)
    rows = -(-size // buckets)
    scores = _scores(queries, keys, valid)  # [B, H, L, M]
    if rows * buckets > size:
        scores = torch.nn.functional.pad(scores, (0, rows * buckets - size), value=float("-inf"))
    # Slot m = row * buckets + bucket: bucket b holds slots b, b + buckets, b + 2 * buckets, ... (interleaved,
    # so the entries of one earlier segment spread over all buckets).
    table = scores.unflatten(-1, (rows, buckets))  # [B, H, L, rows, buckets]
    best = table.amax(dim=-2)  # [B, H, L, buckets] each bucket's winner
    top, bucket = best.topk(k, dim=-1)  # [B, H, L, k]
    # The winning row of each chosen bucket: the first row that attains its maximum (an amax over rows, which
    # is much faster on CPUs than an argmax across a non-last dimension).
    chosen = table.gather(-1, bucket[..., None, :].expand(*table.shape[:-1], k))  # [B, H, L, rows, k]
    countdown = torch.arange(rows, 0, -1, device=scores.device)[:, None]  # [rows, 1]: rows .. 1
    row = rows - ((chosen == top[..., None, :]) * countdown).amax(dim=-2)  # [B, H, L, k]
    return top, (row * buckets + bucket).clamp(max=size - 1)  # (padding slots only where nothing was found)


@torch.no_grad()
def search(queries: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor, k: int, backend: str = "exact",
           buckets_per_neighbour: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    k = min(k, keys.shape[2])
    lanes, heads, length, _ = queries.shape
    chunk = max(1, _SCORE_BLOCK // (lanes * heads * keys.shape[2]))
    indices, found = [], []
    for start in range(0, length, chunk):  # chunks of query tokens bound the score matrix
        block = queries[:, :, start:start + chunk]
        if backend == "exact":
            top, index = _exact(block, keys, valid, k)
        elif backend == "bucketed":
            top, index = _bucketed(block, keys, valid, k, buckets_per_neighbour)
        else:
            raise ValueError(f"unknown search back-end {backend!r}")
        indices.append(index)
        found.append(top > float("-inf"))
    return torch.cat(indices, dim=2), torch.cat(found, dim=2)


@torch.no_grad()
def recall_at_k(queries: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor, k: int, backend: str,
                buckets_per_neighbour: int = 4) -> float:
    """Fraction of the exact top-k neighbours (that exist) which `backend` also returns."""
    true_index, true_found = search(queries, keys, valid, k, "exact")
    index, found = search(queries, keys, valid, k, backend, buckets_per_neighbour)
    # hit[..., i] = the i-th true neighbour appears among the back-end's found results.
    hit = ((true_index[..., :, None] == index[..., None, :]) & found[..., None, :]).any(-1) & true_found
    return (hit.sum() / true_found.sum().clamp(min=1)).item()
