"""memorizing: Memorizing Transformers (Wu et al., ICLR 2022) in plain PyTorch, with an ablation lab."""

from memorizing.config import Config, ConfigError, build_config, preset
from memorizing.errors import UserError
from memorizing.model.transformer import MemorizingTransformer, State, load_model, save_model

__all__ = ["Config", "ConfigError", "MemorizingTransformer", "State", "UserError", "build_config", "load_model",
           "preset", "save_model"]
__version__ = "0.1.0"
