"""Killed with SIGKILL at any point, training and studies lose nothing: rerun, they end as if never stopped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TRAIN = ["--preset", "tiny", "--quiet", "--set", "train.steps=40", "--set", "data.eval_tokens=1024"]


def memorizing(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "memorizing", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> bool:
    """SIGKILL `process` and its children (its session) once ready() holds; False if it finished first."""
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait()
    return False


def lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("every, after_lines", [(10, 0), (10, 5), (1, 3), (1, 7)])
def test_training_killed_and_resumed_ends_with_the_same_weights(corpus, tmp_path, every, after_lines):
    settings = TRAIN + ["--corpus", corpus, "--set", f"train.checkpoint_every={every}", "--set", "train.log_every=1"]
    reference = tmp_path / "reference"
    assert memorizing("train", *settings, "--out", str(reference)).wait() == 0
    run = tmp_path / "run"
    # every=1: a checkpoint is written at every step, so the kill usually lands inside one
    killed = kill_when(memorizing("train", *settings, "--out", str(run)),
                       lambda: (run / "metrics.jsonl").exists() and lines(run / "metrics.jsonl") >= after_lines)
    assert killed
    resumed = memorizing("train", "--resume", "--quiet", "--out", str(run))
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    a, b = weights(reference), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))


PLAN = """
[[ablation]]
title = "Top-k"
[[ablation.variant]]
name = "k=2"
set = { "memory.top_k" = 2 }
"""


def evaluating(study: Path) -> bool:
    """A run has finished training (train.json) but is not yet in the ledger: it is being evaluated."""
    trained = len(list((study / "runs").glob("*/train.json"))) if (study / "runs").exists() else 0
    return trained > lines(study / "ledger.jsonl")


@pytest.mark.parametrize("after_lines", [0, 1, 3, "evaluating"])
def test_study_killed_and_rerun_gives_the_same_report(corpus, tmp_path, after_lines):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    args = ["ablate", str(plan), "--seeds", "2", "--jobs", "1", "--no-controls", *TRAIN, "--corpus", corpus,
            "--set", "train.checkpoint_every=5"]
    assert memorizing(*args, "--out", str(tmp_path / "reference")).wait() == 0
    study = tmp_path / "study"
    if after_lines == "evaluating":
        ready = lambda: evaluating(study)
    else:  # before the first result, or between and during later runs
        ready = lambda: lines(study / "ledger.jsonl") >= after_lines and (study / "runs").exists() \
            and any((study / "runs").iterdir())
    assert kill_when(memorizing(*args, "--out", str(study)), ready)
    assert memorizing(*args, "--out", str(study)).wait() == 0
    reference = json.loads((tmp_path / "reference" / "report.json").read_text())
    report = json.loads((study / "report.json").read_text())
    assert [v["ppl"] for v in report["variants"]] == [v["ppl"] for v in reference["variants"]]
    assert lines(study / "ledger.jsonl") == 4  # every run recorded exactly once
