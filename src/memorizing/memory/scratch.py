"""Reused work buffers for the memory's hot paths.

On CPUs a fresh tensor of tens of MB can cost more in page faults than the arithmetic that fills it, so search and
the memory branch's backward write into buffers kept here by shape. A buffer is only ever used inside one call that
does not keep it: never saved for backward, never returned.
"""

import torch

_buffers: dict[tuple, torch.Tensor] = {}
_KEPT = 8  # distinct shapes kept; a ninth clears them all (shapes change only with the configuration)


def scratch(shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor of `shape` on like's device and dtype, the same one on every call."""
    key = (tuple(shape), like.device, like.dtype)
    if key not in _buffers:
        if len(_buffers) >= _KEPT:
            _buffers.clear()
        _buffers[key] = torch.empty(shape, device=like.device, dtype=like.dtype)
    return _buffers[key]
