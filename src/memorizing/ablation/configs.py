"""A variant's configuration: the baseline with the variant's changes applied, compared with the baseline as the
model sees it, and described in words for the dry run, the resolved plan and the report."""

from memorizing.config import Config, ConfigError


class MappingError(ValueError):
    """A variant's changes that the config refuses (raised by apply_changes)."""


def apply_changes(baseline: Config, changes: dict) -> Config:
    """The baseline with `changes` applied and validated. A shorter segment also shortens an XL cache that
    would no longer fit (the cache holds part of the previous segment)."""
    config = baseline.copy()
    try:
        for key, value in changes.items():
            config.set(key, value)
        if config.model.xl_cache > config.data.segment and "model.xl_cache" not in changes:
            config.model.xl_cache = config.data.segment
        return config.validate()
    except ConfigError as e:
        raise MappingError(str(e)) from None


def effective(config: Config) -> dict:
    """A config as the model sees it: memory.layers as the 1-based layers it names ('last' = [depth])."""
    data = config.to_dict()
    data["memory"]["layers"] = [n + 1 for n in config.memory_placement()]
    return data


def differences(baseline: Config, config: Config) -> dict:
    """Config keys whose effective values differ from the baseline's: key -> (baseline value, new value)."""
    a, b = effective(baseline), effective(config)
    return {f"{s}.{k}": (a[s].get(k), v) for s in b for k, v in b[s].items() if a[s].get(k) != v}


def describe(diff: dict, baseline: Config, config: Config) -> str:
    """A short human description of a variant, from how its config differs from the baseline."""
    if not diff:
        return "the baseline's own setting, as the plan asks (trained once, reported under both names)"
    parts, done = [], set()
    layers = [n + 1 for n in config.memory_placement()]
    where = f"layer{'s' if len(layers) > 1 else ''} {', '.join(map(str, layers))}"
    if "memory.enabled" in diff and not config.memory.enabled:
        keep = " and its Transformer-XL cache" if config.model.xl_cache else ""
        parts.append(f"kNN memory branch removed; {where} keep{'s' if len(layers) == 1 else ''} local attention"
                     f"{keep}")
        done.add("memory.enabled")
    if "memory.qk_norm" in diff or "model.qk_norm" in diff:
        mem, rest = config.memory.qk_norm, config.model.qk_norm
        state = "removed" if not (mem and rest) else "restored"
        if not mem and not rest:
            parts.append("key/query normalisation removed in every layer")
        elif "memory.qk_norm" in diff and "model.qk_norm" not in diff:
            parts.append(f"key/query normalisation {state} in the memory layer ({where}); other layers keep "
                         f"{'it' if rest else 'theirs off'}")
        elif "model.qk_norm" in diff and "memory.qk_norm" not in diff:
            parts.append(f"key/query normalisation {state} in the non-memory layers; the memory layer ({where}) "
                         f"keeps {'it' if mem else 'its off'}")
        else:
            parts.append("key/query normalisation " + ("on" if mem and rest else "changed") + " in every layer")
        done |= {"memory.qk_norm", "model.qk_norm"}
    if "memory.combine" in diff or "memory.gate" in diff:
        mem = config.memory
        if mem.combine == "fixed":
            g = mem.gate
            meaning = {0.0: "local attention only", 1.0: "memory only", 0.5: "an equal mix"}.get(g)
            parts.append(f"learned gate replaced by a fixed gate {g:g}" + (f" ({meaning})" if meaning else
                                                                          f" ({g:g} memory, {1 - g:g} local)"))
        elif mem.combine == "joint":
            parts.append("no gate: one softmax over memory and local logits together")
        else:
            parts.append("the learned per-head gate")
        done |= {"memory.combine", "memory.gate"}
    if any(k in diff for k in ("memory.search", "memory.ivf_lists", "memory.ivf_probe", "memory.search_buckets")):
        mem = config.memory
        text = {"exact": "exact kNN search (brute force)", "bucketed": "approximate (bucketed) kNN search",
                "ivf": "IVF (inverted-file, faiss) kNN search"}[mem.search]
        if mem.search == "ivf":
            lists = f"{mem.ivf_lists} lists" if mem.ivf_lists else "default lists"
            probe = f"{mem.ivf_probe} probed per query" if mem.ivf_probe else "default probes"
            text += f" with {lists}, {probe}"
        if mem.search == "bucketed" and "memory.search_buckets" in diff:
            text += f" with {mem.search_buckets} buckets per neighbour"
        base = {"exact": "exact", "bucketed": "approximate (bucketed)", "ivf": "IVF"}[baseline.memory.search]
        parts.append(f"{text} instead of the baseline's {base} search")
        done |= {"memory.search", "memory.ivf_lists", "memory.ivf_probe", "memory.search_buckets"}
    simple = {
        "memory.position_bias": lambda o, n: {"none": "no position bias for retrieved memories",
                                              "t5-relative": "T5-style relative position bias for retrieved memories",
                                              "learned-absolute": "learned bias by the stored key's absolute "
                                                                  "position for retrieved memories"}[n],
        "memory.size": lambda o, n: f"memory of {n:,} entries per lane and head (baseline {o:,})",
        "memory.top_k": lambda o, n: f"{n} neighbours retrieved per query (baseline {o})",
        "memory.layers": lambda o, n: f"memory in layer{'s' if len(n) > 1 else ''} {_layers(n)} (baseline "
                                      f"{_layers(o)})",
        "model.xl_cache": lambda o, n: "Transformer-XL cache off" if n == 0 else
        f"Transformer-XL cache of {n} tokens (baseline {o})",
        "data.segment": lambda o, n: f"segment of {n} tokens (baseline {o})",
        "memory.reset": lambda o, n: "memory kept across documents (not cleared at document boundaries)" if not n
        else "memory cleared at every document boundary",
        "model.depth": lambda o, n: f"{n} layers (baseline {o})",
        "model.heads": lambda o, n: f"{n} heads (baseline {o})",
        "model.head_dim": lambda o, n: f"heads of {n} dimensions (baseline {o})",
        "model.dim": lambda o, n: f"width {n} (baseline {o})",
    }
    for key, (old, new) in diff.items():
        if key in done:
            continue
        if key in simple:
            parts.append(simple[key](old, new))
        else:
            parts.append(f"{key} = {new} (baseline {old})")
    return "; ".join(parts)


def _layers(layers: list[int]) -> str:
    return ", ".join(map(str, layers))
