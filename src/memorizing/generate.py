"""Sampling that keeps writing memory: the prompt and every generated segment are remembered as they complete.

Within a segment the model is re-run on the segment's prefix without remembering it; once a segment is full it is
remembered, so its keys and values enter the XL cache and the kNN memory exactly as in training.
"""

import torch


@torch.no_grad()
def generate(model, prompt: bytes, max_new: int, temperature: float = 1.0, top_k: int = 0, seed: int = 0) -> bytes:
    segment = model.config.data.segment
    generator = torch.Generator().manual_seed(seed)
    state = model.init_state(1)
    device = model.embed.weight.device
    model.eval()
    text = list(prompt) or [10]  # an empty prompt starts from a newline
    start = 0  # first token of the current (not yet remembered) segment
    while len(text) - start > segment:  # remember the prompt's full segments (keeping one token to read)
        model(torch.tensor([text[start:start + segment]], device=device), state)
        start += segment
    for _ in range(max_new):
        logits, _ = model(torch.tensor([text[start:]], device=device), state, remember=False)
        logits = logits[0, -1] / max(temperature, 1e-6)
        if top_k:
            cutoff = logits.topk(min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < cutoff, float("-inf"))
        text.append(int(torch.multinomial(torch.softmax(logits.float().cpu(), -1), 1, generator=generator)))
        if len(text) - start > segment:  # a full segment, and the token after it: remember the segment
            model(torch.tensor([text[start:start + segment]], device=device), state)
            start += segment
    return bytes(text[len(prompt) if prompt else 1:])
