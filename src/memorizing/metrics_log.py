"""Where a run's training curves go: `metrics.jsonl` always (the record the lab reads back), and TensorBoard event
files in `RUN_DIR/tensorboard` when `train.tensorboard` is on (installed by the `tensorboard` extra)."""

import json
import os
from pathlib import Path

from memorizing.errors import UserError


class MetricsLog:
    def __init__(self, path: Path, tensorboard: bool):
        self.file = open(path, "a")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("train.tensorboard = true needs TensorBoard: pip install -e '.[tensorboard]' (or "
                                "pip install tensorboard), or set train.tensorboard = false.") from None
            self.writer = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, record: dict) -> None:
        """One logged step: {"step": S, name: number, ..., "gates": {layer: [per head]}}."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            step = record["step"]
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{name}", value, step)
            for layer, heads in (record.get("gates") or {}).items():
                for head, gate in enumerate(heads):
                    self.writer.add_scalar(f"gate/layer{layer}/head{head}", gate, step)

    def sync(self) -> None:
        """On disk before a checkpoint says these steps are done."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
