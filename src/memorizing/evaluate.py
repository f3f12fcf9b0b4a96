"""Evaluation: stream held-out documents through the model, memory filling and resetting as in use.

Reports perplexity, bits per token and bits per byte overall, by position in the document (where memory should
pay off), and on recalled spans where the corpus marks them (`recall`). With `measure_recall`, also the recall@k
of the model's search back-end against exact search, on the queries and memories met during evaluation.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from memorizing.data.corpora import CorpusError, Document, split_documents
from memorizing.data.lanes import LaneStream
from memorizing.memory.search import recall_counts

# Position-in-document edges (bytes): the curve on which memory should pay off. The last bucket ends where the
# evaluated documents are cut (data.eval_length), or is open.
POSITION_EDGES = (0, 512, 2048, 8192)


def bucket_name(start: int, end: int | None) -> str:
    short = lambda n: f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)
    return f"{short(start)}+" if end is None else f"{short(start)}-{short(end)}"


def position_buckets(length: int = 0) -> list[tuple[int, int | None]]:
    """(start, end) byte ranges of the position buckets for documents cut at `length` bytes (0 = not cut)."""
    edges = [e for e in POSITION_EDGES if not length or e < length] + [length or None]
    return list(zip(edges[:-1], edges[1:]))


def held_out(documents: list[Document], max_tokens: int = 0, length: int = 0, min_length: int = 0,
             seed: int = 0) -> list[Document]:
    """The documents to evaluate on: those of at least `min_length` bytes, in an order shuffled by `seed` (so
    that a sample spans the whole split, not its first folder), each cut to its first `length` bytes (0 = whole),
    taken until `max_tokens` tokens (0 = all)."""
    eligible = [d for d in documents if len(d.data) >= max(min_length, 2)]
    order = np.random.default_rng(seed).permutation(len(eligible))
    chosen, total = [], 0
    for i in order:
        if max_tokens and total >= max_tokens:
            break
        document = eligible[i].head(length + 1) if length else eligible[i]
        chosen.append(document)
        total += len(document.data) - 1
    return chosen


def evaluation_documents(corpus: list[Document], data, split: str, max_tokens: int,
                         fix: str = "lower data.eval_min_length") -> list[Document]:
    """The held-out documents of `split` that the config `data` (data.eval_length, data.eval_min_length) selects,
    up to `max_tokens` tokens (0 = all); refused, with `fix` in the message, when none is long enough."""
    documents = held_out(split_documents(corpus, split, data.corpus), max_tokens, data.eval_length,
                         data.eval_min_length)
    if not documents:
        raise CorpusError(f"{data.corpus}: no {split} document is at least data.eval_min_length = "
                          f"{data.eval_min_length} bytes long: {fix}.")
    return documents


# Memory fill (entries held / memory.size) at which search recall is reported.
FILL_BUCKETS = ((0.0, "<25%"), (0.25, "25-50%"), (0.5, "50-75%"), (0.75, "75-99%"), (1.0, "full"))


class _SearchRecall:
    """The search back-end's recall@k against exact search, on the memory layers' own queries (up to 32 per
    segment), by how full each lane's memory is: approximate search finds less as memory fills."""

    def __init__(self, model, samples_per_bucket: int = 32):
        self.edges = torch.tensor([edge for edge, _ in FILL_BUCKETS[1:]])
        self.hits, self.total = torch.zeros(len(FILL_BUCKETS)), torch.zeros(len(FILL_BUCKETS))
        self.samples, self.cap = torch.zeros(len(FILL_BUCKETS)), samples_per_bucket
        self.handles = [memory.register_forward_pre_hook(self._hook) for memory in model.memory_attentions()]

    def _hook(self, module, args):
        queries, memory = args[0], args[1]
        bucket = torch.bucketize(memory.fill().float().cpu() / memory.size, self.edges, right=True)  # [B]
        if bool((self.samples[bucket] >= self.cap).all()):
            return
        hits, total = recall_counts(queries[:, :, :32], memory, module.top_k, module.backend)
        self.hits.index_add_(0, bucket, hits.float().cpu())
        self.total.index_add_(0, bucket, total.float().cpu())
        self.samples.index_add_(0, bucket.unique(), torch.ones(len(bucket.unique())))

    def close(self) -> dict | None:
        for handle in self.handles:
            handle.remove()
        if not self.total.any():
            return None
        by_fill = {name: (h / t).item() for (_, name), h, t in zip(FILL_BUCKETS, self.hits, self.total) if t}
        return {"search_recall_at_k": (self.hits.sum() / self.total.sum()).item(), "search_recall_by_fill": by_fill}


