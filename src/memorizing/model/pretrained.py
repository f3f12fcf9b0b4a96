"""kNN memory for a pretrained Hugging Face causal LM: the paper's memory branch added to chosen decoder layers.

    model = PretrainedMemorizing.from_source("hf:PATH", config)   # PATH: folder with config.json, or a .gguf file
    state = model.init_state(lanes)                                # empty kNN memories for B lanes
    logits, state = model(tokens, state, reset)                    # tokens [B, L] from model.encode(bytes)

The same contract as our own model (state.py: State, LayerState). The language model stays as transformers
built it; its attention modules run through one attention function registered with transformers
(`attn_implementation = "memorizing"`): local attention is transformers' own sdpa path, and in a memory layer
(memory.layers) the memory branch mixes it with attention over the top-k retrieved (key, value) pairs, reusing
MemoryAttention (memory_attention.py: learned gate, fixed gate or joint softmax, memory position bias) and
KNNMemory (memory/store.py: per lane and head, exact / bucketed / ivf search, reset per lane). No code of the
language model is copied; a small per-family adapter (FAMILIES) says where its decoder layers and attention
modules are and, for rotary families, which projections give the queries and keys before the rotation.

What differs from our own model:
- By default local attention reads the current segment only (model.xl_cache = 0), with positions 0 .. L-1 as
  the pretrained model saw them; everything earlier in the document is reached through memory only. With memory
  disabled, or the gate fixed at 0, the logits are the pretrained model's on each segment. Rotary families can
  also keep the previous segment (model.xl_cache = C, segment_cache.py): a segment after C cached tokens is then
  read as the pretrained model reads [those C tokens ; segment]. GPT-2 cannot (learned absolute positions).
- Memory is per key/value head (with grouped-query attention the query heads of a group search their key/value
  head's memory); the gate and the memory position bias are per memory head.
- Key/query normalisation (memory.qk_norm) applies to the memory branch only: the memory stores L2-normalised
  keys and is searched by normalised queries with a learned per-head scale; local attention stays untouched, so
  the pretrained model is intact. Without it, memory holds raw keys and queries carry the model's own scaling.
- Rotary position embeddings (Llama and relatives): memory stores keys WITHOUT the rotation and is searched with
  unrotated queries (memory.rotary = "unrotated", as Focused Transformer does), so a retrieved key scores by its
  content, not by where it stood; memory.rotary = "rotated" keeps the rotated ones (rotated at the position their
  segment read them at: in the segment, after the XL cache where there is one) instead. GPT-2 has no rotation
  (absolute position embeddings at the input).
- Tokens come from the model's own tokenizer (`encode`), not bytes.
"""

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memorizing.config import HF_PREFIX, Config, ConfigError
from memorizing.errors import UserError
from memorizing.files import PRETRAINED_DIR
from memorizing.model.memory_attention import MemoryAttention
from memorizing.model.segment_cache import SegmentCache, window_positions
from memorizing.model.state import LayerState, State

try:
    import transformers
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
except ImportError:  # the optional extra `hf`
    transformers = None

ATTENTION = "memorizing"  # the attention implementation registered with transformers
INSTALL = "pip install -c constraints.txt -e '.[hf]'"


@dataclass(frozen=True)
class Family:
    """Where a family of transformers models keeps what the memory branch needs."""
    layers: str  # the decoder layers, as an attribute path from the causal LM
    attention: str  # the attention module inside a decoder layer
    query: str = ""  # rotary families: the attention's submodules whose outputs are the queries and keys before
    key: str = ""  # the rotation, [B, L, heads * D] and [B, L, kv_heads * D],
    rotary: str = ""  # and the rotary embedding, (x, position_ids [B, N]) -> (cos, sin) [B, N, D]


LLAMA = Family("model.layers", "self_attn", query="q_proj", key="k_proj", rotary="model.rotary_emb")
FAMILIES = {"gpt2": Family("transformer.h", "attn"), "llama": LLAMA, "mistral": LLAMA, "qwen2": LLAMA}


def _require_transformers(what: str) -> None:
    if transformers is None:
        raise UserError(f"{what} needs the optional extra `hf` (transformers, gguf, accelerate), which is not "
                        f"installed: {INSTALL}")


