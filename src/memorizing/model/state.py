"""What a model carries from one segment to the next, per lane: document positions, and per layer the
Transformer-XL cache, the last key before smearing, the last raw queries and keys (model.qk_conv) and the kNN
memory. `State.reset` is where a new document
clears a lane; `LayerState.write` is where a segment is remembered; `tensors` / `load_tensors` are checkpoints.
Our model (transformer.py) and pretrained models with memory (pretrained.py) share it."""

import torch

from memorizing.config import Config
from memorizing.errors import UserError
from memorizing.memory.store import KNNMemory


class LayerState:
    """One layer's recurrent state for B lanes: the XL cache (last C keys/values), the last token's key before
    smearing (model.key_smear), the raw queries and keys of the last tokens, which the next segment's first
    queries and keys mix in (model.qk_conv), and, if any, the kNN memory."""

    def __init__(self, *, lanes: int, heads: int, head_dim: int, cache_size: int, memory_size: int, buckets: int,
                 ivf: tuple[int, int] | None, device, dtype, conv_width: int = 0):
        """cache_size: XL cache tokens (0 = none); memory_size: kNN memory entries (0 = no memory in this layer);
        buckets, ivf: the memory's search structures (KNNMemory); conv_width: model.qk_conv (0 = none)."""
        self.cache_size = cache_size
        self.cache = (torch.zeros(lanes, heads, cache_size, head_dim, device=device, dtype=dtype),  # keys
                      torch.zeros(lanes, heads, cache_size, head_dim, device=device, dtype=dtype),  # values
                      torch.zeros(lanes, cache_size, device=device, dtype=torch.bool))  # [B, C] valid
        self.last_key = torch.zeros(lanes, heads, head_dim, device=device, dtype=dtype)  # [B, H, D]; 0: none yet
        # [B, 2 (queries, keys), H, conv_width - 1, D]; 0: no token before the document's first
        self.recent = torch.zeros(lanes, 2, heads, max(conv_width - 1, 0), head_dim, device=device, dtype=dtype)
        self.memory = (KNNMemory(lanes, heads, memory_size, head_dim, buckets, device, dtype, ivf) if memory_size
                       else None)

    def write(self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
               last_key: torch.Tensor, recent: torch.Tensor | None = None) -> None:
        """Remember a segment's keys/values [B, H, L, D] (detached) at document positions [B, L], its last
        token's key before smearing [B, H, D], and (with model.qk_conv) its last tokens' raw queries and keys."""
        self.last_key = last_key.detach()
        if recent is not None:
            self.recent = recent.detach()
        self.write_cache(keys, values)
        if self.memory is not None:
            self.memory.write(keys, values, positions)

    def write_cache(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Keep the last cache_size of [cache ; segment keys/values [B, H, L, D]] (detached). Filled slots are
        always the last ones: a cache cleared by `reset` fills from its end."""
        if not self.cache_size:
            return
        cache_k, cache_v, valid = self.cache
        now_valid = torch.ones(keys.shape[0], keys.shape[2], dtype=torch.bool, device=keys.device)  # [B, L]
        if keys.shape[2] >= self.cache_size:  # the segment alone fills the cache
            self.cache = (keys.detach()[:, :, -self.cache_size:], values.detach()[:, :, -self.cache_size:],
                          now_valid[:, -self.cache_size:])
        else:
            self.cache = (torch.cat([cache_k, keys.detach()], 2)[:, :, -self.cache_size:],
                          torch.cat([cache_v, values.detach()], 2)[:, :, -self.cache_size:],
                          torch.cat([valid, now_valid], 1)[:, -self.cache_size:])

    def reset(self, starting: torch.Tensor, memory: bool = True) -> None:
        """Clear the XL cache of the lanes where `starting` [B] is True, and their kNN memory if `memory`."""
        self.cache = tuple(t.masked_fill(starting.view(-1, *[1] * (t.dim() - 1)), 0) for t in self.cache)
        self.last_key = self.last_key.masked_fill(starting.view(-1, 1, 1), 0)
        self.recent = self.recent.masked_fill(starting.view(-1, 1, 1, 1, 1), 0)
        if self.memory is not None and memory:
            self.memory.reset(starting)


class State:
    """What the model carries between segments, per lane: document position, XL caches, kNN memories."""

    def __init__(self, layers: list[LayerState], lanes: int, device, reset_memory: bool = True):
        self.layers = layers
        # [B] tokens read of the document; with reset_memory False, of the lane's stream, as memory spans documents
        self.position = torch.zeros(lanes, dtype=torch.long, device=device)
        self.reset_memory = reset_memory

    @classmethod
    def empty(cls, config: Config, lanes: int, memory_layers: list[int], heads: int, head_dim: int,
              cache_size: int, like: torch.Tensor) -> "State":
        """An empty state for `lanes` lanes of a model of config.model.depth layers, each with an XL cache of
        `cache_size` tokens and, in `memory_layers`, a kNN memory as memory.* describes (`heads` key/value heads
        of `head_dim`), on the device and dtype of `like`."""
        mem = config.memory
        buckets = mem.top_k * mem.search_buckets  # the approximate search's buckets (KNNMemory: storage order)
        ivf = (mem.ivf_lists, mem.ivf_probe) if mem.search == "ivf" else None
        layers = [LayerState(lanes=lanes, heads=heads, head_dim=head_dim, cache_size=cache_size,
                             memory_size=mem.size if i in memory_layers else 0, buckets=buckets, ivf=ivf,
                             device=like.device, dtype=like.dtype, conv_width=config.model.qk_conv)
                  for i in range(config.model.depth)]
        return cls(layers, lanes, like.device, reset_memory=mem.reset)

    def reset(self, starting: torch.Tensor) -> None:
        """A new document starts in the lanes where `starting` [B] (bool) is True: clear their XL caches and (unless
        memory.reset is off) their memories and positions, and nothing else."""
        if self.reset_memory:
            self.position = self.position.masked_fill(starting, 0)
        for layer in self.layers:
            layer.reset(starting, memory=self.reset_memory)

    def memories(self) -> list[KNNMemory]:
        return [layer.memory for layer in self.layers if layer.memory is not None]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything in the state as named tensors (for checkpoints)."""
        out = {"position": self.position}
        for i, layer in enumerate(self.layers):
            for name, t in zip(("cache_keys", "cache_values", "cache_valid"), layer.cache):
                out[f"layer{i}.{name}"] = t
            out[f"layer{i}.last_key"] = layer.last_key
            out[f"layer{i}.recent"] = layer.recent
            if layer.memory is not None:
                out.update({f"layer{i}.memory.{k}": t for k, t in layer.memory.tensors().items()})
        return {k: v.contiguous() for k, v in out.items()}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.position = tensors["position"].clone()
        for i, layer in enumerate(self.layers):
            layer.cache = tuple(tensors[f"layer{i}.{n}"].clone()
                                for n in ("cache_keys", "cache_values", "cache_valid"))
            if f"layer{i}.last_key" not in tensors:
                raise UserError("this checkpoint's state predates smeared keys (no last_key): retrain the run, "
                                "or evaluate its model.safetensors without --resume.")
            layer.last_key = tensors[f"layer{i}.last_key"].clone()
            if f"layer{i}.recent" in tensors:  # absent from checkpoints that predate model.qk_conv (then off)
                layer.recent = tensors[f"layer{i}.recent"].clone()
            if layer.memory is not None:
                prefix = f"layer{i}.memory."
                layer.memory.load_tensors({k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)})
