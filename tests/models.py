"""Small models for the tests: a tiny config and weights scrambled so that leaks show."""

import torch

from memorizing import Config, preset


def tiny_config(**sets) -> Config:
    """A tiny model with memory at the last of 2 layers; `sets` are `section__key=value` overrides."""
    config = preset("tiny")
    config.memory.search = "exact"
    for key, value in sets.items():
        config.set(key.replace("__", "."), value)
    return config.validate()


def scramble(model) -> None:
    """Larger random weights, so that any leak of information shows up far above rounding noise (position-bias
    tables in their own units: bias = scale * table)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5 if p.dim() > 1 else 0.2)
        for module in model.modules():
            if hasattr(module, "table") and hasattr(module, "scale"):
                module.table /= module.scale
