"""Warm starts: a model that takes its weights from a trained run and adds (or changes) the memory branch.

The paper's fine-tuning setting (section 4): a model pretrained without memory, then trained on with memory,
recovers most of the memory's benefit quickly. Here `train.init_from = RUN_DIR` copies every weight of the run's
saved model into the new one; what the run lacks may only be the memory branch itself (the gate, a memory
position bias), which starts from its initialisation (`memory.gate_init` sets where the gate starts). Everything
that shapes a weight (width, depth, heads, qk-norm of a layer) must match the run: the message names the
difference. `train.freeze = "trunk"` then trains only the memory layers' attention and their memory branch.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file

from memorizing.config import Config
from memorizing.errors import UserError

BRANCH = ".attn.memory."  # parameter names of the memory branch (gate, memory position bias)
SCALED = ("relative_bias.table", "position_bias.table")  # stored in units of 1 / model.bias_scale


def load_weights_from(model, folder: str | Path) -> list[str]:
    """Copy the weights of the model saved in run folder `folder` into `model`; returns the names of the
    parameters that start from their initialisation (the memory branch's, where the run had none)."""
    from memorizing.model.transformer import CONFIG_FILE, WEIGHTS_FILE
    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise UserError(f"train.init_from = {str(folder)!r} holds no saved model ({CONFIG_FILE} and {WEIGHTS_FILE}): "
                        f"point it at a finished run folder of `memorizing train`.")
    source = Config.load(folder / CONFIG_FILE)
    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
    except Exception as e:  # safetensors raises on truncated or corrupted files
        raise UserError(f"{folder / WEIGHTS_FILE} is corrupted or truncated ({e}): retrain that run.") from None
    own = dict(model.named_parameters())
    rescale = source.model.bias_scale / model.config.model.bias_scale
    unexpected = sorted(set(weights) - set(own))
    missing = sorted(n for n in set(own) - set(weights) if BRANCH not in n)
    wrong = sorted(n for n in set(own) & set(weights) if own[n].shape != weights[n].shape)
    if unexpected or missing or wrong:
        differs = [f"{s}.{k}: run {v!r}, here {getattr(getattr(model.config, s), k)!r}"
                   for s, values in source.to_dict().items() if s == "model" for k, v in values.items()
                   if getattr(getattr(model.config, s), k) != v]
        for layer in range(model.config.model.depth):
            if layer < source.model.depth and source.qk_norm(layer) != model.config.qk_norm(layer):
                differs.append(f"qk-norm of layer {layer + 1}: run {source.qk_norm(layer)}, "
                               f"here {model.config.qk_norm(layer)}")
        raise UserError(f"train.init_from = {str(folder)!r}: its weights do not fit this model (only the memory "
                        f"branch may be new; unexpected {unexpected[:3]}, missing {missing[:3]}, other shapes "
                        f"{wrong[:3]}). Differences: {'; '.join(differs) or 'none in model.*'}: keep every "
                        f"setting that shapes a weight as the run had it.")
    with torch.no_grad():
        for name, value in weights.items():
            own[name].copy_(value * rescale if name.endswith(SCALED) else value)
    return sorted(set(own) - set(weights))


def trainable(model, freeze: str) -> list[torch.nn.Parameter]:
    """The parameters that train: all (`freeze = "none"`), or with "trunk" only the attention of the memory
    layers (memory.layers, memory branch included; without memory the same layers, so that a control trains the
    same weights); the others are set to requires_grad = False."""
    keep = [model.attention_prefix(i) for i in model.config.memory_placement()] if freeze == "trunk" else [""]
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(k) for k in keep))
        if p.requires_grad:
            params.append(p)
    return params
