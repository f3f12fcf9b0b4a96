import pytest
import torch


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
