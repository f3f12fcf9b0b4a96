"""The kNN memory of one layer: a FIFO ring buffer of (key, value, position) per lane and head.

Each batch lane reads its own document, so each lane has its own memory; within a lane every head keeps its
own keys and values (the paper keeps memory per head). All lanes write their segment at once with one scatter;
at capacity the oldest entries of that lane are overwritten. Nothing in here carries gradient.

Storage order: with `buckets` = G, the ring's n-th entry (n = 0 .. size - 1, in writing order) is kept at slot
(n mod G) * R + n div G, R = ceil(size / G). Block g of R consecutive slots then holds entries g, g + G,
g + 2G, ...: the interleaved buckets of the approximate search (search.py) are contiguous blocks, so a bucket's
best entry is a reduction over the last dimension. Exact search does not care about the order. When G does not
divide size, the slots that no entry maps to stay empty.

Writes are applied at the next read of the memory (any method or tensor below), not at once: the segment that
wrote them has still to be backpropagated through, and its backward reads the rows it retrieved from the memory
itself (gathered.py), as they were when it searched. Training reads each segment once, forward then backward,
so the memory a backward reads is unchanged; if a second segment's forward ran first, autograd's version check
on the memory's tensors raises an error instead of a wrong gradient.
"""

import torch

from memorizing.config import ConfigError
from memorizing.memory.search import search


class KNNMemory:
    """The interface the model uses: `write` (queue a segment's keys, values and positions), `flush` (apply the
    queue; every read does it), `search` (top-k slots and scores), `reset` (empty the lanes where a document
    starts), `keys` / `values` / `positions` / `valid` / `fill` (the stored tensors), `tensors` / `load_tensors`
    (checkpoints)."""

    def __init__(self, lanes: int, heads: int, size: int, head_dim: int, buckets: int = 1, device=None,
                 dtype=torch.float32, ivf: tuple[int, int] | None = None):
        """`buckets`: the approximate search's bucket count (storage order); `ivf`: (lists, probe) to keep an
        inverted-file index beside the tensors for `ivf` search (ivf.py; CPU only)."""
        self.size = size  # entries kept per lane and head
        self.buckets = max(1, min(buckets, size))
        self.rows = -(-size // self.buckets)  # slots per bucket
        self.slots = self.buckets * self.rows  # storage slots, >= size
        self._keys = torch.zeros(lanes, heads, self.slots, head_dim, device=device, dtype=dtype)  # [B, H, S, D]
        self._values = torch.zeros(lanes, heads, self.slots, head_dim, device=device, dtype=dtype)  # [B, H, S, D]
        # Document position of each stored token, -1 where the slot is empty.
        self._positions = torch.full((lanes, self.slots), -1, device=device, dtype=torch.long)  # [B, S]
        self._next_entry = torch.zeros(lanes, device=device, dtype=torch.long)  # [B] ring-buffer write pointer
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # writes not yet applied
        self.ivf = None
        if ivf is not None:
            from memorizing.memory.ivf import IVFIndex  # faiss is only loaded when asked for
            if self._keys.device.type != "cpu":
                raise ConfigError("memory.search = 'ivf' runs on CPUs only (faiss-cpu): on a GPU use "
                                  "memory.search = 'bucketed' or 'exact'.")
            self.ivf = IVFIndex(lanes, heads, self.slots, size, head_dim, *ivf)

    # ---- the stored tensors, with every write applied ----------------------------------------------------------
    @property
    def keys(self) -> torch.Tensor:
        """[B, H, S, D]"""
        self.flush()
        return self._keys

    @property
    def values(self) -> torch.Tensor:
        """[B, H, S, D]"""
        self.flush()
        return self._values

    @property
    def positions(self) -> torch.Tensor:
        """[B, S] document position of each slot's token, -1 where empty."""
        self.flush()
        return self._positions

    @property
    def valid(self) -> torch.Tensor:
        """[B, S] True where a slot holds an entry."""
        return self.positions >= 0

    def fill(self) -> torch.Tensor:
        """[B] number of entries held per lane."""
        return self.valid.sum(-1)

    def slot(self, entry: torch.Tensor) -> torch.Tensor:
        """Storage slot of ring entries 0 .. size - 1 (see the module docstring)."""
        return (entry % self.buckets) * self.rows + entry // self.buckets

    def write(self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor) -> None:
        """Append one segment per lane: keys, values [B, H, L, D] and positions [B, L], oldest evicted (applied at
        the next read, see the module docstring)."""
        self._pending.append((keys.detach(), values.detach(), positions))

    @torch.no_grad()
    def flush(self) -> None:
        """Apply the writes held back so far (every read does this itself)."""
        pending, self._pending = self._pending, []
        for keys, values, positions in pending:
            self._store(keys, values, positions)

    def _store(self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor) -> None:
        if keys.shape[2] > self.size:  # a segment longer than the memory: only its newest tokens fit
            keys, values, positions = keys[:, :, -self.size:], values[:, :, -self.size:], positions[:, -self.size:]
        lanes, heads, length, head_dim = keys.shape
        entries = (self._next_entry[:, None] + torch.arange(length, device=keys.device)) % self.size  # [B, L]
        slots = self.slot(entries)  # [B, L]
        index = slots[:, None, :, None].expand(lanes, heads, length, head_dim)  # [B, H, L, D]
        self._keys.scatter_(2, index, keys.to(self._keys.dtype))
        self._values.scatter_(2, index, values.to(self._values.dtype))
        self._positions.scatter_(1, slots, positions)
        self._next_entry = (self._next_entry + length) % self.size
        if self.ivf is not None:
            self.ivf.written(slots, keys.to(self._keys.dtype), self._keys, self.valid)

    @torch.no_grad()
    def reset(self, starting: torch.Tensor) -> None:
        """Clear the memory of the lanes where `starting` [B] (bool) is True, and nothing else."""
        self.flush()
        # On a CPU only the cleared lanes are touched; on a GPU a mask over every lane, as finding the lanes would
        # cost a host round trip.
        cleared = starting.nonzero().squeeze(1) if starting.device.type == "cpu" else None
        for tensor, empty in ((self._keys, 0), (self._values, 0), (self._positions, -1), (self._next_entry, 0)):
            if cleared is not None:
                tensor.index_fill_(0, cleared, empty)
            else:
                tensor.masked_fill_(starting.view(-1, *[1] * (tensor.dim() - 1)), empty)
        if self.ivf is not None:
            self.ivf.reset(starting)

    def search(self, queries: torch.Tensor, k: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k slots for queries [B, H, L, D] -> (slots [B, H, L, k], scores [B, H, L, k]) by `backend`, best
        first; a score is the query . key product, -inf where a lane holds fewer than k entries."""
        self.flush()
        if backend == "ivf":
            if self.ivf is None:
                raise ValueError("this memory keeps no ivf index: create it with ivf=(lists, probe)")
            return self.ivf.search(queries, min(k, self.size))
        return search(queries, self.keys, self.valid, k, backend, self.buckets)

    def tensors(self) -> dict[str, torch.Tensor]:
        self.flush()
        out = {"keys": self._keys, "values": self._values, "positions": self._positions,
               "next_entry": self._next_entry}
        return out | (self.ivf.tensors() if self.ivf is not None else {})

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        own = self.tensors()
        for name, value in tensors.items():
            own[name].copy_(value)
        if self.ivf is not None:
            self.ivf.rebuild(self._keys, self.valid)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())
