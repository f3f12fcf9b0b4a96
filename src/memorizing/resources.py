"""What a run will need, estimated before it starts, so that an impossible run is refused up front."""

import os

from memorizing.config import Config
from memorizing.errors import UserError


def estimate_bytes(config: Config) -> dict[str, int]:
    """Rough peak memory of training, by part (fp32)."""
    m, mem, d = config.model, config.memory, config.data
    inner = m.heads * m.head_dim
    per_block = 4 * m.dim * inner + 2 * m.ffn_mult * m.dim * m.dim + m.heads * m.bias_buckets + 4 * m.dim
    params = m.vocab_size * m.dim + m.depth * per_block
    tokens = d.lanes * d.segment
    context = d.segment + m.xl_cache
    # saved activations per block: projections, FFN hidden, attention probabilities
    activations = (m.depth * tokens * (6 * m.dim + 3 * inner + 2 * m.ffn_mult * m.dim)
                   + m.depth * d.lanes * m.heads * d.segment * context)
    layers = len(config.memory_layers())
    knn_memory = layers * d.lanes * (m.heads * mem.size * m.head_dim * 2 * 4 + mem.size * 8)
    # per memory layer: the score matrix of the search (bounded by chunking) and the retrieved keys and values
    retrieval = layers * (min(tokens * m.heads * mem.size, 1 << 26) + 3 * tokens * m.heads * mem.top_k * m.head_dim)
    xl_cache = m.depth * d.lanes * m.heads * m.xl_cache * m.head_dim * 2 * 4
    return {"weights": 4 * params, "optimizer": 8 * params, "gradients": 4 * params,
            "activations": 4 * activations, "knn_memory": knn_memory, "retrieval": 4 * retrieval,
            "xl_cache": xl_cache}


def available_bytes(device: str) -> int | None:
    if device.startswith("cuda"):
        import torch
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return free
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(config: Config, device: str) -> None:
    parts = estimate_bytes(config)
    need, have = sum(parts.values()), available_bytes(device)
    if have is not None and need > have:
        gib = lambda n: f"{n / 2 ** 30:.1f} GiB"
        detail = ", ".join(f"{k} {gib(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
        raise UserError(f"this run needs about {gib(need)} ({detail}) but {device} has {gib(have)} available: "
                        f"lower memory.size or data.lanes (the kNN memory grows with both), or model.dim/depth.")
