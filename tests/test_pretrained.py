"""A pretrained Hugging Face causal LM with the kNN memory branch (model/pretrained.py), on tiny randomly
initialised GPT-2 and Llama models built here (offline): the pretrained model is intact with the gate closed,
memory is causal, lanes are isolated and reset, a rotary model's XL cache reads its window as the pretrained model
does, and a retrofitted run saves, loads, trains, resumes exactly and evaluates."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers", reason="the optional extra `hf` (transformers) is not installed")

from interrupted import train_straight_and_resumed  # noqa: E402
from models import tiny_config  # noqa: E402
from memorizing import ConfigError, UserError, load_model, save_model  # noqa: E402
from memorizing.cli import main  # noqa: E402
from memorizing.model import pretrained  # noqa: E402
from memorizing.model.pretrained import PretrainedMemorizing  # noqa: E402
from memorizing.run_config import build_config  # noqa: E402

LANES, SEGMENT = 3, 32


def byte_tokenizer():
    """A byte-level BPE tokenizer without merges: 256 tokens, one per byte."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer)


def tiny_lm(family: str):
    """A randomly initialised causal LM of a few ten thousand parameters, in eval mode (no dropout); Llama with
    grouped-query attention (4 query heads, 2 key/value heads). Large initial weights, so that any leak shows up
    far above rounding noise."""
    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=256, n_positions=128, n_embd=32, n_layer=2, n_head=4,
                                         initializer_range=0.2, bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel(config).eval()
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                      initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(config).eval()


def retrofit(family: str, **sets):
    """The tiny LM with memory at its last layer (no XL cache unless `sets` give one), and an untouched copy."""
    lm = tiny_lm(family)
    original = type(lm)(lm.config).eval()
    original.load_state_dict(lm.state_dict())
    model = PretrainedMemorizing(tiny_config(**{"model__xl_cache": 0, **sets}), lm, byte_tokenizer()).eval()
    with torch.no_grad():  # a learned gate away from its start, different per head
        for branch in model.branches.values():
            if branch.memory.combine == "gate":
                gates = torch.linspace(-1, 1, branch.memory.gate_logit.numel())  # logits
                branch.memory.gate_logit.copy_(gates / branch.memory.gate_scale)
    return model, original


