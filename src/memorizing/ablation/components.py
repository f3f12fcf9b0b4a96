"""What can be ablated: a registry from the free text of a plan to config changes.

Each component names the config keys it controls, the phrases that identify it in a plan's "Ablated Part" (and
title), what REMOVE and a bare ADD mean for it, and how a replacement value (`fixed_gate=0.5`, `exact_kNN`,
`T5 relative position bias`, `65K`) becomes config values. Any replacement may also name config keys directly:
`memory.size=4096, memory.top_k=64`.
"""

import re
from dataclasses import dataclass, field
from typing import Callable

from memorizing.ablation.plan import Ablation, PlanError
from memorizing.config import Config, ConfigError


@dataclass
class Variant:
    name: str
    ablation: str  # the ablation's title
    replacement: str | None  # the plan's value, None for REMOVE or a bare ADD
    changes: dict  # config key -> value


@dataclass(frozen=True)
class Component:
    name: str
    label: str
    keys: tuple[str, ...]
    # (phrase, weight): phrases are matched in the lowercased title and ablated part; generic phrases weigh less
    phrases: tuple[tuple[str, float], ...]
    value: Callable[[str], dict | None]  # a replacement value -> changes, None when it is not understood
    accepted: str  # the values `value` accepts, for error messages
    remove: dict | None = None
    add: dict | None = None
    notes: str = field(default="")


def number(text: str) -> int | None:
    """'65K' -> 65536, '8192' -> 8192, '1.5k' -> 1536, 'top-32' -> 32."""
    match = re.search(r"(\d+(?:\.\d+)?)\s*([km])?\b", text.lower())
    if not match:
        return None
    scale = {"k": 1024, "m": 1024 * 1024}.get(match[2] or "", 1)
    return int(float(match[1]) * scale)


def _switch(key: str) -> Callable[[str], dict | None]:
    def value(text: str) -> dict | None:
        t = text.lower()
        if re.search(r"\b(off|false|no|none|without|disabled?|remove[d]?)\b", t):
            return {key: False}
        if re.search(r"\b(on|true|yes|with|enabled?|l2|add(ed)?)\b", t):
            return {key: True}
        return None
    return value


def _gate(text: str) -> dict | None:
    t = text.lower()
    fixed = re.search(r"(?:fixed[_ ]?gate|gate|g)\s*[=:]\s*([0-9.]+)", t) or re.fullmatch(r"\s*([0-9.]+)\s*", t)
    if fixed:
        try:
            return {"memory.combine": "fixed", "memory.gate": float(fixed[1])}
        except ValueError:
            return None
    if re.search(r"joint|single softmax|one softmax|concat", t):
        return {"memory.combine": "joint"}
    if "learn" in t:
        return {"memory.combine": "gate"}
    return None


def _search(text: str) -> dict | None:
    t = text.lower()
    if re.search(r"\bivf\b|inverted|faiss", t):
        return {"memory.search": "ivf"}
    if re.search(r"approx|bucket", t):
        return {"memory.search": "bucketed"}
    if re.search(r"exact|brute|dense", t):
        return {"memory.search": "exact"}
    return None


def _bias(text: str) -> dict | None:
    t = text.lower()
    if re.search(r"t5|relative", t):
        return {"memory.position_bias": "t5-relative"}
    if "absolute" in t:
        return {"memory.position_bias": "learned-absolute"}
    if re.search(r"\bnone\b|\bno\b", t):
        return {"memory.position_bias": "none"}
    return None


def _count(key: str) -> Callable[[str], dict | None]:
    def value(text: str) -> dict | None:
        n = number(text)
        return None if n is None else {key: n}
    return value


def _layers(text: str) -> dict | None:
    t = text.lower()
    if "last" in t:
        return {"memory.layers": "last"}
    numbers = [int(n) for n in re.findall(r"\d+", t.split(" of ")[0])]
    return {"memory.layers": numbers} if numbers else None


def _segment(text: str) -> dict | None:
    n = number(text)
    return None if n is None else {"data.segment": n}