def submodule(root: nn.Module, path: str) -> nn.Module:
    """The submodule at an attribute path ("model.layers")."""
    for name in path.split("."):
        root = getattr(root, name)
    return root


def family_of(hf_config) -> Family:
    if hf_config.model_type not in FAMILIES:
        raise UserError(f"model type {hf_config.model_type!r} has no memory adapter: supported families are "
                        f"{', '.join(FAMILIES)} (model/pretrained.py, FAMILIES).")
    return FAMILIES[hf_config.model_type]


def shape_of(hf_config) -> dict:
    """The model's shape in our config's terms (model.*), and its key/value heads."""
    heads = hf_config.num_attention_heads
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // heads
    return {"dim": hf_config.hidden_size, "depth": hf_config.num_hidden_layers, "heads": heads,
            "head_dim": head_dim, "vocab_size": hf_config.vocab_size,
            "kv_heads": getattr(hf_config, "num_key_value_heads", None) or heads,
            "positions": getattr(hf_config, "max_position_embeddings", None) or getattr(hf_config, "n_positions",
                                                                                          1 << 30),
            "window": getattr(hf_config, "sliding_window", None)}  # sliding-window attention (Mistral), or None


def shaped_config(config: Config, hf_config) -> Config:
    """A copy of the config with model.* read from the pretrained model (no smeared, convolved or shared keys: its
    queries and keys are its own), but model.xl_cache as set, checked against what the model can do."""
    family = family_of(hf_config)
    config, shape = config.copy(), shape_of(hf_config)
    for key in ("dim", "depth", "heads", "head_dim", "vocab_size"):
        setattr(config.model, key, shape[key])
    config.model.key_smear, config.model.qk_conv, config.memory.shared_qk = False, 0, False
    segment, cache = config.data.segment, config.model.xl_cache
    if cache and not family.rotary:
        rotary = ", ".join(name for name, f in FAMILIES.items() if f.rotary)
        raise ConfigError(f"model.xl_cache = {cache} is not available for {hf_config.model_type!r} models: their "
                          f"positions are learned absolute embeddings added to the input, so a cached key keeps the "
                          f"position it was computed at and cannot stand before the next segment at a consistent "
                          f"position: set model.xl_cache = 0 (earlier tokens are then reached through memory), or "
                          f"start from a model with rotary positions ({rotary}).")
    if segment + cache > shape["positions"]:
        raise ConfigError(f"data.segment = {segment}" + (f" with model.xl_cache = {cache}" if cache else "") +
                          f" spans {segment + cache} positions, more than the pretrained model's "
                          f"{shape['positions']}: lower data.segment" + (" or model.xl_cache." if cache else "."))
    if cache and shape["window"] and segment + cache > shape["window"]:
        raise ConfigError(f"data.segment = {segment} with model.xl_cache = {cache} spans {segment + cache} tokens, "
                          f"more than the pretrained model's sliding attention window of {shape['window']}: lower "
                          f"model.xl_cache to at most {max(0, shape['window'] - segment)}.")
    return config


def derive_config(config: Config, hf_config) -> Config:
    """A config for the pretrained model built from a preset or file (run_config.build_config): model.* read from
    the pretrained model, and no XL cache (local attention reads the segment only) until model.xl_cache is set."""
    config = config.copy()
    config.model.xl_cache = 0
    return shaped_config(config, hf_config)


def check_config(config: Config, hf_config) -> None:
    """Refuse model.* settings the pretrained model does not have (set after its shape was read, e.g. by --set or
    a plan's variant), by name: they would otherwise be silently replaced by the pretrained model's."""
    derived = shaped_config(config, hf_config)
    differ = [f"model.{k} = {v!r} (the pretrained model: {getattr(derived.model, k)!r})"
              for k, v in vars(config.model).items() if getattr(derived.model, k) != v]
    if differ:
        raise ConfigError(f"train.init_from = {config.train.init_from!r}: model.* is the pretrained model's, but "
                          f"{'; '.join(differ)}: drop these settings (or the plan's variants that change them).")


