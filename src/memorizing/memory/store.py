"""The kNN memory of one layer: a FIFO ring buffer of (key, value, position) per lane and head.

Each batch lane reads its own document, so each lane has its own memory; within a lane every head keeps its
own keys and values (the paper keeps memory per head). All lanes write their segment at once with one scatter;
at capacity the oldest entries of that lane are overwritten. Nothing in here carries gradient.
"""

import torch


class KNNMemory:
    def __init__(self, lanes: int, heads: int, size: int, head_dim: int, device=None, dtype=torch.float32):
        self.size = size
        self.keys = torch.zeros(lanes, heads, size, head_dim, device=device, dtype=dtype)  # [B, H, M, D]
        self.values = torch.zeros(lanes, heads, size, head_dim, device=device, dtype=dtype)  # [B, H, M, D]
        # Document position of each stored token, -1 where the slot is empty.
        self.positions = torch.full((lanes, size), -1, device=device, dtype=torch.long)  # [B, M]
        self.next_slot = torch.zeros(lanes, device=device, dtype=torch.long)  # [B] ring-buffer write pointer

    @property
    def valid(self) -> torch.Tensor:
        """[B, M] True where a slot holds an entry."""
        return self.positions >= 0

    def fill(self) -> torch.Tensor:
        """[B] number of entries held per lane."""
        return self.valid.sum(-1)

    @torch.no_grad()
    def write(self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor) -> None:
        """Append one segment per lane: keys, values [B, H, L, D] and positions [B, L], oldest evicted."""
        if keys.shape[2] > self.size:  # a segment longer than the memory: only its newest tokens fit
            keys, values, positions = keys[:, :, -self.size:], values[:, :, -self.size:], positions[:, -self.size:]
        lanes, heads, length, head_dim = keys.shape
        slots = (self.next_slot[:, None] + torch.arange(length, device=keys.device)) % self.size  # [B, L]
        index = slots[:, None, :, None].expand(lanes, heads, length, head_dim)  # [B, H, L, D]
        self.keys.scatter_(2, index, keys.detach().to(self.keys.dtype))
        self.values.scatter_(2, index, values.detach().to(self.values.dtype))
        self.positions.scatter_(1, slots, positions)
        self.next_slot = (self.next_slot + length) % self.size

    @torch.no_grad()
    def reset(self, lanes: torch.Tensor) -> None:
        """Clear the memory of the lanes where `lanes` [B] (bool) is True, and nothing else."""
        self.keys[lanes] = 0
        self.values[lanes] = 0
        self.positions[lanes] = -1
        self.next_slot[lanes] = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys, "values": self.values, "positions": self.positions, "next_slot": self.next_slot}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, value in tensors.items():
            getattr(self, name).copy_(value)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())
