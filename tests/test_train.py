"""Training, resume, evaluation, generation and the command line."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from memorizing import preset
from memorizing import train as train_module
from memorizing.cli import main
from memorizing.data.corpora import load_corpus, split_documents
from memorizing.errors import UserError
from memorizing.evaluate import evaluate, far_repeats, held_out
from memorizing.generate import generate
from memorizing.model.transformer import MemorizingTransformer, load_model
from memorizing.model.warm_start import load_weights_from
from memorizing.train import train

from interrupted import train_straight_and_resumed


def tiny(corpus, **sets):
    config = preset("tiny")
    config.data.corpus = corpus
    for key, value in sets.items():
        config.set(key.replace("__", "."), value)
    return config.validate()


def test_training_lowers_the_loss_and_writes_the_run_folder(corpus, tmp_path):
    summary = train(tiny(corpus, train__steps=40, train__eval_every=20), tmp_path, progress=False, log=lambda *_: None)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss"] > records[-1]["loss"] + 0.5
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "memory_fill", "gates"} <= records[0].keys()
    assert "valid_ppl" in records[-1]
    assert records[-1]["memory_fill"] > 0
    for name in ("config.toml", "model.safetensors", "train.json", "checkpoint/trainer.json"):
        assert (tmp_path / name).exists(), name
    assert summary["parameters"] == load_model(tmp_path).num_parameters()


@pytest.mark.parametrize("keys", [{}, {"model__qk_conv": 3}])  # with the convolution's state in the checkpoint
def test_resume_after_a_crash_ends_with_identical_weights(keys, corpus, tmp_path, monkeypatch):
    config = tiny(corpus, train__steps=24, train__checkpoint_every=8, **keys)
    train_straight_and_resumed(config, tmp_path, monkeypatch)  # killed after step 16's compute
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("straight", "crashed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated lines from the lost steps


def test_run_folder_guards(corpus, tmp_path):
    config = tiny(corpus, train__steps=4)
    train(config, tmp_path, progress=False, log=lambda *_: None)
    with pytest.raises(UserError, match="already holds a run"):
        train(config, tmp_path, progress=False, log=lambda *_: None)
    with pytest.raises(UserError, match=r"differs from the run's.*memory.size"):
        train(tiny(corpus, train__steps=4, memory__size=128), tmp_path, resume=True, progress=False)
    trainer = tmp_path / "checkpoint" / "trainer.json"
    trainer.write_text(trainer.read_text()[:10])
    with pytest.raises(UserError, match="corrupted or truncated"):
        train(config, tmp_path, resume=True, progress=False, log=lambda *_: None)


def test_non_finite_loss_stops_with_a_clear_message(corpus, tmp_path):
    config = tiny(corpus, train__steps=6, train__lr=1e30, train__warmup=0, train__grad_clip=0.0)
    with pytest.raises(train_module.TrainingDiverged, match="non-finite"):
        train(config, tmp_path, progress=False, log=lambda *_: None)


def test_eval_reports_perplexity_by_position_and_search_recall(corpus, tmp_path, capsys):
    config = tiny(corpus, train__steps=10)
    train(config, tmp_path, progress=False, log=lambda *_: None)
    assert main(["eval", str(tmp_path), "--quiet"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert {"ppl", "bits_per_token", "tokens", "corpus", "split"} <= result.keys()
    assert result["split"] == "test" and result["corpus"] == corpus
    assert sum(b["tokens"] for b in result["by_position"].values()) == result["tokens"]
    assert 0 < result["search_recall_at_k"] <= 1
    assert set(result["search_recall_by_fill"]) <= {"<25%", "25-50%", "50-75%", "75-99%", "full"}
    # the same weights under exact search (nothing to measure recall against) give the same documents' perplexity
    assert main(["eval", str(tmp_path), "--quiet", "--set", "memory.search=exact"]) == 0
    exact = json.loads((tmp_path / "eval.json").read_text())
    assert "search_recall_at_k" not in exact and exact["search"] == "exact"
    documents = held_out(split_documents(load_corpus(config.data), "test"), config.data.eval_tokens)
    manual = evaluate(load_model(tmp_path, ["memory.search=exact"]), documents, 4, 32)
    assert manual["ppl"] == pytest.approx(exact["ppl"])
    repeats = exact["far_repeats"]  # the loss on far repeats and on the rest make up the whole
    whole = repeats["loss"] * repeats["share"] + repeats["rest_loss"] * (1 - repeats["share"])
    assert 0 < repeats["share"] < 1 and whole == pytest.approx(exact["loss"])
    window = config.data.segment + config.model.xl_cache  # and they are the far repeats of every document
    assert repeats["tokens"] == sum(int((far_repeats(d.data, 8, window) >= 0).sum()) for d in documents)
    assert 0 <= repeats["source_found"] <= 1 and 0 <= repeats["right_byte_weight"] <= 1


def test_far_repeats_are_the_bytes_only_a_copy_from_beyond_the_local_context_predicts():
    phrase = b"def lookup_name(self, key)"
    filler = bytes(range(40, 40 + 90)) * 2  # 180 bytes that hold no 8-byte context of the phrase
    data = phrase + filler + phrase + b"!" + phrase[:12] + b"?"
    source = far_repeats(data, context=8, window=128)
    second = len(phrase) + len(filler)  # where the phrase repeats, 206 bytes after its first occurrence
    # each byte after 8 repeated bytes, copied from the first occurrence
    assert (source[second + 8:second + len(phrase)] == range(8, len(phrase))).all()
    assert (source[:second + 8] == -1).all()  # nothing before the repeat's 9th byte (the filler's contexts are new)
    assert source[second + len(phrase)] == -1  # "!" follows what was followed by the filler before
    third = second + len(phrase) + 1
    assert (source[third + 8:third + 12] == -1).all()  # repeated again, but the last occurrence is near: local


def test_generate_writes_memory_as_it_goes(corpus, tmp_path):
    train(tiny(corpus, train__steps=4), tmp_path, progress=False, log=lambda *_: None)
    model = load_model(tmp_path)
    text = generate(model, b"word1 word2 ", 100, seed=1)
    assert len(text) == 100
    assert text == generate(model, b"word1 word2 ", 100, seed=1)


@pytest.mark.parametrize("argv, words", [
    (["train", "--preset", "tiny", "--set", "memory.sise=4"], "did you mean memory.size"),
    (["train", "--preset", "tiny", "--set", "memory.gate=2"], "memory.gate"),
    (["train", "--preset", "tiny", "--corpus", "nothing"], "is unknown"),
    (["train", "--preset", "tiny", "--config", "missing.toml"], "does not exist"),
    (["eval", "no-such-run"], "holds no saved model"),
])
def test_bad_input_exits_with_status_2_and_a_message(argv, words, tmp_path, capsys):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_corpus_of_only_short_documents_is_refused(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    for i in range(100):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"short {i}")
    argv = ["train", "--preset", "tiny", "--corpus", f"text:{tmp_path / 'docs'}", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "at most one segment long" in capsys.readouterr().err


def test_a_run_that_cannot_fit_in_memory_is_refused_before_any_work(corpus, tmp_path, capsys):
    argv = ["train", "--preset", "tiny", "--corpus", corpus, "--set", "memory.size=100000000000",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "lower memory.size or data.lanes" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_full_disk_is_reported_not_hidden(corpus, tmp_path, capsys, monkeypatch):
    import errno
    import os

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "model.safetensors")

    monkeypatch.setattr(train_module, "save_model", full)
    argv = ["train", "--preset", "tiny", "--corpus", corpus, "--set", "train.steps=2", "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "run" / "train.json").exists()  # the run does not look complete


def test_warm_start_adds_memory_to_a_trained_run_and_freezes_the_trunk(corpus, tmp_path):
    plain = tiny(corpus, train__steps=6, memory__enabled=False)
    train(plain, tmp_path / "plain", progress=False, log=lambda *_: None)
    # Memory added to the trained run: every weight copied; read with the gate at 0 it is the trained model.
    closed = tiny(corpus, train__steps=6, train__init_from=str(tmp_path / "plain"), memory__combine="fixed",
                  memory__gate=0.0)
    model = MemorizingTransformer(closed)
    assert load_weights_from(model, tmp_path / "plain") == []
    source = load_model(tmp_path / "plain").eval()
    tokens = torch.randint(0, 256, (4, 96))
    with torch.no_grad():
        a = source(tokens, source.init_state(4))[0]
        b = model.eval()(tokens, model.init_state(4))[0]
    assert torch.equal(a, b)
    # A learned gate is new (it starts at memory.gate_init); with the trunk frozen only the memory layer's
    # attention trains.
    gated = tiny(corpus, train__steps=6, train__init_from=str(tmp_path / "plain"), train__freeze="trunk",
                 memory__gate_init=0.1)
    train(gated, tmp_path / "gated", progress=False, log=lambda *_: None)
    before, after = load_file(str(tmp_path / "plain" / "model.safetensors")), \
        load_file(str(tmp_path / "gated" / "model.safetensors"))
    changed = {k for k in after if k not in before or not torch.equal(before[k], after[k])}
    assert "blocks.1.attn.memory.gate_logit" in changed and "blocks.1.attn.qkv.weight" in changed
    assert all(k.startswith("blocks.1.attn.") for k in changed), changed
    assert 0.05 < load_model(tmp_path / "gated").gates()[2][0] < 0.2
    # What shapes a weight must match, and the message says what differs.
    with pytest.raises(UserError, match="model.dim: run 64, here 32"):
        train(tiny(corpus, train__init_from=str(tmp_path / "plain"), model__dim=32), tmp_path / "bad",
              progress=False, log=lambda *_: None)


def test_a_time_budget_stops_the_run_and_is_recorded(corpus, tmp_path):
    config = tiny(corpus, train__steps=1000, train__time_budget=0.5, train__checkpoint_every=1000)
    summary = train(config, tmp_path, progress=False, log=lambda *_: None)
    assert 0 < summary["steps"] < 1000 and summary["budget_step"] == summary["steps"]
    assert summary["train_seconds"] >= 0.5
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == summary["steps"] and records[-1]["train_seconds"] >= 0.5
    # resuming a run whose budget ran out trains nothing more
    weights = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "train.json").unlink()
    assert train(config, tmp_path, resume=True, progress=False, log=lambda *_: None)["steps"] == summary["steps"]
    again = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_progress_is_plain_lines_when_stderr_is_a_file(tmp_path, corpus):
    """Redirected output gets a few readable lines, not a bar's carriage returns."""
    log = tmp_path / "log"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-m", "memorizing", "train", "--preset", "tiny", "--corpus", corpus,
                        "--set", "train.steps=5", "--set", "data.eval_tokens=0", "--out", str(tmp_path / "run")],
                       stdout=f, stderr=subprocess.STDOUT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = log.read_text()
    assert "\r" not in text and "train: 5/5 steps" in text


def test_tensorboard_events_beside_the_jsonl_record(tmp_path, corpus):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--corpus", corpus, "--quiet", "--set", "train.steps=5",
                 "--set", "train.log_every=1", "--set", "train.tensorboard=true", "--set", "data.eval_tokens=0",
                 "--out", str(run)]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
