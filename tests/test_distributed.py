"""Data-parallel training under torchrun (gloo on the CPU): same losses as one process, and resume."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_kill import kill_when, lines

SETTINGS = ["--preset", "tiny", "--quiet", "--set", "train.steps=12", "--set", "train.log_every=1",
            "--set", "train.checkpoint_every=4", "--set", "data.lanes=4"]


def torchrun(*args) -> subprocess.Popen:
    runner = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    return subprocess.Popen([runner, "--standalone", "--nproc-per-node", "2", "-m", "memorizing", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_and_resume(corpus, tmp_path):
    single = subprocess.run([sys.executable, "-m", "memorizing", "train", *SETTINGS, "--corpus", corpus,
                             "--out", str(tmp_path / "single")], capture_output=True, env={**os.environ,
                            "OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr.decode()
    ddp = torchrun("train", *SETTINGS, "--corpus", corpus, "--out", str(tmp_path / "ddp"))
    assert ddp.wait() == 0, ddp.stderr.read().decode()
    # the same global lanes and seed: the loss curve agrees up to float summation order
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-4)
    checkpoint = tmp_path / "ddp" / "checkpoint"
    assert {p.name for p in checkpoint.iterdir()} >= {"state-0.safetensors", "state-1.safetensors"}

    # killed after its first checkpoint, resumed with torchrun: the same weights as uninterrupted
    run = tmp_path / "killed"
    process = torchrun("train", *SETTINGS, "--corpus", corpus, "--out", str(run))
    assert kill_when(process, lambda: lines(run / "metrics.jsonl") >= 6)
    resumed = torchrun("train", "--resume", "--quiet", "--out", str(run))
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    a, b = load_file(str(tmp_path / "ddp" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
