"""Multi-head causal attention over [Transformer-XL cache ; segment] with T5 relative position bias.

In a memory layer the same queries also look up the kNN memory (memory_attention.py), and, with qk_norm, the
queries and keys are L2-normalised with a learned per-head scale (the paper's fix for stale keys). After the
segment has attended, the layer writes its keys and values, detached, to its memory and XL cache.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from memorizing.config import Config
from memorizing.model.memory_attention import MemoryAttention
from memorizing.model.position import RelativePositionBias


def local_attention(q, keys, values, bias, lane_mask, need_lse: bool):
    """softmax(q k^T + bias + lane_mask) v for q [B, H, L, D], keys/values [B, H, C + L, D], bias [H, L, C + L]
    (learned, needs its gradient) and lane_mask [B, 1, 1, C + L] -> (out [B, H, L, D], lse [B, H, L] or None).

    On GPUs PyTorch's fused attention takes a bias with gradient; on CPUs it falls back to an unfused path that
    is slower than these three operations, so CPUs (and the joint softmax, which needs the log-sum-exp) use them.
    """
    if q.is_cuda and not need_lse:
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias + lane_mask, scale=1.0), None
    logits = (q @ keys.transpose(-1, -2)).add_(bias).add_(lane_mask)  # [B, H, L, C + L]
    lse = logits.logsumexp(-1) if need_lse else None
    return torch.softmax(logits, dim=-1) @ values, lse


class QKConvolution(nn.Module):
    """Queries and keys over the last tokens (model.qk_conv = width): a causal depthwise convolution of each
    head's raw queries and keys (Primer, So et al. 2021), q'[t] = sum_j a[j] * q[t - j] per channel, and the same
    for keys with their own taps, started as a lookup of what followed the same context: a query weighs its
    token 1 and the token m before it DECAY^m (m < width - 1); a key weighs its own token 0 and the token m + 1
    before it DECAY^m. So the stored key of the token that followed a context is the query at that context, and
    the keys one place off match less (by about DECAY): "what came after these tokens the last time?", once
    queries and keys of the same tokens match, which the layer's keys starting as its queries give from the
    first step (Attention.start_keys_as_queries; README: "What it takes for memory to retrieve"). Plain sums
    instead (every tap 1) are a bag of tokens: the key at the same place matches as well as the next token's.
    The taps are learned from there."""

    DECAY = 0.5  # the weight of each further token back, at the start

    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        self.width = width
        recency = self.DECAY ** torch.arange(width - 1, dtype=torch.float32).flip(0)  # [width - 1], oldest first
        taps = torch.zeros(2, heads, head_dim, width)  # [q/k, H, D, width], oldest first: [..., -1] is t itself
        taps[0, ..., 1:] = recency  # queries: t at 1, t - m at DECAY^m
        taps[1, ..., :-1] = recency  # keys: t itself at 0, t - 1 - m at DECAY^m
        self.taps = nn.Parameter(taps)

    def forward(self, q: torch.Tensor, k: torch.Tensor, recent: torch.Tensor):
        """q, k [B, H, L, D]; recent [B, 2, H, width - 1, D]: the raw queries and keys of the tokens before this
        segment (0 where a document starts) -> (q', k' [B, H, L, D], the new `recent`)."""
        length = q.shape[2]
        raw = torch.cat([recent, torch.stack([q, k], dim=1)], dim=3)  # [B, 2, H, width - 1 + L, D]
        windows = raw.unfold(3, self.width, 1)  # [B, 2, H, L, D, width]
        mixed = (windows * self.taps[:, :, None]).sum(-1)  # [B, 2, H, L, D]
        # a copy, not a view of qkv: the next segment's first tokens mix these in
        return mixed[:, 0], mixed[:, 1], raw[:, :, :, length:].detach().clone()


class Attention(nn.Module):
    def __init__(self, config: Config, layer: int, has_memory: bool):
        super().__init__()
        m = config.model
        self.heads, self.head_dim = m.heads, m.head_dim
        self.qkv = nn.Linear(m.dim, 3 * m.heads * m.head_dim, bias=False)
        self.proj = nn.Linear(m.heads * m.head_dim, m.dim, bias=False)
        self.relative_bias = RelativePositionBias(m.heads, m.bias_buckets, m.bias_max_distance, m.bias_scale)
        self.memory = MemoryAttention(config) if has_memory else None
        self.qk_norm = config.qk_norm(layer)
        # per-head weight of the previous token's key, sigmoid(0) = 0.5 at the start
        self.smear = nn.Parameter(torch.zeros(m.heads)) if m.key_smear else None
        self.shared_qk = config.shared_qk(layer)  # keys are the queries (the key rows of qkv go unused)
        self.qk_conv = QKConvolution(m.qk_conv, m.heads, m.head_dim) if m.qk_conv else None
        if self.qk_norm:  # learned per-head temperature, starting at the usual 1/sqrt(D) scale of unit vectors
            self.log_scale = nn.Parameter(torch.full((m.heads,), math.log(math.sqrt(m.head_dim))))

    def start_keys_as_queries(self) -> None:
        """Keys start with the queries' projection (W_k = W_q; model.qk_conv's start): a query then matches the keys
        of the same tokens from the first step, instead of after a plateau in which W_q and W_k must first align
        (README: "What it takes for memory to retrieve")."""
        inner = self.heads * self.head_dim
        with torch.no_grad():
            self.qkv.weight[inner:2 * inner] = self.qkv.weight[:inner]

    def forward(self, x: torch.Tensor, layer_state, query_pos: torch.Tensor, remember: bool) -> torch.Tensor:
        """x [B, L, dim] -> [B, L, dim]; layer_state holds this layer's XL cache and kNN memory."""
        lanes, length, _ = x.shape
        q, k, v = self.qkv(x).view(lanes, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, H, L, D]
        if self.shared_qk:
            k = q
        # [B, H, D], before the smear: the next segment's first key mixes it in (a copy, not a view of qkv)
        last_key = k[:, :, -1].clone()
        if self.smear is not None:
            previous = torch.cat([layer_state.last_key[:, :, None], k[:, :, :-1]], dim=2)  # [B, H, L, D]
            weight = torch.sigmoid(self.smear)[:, None, None]  # [H, 1, 1]
            k = (1 - weight) * k + weight * previous
        recent = None
        if self.qk_conv is not None:  # mixes in the previous segment's last queries and keys, kept in the state
            q, k, recent = self.qk_conv(q, k, layer_state.recent)
        if self.qk_norm:
            q = F.normalize(q, dim=-1) * self.log_scale.exp()[:, None, None]
            k = F.normalize(k, dim=-1)
        else:
            q = q * self.head_dim ** -0.5

        # Local keys: the cached previous segment, then this segment.
        cache_k, cache_v, cache_valid = layer_state.cache  # [B, H, C, D], [B, H, C, D], [B, C]
        cache_len = cache_k.shape[2]
        keys, values = torch.cat([cache_k, k], dim=2), torch.cat([cache_v, v], dim=2)  # [B, H, C + L, D]
        bias = self.relative_bias(length, cache_len)  # [H, L, C + L], -inf where a key lies in the future
        # Cache slots of a lane that has just started a document hold nothing: -inf for those keys.
        empty = torch.cat([~cache_valid, cache_valid.new_zeros(lanes, length)], dim=1)  # [B, C + L]
        lane_mask = torch.zeros(empty.shape, dtype=q.dtype, device=x.device).masked_fill_(empty, float("-inf"))
        need_lse = self.memory is not None and self.memory.combine == "joint"  # the joint softmax needs it
        local, local_lse = local_attention(q, keys, values, bias, lane_mask[:, None, None, :], need_lse)
        out = local if self.memory is None else self.memory(q, layer_state.memory, query_pos, local, local_lse)

        if remember:  # written after the segment has attended, so no token retrieves itself
            layer_state.write(k, v, query_pos, last_key, recent)
        return self.proj(out.transpose(1, 2).reshape(lanes, length, self.heads * self.head_dim))
