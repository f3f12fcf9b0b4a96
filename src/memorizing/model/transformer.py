"""The Memorizing Transformer: a decoder-only stack of pre-norm blocks, one (or more) of which has kNN memory.

    model = MemorizingTransformer(config)
    state = model.init_state(lanes)                      # empty XL caches and memories for B lanes
    logits, state = model(tokens, state, reset)          # tokens [B, L]; reset [B] clears a lane first

A caller streams B documents segment by segment; `reset` marks lanes whose next segment starts a new document.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from torch import nn

from memorizing.config import Config, ConfigError
from memorizing.errors import UserError
from memorizing.files import PRETRAINED_DIR, atomic_write
from memorizing.model.attention import Attention
from memorizing.model.state import State


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.up, self.down = nn.Linear(dim, hidden, bias=False), nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, config: Config, layer: int, has_memory: bool):
        super().__init__()
        dim = config.model.dim
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(config, layer, has_memory)
        self.mlp = MLP(dim, config.model.ffn_mult * dim)

    def forward(self, x, layer_state, query_pos, remember):
        x = x + self.attn(self.ln1(x), layer_state, query_pos, remember)
        return x + self.mlp(self.ln2(x))


class MemorizingTransformer(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config.validate()
        m = config.model
        self.memory_layers = config.memory_layers()
        self.embed = nn.Embedding(m.vocab_size, m.dim)
        self.blocks = nn.ModuleList(Block(config, i, i in self.memory_layers) for i in range(m.depth))
        self.ln_f = nn.LayerNorm(m.dim)
        # Untied output embedding, every weight N(0, 0.02), no depth scaling of the residual projections: with
        # tied embeddings and GPT-2's scaled projections, small models learned to copy from their context several
        # times slower (README: "What it takes for memory to retrieve").
        self.head = nn.Linear(m.dim, m.vocab_size, bias=False)
        self.apply(self._init_weights)
        for block in self.blocks:  # model.qk_conv's lookup start (attention.py), on top of that init
            if block.attn.qk_conv is not None:
                block.attn.start_keys_as_queries()

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_state(self, lanes: int) -> State:
        m = self.config.model
        return State.empty(self.config, lanes, self.memory_layers, m.heads, m.head_dim, m.xl_cache, self.embed.weight)

    def forward(self, tokens: torch.Tensor, state: State, reset: torch.Tensor | None = None,
                remember: bool = True) -> tuple[torch.Tensor, State]:
        """tokens [B, L] -> logits [B, L, vocab]. Lanes with reset [B] True start a new document first.
        With remember=False the segment is read but not remembered (the state is left as it was)."""
        # On a CPU, lanes that start nothing are skipped; on a GPU that check would cost a host round trip, more
        # than clearing with an all-False mask.
        if reset is not None and (reset.device.type != "cpu" or bool(reset.any())):
            state.reset(reset)
        length = tokens.shape[1]
        query_pos = state.position[:, None] + torch.arange(length, device=tokens.device)  # [B, L]
        x = self.embed(tokens)  # [B, L, dim]
        for block, layer_state in zip(self.blocks, state.layers):
            x = block(x, layer_state, query_pos, remember)
        if remember:
            state.position = state.position + length
        return self.head(self.ln_f(x)), state

    def gates(self) -> dict[int, list[float]]:
        """Memory weight per head for each memory layer (1-based layer number)."""
        return {i + 1: self.blocks[i].attn.memory.reported_gate().tolist() for i in self.memory_layers}

    def memory_attentions(self) -> list:
        """The memory branch (MemoryAttention) of each memory layer."""
        return [self.blocks[i].attn.memory for i in self.memory_layers]

    def attention_prefix(self, layer: int) -> str:
        """The parameter-name prefix of a block's attention (its memory branch included), for train.freeze."""
        return f"blocks.{layer}.attn."


# ---- saving and loading: config as TOML, weights as safetensors (nothing is unpickled) --------------------
CONFIG_FILE, WEIGHTS_FILE = "config.toml", "model.safetensors"


def save_model(model: MemorizingTransformer, folder: str | Path) -> None:
    """Weights and config; a pretrained model (pretrained.py) also writes its architecture and tokenizer."""
    folder = Path(folder)
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_safetensors_model(model, tmp))
    if hasattr(model, "save_architecture"):
        model.save_architecture(folder)
    atomic_write(folder / CONFIG_FILE, lambda tmp: Path(tmp).write_text(model.config.to_toml()))


def load_model(folder: str | Path, overrides: list[str] | None = None, device=None) -> MemorizingTransformer:
    """Load a saved model onto `device` (default: the config's train.device); `overrides` (key=value) may
    change what does not touch the weights, such as memory.search or memory.size."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise UserError(f"{folder} holds no saved model ({CONFIG_FILE} and {WEIGHTS_FILE}): pass the folder that "
                        f"`memorizing train --out` wrote.")
    config = Config.load(folder / CONFIG_FILE).override(overrides or [])
    device = device or config.device()
    if (folder / PRETRAINED_DIR).is_dir():  # a pretrained model with memory (pretrained.py)
        from memorizing.model.pretrained import saved_architecture
        model = saved_architecture(folder, config).to(device)
    else:
        model = MemorizingTransformer(config).to(device)
    try:
        missing, unexpected = load_safetensors_model(model, folder / WEIGHTS_FILE, strict=False, device=str(device))
    except Exception as e:  # safetensors raises on truncated or corrupted files
        raise UserError(f"{folder / WEIGHTS_FILE} is corrupted or truncated ({e}): retrain, or restore the "
                        f"file.") from None
    if missing or unexpected:
        raise ConfigError(f"the weights in {folder / WEIGHTS_FILE} do not fit the config (missing "
                          f"{sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}): only settings that keep "
                          f"the parameters may be overridden at load time.")
    return model
