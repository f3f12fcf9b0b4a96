"""Position biases: T5 relative buckets for local attention, and the optional biases for memory.

The paper uses T5's relative position bias for local attention and no position bias at all for retrieved
memories. The memory biases here exist for ablation: `t5-relative` buckets the distance between a query and
the stored key (log-spaced, reaching across the whole memory span); `learned-absolute` buckets the stored key's
absolute position in its document.
"""

import math

import torch
from torch import nn


def log_buckets(distance: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5 bucketing of non-negative distances: one bucket per distance below num_buckets // 2, then
    log-spaced buckets up to max_distance; every distance beyond falls into the last bucket."""
    exact = num_buckets // 2
    max_distance = max(max_distance, exact + 1)
    d = distance.clamp(min=0)
    log_ratio = torch.log(d.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    large = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return torch.where(d < exact, d, large)


class RelativePositionBias(nn.Module):
    """T5 relative position bias for causal local attention over [XL cache ; segment]."""

    def __init__(self, heads: int, num_buckets: int, max_distance: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.table = nn.Parameter(torch.zeros(heads, num_buckets))  # [H, buckets]

    def forward(self, query_len: int, cache_len: int) -> torch.Tensor:
        q_pos = torch.arange(query_len, device=self.table.device) + cache_len  # [L]
        k_pos = torch.arange(cache_len + query_len, device=self.table.device)  # [C + L]
        buckets = log_buckets(q_pos[:, None] - k_pos[None, :], self.num_buckets, self.max_distance)
        return self.table[:, buckets]  # [H, L, C + L]


class MemoryPositionBias(nn.Module):
    """A learned per-head bias for retrieved memories, from the stored keys' positions in the document."""

    def __init__(self, kind: str, heads: int, num_buckets: int, max_distance: int):
        super().__init__()
        assert kind in ("t5-relative", "learned-absolute"), kind
        self.kind, self.num_buckets, self.max_distance = kind, num_buckets, max_distance
        self.table = nn.Parameter(torch.zeros(heads, num_buckets))  # [H, buckets]

    def forward(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """query_pos [B, L] and key_pos [B, H, L, k] (document positions) -> bias [B, H, L, k]."""
        if self.kind == "t5-relative":
            distance = query_pos[:, None, :, None] - key_pos
        else:
            distance = key_pos
        buckets = log_buckets(distance, self.num_buckets, self.max_distance)
        heads = torch.arange(self.table.shape[0], device=self.table.device)[None, :, None, None]
        return self.table[heads, buckets]