COMPONENTS = (
    Component("memory", "kNN memory branch", ("memory.enabled",),
              (("knn-augmented", 1), ("memory branch", 1), ("knn memory", 0.75), ("knn attention", 1),
               ("external memory", 0.5), ("retriev", 0.5), ("memorizing", 0.5), ("memory layer", 0.25)),
              _switch("memory.enabled"), "on/off", remove={"memory.enabled": False}, add={"memory.enabled": True}),
    Component("gate", "gate mixing memory and local attention", ("memory.combine", "memory.gate"),
              (("gating", 1), ("gate", 1), ("fuses", 0.5), ("mix", 0.5), ("interpolat", 0.5), ("combination", 0.5)),
              _gate, "fixed_gate=X (X in [0, 1]), learned, joint (one softmax)",
              remove={"memory.combine": "joint"}, add={"memory.combine": "gate"},
              notes="REMOVE drops the gate for one joint softmax over memory and local logits"),
    Component("qk_norm", "key/query normalisation", ("memory.qk_norm",),
              (("normaliz", 1), ("normalis", 1), ("qk-norm", 1), ("qk norm", 1), ("key/query", 0.75),
               ("keys and queries", 0.75), ("staleness", 0.75), ("distributional shift", 0.5)),
              _switch("memory.qk_norm"), "on/off", remove={"memory.qk_norm": False}, add={"memory.qk_norm": True}),
    Component("search", "kNN search (exact or approximate)",
              ("memory.search", "memory.search_buckets", "memory.ivf_lists", "memory.ivf_probe"),
              (("approximate", 1), ("knn search", 1), ("exact", 0.75), ("nearest neighbo", 0.75), ("search", 0.5),
               ("top-k routine", 0.5)),
              _search, "exact, approximate (bucketed), ivf", remove={"memory.search": "exact"},
              add={"memory.search": "bucketed"},
              notes="REMOVE of the approximation means exact search"),
    Component("position_bias", "position bias for memory", ("memory.position_bias",),
              (("position bias", 1), ("positional bias", 1), ("positional", 0.75), ("position", 0.5)),
              _bias, "none, T5 relative, learned absolute", remove={"memory.position_bias": "none"},
              add={"memory.position_bias": "t5-relative"}),
    Component("memory_size", "memory size", ("memory.size",),
              (("memory size", 1), ("capacity", 1), ("number of entries", 0.75), ("size of the memory", 1)),
              _count("memory.size"), "a number of entries, e.g. 8192 or 65K"),
    Component("top_k", "number of retrieved neighbours (top-k)", ("memory.top_k",),
              (("top-k", 1), ("top k", 1), ("number of neighbo", 1), ("retrieved keys", 0.75), ("k nearest", 0.75)),
              _count("memory.top_k"), "a number, e.g. 32"),
    Component("memory_layers", "placement of the memory layer", ("memory.layers",),
              (("which layer", 1), ("layer placement", 1), ("placement", 0.75), ("memory layer", 0.75),
               ("layer index", 0.75), ("depth of the memory", 1)),
              _layers, "1-based layer numbers or last"),
    Component("xl_cache", "Transformer-XL cache", ("model.xl_cache",),
              (("xl cache", 1), ("transformer-xl", 1), ("xl-cache", 1), ("recurren", 0.5), ("cache", 0.5)),
              _count("model.xl_cache"), "a number of tokens (0 = off)", remove={"model.xl_cache": 0}),
    Component("segment", "segment length (local context)", ("data.segment",),
              (("segment", 1), ("context length", 1), ("local context", 0.75), ("window", 0.5)),
              _segment, "a number of tokens, e.g. 512"),
)


def match_component(ablation: Ablation, source: str = "plan") -> Component:
    text = f"{ablation.title} {ablation.part}".lower()
    scores = {c.name: sum(w for phrase, w in c.phrases if phrase in text) for c in COMPONENTS}
    best = max(scores.values())
    winners = [c for c in COMPONENTS if scores[c.name] == best]
    listing = "; ".join(f"{c.name} ({c.label})" for c in COMPONENTS)
    if best == 0:
        raise PlanError(f"{source}, line {ablation.line}: ablated part {ablation.part!r} matches no component. "
                        f"Known components: {listing}. Name one of them in the part or title, or write a TOML plan "
                        f"with config keys.")
    if len(winners) > 1:
        raise PlanError(f"{source}, line {ablation.line}: ablated part {ablation.part!r} matches several components "
                        f"equally ({', '.join(c.name for c in winners)}): make the part or title more specific. "
                        f"Known components: {listing}.")
    return winners[0]


DIRECT = re.compile(r"^\s*([a-z_]+\.[a-z_]+)\s*=\s*(.+?)\s*$")


def direct_changes(text: str) -> dict | None:
    """'memory.size=4096, memory.top_k=64' -> changes, when every part names a config key."""
    parts = [p for p in re.split(r",\s*(?=[a-z_]+\.[a-z_]+\s*=)", text) if p.strip()]
    matches = [DIRECT.match(p) for p in parts]
    if not parts or not all(matches):
        return None
    return {m[1]: m[2] for m in matches}


def variants_for(ablation: Ablation, source: str = "plan") -> list[Variant]:
    """The variants one ablation asks for (not yet checked against a config; see apply_changes)."""
    if ablation.direct:
        return [Variant(name, ablation.title, name, dict(changes)) for name, changes in ablation.direct]
    component = match_component(ablation, source)
    if ablation.action == "REMOVE" and not ablation.replacements:
        if component.remove is None:
            raise PlanError(f"{source}, line {ablation.line}: {component.label} cannot be removed: use REPLACE "
                            f"with values ({component.accepted}).")
        return [Variant(f"no {component.name}", ablation.title, None, dict(component.remove))]
    if ablation.action == "ADD" and not ablation.replacements:
        if component.add is None:
            raise PlanError(f"{source}, line {ablation.line}: say what to add to {component.label} as "
                            f"**Replacement** values ({component.accepted}).")
        return [Variant(f"with {component.name}", ablation.title, None, dict(component.add))]
    variants = []
    for value in ablation.replacements:
        changes = direct_changes(value) or component.value(value)
        if changes is None:
            raise PlanError(f"{source}, line {ablation.line} ('### {ablation.title}'): replacement {value!r} is not "
                            f"understood for {component.label}; accepted: {component.accepted}, or config keys "
                            f"written as section.key=value.")
        variants.append(Variant(value, ablation.title, value, changes))
    return variants


def apply_changes(baseline: Config, changes: dict, where: str = "variant") -> Config:
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
        raise PlanError(f"{where}: {e}") from None
