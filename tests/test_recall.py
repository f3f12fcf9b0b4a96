"""Memory pays off where only memory can answer: small models trained on the `recall` corpus, with and without
memory, as a two-variant study (the two runs train side by side, one per core).

The recalled spans are value digits whose one-letter name was last mentioned 192+ bytes earlier, beyond the
segment (64) and the XL cache (64). A memory that retrieves the binding predicts them almost surely; guessing
among the ten digits costs 2.30 nats.

KNOWN FAILURE (README, "What it takes for memory to retrieve"): at this size the model learns the lookup within
its local context (smeared keys, untied head) but its memory layer does not retrieve the binding: 2.37 nats with
memory against 2.40 without at 900 steps, and the binding is among the retrieved entries for none of the spans.
The test is strict: it reports an unexpected pass the day memory retrieves here.
"""

import json

import pytest

from memorizing.cli import main

PLAN = """
[[ablation]]
title = "Memory"
[[ablation.variant]]
name = "no memory"
set = { "memory.enabled" = false }
"""

SETTINGS = ["data.recall_documents=400", "data.recall_length=2048", "data.recall_distance=192",
            "data.recall_pairs=8", "data.recall_name_length=1", "data.recall_filler=2", "data.lanes=16",
            "data.segment=64", "data.eval_tokens=0", "model.dim=128", "model.depth=3", "model.heads=2",
            "model.head_dim=64", "model.xl_cache=64", "model.key_smear=true", "memory.size=1024", "memory.top_k=16",
            "memory.layers=2", "memory.search=exact", "train.steps=900", "train.lr=3e-3", "train.warmup=50",
            "train.checkpoint_every=900", "train.seed=1"]


@pytest.mark.xfail(strict=True, reason="memory does not yet retrieve at this size (see the module docstring)")
def test_memory_answers_what_lies_beyond_the_local_context(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    argv = ["ablate", str(plan), "--preset", "tiny", "--corpus", "recall", "--seeds", "1", "--jobs", "2",
            "--no-controls", "--start", "scratch", "--out", str(tmp_path / "study"), "--quiet"]
    for setting in SETTINGS:
        argv += ["--set", setting]
    assert main(argv) == 0
    report = json.loads((tmp_path / "study" / "report.json").read_text())
    with_memory, without = (v["recall_span_loss"] for v in report["variants"])
    assert without > 2.0 and with_memory < 1.0, (with_memory, without)
