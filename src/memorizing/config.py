"""Configuration as data: every knob a plan can ablate is a field here.

A run is fully described by a `Config` (four sections: model, memory, data, train) plus nothing else.
Configs load from and save to TOML, take `--set section.key=value` overrides, and validate themselves with
errors that name the key, the value and what is allowed.
"""

import dataclasses
import difflib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from memorizing.errors import UserError

HF_PREFIX = "hf:"  # train.init_from = "hf:PATH": a pretrained Hugging Face model (model/pretrained.py)


def is_pretrained(init_from: str | None) -> bool:
    """Whether train.init_from (or --init-from) names a pretrained Hugging Face model."""
    return bool(init_from) and init_from.startswith(HF_PREFIX)

SEARCH_BACKENDS = ("exact", "bucketed", "ivf")
COMBINE_MODES = ("gate", "fixed", "joint")
POSITION_BIASES = ("none", "t5-relative", "learned-absolute")
ROTARY_MODES = ("unrotated", "rotated")


class ConfigError(UserError):
    """An invalid configuration value; the message names the key, the value and the allowed values."""


@dataclass
class ModelConfig:
    dim: int = 256  # d_model
    depth: int = 6  # number of transformer blocks
    heads: int = 4
    head_dim: int = 64
    vocab_size: int = 256  # bytes
    ffn_mult: int = 4  # FFN width = ffn_mult * dim
    xl_cache: int = 256  # tokens of the previous segment kept per layer (Transformer-XL); 0 = off
    # L2-normalised queries and keys with a learned per-head scale in every layer that is not a memory layer (the
    # authors' code does this in all layers); memory layers follow memory.qk_norm.
    qk_norm: bool = True
    bias_buckets: int = 32  # T5 relative position buckets for local attention
    bias_max_distance: int = 128  # distance at which the last T5 bucket starts
    # Position-bias tables (local and memory) are stored in units of 1 / bias_scale, so that under Adam they learn
    # bias_scale times faster than the weights (position.py); 1 = plain units.
    bias_scale: float = 64.0
    # Smeared keys (Olsson et al. 2022, "In-context learning and induction heads"): each key is mixed, with a
    # learned per-head weight, with the key of the token before it. A lookup by content ("what followed this name
    # before?") needs keys that carry the previous token; without the smear, lower layers must first learn to
    # move it there, which small models on a CPU budget do not (README: "What it takes for memory to retrieve").
    # Off in the paper's preset; memory stores the smeared keys.
    key_smear: bool = False
    # Queries and keys over the last qk_conv tokens (0 = off), for lookups keyed by more than one token: each head's
    # query and key become a learned per-channel mix of the raw queries and keys of the last tokens (Primer's
    # depthwise convolution, So et al. 2021), started as a lookup of what followed the same context: a query weighs
    # its token 1 and each token further back half as much, a key the same over the tokens before it (its own at
    # 0), and the keys' projection starts as the queries', so the query at a context matches the stored key of the
    # token that followed the same context from the first step. 2 mixes in one token before, as the smear does; a
    # recalled 4-digit value needs 3 or more (README: "What it takes for memory to retrieve"). Memory stores the
    # mixed keys.
    qk_conv: int = 0


@dataclass
class MemoryConfig:
    enabled: bool = True
    # 1-based layer numbers, "auto" (the paper's placement: layer 9 of 12, i.e. three quarters of the depth),
    # or "last".
    layers: list[int] | str = "auto"
    size: int = 8192  # ring-buffer entries per lane and head
    top_k: int = 32
    combine: str = "gate"  # gate | fixed | joint
    gate: float | None = None  # the fixed gate value for combine = "fixed" (0 = local only, 1 = memory only)
    gate_init: float = 0.5  # where the learned gate starts (the paper: sigmoid(0) = 0.5); in (0, 1)
    # The learned gate's logit is stored in units of 1 / gate_scale, so that under Adam it moves about
    # gate_scale x lr per step: with 8 and lr 5e-3 it can cross its range (a few units) within a few hundred
    # steps, as a 300-step fine-tune needs, but not within the first tens, while memory is still noise.
    gate_scale: float = 8.0
    qk_norm: bool = True  # L2-normalised queries and keys with a learned per-head scale
    # Keys are the queries in the memory layers (one projection, as Reformer's shared-QK attention; also with memory
    # disabled), before the smear or model.qk_conv gives them the tokens before: the query at a context then
    # matches the stored keys of the same context by construction, which training on local attention cannot
    # unlearn. Off in the paper (README: "What it takes for memory to retrieve").
    shared_qk: bool = False
    # exact | bucketed (TPU-style approximate top-k, as in the paper) | ivf (inverted-file index, CPUs, faiss)
    search: str = "bucketed"
    search_buckets: int = 4  # bucketed: buckets per wanted neighbour (more = higher recall, slower)
    ivf_lists: int = 0  # ivf: centroids per lane and head (0 = the power of two nearest 4 sqrt(size))
    ivf_probe: int = 0  # ivf: lists scanned per query (more = higher recall, slower; 0 = 8, or lists / 64 if more)
    position_bias: str = "none"  # none (the paper) | t5-relative | learned-absolute
    bias_buckets: int = 32  # buckets of the memory position bias
    reset: bool = True  # clear a lane's memory when a new document starts in it (the paper); false keeps it
    # Pretrained models with rotary position embeddings (model/pretrained.py): memory keeps keys and is searched
    # by queries before the rotation (unrotated, as Focused Transformer does), or after it (rotated).
    rotary: str = "unrotated"


