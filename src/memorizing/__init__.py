"""memorizing: Memorizing Transformers (Wu et al., ICLR 2022) in plain PyTorch, with an ablation lab."""

from memorizing.config import Config, ConfigError, preset
from memorizing.errors import UserError
from memorizing.model.state import State
from memorizing.model.transformer import MemorizingTransformer, load_model, save_model
from memorizing.run_config import build_config

__all__ = ["Config", "ConfigError", "MemorizingTransformer", "State", "UserError", "build_config", "load_model",
           "preset", "save_model"]
__version__ = "0.1.0"