class _RecallSpans:
    """On corpora that mark recalled spans (`recall`): the loss by position inside the recalled value (its first
    digit, second, ...: a lookup keyed by one token answers the first only), how often each recalled value is
    predicted exactly, and whether the first memory layer retrieves an earlier occurrence of each recalled byte
    (any head), with the attention weight the best head puts on it."""

    def __init__(self, model, documents: list[Document]):
        self.layer = model.memory_attentions()[0] if model.memory_layers else None
        if self.layer is not None:
            self.layer.record = True
        self.correct = {i: np.zeros(len(d.data), dtype=bool) for i, d in enumerate(documents) if d.spans}
        # [bytes] per document with spans: the byte's position inside its recalled span, -1 outside spans
        self.offset = {i: np.full(len(documents[i].data), -1, dtype=np.int64) for i in self.correct}
        for i in self.offset:
            for s in documents[i].spans:
                self.offset[i][s.start:s.end] = np.arange(s.end - s.start)
        longest = max((s.end - s.start for i in self.offset for s in documents[i].spans), default=0)
        self.nll_by_offset, self.count_by_offset = np.zeros(longest), np.zeros(longest, dtype=np.int64)
        # target byte -> where the same byte stood before, per document with spans
        self.sources = {i: {s.start + o: [src + o for src in s.sources]
                            for s in d.spans for o in range(s.end - s.start)}
                        for i, d in enumerate(documents) if d.spans}
        self.found, self.weight, self.queries = 0, 0.0, 0
        self.spans = [d.spans for d in documents]

    def observe(self, batch, logits: torch.Tensor, nll: torch.Tensor, lane_doc: list[int]) -> None:
        """One segment: logits [B, L, V], nll [B, L] of its targets, the document each lane reads."""
        hits = (logits.argmax(-1).cpu() == batch.targets) & batch.mask  # [B, L]
        retrieved = self.layer.retrieved if self.layer is not None else None
        for lane, doc in enumerate(lane_doc):
            if doc not in self.correct or not batch.mask[lane].any():
                continue
            n = int(batch.mask[lane].sum())
            first = int(batch.positions[lane, 0]) + 1  # the lane's first target byte
            self.correct[doc][first:first + n] = hits[lane, :n].numpy()
            offsets = self.offset[doc][first:first + n]  # [n]
            inside = offsets >= 0
            np.add.at(self.nll_by_offset, offsets[inside], nll[lane, :n].numpy()[inside])
            np.add.at(self.count_by_offset, offsets[inside], 1)
            if retrieved is None:
                continue
            for j in batch.recall[lane].nonzero().flatten().tolist():
                sources = self.sources[doc].get(first + j)
                if sources is None:
                    continue
                key_pos, weights = retrieved[0][lane, :, j].cpu(), retrieved[1][lane, :, j].cpu()  # [H, k]
                is_source = torch.isin(key_pos, torch.tensor(sources))
                self.found += int(is_source.any())
                self.weight += float((weights * is_source).sum(-1).max())
                self.queries += 1

    def close(self) -> dict:
        if self.layer is not None:
            self.layer.record, self.layer.retrieved = False, None
        spans = [bool(self.correct[i][s.start:s.end].all()) for i in self.correct for s in self.spans[i]]
        out = {"recall_exact_match": sum(spans) / len(spans)} if spans else {}
        if self.count_by_offset.any():
            out["recall_span_loss_by_offset"] = [float(s / c) if c else None for s, c in
                                                 zip(self.nll_by_offset, self.count_by_offset)]
        if self.queries:
            out |= {"recall_source_found": self.found / self.queries,
                    "recall_source_weight": self.weight / self.queries}
        return out


