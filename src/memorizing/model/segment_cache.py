"""Transformer-XL reuse of the previous segment in a pretrained rotary model (model/pretrained.py, model.xl_cache).

Each decoder layer keeps the keys and values of the last C tokens it read (LayerState.cache, C = model.xl_cache):
keys as the layer's key projection gives them, before the rotation, so that every segment rotates them at their
positions in its own window [cache ; segment], with the model's own rotary embedding and rotation. Per lane, with
n of the C slots filled (a cleared cache fills from its end, so the filled slots are the last n):

    cache slot j     -> position j - (C - n)   (the filled ones 0 .. n-1; the empty ones are masked out)
    segment token i  -> position n + i         (queries and keys: rotated by the model itself, position_ids)

so a segment after C cached tokens is read as the pretrained model reads [those C tokens ; segment], and a lane
that starts a document (State.reset clears its cache) reads its first segment at positions 0 .. L-1, as without
a cache. Only rotary families can do this: with learned absolute positions (GPT-2) a cached key keeps the
position it was computed at.
"""

import sys

import torch
from torch import nn

from memorizing.model.state import LayerState


def window_positions(filled: torch.Tensor, cache_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """filled [B] cache slots in use -> (cache slot positions [B, C], segment positions [B, L])."""
    slots = filled[:, None] - cache_size + torch.arange(cache_size, device=filled.device)  # [B, C]
    return slots, filled[:, None] + torch.arange(length, device=filled.device)  # [B, L]


class SegmentCache:
    """One decoder layer's XL cache: reads [cache ; segment] for its attention and writes the segment after it.
    Kept as the attribute `segment_cache` of the layer's attention module (no parameters)."""

    def __init__(self, attention: nn.Module, key_projection: str):
        # The family's own rotation, from the module that defines its attention: (q, k, cos, sin) -> rotated (q, k).
        self.rotate = sys.modules[type(attention).__module__].apply_rotary_pos_emb
        self.captured = None  # the segment's keys before the rotation, [B, L, Hkv * D]
        self.hook = getattr(attention, key_projection).register_forward_hook(
            lambda _, __, out: setattr(self, "captured", out))
        self.layer_state, self.rotary, self.remember = None, None, True

    def close(self) -> None:
        """Stop capturing (the attention module gets another cache)."""
        self.hook.remove()

    def bind(self, layer_state: LayerState, rotary: tuple[torch.Tensor, torch.Tensor], remember: bool) -> None:
        """The layer's state and (cos, sin) [B, C, D] of the cache slots' positions, for the next forward."""
        self.layer_state, self.rotary, self.remember = layer_state, rotary, remember

    def extend(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The segment's key (rotated) and value [B, Hkv, L, D] -> keys and values [B, Hkv, C + L, D] with the cache
        before them, and allowed [B, 1, L, C + L] (True: may attend): the filled cache slots, the segment causally.
        Then the segment is written to the cache (with remember)."""
        lanes, kv_heads, length, head_dim = key.shape
        cache_k, cache_v, filled = self.layer_state.cache  # [B, Hkv, C, D] before the rotation, [B, Hkv, C, D], [B, C]
        cos, sin = self.rotary
        cached_k = self.rotate(cache_k, cache_k, cos, sin)[1].to(key.dtype)  # [B, Hkv, C, D] at the slots' positions
        keys = torch.cat([cached_k, key], dim=2)  # [B, Hkv, C + L, D]
        values = torch.cat([cache_v.to(value.dtype), value], dim=2)  # [B, Hkv, C + L, D]
        causal = torch.ones(length, length, dtype=torch.bool, device=key.device).tril()  # [L, L]
        allowed = torch.cat([filled[:, None, None, :].expand(-1, 1, length, -1),
                             causal.expand(lanes, 1, length, length)], dim=-1)  # [B, 1, L, C + L]
        captured, self.captured = self.captured, None
        if self.remember:
            unrotated = captured.view(lanes, length, kv_heads, head_dim).transpose(1, 2)  # [B, Hkv, L, D]
            self.layer_state.write_cache(unrotated, value)
        return keys, values, allowed
