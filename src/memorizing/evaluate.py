"""Evaluation: stream held-out documents through the model, memory filling and resetting as in use.

Reports perplexity and bits per token overall, by position in the document (where memory should pay off),
and on recalled spans where the corpus marks them (`recall`). With `measure_recall`, also the recall@k of the
model's search back-end against exact search, on the queries and memories met during evaluation.
"""

import math

import torch
import torch.nn.functional as F

from memorizing.data.corpora import Document
from memorizing.data.lanes import LaneStream
from memorizing.memory.search import recall_at_k

# Position-in-document buckets (bytes): the curve on which memory should pay off.
POSITION_BUCKETS = ((0, 512), (512, 2048), (2048, 8192), (8192, None))


def bucket_name(start: int, end: int | None) -> str:
    short = lambda n: f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)
    return f"{short(start)}+" if end is None else f"{short(start)}-{short(end)}"


def take_documents(documents: list[Document], max_tokens: int, lanes: int = 1) -> list[Document]:
    """Documents in order up to `max_tokens` tokens in all (0 = all, whole documents). With a budget, each
    document contributes at most max_tokens / lanes tokens, from its start (positions in the document keep
    their meaning), so one long document cannot keep a single lane busy while the others idle."""
    if max_tokens <= 0:
        return documents
    cap = max(1, max_tokens // lanes)
    chosen, total = [], 0
    for document in documents:
        if total >= max_tokens:
            break
        room = min(cap, max_tokens - total)
        if len(document.data) - 1 > room:
            document = Document(document.name, document.data[:room + 1],
                                tuple((a, b) for a, b in document.spans if b <= room + 1))
        chosen.append(document)
        total += len(document.data) - 1
    return chosen


class _QueryProbe:
    """Captures the memory layer's queries before the search, to measure the back-end's recall."""

    def __init__(self, model):
        self.model, self.samples, self.handles = model, [], []
        for i in model.memory_layers:
            memory_attention = model.blocks[i].attn.memory
            self.handles.append(memory_attention.register_forward_pre_hook(self._hook))

    def _hook(self, module, args):
        queries, memory = args[0], args[1]
        if len(self.samples) < 16 and bool(memory.valid.any()):
            # up to 32 queries per segment are plenty for a recall estimate
            self.samples.append(recall_at_k(queries[:, :, :32], memory, module.top_k, module.backend))

    def close(self) -> float | None:
        for handle in self.handles:
            handle.remove()
        return sum(self.samples) / len(self.samples) if self.samples else None


@torch.no_grad()
def evaluate(model, documents: list[Document], lanes: int, segment: int, max_tokens: int = 0,
             measure_recall: bool = False, progress=None) -> dict:
    documents = take_documents(documents, max_tokens, lanes)
    stream = LaneStream(documents, lanes, segment, loop=False)
    device = model.embed.weight.device
    state = model.init_state(lanes)
    nll_total, count = 0.0, 0
    buckets = {bucket_name(a, b): [0.0, 0] for a, b in POSITION_BUCKETS}
    recall_nll, recall_count = 0.0, 0
    probe = _QueryProbe(model) if measure_recall and model.memory_layers else None
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
            for (start, end), name in zip(POSITION_BUCKETS, buckets):
                inside = mask & (target_pos >= start) & (target_pos < (end or 1 << 62))
                buckets[name][0] += nll[inside].sum().item()
                buckets[name][1] += int(inside.sum())
            if batch.recall.any():
                recall_nll += nll[batch.recall & mask].sum().item()
                recall_count += int((batch.recall & mask).sum())
            if progress is not None:
                progress(int(mask.sum()))
    finally:
        search_recall = probe.close() if probe else None
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
    if recall_count:
        result["recall_span_loss"] = recall_nll / recall_count
        result["recall_span_tokens"] = recall_count
    if search_recall is not None:
        result["search_recall_at_k"] = search_recall
    return result