@dataclass
class DataConfig:
    corpus: str = "python-stdlib"
    lanes: int = 8  # batch lanes, each streaming its own documents
    segment: int = 256  # tokens per segment (the local context)
    min_document: int = 0  # drop documents shorter than this many bytes (0 = keep all)
    # Seed of the training data order; -1 follows train.seed. Fixing it makes seeds vary only the
    # initialisation, which removes the spread that comes from which documents a short run happens to read.
    order_seed: int = -1
    # Held-out documents: those of at least eval_min_length bytes, in an order shuffled by a fixed seed, each cut
    # to its first eval_length bytes (0 = whole), until eval_tokens tokens (0 = all of them).
    eval_tokens: int = 0
    eval_length: int = 0
    eval_min_length: int = 0
    # The synthetic `recall` corpus.
    recall_documents: int = 256
    recall_length: int = 16384  # bytes per document (16 KB: long enough for the cpu preset's test documents)
    recall_pairs: int = 8  # name=value pairs bound at the start of each document
    recall_distance: int = 1024  # bytes between the bindings and the first question
    recall_name_length: int = 4  # capital letters per name; with 1, the letter alone keys the lookup
    recall_filler: int = 16  # at most this many filler bytes between two questions (at least a quarter of it)


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    eval_every: int = 0  # validation every this many steps (0 = off), on an eighth of data.eval_tokens
    tensorboard: bool = False  # also write the curves as TensorBoard events to RUN_DIR/tensorboard (extra: tensorboard)
    # Stop once this many seconds of training steps are spent (0 = off; train.steps stays the schedule's length and
    # the limit); the step it stopped at is recorded (train.json "steps", checkpoint "budget_step").
    time_budget: float = 0.0
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto (cuda when available, else cpu), cpu, cuda, cuda:N
    precision: str = "fp32"  # fp32, or bf16 (autocast; for GPUs)
    # Start from the weights of a finished run (its folder); the memory branch may be new (model/warm_start.py).
    # "hf:PATH": a pretrained Hugging Face causal LM (a folder with config.json, or a .gguf file) with the memory
    # branch added (model/pretrained.py); model.* is then read from it.
    init_from: str = ""
    freeze: str = "none"  # none (everything trains) | trunk (only the memory layers' attention and memory branch)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- derived values -------------------------------------------------------------------------------
    def device(self) -> str:
        """The torch device to train and evaluate on."""
        if self.train.device == "auto":
            import torch
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.train.device

    def qk_norm(self, layer: int) -> bool:
        """Whether block `layer` (0-based) normalises its queries and keys."""
        return self.memory.qk_norm if layer in self.memory_placement() else self.model.qk_norm

    def shared_qk(self, layer: int) -> bool:
        """Whether block `layer` (0-based) uses its queries as keys: memory.shared_qk, in the blocks memory.layers
        names, with memory enabled or not (so that removing the memory changes nothing else)."""
        return self.memory.shared_qk and layer in self.memory_placement()

    def memory_searched(self) -> bool:
        """Whether memory layers search their memory: not without memory, nor with the gate fixed at 0."""
        mem = self.memory
        return mem.enabled and not (mem.combine == "fixed" and mem.gate == 0)

    def memory_layers(self) -> list[int]:
        """The 0-based indices of the blocks that carry kNN memory (empty when memory is disabled)."""
        return self.memory_placement() if self.memory.enabled else []

    def memory_placement(self) -> list[int]:
        """The 0-based indices of the blocks that memory.layers names, whether or not memory is enabled: with
        memory disabled they are the same blocks without the memory branch (and keep memory.qk_norm)."""
        depth, layers = self.model.depth, self.memory.layers
        if layers == "auto":
            return [max(0, round(0.75 * depth) - 1)]
        if layers == "last":
            return [depth - 1]
        return sorted({n - 1 for n in layers})

    # ---- validation -----------------------------------------------------------------------------------
    def validate(self) -> "Config":
        m, mem, d, t = self.model, self.memory, self.data, self.train
        for key, value in [("model.dim", m.dim), ("model.depth", m.depth), ("model.heads", m.heads),
                           ("model.head_dim", m.head_dim), ("model.vocab_size", m.vocab_size),
                           ("model.ffn_mult", m.ffn_mult), ("model.bias_buckets", m.bias_buckets),
                           ("model.bias_max_distance", m.bias_max_distance), ("memory.size", mem.size),
                           ("memory.top_k", mem.top_k), ("memory.search_buckets", mem.search_buckets),
                           ("memory.bias_buckets", mem.bias_buckets),
                           ("data.lanes", d.lanes), ("data.segment", d.segment),
                           ("data.recall_documents", d.recall_documents), ("data.recall_length", d.recall_length),
                           ("data.recall_pairs", d.recall_pairs), ("data.recall_name_length", d.recall_name_length),
                           ("train.steps", t.steps),
                           ("train.checkpoint_every", t.checkpoint_every), ("train.log_every", t.log_every)]:
            if value < 1:
                raise ConfigError(f"{key} = {value!r} is invalid: it must be a positive integer.")
        if d.recall_pairs > 26 ** d.recall_name_length:
            raise ConfigError(f"data.recall_pairs = {d.recall_pairs} is invalid with data.recall_name_length = "
                              f"{d.recall_name_length}: there are only {26 ** d.recall_name_length} distinct names; "
                              f"lower the pairs or lengthen the names.")
        if d.order_seed < -1:
            raise ConfigError(f"data.order_seed = {d.order_seed} is invalid: use -1 (follow train.seed) or a seed "
                              ">= 0.")
        for key, value in [("model.xl_cache", m.xl_cache), ("memory.ivf_lists", mem.ivf_lists),
                           ("memory.ivf_probe", mem.ivf_probe),
                           ("data.min_document", d.min_document),
                           ("data.eval_tokens", d.eval_tokens), ("data.eval_length", d.eval_length),
                           ("data.eval_min_length", d.eval_min_length), ("data.recall_distance", d.recall_distance),
                           ("data.recall_filler", d.recall_filler),
                           ("train.warmup", t.warmup), ("train.seed", t.seed), ("train.eval_every", t.eval_every)]:
            if value < 0:
                raise ConfigError(f"{key} = {value!r} is invalid: it must be zero or a positive integer.")
        if not m.bias_scale > 0:
            raise ConfigError(f"model.bias_scale = {m.bias_scale!r} is invalid: it must be a number > 0 (1 = plain "
                              f"units).")
        for key, value in [("train.lr", t.lr), ("train.weight_decay", t.weight_decay),
                           ("train.time_budget", t.time_budget),
                           ("train.grad_clip", t.grad_clip)]:
            if not value >= 0:
                raise ConfigError(f"{key} = {value!r} is invalid: it must be a number >= 0.")
        if m.qk_conv < 0 or m.qk_conv == 1:
            raise ConfigError(f"model.qk_conv = {m.qk_conv!r} is invalid: it is the number of tokens each key mixes "
                              f"(2 or more; 3 for multi-token lookups), or 0 for off.")
        if mem.shared_qk and not (m.qk_conv or m.key_smear):
            raise ConfigError("memory.shared_qk = true needs model.qk_conv (or model.key_smear): with keys that are "
                              "the queries of the same token, a query finds its own token again, not what followed "
                              "it; set model.qk_conv = 8 (or 3), or memory.shared_qk = false.")
        if m.qk_conv and m.key_smear:
            raise ConfigError(f"model.qk_conv = {m.qk_conv} and model.key_smear = true together are refused: both mix "
                              f"earlier tokens into the keys, and qk_conv includes the smear; set one of them.")
        if m.xl_cache > d.segment:
            raise ConfigError(f"model.xl_cache = {m.xl_cache} is invalid: the cache keeps tokens of the previous "
                              f"segment, so it can be at most data.segment = {d.segment}.")
        _choice("train.precision", t.precision, ("fp32", "bf16"))
        _choice("train.freeze", t.freeze, ("none", "trunk"))
        if not mem.gate_scale > 0:
            raise ConfigError(f"memory.gate_scale = {mem.gate_scale!r} is invalid: it must be a number > 0 (1 = plain "
                              f"units).")
        if not 0.0 < mem.gate_init < 1.0:
            raise ConfigError(f"memory.gate_init = {mem.gate_init!r} is invalid: the learned gate starts at a value "
                              f"strictly between 0 and 1 (a fixed gate is memory.combine = 'fixed').")
        if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
            raise ConfigError(f"train.device = {t.device!r} is invalid: allowed values are 'auto', 'cpu', 'cuda' "
                              f"or 'cuda:N'.")
        _choice("memory.combine", mem.combine, COMBINE_MODES)
        _choice("memory.search", mem.search, SEARCH_BACKENDS)
        _choice("memory.position_bias", mem.position_bias, POSITION_BIASES)
        _choice("memory.rotary", mem.rotary, ROTARY_MODES)
        if mem.combine == "fixed":
            if mem.gate is None:
                raise ConfigError("memory.combine = 'fixed' needs memory.gate: set memory.gate to a value in "
                                  "[0, 1] (0 = local attention only, 1 = memory only).")
        if mem.gate is not None and not 0.0 <= mem.gate <= 1.0:
            raise ConfigError(f"memory.gate = {mem.gate!r} is invalid: allowed values are numbers in [0, 1].")
        if isinstance(mem.layers, str):
            _choice("memory.layers", mem.layers, ("auto", "last"), extra="or a list of 1-based layer numbers")
        else:
            if not mem.layers:
                raise ConfigError("memory.layers = [] is invalid: name at least one layer, or set "
                                  "memory.enabled = false.")
            for n in mem.layers:
                if not 1 <= n <= m.depth:
                    raise ConfigError(f"memory.layers = {mem.layers!r} is invalid: layer {n} is out of range; "
                                      f"allowed are 1..{m.depth} (model.depth), 'auto' or 'last'.")
        return self

    # ---- (de)serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        def clean(obj):  # TOML has no null: leave out unset optional values
            return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}
        return {name: clean(getattr(self, name)) for name in SECTIONS}

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "Config":
        return cls().update(data, source).validate()

    def update(self, data: dict, source: str = "config") -> "Config":
        """Set every `[section] key = value` of `data` (parsed TOML); validation is left to the caller."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table of sections {list(SECTIONS)}, got {type(data).__name__}.")
        for section, values in data.items():
            if section not in SECTIONS:
                raise ConfigError(f"{source}: unknown section [{section}]; allowed sections are "
                                  f"{', '.join(SECTIONS)}.")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{section}] must be a table of key = value pairs.")
            for key, value in values.items():
                try:
                    self.set(f"{section}.{key}", value)
                except ConfigError as e:
                    raise ConfigError(f"{source}: {e}") from None
        return self

    @staticmethod
    def read_toml(path: str | Path) -> dict:
        path = Path(path)
        try:
            return tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist: check the path.") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as e:
            raise ConfigError(f"config file {path} is not valid TOML ({e}): fix the file.") from None

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        return cls.from_dict(cls.read_toml(path), source=str(path))

    # ---- overrides ------------------------------------------------------------------------------------
    def set(self, dotted: str, value) -> None:
        """Set `section.key` to `value`; a string value is parsed to the field's type."""
        section_name, _, key = dotted.partition(".")
        if section_name not in SECTIONS or not key:
            raise ConfigError(f"unknown config key {dotted!r}; keys look like section.key with a section in "
                              f"{', '.join(SECTIONS)}{_suggest(dotted)}.")
        section = getattr(self, section_name)
        hints = typing.get_type_hints(type(section))
        if key not in hints:
            raise ConfigError(f"unknown config key {dotted!r}{_suggest(dotted)}.")
        setattr(section, key, _coerce(dotted, value, hints[key]))

    def override(self, assignments: list[str]) -> "Config":
        """Apply `key=value` strings (the command line's --set) and validate."""
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r} is invalid: write it as section.key=value, "
                                  f"for example memory.size=4096.")
            self.set(key.strip(), value.strip())
        return self.validate()

    def copy(self) -> "Config":
        return Config.from_dict(self.to_dict())


