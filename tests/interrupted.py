"""A run trained straight through and the same run interrupted and resumed, for the exact-resume tests."""

import pytest

from memorizing import train as train_module
from memorizing.train import train


def train_straight_and_resumed(config, folder, monkeypatch) -> None:
    """Train `config` into folder/straight, and into folder/crashed killed after the compute of its second
    checkpoint's step, before that checkpoint is written, then resumed there to the end."""
    train(config, folder / "straight", progress=False, log=lambda *_: None)
    real_save, saves = train_module.save_checkpoint, []

    def crash_on_second_save(*args, **kwargs):
        if saves:
            raise KeyboardInterrupt
        saves.append(1)
        real_save(*args, **kwargs)

    monkeypatch.setattr(train_module, "save_checkpoint", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        train(config, folder / "crashed", progress=False, log=lambda *_: None)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    train(config, folder / "crashed", resume=True, progress=False, log=lambda *_: None)