def far_repeats(data: bytes, context: int, window: int) -> np.ndarray:
    """[len(data)] int64: for each far repeat, the position of its earlier occurrence; -1 for other bytes. Byte p
    is a far repeat when the `context` bytes before it occurred earlier, the last time farther back than `window`
    (no nearer copy to read locally), and the byte q that followed them then equals it: a copy of byte q from
    beyond the local context predicts byte p. On code these are repeated identifiers and phrases, what the memory
    is for."""
    source = np.full(len(data), -1, dtype=np.int64)
    last = {}  # context -> the position of the byte that followed its last occurrence
    for p in range(context, len(data)):
        before = data[p - context:p]
        q = last.get(before)
        if q is not None and p - q > window and data[q] == data[p]:
            source[p] = q
        last[before] = p
    return source


class _FarRepeats:
    """The loss on the far repeats of each document (`far_repeats`), against the loss on every other byte; how often
    the first memory layer retrieved the earlier occurrence (any head); and the weight the best head puts on
    retrieved entries that hold the byte to predict, on far repeats and on the other bytes."""

    CONTEXT = 8  # bytes of context that must repeat

    def __init__(self, model, documents: list[Document], window: int):
        sources = [far_repeats(d.data, self.CONTEXT, window) for d in documents]
        self.source = torch.from_numpy(np.concatenate(sources + [np.full(1, -1)]))  # all documents' bytes
        self.start = torch.tensor([0] + [len(m) for m in sources]).cumsum(0)  # [D + 1] each document's first byte
        self.data = torch.frombuffer(bytearray(b"".join(d.data for d in documents) + b"\0"), dtype=torch.uint8)
        self.window = window
        self.nll, self.count, self.found = 0.0, 0, 0
        self.right, self.right_rest, self.rest = 0.0, 0.0, 0  # weight on the right byte: far repeats, others
        self.layer = model.memory_attentions()[0] if model.memory_layers else None
        if self.layer is not None:
            self.layer.record = True

    def observe(self, batch, nll: torch.Tensor, lane_doc: list[int]) -> None:
        """One segment: nll [B, L] of its targets, the document each lane reads (-1: none)."""
        doc = torch.tensor(lane_doc)  # [B]
        index = self.start[doc.clamp(min=0)][:, None] + batch.positions + 1  # [B, L] each target's byte
        source = self.source[index.clamp(max=len(self.source) - 1)]  # [B, L] its earlier occurrence, or -1
        far = (source >= 0) & batch.mask & (doc >= 0)[:, None]  # [B, L]
        self.nll += float(nll[far].sum())
        self.count += int(far.sum())
        if self.layer is not None and self.layer.retrieved is not None:
            key_pos, weights = (t.cpu() for t in self.layer.retrieved)  # [B, H, L, k] each; position -1: none
            is_source = key_pos == source[:, None, :, None]  # [B, H, L, k]
            self.found += int((is_source.any(-1).any(1) & far).sum())
            entry = self.start[doc.clamp(min=0)][:, None, None, None] + key_pos.clamp(min=0)  # [B, H, L, k]
            held = self.data[entry.clamp(max=len(self.data) - 1)]  # the byte each retrieved entry holds
            right = (held == batch.targets[:, None, :, None].to(held.dtype)) & (key_pos >= 0)
            weight = (weights * right).sum(-1).amax(1)  # [B, L] the best head's weight on the byte to predict
            rest = batch.mask & (doc >= 0)[:, None] & ~far
            self.right += float(weight[far].sum())
            self.right_rest += float(weight[rest].sum())
            self.rest += int(rest.sum())

    def close(self, nll_total: float, count: int) -> dict:
        if self.layer is not None:
            self.layer.record, self.layer.retrieved = False, None
        if not self.count:
            return {}
        rest = count - self.count
        out = {"loss": self.nll / self.count, "tokens": self.count, "share": self.count / count,
               "rest_loss": (nll_total - self.nll) / rest if rest else None, "context": self.CONTEXT,
               "window": self.window}
        if self.layer is not None:
            out |= {"source_found": self.found / self.count, "right_byte_weight": self.right / self.count,
                    "rest_right_byte_weight": self.right_rest / self.rest if self.rest else None}
        return {"far_repeats": out}