def stream(model, tokens, state=None, resets=None):
    """Feed tokens [B, S*L] segment by segment; return the logits of all positions [B, S*L, V] and the state."""
    state = state or model.init_state(tokens.shape[0])
    out = []
    with torch.no_grad():
        for s in range(tokens.shape[1] // SEGMENT):
            logits, state = model(tokens[:, s * SEGMENT:(s + 1) * SEGMENT], state,
                                  resets[s] if resets is not None else None)
            out.append(logits)
    return torch.cat(out, 1), state


FAMILIES = ["gpt2", "llama"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sets", [{"memory__combine": "fixed", "memory__gate": 0.0}, {"memory__enabled": False}])
def test_with_the_gate_closed_the_logits_are_the_pretrained_models(family, sets):
    model, original = retrofit(family, **sets)
    tokens = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    logits, state = stream(model, tokens)
    with torch.no_grad():
        expected = torch.cat([original(tokens[:, s:s + SEGMENT]).logits for s in range(0, 4 * SEGMENT, SEGMENT)], 1)
    assert torch.allclose(logits, expected, atol=1e-5, rtol=1e-5)
    if model.memory_layers:  # memory is still written (a control that reads nothing)
        assert state.memories()[0].fill().tolist() == [4 * SEGMENT] * LANES


XL = {"model__xl_cache": 16}  # half a segment of the previous one, in every layer


@pytest.mark.parametrize("family, sets", [
    ("gpt2", {}), ("gpt2", {"memory__combine": "joint", "memory__qk_norm": False}),
    ("llama", {}), ("llama", {"memory__rotary": "rotated"}), ("llama", {"memory__combine": "joint"}),
    ("llama", {"memory__position_bias": "t5-relative", "memory__search": "bucketed"}),
    ("llama", XL), ("llama", {**XL, "memory__combine": "joint"}), ("llama", {**XL, "memory__enabled": False}),
])
@pytest.mark.parametrize("t", [5, 40, 60])  # inside the first segment, early in a later one, in its cached end
def test_causality_through_memory_and_cache(family, sets, t):
    """Changing token t changes nothing before t, through memory or the XL cache; the change still arrives
    segments later, where only memory (and the XL cache, with one) reaches back."""
    model, _ = retrofit(family, **sets)
    tokens = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    changed = tokens.clone()
    changed[:, t] = (changed[:, t] + 1) % 256
    a, _ = stream(model, tokens)
    b, _ = stream(model, changed)
    assert torch.equal(a[:, :t], b[:, :t])
    later = (t // SEGMENT + 1) * SEGMENT  # the next segment on
    assert (a[:, later:] - b[:, later:]).abs().amax() > 1e-4


@pytest.mark.parametrize("cache", [SEGMENT, 16])
@pytest.mark.parametrize("sets", [{"memory__combine": "fixed", "memory__gate": 0.0}, {"memory__enabled": False}])
def test_a_segment_after_the_xl_cache_reads_as_the_pretrained_model_reads_the_whole_window(cache, sets):
    """With the gate closed, a segment after C cached tokens has the pretrained model's logits on [those C
    tokens ; segment] (positions 0 .. C + L - 1); a lane that starts a document there has its logits on the
    segment alone (positions 0 .. L - 1)."""
    model, original = retrofit("llama", model__xl_cache=cache, **sets)
    tokens = torch.randint(0, 256, (LANES, cache + SEGMENT))
    with torch.no_grad():
        _, state = model(tokens[:, :cache], model.init_state(LANES))  # the first segment: C tokens fill the cache
        logits, _ = model(tokens[:, cache:], state, torch.tensor([False, True, False]))
        window = original(tokens).logits[:, cache:]
        alone = original(tokens[:, cache:]).logits
    assert torch.allclose(logits[[0, 2]], window[[0, 2]], atol=1e-5, rtol=1e-5)
    assert torch.allclose(logits[1], alone[1], atol=1e-5, rtol=1e-5)
    assert (logits[0] - alone[0]).abs().amax() > 1e-2  # the cache was read


def test_the_xl_cache_reaches_back_its_window_and_no_further():
    """Memory off, cache 16 of 32, 2 layers: a segment's first layer reads the previous segment's last 16 tokens,
    its second layer their first-layer outputs, which read 16 tokens further. Token 5 reaches the next segment
    and none after it; token 60, in the cached end of its segment, reaches two segments on."""
    model, _ = retrofit("llama", memory__enabled=False, **XL)
    tokens = torch.randint(0, 256, (LANES, 5 * SEGMENT))
    a, _ = stream(model, tokens)
    for t, reached in ((5, 1), (60, 2)):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 1) % 256
        b, _ = stream(model, changed)
        last = (t // SEGMENT + reached + 1) * SEGMENT  # the end of the last segment it reaches
        assert torch.equal(a[:, :t], b[:, :t])
        assert (a[:, last - 1] - b[:, last - 1]).abs().amax() > 1e-4
        assert torch.equal(a[:, last:], b[:, last:])


def test_xl_cache_is_refused_for_gpt2_by_name():
    with pytest.raises(ConfigError, match=r"model.xl_cache = 16 .*learned absolute.*set model.xl_cache = 0"):
        retrofit("gpt2", **XL)


@pytest.mark.parametrize("family", FAMILIES)
def test_unrotated_memory_keys_are_the_projections_before_the_rotation(family):
    model, _ = retrofit(family, memory__qk_norm=False)
    tokens = torch.randint(0, 256, (1, SEGMENT))
    _, state = stream(model, tokens)
    attention = model.attention(model.memory_layers[0])
    captured = {}
    handle = attention.register_forward_pre_hook(lambda _, args, kwargs: captured.update(x=kwargs.get(
        "hidden_states", args[0] if args else None)), with_kwargs=True)
    with torch.no_grad():
        model(tokens, model.init_state(1))
    handle.remove()
    x = captured["x"]  # [1, L, dim] the attention's input
    kv_heads, head_dim = model.shape["kv_heads"], model.shape["head_dim"]
    if family == "gpt2":
        keys = attention.c_attn(x).split(32, dim=2)[1]
    else:
        keys = attention.k_proj(x)
    keys = keys.view(1, SEGMENT, kv_heads, head_dim).transpose(1, 2)  # [1, Hkv, L, D]
    memory = state.memories()[0]
    order = memory.positions[0].argsort()[-SEGMENT:]  # the filled slots (empty ones are at -1), by position
    assert torch.allclose(memory.keys[:, :, order], keys, atol=1e-6)


@pytest.mark.parametrize("family, sets", [("gpt2", {}), ("llama", {}), ("llama", XL),
                                          ("llama", {**XL, "memory__enabled": False})])
def test_lane_isolation_and_reset(family, sets):
    """Lanes do not see each other; a lane that starts a document sees neither the memory nor the XL cache of
    the previous one."""
    model, _ = retrofit(family, **sets)
    tokens = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    changed = tokens.clone()
    changed[1] = torch.randint(0, 256, (4 * SEGMENT,))
    resets = [torch.tensor([False, s == 2, False]) for s in range(4)]
    a, _ = stream(model, tokens, resets=resets)
    b, _ = stream(model, changed, resets=resets)
    assert torch.equal(a[[0, 2]], b[[0, 2]])
    assert not torch.equal(a[1], b[1])
    # A reset lane reads as a fresh one; the others keep their memory.
    history, segment = torch.randint(0, 256, (LANES, 3 * SEGMENT)), torch.randint(0, 256, (LANES, SEGMENT))
    _, state = stream(model, history)
    with torch.no_grad():
        logits, state = model(segment, state, torch.tensor([True, False, False]))
        fresh, _ = model(segment, model.init_state(LANES))
    assert torch.equal(logits[0], fresh[0])
    assert not torch.allclose(logits[1], fresh[1])
    if model.memory_layers:
        assert state.memories()[0].fill().tolist() == [SEGMENT, 4 * SEGMENT, 4 * SEGMENT]


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_keep_the_retrofitted_model(family, tmp_path):
    model, _ = retrofit(family, memory__position_bias="learned-absolute")
    with torch.no_grad():
        model.branches[model.memory_layers[0]].memory.position_bias.table.normal_(0, 0.1)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path).eval()
    assert isinstance(loaded, PretrainedMemorizing) and type(loaded.lm) is type(model.lm)
    tokens = torch.randint(0, 256, (LANES, 3 * SEGMENT))
    assert torch.equal(stream(model, tokens)[0], stream(loaded, tokens)[0])
    assert loaded.encode("héllo".encode()).tolist() == model.encode("héllo".encode()).tolist()


def test_gradients_reach_the_gate_and_the_queries_but_not_the_memory():
    model, _ = retrofit("llama", memory__combine="gate")
    model.train()
    state = model.init_state(LANES)
    for _ in range(3):
        logits, state = model(torch.randint(0, 256, (LANES, SEGMENT)), state)
        model.zero_grad()
        logits.logsumexp(-1).mean().backward()
    branch = model.branches[model.memory_layers[0]]
    assert branch.memory.gate_logit.grad.abs().sum() > 0 and branch.log_scale.grad.abs().sum() > 0
    assert model.attention(model.memory_layers[0]).q_proj.weight.grad.abs().sum() > 0
    assert not state.memories()[0].keys.requires_grad


def source_folder(tmp_path, family="llama"):
    """A pretrained model as save_pretrained writes it: config.json, safetensors weights, tokenizer files."""
    folder = tmp_path / f"{family}-source"
    tiny_lm(family).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", FAMILIES)
def test_train_and_eval_from_a_pretrained_folder_on_the_command_line(family, corpus, tmp_path, capsys):
    source = source_folder(tmp_path, family)
    run = tmp_path / "run"
    argv = ["train", "--preset", "tiny", "--corpus", corpus, "--init-from", f"hf:{source}", "--out", str(run),
            "--quiet", "--set", "train.steps=3", "--set", "train.freeze=trunk", "--set", "data.eval_tokens=2048"]
    assert main(argv) == 0, capsys.readouterr().err
    config = (run / "config.toml").read_text()
    assert "xl_cache = 0" in config and "dim = 32" in config
    # with the trunk frozen, only the memory layer's attention (and its memory branch) changed
    before = PretrainedMemorizing.from_source(f"hf:{source}", tiny_config(model__xl_cache=0)).state_dict()
    after = load_model(run).state_dict()
    changed = {k for k in after if k not in before or not torch.equal(before[k], after[k])}
    prefix = load_model(run).attention_prefix(1)
    assert any("memorizing.memory.gate_logit" in k for k in changed) and all(k.startswith(prefix) for k in changed)
    assert main(["eval", str(run), "--quiet"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["bits_per_byte"] > 0 and result["ppl"] > 1
    assert "bits/byte" in capsys.readouterr().out


@pytest.mark.parametrize("family, sets", [("gpt2", []), ("llama", []), ("llama", ["model.xl_cache=16"])])
def test_resume_of_a_run_from_a_pretrained_folder_ends_with_identical_weights(family, sets, corpus, tmp_path,
                                                                              monkeypatch):
    """As test_train.py's resume test, for a retrofitted model: interrupted after a checkpoint and resumed, the
    run ends where the uninterrupted one does (GPT-2 trains with dropout: its random stream must resume too; the
    XL cache is part of the checkpoint's state)."""
    source = source_folder(tmp_path, family)
    config = build_config(None, "tiny", corpus, ["train.steps=12", "train.checkpoint_every=4",
                                                 "train.eval_every=0", *sets], init_from=f"hf:{source}")
    train_straight_and_resumed(config, tmp_path, monkeypatch)  # killed after step 8's compute

    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("straight", "crashed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("straight", "crashed")]
    assert losses[0] == losses[1]


def test_train_and_eval_with_an_xl_cache_on_the_command_line(corpus, tmp_path, capsys):
    source = source_folder(tmp_path)
    run = tmp_path / "run"
    argv = ["train", "--preset", "tiny", "--corpus", corpus, "--init-from", f"hf:{source}", "--out", str(run),
            "--quiet", "--set", "train.steps=3", "--set", "model.xl_cache=16", "--set", "data.eval_tokens=1024"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "xl_cache = 16" in (run / "config.toml").read_text()
    model = load_model(run)
    assert sorted(model.caches) == [0, 1] and model.init_state(2).layers[0].cache[0].shape == (2, 2, 16, 8)
    assert main(["eval", str(run), "--quiet"]) == 0
    assert json.loads((run / "eval.json").read_text())["bits_per_byte"] > 0


@pytest.mark.parametrize("family, setting", [("gpt2", "model.xl_cache=16"), ("llama", "model.key_smear=true"),
                                             ("llama", "model.qk_conv=3"), ("llama", "model.depth=5"),
                                             ("llama", "memory.shared_qk=true"),
                                             ("llama", "model.xl_cache=112")])
def test_model_settings_the_pretrained_model_lacks_are_refused_not_dropped(family, setting, corpus, tmp_path,
                                                                           capsys):
    source = source_folder(tmp_path, family)
    argv = ["train", "--preset", "tiny", "--corpus", corpus, "--init-from", f"hf:{source}", "--out",
            str(tmp_path / "run"), "--quiet", "--set", "train.steps=1", "--set", setting]
    assert main(argv) == 2
    assert setting.split("=")[0] in capsys.readouterr().err


def test_ablate_from_a_pretrained_folder_resolves_layers_in_its_depth(tmp_path, capsys):
    source = source_folder(tmp_path)
    plan = tmp_path / "plan.toml"
    plan.write_text('[[ablation]]\ntitle = "Memory in layer 1"\n[[ablation.variant]]\nname = "layer 1"\n'
                    'set = { "memory.layers" = [1] }\n')
    assert main(["ablate", str(plan), "--preset", "tiny", "--init-from", f"hf:{source}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"from hf:{source}" in out and "memory.layers = [1]" in out


def test_the_cpu_preset_applies_to_a_pretrained_model_without_its_own_query_and_key_settings(tmp_path, capsys):
    """The README's `--preset cpu --init-from hf:...`: the preset's convolved and shared queries and keys are the
    small model's own, so they are dropped for a pretrained model, not refused."""
    source = source_folder(tmp_path)
    assert main(["ablate", "--init-from", f"hf:{source}", "--preset", "cpu", "--set", "memory.layers=auto",
                 "--set", "data.lanes=4", "--dry-run"]) == 0
    assert "nothing trained" in capsys.readouterr().out


def test_a_study_of_a_retrofitted_model_reports_bits_per_byte(corpus, tmp_path):
    """Perplexity per token depends on the tokenizer; the report gives bits per byte beside it. The tiny models'
    tokenizer has one token per byte (and the corpus is ASCII), so here too it is log2 of the perplexity."""
    source = source_folder(tmp_path)
    plan = tmp_path / "plan.toml"
    plan.write_text('[[ablation]]\ntitle = "Memory in layer 1"\n[[ablation.variant]]\nname = "layer 1"\n'
                    'set = { "memory.layers" = [1] }\n')
    argv = ["ablate", str(plan), "--preset", "tiny", "--corpus", corpus, "--init-from", f"hf:{source}", "--seeds",
            "1", "--finetune-steps", "2", "--out", str(tmp_path / "study"), "--quiet", "--jobs", "1",
            "--no-controls", "--set", "data.eval_tokens=512"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "study" / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["baseline", "layer 1"]
    for v in report["variants"]:
        assert v["bits_per_byte"] == pytest.approx([math.log2(p) for p in v["ppl"]], rel=1e-9)
        assert v["bits_per_byte_mean"] > 0
    markdown = (tmp_path / "study" / "report.md").read_text()
    assert "| bits/byte (95% CI) |" in markdown and "per token of the pretrained model's tokenizer" in markdown


def test_a_study_variant_the_pretrained_model_cannot_run_is_refused_before_any_run(tmp_path, capsys):
    source = source_folder(tmp_path, "gpt2")
    plan = tmp_path / "plan.toml"
    plan.write_text('[[ablation]]\ntitle = "XL cache"\n[[ablation.variant]]\nname = "cache 16"\n'
                    'set = { "model.xl_cache" = 16 }\n')
    assert main(["ablate", str(plan), "--preset", "tiny", "--init-from", f"hf:{source}", "--dry-run"]) == 2
    assert "model.xl_cache = 16 is not available for 'gpt2' models" in capsys.readouterr().err


@pytest.mark.parametrize("source, message", [
    ("hf:/no/such/model.gguf", "no such file or folder"),
    ("hf:{tmp}", "holds no config.json"),
])
def test_bad_pretrained_sources_stop_with_a_clear_message(source, message, corpus, tmp_path, capsys):
    argv = ["train", "--preset", "tiny", "--corpus", corpus, "--init-from", source.format(tmp=tmp_path),
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "train.init_from" in err and "hf:" in err


def test_without_the_extra_the_message_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "transformers", None)
    with pytest.raises(UserError, match=r"optional extra `hf`.*pip install .*\[hf\]"):
        pretrained.source_config(f"hf:{tmp_path}")


def test_the_pretrained_memory_benchmark_runs_end_to_end_on_a_tiny_llama():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pretrained_memory.py"
    result = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["gate_closed_identical"] and len(summary["rows"]) == 5