def _split_source(source: str) -> tuple[Path, str | None]:
    """'hf:PATH' -> (folder, gguf file name or None), refused with what to pass instead."""
    path = Path(source.removeprefix(HF_PREFIX)).expanduser()
    what = f"train.init_from = {source!r}"
    if path.is_file() and path.suffix == ".gguf":
        if importlib.util.find_spec("gguf") is None:
            raise UserError(f"{what}: reading a .gguf file needs the package gguf: {INSTALL}")
        return path.parent, path.name
    if path.is_dir() and (path / "config.json").is_file():
        return path, None
    problem = ("no such file or folder" if not path.exists() else
               "the folder holds no config.json" if path.is_dir() else "not a .gguf file")
    raise UserError(f"{what}: {problem}: give hf: and a folder with config.json and safetensors weights (as "
                    f"save_pretrained writes it) or a .gguf file.")


def source_config(source: str):
    """The transformers config of 'hf:PATH' (the architecture only; no weights are read)."""
    _require_transformers(f"train.init_from = {source!r}")
    folder, gguf = _split_source(source)
    try:
        return transformers.AutoConfig.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
    except Exception as e:  # transformers raises many kinds on a broken or foreign file
        raise UserError(f"train.init_from = {source!r}: cannot read the model's config ({type(e).__name__}: {e}): "
                        f"check that the file is a complete model.") from None


def load_source(source: str):
    """The causal LM (fp32) and tokenizer of 'hf:PATH'."""
    _require_transformers(f"train.init_from = {source!r}")
    folder, gguf = _split_source(source)
    try:
        lm = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32,
                                                               local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
    except Exception as e:
        raise UserError(f"train.init_from = {source!r}: cannot load the model or its tokenizer ({type(e).__name__}: "
                        f"{e}): the folder needs config.json, safetensors weights and tokenizer files.") from None
    return lm, tokenizer


# ---- the attention function transformers calls in every layer ----------------------------------------------
def memorizing_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention interface: query [B, H, L, D], key/value [B, Hkv, L, D] (rotated where the family
    rotates) -> ([B, L, H, D], weights or None). Local attention is transformers' sdpa, over [XL cache ; segment]
    where the layer keeps one (segment_cache.py); a memory layer mixes in its memory branch."""
    keys, values, allowed = key, value, None  # allowed [B, 1, L, C + L] (True: may attend); None: the segment's
    cache = getattr(module, "segment_cache", None)
    if cache is not None:
        keys, values, allowed = cache.extend(key, value)
        attention_mask = allowed
    local, weights = sdpa_attention_forward(module, query, keys, values, attention_mask, scaling=scaling,
                                            dropout=dropout, **kwargs)
    branch = getattr(module, "memorizing", None)
    if branch is None:
        return local, weights
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return branch(query, key, value, local, scale, keys, allowed), None


if transformers is not None:
    AttentionInterface.register(ATTENTION, memorizing_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the masks sdpa gets


class MemoryBranch(nn.Module):
    """The memory branch of one decoder layer, kept as the submodule `memorizing` of its attention module.

    The model binds it to the layer's state before each forward (bind); the attention function then calls it
    with the layer's queries, keys and values and the local attention output."""

    def __init__(self, config: Config, attention: nn.Module, family: Family, kv_heads: int):
        super().__init__()
        mem, head_dim = config.memory, config.model.head_dim
        memory_config = config.copy()
        memory_config.model.heads = kv_heads  # memory, gate and memory position bias per key/value head
        self.memory = MemoryAttention(memory_config)
        self.qk_norm = mem.qk_norm
        if self.qk_norm:  # learned per-head temperature, starting at the usual 1/sqrt(D) scale of unit vectors
            self.log_scale = nn.Parameter(torch.full((kv_heads,), math.log(math.sqrt(head_dim))))
        self.unrotated = bool(family.query) and mem.rotary == "unrotated"
        self.captured = {}  # the queries and keys before the rotation, [B, L, H * D] / [B, L, Hkv * D]
        if self.unrotated:
            for name, module in (("query", getattr(attention, family.query)), ("key", getattr(attention, family.key))):
                module.register_forward_hook(lambda _, __, out, name=name: self.captured.__setitem__(name, out))
        self.layer_state, self.query_pos, self.remember = None, None, True

    def bind(self, layer_state: LayerState, query_pos: torch.Tensor, remember: bool) -> None:
        """The layer's state and the segment's document positions [B, L] for the next forward."""
        self.layer_state, self.query_pos, self.remember = layer_state, query_pos, remember

    def forward(self, query, key, value, local, scaling: float, keys, allowed) -> torch.Tensor:
        """query [B, H, L, D], key/value [B, Hkv, L, D] of the segment, local [B, L, H, D] -> [B, L, H, D]; keys
        [B, Hkv, K, D] and allowed [B, 1, L, K] (or None: causal, K = L) are what local attention read."""
        lanes, heads, length, head_dim = query.shape
        kv_heads = key.shape[1]
        group = heads // kv_heads  # query heads per key/value head
        captured, self.captured = self.captured, {}
        if self.unrotated:
            q = captured["query"].view(lanes, length, heads, head_dim).transpose(1, 2)  # [B, H, L, D]
            k = captured["key"].view(lanes, length, kv_heads, head_dim).transpose(1, 2)  # [B, Hkv, L, D]
        else:
            q, k = query, key
        k = F.normalize(k, dim=-1) if self.qk_norm else k
        if self.memory.searched:
            # Query head h searches the memory of key/value head h // group: its queries join that head's row.
            grouped = lambda t: t.reshape(lanes, kv_heads, group * length, head_dim)  # [B, H, L, D] -> [B, Hkv, G*L, D]
            if self.qk_norm:
                q = F.normalize(grouped(q), dim=-1) * self.log_scale.exp()[:, None, None]
            else:
                q = grouped(q) * scaling
            local_lse = None
            if self.memory.combine == "joint":  # the joint softmax needs the local log-sum-exp, [B, H, L]
                logits = query @ keys.repeat_interleave(group, 1).transpose(-1, -2) * scaling  # [B, H, L, K]
                if allowed is None:
                    allowed = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()  # [L, L]
                local_lse = logits.masked_fill(~allowed, float("-inf")).logsumexp(-1).reshape(lanes, kv_heads, -1)
            out = self.memory(q, self.layer_state.memory, self.query_pos.repeat(1, group),
                              grouped(local.transpose(1, 2)), local_lse)  # [B, Hkv, G*L, D]
            local = out.reshape(lanes, heads, length, head_dim).transpose(1, 2)
        if self.remember:  # written after the segment has attended, so no token retrieves itself
            self.layer_state.memory.write(k, value, self.query_pos)
        return local


