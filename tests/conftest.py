import pytest
import torch

from memorizing import Config, preset


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A `text:` corpus of 60 documents of 1-4 KB made of 40 repeated words (learnable, long enough for
    several segments of the tiny preset)."""
    folder = tmp_path_factory.mktemp("corpus")
    g = torch.Generator().manual_seed(0)
    words = [f"word{i} " for i in range(40)]
    for i in range(60):
        n = int(torch.randint(150, 600, (1,), generator=g))
        picks = torch.randint(0, len(words), (n,), generator=g).tolist()
        (folder / f"doc{i}.txt").write_text("".join(words[p] for p in picks))
    return f"text:{folder}"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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