@torch.no_grad()
def evaluate(model, documents: list[Document], lanes: int, segment: int, measure_recall: bool = False,
             progress=None, length: int = 0) -> dict:
    """Stream `documents` (each read once, cut at `length` bytes if they were) through `lanes` lanes. A pretrained
    model reads them as its tokenizer's tokens (model.encode); bits per byte of the documents is reported for every
    model (for byte models it equals bits per token)."""
    encode = getattr(model, "encode", None)  # None: tokens are bytes
    stream = LaneStream(documents, lanes, segment, loop=False, encode=encode)
    device = next(model.parameters()).device
    state = model.init_state(lanes)
    nll_total, count = 0.0, 0
    edges = position_buckets(length)
    buckets = {bucket_name(a, b): [0.0, 0] for a, b in edges}
    recall_nll, recall_count = 0.0, 0
    search_recall = _SearchRecall(model) if measure_recall and model.memory_layers else None
    spans = _RecallSpans(model, documents) if encode is None and any(d.spans for d in documents) else None
    # byte models: the loss on bytes only a copy from beyond the local context (segment and XL cache) predicts
    repeats = _FarRepeats(model, documents, segment + model.config.model.xl_cache) if encode is None else None
    was_training = model.training
    model.eval()
    try:
        for batch in stream:
            logits, state = model(batch.tokens.to(device), state, batch.reset.to(device))
            nll = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.to(device).flatten(),
                                  reduction="none").view(batch.targets.shape).cpu()
            mask = batch.mask
            nll_total += nll[mask].sum().item()
            count += int(mask.sum())
            target_pos = batch.positions + 1
            for (start, end), name in zip(edges, buckets):
                inside = mask & (target_pos >= start) & (target_pos < (end or 1 << 62))
                buckets[name][0] += nll[inside].sum().item()
                buckets[name][1] += int(inside.sum())
            if batch.recall.any():
                recall_nll += nll[batch.recall & mask].sum().item()
                recall_count += int((batch.recall & mask).sum())
            if spans is not None:
                spans.observe(batch, logits, nll, stream.lane_doc)
            if repeats is not None:
                repeats.observe(batch, nll, stream.lane_doc)
            if progress is not None:
                progress(int(mask.sum()))
    finally:
        searched = search_recall.close() if search_recall else None
        recalled = spans.close() if spans else {}
        repeated = repeats.close(nll_total, count) if repeats else {}
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluation saw no tokens")
    loss = nll_total / count
    result = {
        "loss": loss,
        "ppl": math.exp(loss),
        "bits_per_token": loss / math.log(2),
        "tokens": count,
        "documents": len(documents),
        "by_position": {name: {"ppl": math.exp(s / n), "tokens": n} for name, (s, n) in buckets.items() if n},
    }
    # Bits per byte of the documents' text, comparable across tokenizers: with byte tokens every target is a byte
    # (bits per token); with a tokenizer, the bytes predicted are all but each document's first token's.
    predicted = count if encode is None else sum(len(d.data) - len(model.decode(stream.tokens(i)[:1]))
                                                 for i, d in enumerate(documents))
    result["bits_per_byte"] = nll_total / math.log(2) / max(1, predicted)
    if recall_count:
        result["recall_span_loss"] = recall_nll / recall_count
        result["recall_span_tokens"] = recall_count
    return result | recalled | repeated | (searched or {})


def evaluate_run(folder, split: str = "test", corpus: str | None = None, overrides: list[str] | None = None,
                 measure_recall: bool = True, progress=None) -> dict:
    """Evaluate the model a run folder holds on a split of its corpus (or `corpus`), with the documents its
    config selects (data.eval_*): what `memorizing eval` prints and a study records."""
    from memorizing.data.corpora import load_corpus
    from memorizing.model.transformer import load_model
    model = load_model(folder, overrides)
    config = model.config
    if corpus:
        config.data.corpus = corpus
    d = config.data
    documents = evaluation_documents(load_corpus(d), d, split, d.eval_tokens)
    update = None
    if progress is not None:  # a memorizing.progress reporter; a tokenizer's count is known only once read
        tokens_are_bytes = getattr(model, "encode", None) is None
        progress.total = sum(len(doc.data) - 1 for doc in documents) if tokens_are_bytes else None
        update = progress.update
    searched = measure_recall and bool(model.memory_layers) and config.memory.search != "exact"
    result = evaluate(model, documents, d.lanes, d.segment, measure_recall=searched, progress=update,
                      length=d.eval_length)
    return {"corpus": d.corpus, "split": split, "search": config.memory.search, **result}