class PretrainedMemorizing(nn.Module):
    """A transformers causal LM with the kNN memory branch in the decoder layers memory.layers names."""

    def __init__(self, config: Config, lm, tokenizer):
        super().__init__()
        _require_transformers("a pretrained model with memory")
        # settings that change how queries and keys are made, set after the pretrained shape was read (--set):
        # refused, not dropped
        for key, value, off in (("model.key_smear", config.model.key_smear, "false"),
                                ("model.qk_conv", config.model.qk_conv, "0"),
                                ("memory.shared_qk", config.memory.shared_qk, "false")):
            if value:
                raise ConfigError(f"{key} = {str(value).lower()} is not available with a pretrained model "
                                  f"(train.init_from = 'hf:...'): its queries and keys are its own; set {key} = {off}.")
        self.family = family_of(lm.config)
        self.config = shaped_config(config, lm.config).validate()
        self.shape = shape_of(lm.config)
        self.lm, self.tokenizer = lm, tokenizer
        self.tokenizer.model_max_length = 1 << 62  # documents are read segment by segment: no length warning
        lm.set_attn_implementation(ATTENTION)
        lm.config.use_cache = False
        self.memory_layers = self.config.memory_layers()
        self.branches = {}  # layer -> MemoryBranch (registered as a submodule of that layer's attention)
        for i in self.memory_layers:
            attention = self.attention(i)
            attention.memorizing = MemoryBranch(self.config, attention, self.family, self.shape["kv_heads"])
            self.branches[i] = attention.memorizing
        self.caches = {}  # layer -> SegmentCache, in every layer with model.xl_cache
        for i in range(self.config.model.depth):
            attention = self.attention(i)
            if getattr(attention, "segment_cache", None) is not None:  # the LM was wrapped before (benchmarks)
                attention.segment_cache.close()
            attention.segment_cache = None
            if self.config.model.xl_cache:
                attention.segment_cache = self.caches[i] = SegmentCache(attention, self.family.key)
        self.train()

    @classmethod
    def from_source(cls, source: str, config: Config) -> "PretrainedMemorizing":
        """The model at 'hf:PATH' with its pretrained weights; the memory branch starts from its initialisation.
        model.* is the pretrained model's except model.xl_cache, taken from `config` (derive_config sets it to 0)."""
        lm, tokenizer = load_source(source)
        return cls(config, lm, tokenizer)

    def attention(self, layer: int) -> nn.Module:
        """The attention module of decoder layer `layer` (0-based)."""
        return getattr(submodule(self.lm, self.family.layers)[layer], self.family.attention)

    def attention_prefix(self, layer: int) -> str:
        """The parameter-name prefix of a layer's attention (its memory branch included), for train.freeze."""
        return f"lm.{self.family.layers}.{layer}.{self.family.attention}."

    def memory_attentions(self) -> list[MemoryAttention]:
        return [self.branches[i].memory for i in self.memory_layers]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, data: bytes) -> np.ndarray:
        """A document's bytes -> token ids [N] by the model's tokenizer (no special tokens added)."""
        ids = self.tokenizer(data.decode("utf-8", errors="replace"), add_special_tokens=False)["input_ids"]
        return np.asarray(ids, dtype=np.int64)

    def decode(self, ids) -> bytes:
        return self.tokenizer.decode(list(ids)).encode()

    def init_state(self, lanes: int) -> State:
        return State.empty(self.config, lanes, self.memory_layers, self.shape["kv_heads"], self.shape["head_dim"],
                           cache_size=self.config.model.xl_cache, like=next(self.parameters()))

    def forward(self, tokens: torch.Tensor, state: State, reset: torch.Tensor | None = None,
                remember: bool = True) -> tuple[torch.Tensor, State]:
        """tokens [B, L] -> logits [B, L, vocab]. Lanes with reset [B] True start a new document first.
        With remember=False the segment is read but not remembered."""
        if reset is not None and (reset.device.type != "cpu" or bool(reset.any())):
            state.reset(reset)
        length = tokens.shape[1]
        query_pos = state.position[:, None] + torch.arange(length, device=tokens.device)  # [B, L] in the document
        for i, branch in self.branches.items():
            branch.bind(state.layers[i], query_pos, remember)
        positions = None  # the model's positions of the segment: 0 .. L-1 without an XL cache
        if self.caches:  # after the filled cache slots, which every layer has alike (segment_cache.py)
            filled = state.layers[0].cache[2].sum(-1)  # [B]
            slots, positions = window_positions(filled, self.config.model.xl_cache, length)  # [B, C], [B, L]
            weight = self.lm.get_input_embeddings().weight  # its dtype and device for cos and sin
            rotary = submodule(self.lm, self.family.rotary)(weight, position_ids=slots)  # (cos, sin) [B, C, D]
            for i, cache in self.caches.items():
                cache.bind(state.layers[i], rotary, remember)
        logits = self.lm(input_ids=tokens, position_ids=positions, use_cache=False).logits  # [B, L, vocab]
        if remember:
            state.position = state.position + length
        return logits, state

    def gates(self) -> dict[int, list[float]]:
        """Memory weight per memory head for each memory layer (1-based layer number)."""
        return {i + 1: self.branches[i].memory.reported_gate().tolist() for i in self.memory_layers}

    # ---- a run folder: config.toml and model.safetensors (save_model), and the architecture beside them -------
    def save_architecture(self, folder: str | Path) -> None:
        """The language model's config.json and tokenizer, so that load_model needs no other file."""
        target = Path(folder) / PRETRAINED_DIR
        self.lm.config.save_pretrained(target)
        self.tokenizer.save_pretrained(target)


def saved_architecture(folder: str | Path, config: Config) -> PretrainedMemorizing:
    """The model a run folder saved, built from its architecture (PRETRAINED_DIR) with fresh weights: load_model
    (transformer.py) then reads model.safetensors into it."""
    _require_transformers(f"the run in {folder} (train.init_from = {config.train.init_from!r})")
    target = Path(folder) / PRETRAINED_DIR
    try:
        hf_config = transformers.AutoConfig.from_pretrained(target, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(target, local_files_only=True)
    except Exception as e:
        raise UserError(f"{target} does not hold the pretrained model's config.json and tokenizer ({type(e).__name__}:"
                        f" {e}): retrain the run, or restore the folder.") from None
    lm = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    return PretrainedMemorizing(config, lm, tokenizer)
