"""Position biases: T5 relative buckets for local attention, and the optional biases for memory.

The paper uses T5's relative position bias for local attention and no position bias at all for retrieved
memories. The memory biases here exist for ablation: `t5-relative` buckets the distance between a query and
the stored key (log-spaced, reaching across the whole memory span); `learned-absolute` buckets the stored key's
absolute position in its document (log-spaced up to ABSOLUTE_SPAN, so that positions far beyond the memory's
size still fall in distinct buckets).

Every bias table is stored in units of 1 / `scale` (model.bias_scale): bias = scale * table. Adam moves each
parameter by about the learning rate per step, whatever the size of its gradient; weights need steps of a
hundredth, but a position bias needs values of several nats, which a table in plain units reaches only after
thousands of steps: until then local attention is nearly position-blind. Scaling the table makes the bias learn
`scale` times faster than the weights (the measurement: README, "What it takes for memory to retrieve").
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


# Positions in a document up to which `learned-absolute` buckets stay distinct (log-spaced): 1 MiB of bytes.
ABSOLUTE_SPAN = 1 << 20


class RelativePositionBias(nn.Module):
    """T5 relative position bias for causal local attention over [XL cache ; segment]."""

    def __init__(self, heads: int, num_buckets: int, max_distance: int, scale: float = 1.0):
        super().__init__()
        self.num_buckets, self.max_distance, self.scale = num_buckets, max_distance, scale
        self.table = nn.Parameter(torch.zeros(heads, num_buckets))  # [H, buckets], in units of 1 / scale

    def forward(self, query_len: int, cache_len: int) -> torch.Tensor:
        """[H, L, C + L] bias of each query over [cache ; segment] keys, -inf where the key lies in its future.

        Query i (at i + C) and key j are d = i + C - j apart, so every row is a window of one vector over the
        distances C + L - 1, C + L - 2, ..., -(L - 1): the bias is built as overlapping windows of that vector
        (a Toeplitz matrix), whose gradient is a sum over windows instead of a scatter over all L x (C + L)."""
        keys = cache_len + query_len
        distance = torch.arange(keys - 1, -query_len, -1, device=self.table.device)  # [C + 2L - 1], decreasing
        table = self.table * self.scale
        by_distance = table[:, log_buckets(distance, self.num_buckets, self.max_distance)]  # [H, C + 2L - 1]
        # Window w starts at distance C + L - 1 - w, which is query L - 1 - w's row: flip the windows.
        bias = by_distance.unfold(-1, keys, 1).flip(1)  # [H, L, C + L]
        future = torch.ones(query_len, keys, dtype=torch.bool, device=bias.device).triu(cache_len + 1)  # [L, C + L]
        return bias.masked_fill(future, float("-inf"))


class MemoryPositionBias(nn.Module):
    """A learned per-head bias for retrieved memories, from the stored keys' positions in the document."""

    def __init__(self, kind: str, heads: int, num_buckets: int, memory_size: int, scale: float = 1.0):
        super().__init__()
        assert kind in ("t5-relative", "learned-absolute"), kind
        self.kind, self.num_buckets, self.scale = kind, num_buckets, scale
        # A query's neighbours lie at most a memory's length back; their absolute positions can lie anywhere.
        self.max_distance = memory_size if kind == "t5-relative" else ABSOLUTE_SPAN
        self.table = nn.Parameter(torch.zeros(heads, num_buckets))  # [H, buckets], in units of 1 / scale

    def forward(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """query_pos [B, L] and key_pos [B, H, L, k] (document positions) -> bias [B, H, L, k]."""
        if self.kind == "t5-relative":
            distance = query_pos[:, None, :, None] - key_pos
        else:
            distance = key_pos
        buckets = log_buckets(distance, self.num_buckets, self.max_distance)
        heads = torch.arange(self.table.shape[0], device=self.table.device)[None, :, None, None]
        return self.table[heads, buckets] * self.scale
