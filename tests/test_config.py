"""The config's contract: a bad value, a missing companion value or an unknown key is refused with a message
that names the key, the value and what is allowed."""

import pytest

from memorizing import ConfigError
from models import tiny_config


@pytest.mark.parametrize("key, value, words", [
    ("memory.size", "-1", "memory.size = -1"),
    ("memory.gate", "1.5", "[0, 1]"),
    ("memory.layers", "7", "layer 7 is out of range"),
    ("memory.search", "hnsw", "'exact', 'bucketed', 'ivf'"),
    ("memory.ivf_probe", "-1", "memory.ivf_probe = -1"),
    ("memory.position_bias", "rope", "'t5-relative'"),
    ("memory.combine", "sum", "'gate', 'fixed', 'joint'"),
    ("memory.shared_qk", "true", "needs model.qk_conv"),
    ("model.qk_conv", "1", "model.qk_conv = 1 is invalid"),
])
def test_invalid_config_values_name_key_value_and_allowed(key, value, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        tiny_config().override([f"{key}={value}"])


def test_fixed_combine_without_gate_value_is_refused():
    with pytest.raises(ConfigError, match="needs memory.gate"):
        tiny_config().override(["memory.combine=fixed"])


def test_unknown_key_suggests_close_matches():
    with pytest.raises(ConfigError, match="memory.top_k"):
        tiny_config().override(["memory.topk=3"])