SECTIONS = {"model": ModelConfig, "memory": MemoryConfig, "data": DataConfig, "train": TrainConfig}


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _suggest(dotted: str) -> str:
    close = difflib.get_close_matches(dotted, all_keys(), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(close)}?" if close else "; see `memorizing keys` for all keys"


def _choice(key: str, value, allowed, extra: str = "") -> None:
    if value not in allowed:
        more = f" {extra}" if extra else ""
        raise ConfigError(f"{key} = {value!r} is invalid: allowed values are "
                          f"{', '.join(repr(a) for a in allowed)}{more}.")


def _coerce(key: str, value, hint):
    """Turn `value` (from TOML or a --set string) into the field type `hint`, or raise ConfigError."""
    text = value if isinstance(value, str) else None

    def fail(expected: str):
        raise ConfigError(f"{key} = {value!r} is invalid: expected {expected}.")

    if hint is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in ("true", "false", "1", "0", "yes", "no"):
            return text.lower() in ("true", "1", "yes")
        fail("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(text) if text is not None else fail("an integer")
        except ValueError:
            fail("an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(text) if text is not None else fail("a number")
        except ValueError:
            fail("a number")
    if hint is str:
        return value if isinstance(value, str) else fail("a string")
    if hint == (float | None):
        if text is not None and text.lower() in ("none", "null", ""):
            return None
        return _coerce(key, value, float)
    if hint == (list[int] | str):  # memory.layers
        if isinstance(value, list):
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return value
            fail("a list of 1-based layer numbers, 'auto' or 'last'")
        if text is not None:
            parts = text.strip("[] ").replace(",", " ").split()
            if len(parts) == 1 and parts[0] in ("auto", "last"):
                return parts[0]
            try:
                return [int(p) for p in parts] if parts else fail("layer numbers, 'auto' or 'last'")
            except ValueError:
                return text  # reported by validate() with the allowed values
        fail("a list of 1-based layer numbers, 'auto' or 'last'")
    raise AssertionError(f"no coercion for {key} of type {hint}")


# ---- presets -------------------------------------------------------------------------------------------
# `tiny`: a smoke test, seconds per run. `cpu`: the default study for a 2-core CPU. `paper`: the paper's base
# configuration (12 layers, d_model 1024, 8 heads of 128, memory at layer 9, 65K memory, segment 512), for a GPU.
PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {
        "model": {"dim": 64, "depth": 2, "heads": 2, "head_dim": 32, "xl_cache": 32},
        "memory": {"size": 256, "top_k": 8, "layers": "last"},
        "data": {"lanes": 4, "segment": 32, "eval_tokens": 8192},
        "train": {"steps": 20, "lr": 3e-3, "warmup": 5, "checkpoint_every": 10, "log_every": 5},
    },
    "cpu": {
        # Small and fast enough for the seed study in about 25 minutes on 2 cores. 16 lanes per step: with 8 lanes
        # (a noisier gradient) some seeds learned to copy from their context within the budget and others did
        # not, and that, not memory, decided the perplexity. Queries and keys over the last 8 bytes (qk_conv) and,
        # in the memory layer, keys equal to queries (shared_qk), with the memory in the first layer: the lookup
        # that memory extends is then there from the start and training on local attention cannot unlearn it
        # (README, "What it takes for memory to retrieve"). Documents of 4 KB or more: the memory fills within each.
        "model": {"dim": 64, "depth": 3, "heads": 4, "head_dim": 16, "xl_cache": 64, "qk_conv": 8},
        "memory": {"size": 2048, "top_k": 32, "layers": [1], "shared_qk": True},
        # Evaluation: 16 test documents of 16 KB or more, sampled across the split, each cut to its first 16 KB
        # (one per lane: every bucket up to 8-16 KB holds all 16 documents).
        "data": {"lanes": 16, "segment": 64, "min_document": 4096, "eval_tokens": 262144, "eval_length": 16384,
                 "eval_min_length": 16384, "order_seed": 0},
        "train": {"steps": 900, "lr": 5e-3, "warmup": 50, "checkpoint_every": 300, "log_every": 20,
                  "eval_every": 300},
    },
    "paper": {
        "model": {"dim": 1024, "depth": 12, "heads": 8, "head_dim": 128, "xl_cache": 512},
        "memory": {"size": 65536, "top_k": 32, "layers": [9]},
        "data": {"lanes": 32, "segment": 512, "min_document": 0, "eval_tokens": 0},
        "train": {"steps": 500000, "lr": 1e-3, "warmup": 1000, "checkpoint_every": 5000, "log_every": 100},
    },
}


# How a study trains its runs, by preset: "warm" pretrains one trunk per seed (memory off) for the preset's
# train.steps and fine-tunes every variant from it for finetune_steps; "scratch" trains every variant from
# initialisation for train.steps.
STUDY_DEFAULTS = {"tiny": {"start": "scratch", "finetune_steps": 10},
                  "cpu": {"start": "scratch", "finetune_steps": 300},
                  "paper": {"start": "warm", "finetune_steps": 20000}}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is unknown: allowed presets are {', '.join(PRESETS)}.")
    return Config.from_dict(PRESETS[name], source=f"preset {name}")
