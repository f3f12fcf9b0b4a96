"""Which component a plan section is about: values that name one component decide; otherwise the phrases of the
title, part, change and prose vote (kept and fallback clauses blanked, the kNN memory named as a place counting
little), and a tie that the values cannot break is refused as ambiguous."""

import re
from dataclasses import dataclass

from memorizing.ablation.layout import Section
from memorizing.ablation.parsers import Context
from memorizing.ablation.registry import BY_NAME, COMPONENTS, Component, Refusal, listing
from memorizing.ablation.values import Item, blank_kept, words


PLACE = re.compile(r"\b(?:in|of|from|for|on|into|over|within|inside|across|at|to|by|through|about)\s+"
                   r"(?:the\s+|an?\s+|its\s+|each\s+|every\s+)?(?:\S+\s+){0,3}$")


@dataclass
class Hit:
    component: str
    words: str
    weight: float
    source: str
    start: int
    end: int


def phrase_hits(section: Section) -> list[Hit]:
    """Every phrase of every component found in the section, nested matches dropped, kept clauses ignored."""
    hits = []
    for source, text in (("title", section.title), ("part", section.part), ("change", section.change),
                         ("values", " ; ".join(section.values)), ("prose", section.prose)):
        if not text:
            continue
        active = words(blank_kept(text))
        found = []
        for c in COMPONENTS:
            for pattern, weight in c.phrases:
                for m in re.finditer(pattern, active):
                    w = 0.0 if m.groupdict().get("skip") else weight
                    if c.name == "memory" and PLACE.search(active[:m.start()][-40:]):
                        w *= 0.25  # "in the external memory": where something sits, not what is ablated
                    found.append(Hit(c.name, m.group(0).strip(), w, source, m.start(), m.end()))
        found.sort(key=lambda h: h.start - h.end)
        kept: list[Hit] = []
        for h in found:
            if any(k.start <= h.start and h.end <= k.end and (k.end - k.start) > (h.end - h.start) for k in kept):
                continue
            kept.append(h)
        hits += [h for h in kept if h.weight > 0]
    return hits


def cue_votes(items: list[Item]) -> dict[str, list[str]]:
    """Components named by values: a value votes when its cue names exactly one component."""
    votes: dict[str, list[str]] = {}
    for item in items:
        t = words(item.text)
        named = [c.name for c in COMPONENTS if c.cue and re.search(c.cue, t)]
        if len(named) == 1:
            votes.setdefault(named[0], []).append(item.text)
    return votes


def cued_any(text: str) -> bool:
    t = words(text)
    return any(c.cue and re.search(c.cue, t) for c in COMPONENTS)


def choose_component(section: Section, items: list[Item], ctx: Context) -> tuple[Component | None, list[str],
                                                                                     Refusal | None]:
    votes = cue_votes(items)
    hits = phrase_hits(section)
    scores: dict[str, float] = {}
    for h in hits:
        scores[h.component] = scores.get(h.component, 0) + h.weight
    if len(votes) == 1:
        name = next(iter(votes))
        said = ", ".join(repr(v) for v in votes[name][:3])
        rival = max((n for n in scores if n not in (name, "memory")), key=lambda n: scores[n], default=None)
        if rival and scores[rival] >= 3 and scores[rival] > scores.get(name, 0) and \
                not all(BY_NAME[rival].parse(i, ctx).changes is not None for i in items):
            return None, [], _ambiguous_components(section, [rival, name], f"its words name {BY_NAME[rival].label} "
                                                                          f"but its values ({said}) name "
                                                                          f"{BY_NAME[name].label}")
        return BY_NAME[name], [f"values {said} name {BY_NAME[name].label} only"] + _words_for(name, hits), None
    candidates = list(votes) if len(votes) > 1 else [c.name for c in COMPONENTS]
    best = max((scores.get(n, 0) for n in candidates), default=0)
    if best <= 0:
        if len(votes) > 1:
            return None, [], _ambiguous_components(section, list(votes), "its values name several components")
        return None, [], Refusal("unknown", _unknown_message(section))
    tied = [n for n in candidates if scores.get(n, 0) == best]
    if len(tied) > 1 and items:
        fitting = [n for n in tied if all(BY_NAME[n].parse(i, ctx).changes is not None for i in items)]
        if len(fitting) == 1:
            return BY_NAME[fitting[0]], [f"values fit {BY_NAME[fitting[0]].label} only"] + \
                _words_for(fitting[0], hits), None
    if len(tied) > 1:
        return None, [], _ambiguous_components(section, tied, "its words name several components equally")
    return BY_NAME[tied[0]], _words_for(tied[0], hits), None


def _words_for(name: str, hits: list[Hit]) -> list[str]:
    out = []
    for h in sorted((h for h in hits if h.component == name), key=lambda h: -h.weight):
        said = f"{h.words!r} ({h.source})"
        if h.weight >= 1 and said not in out:
            out.append(said)
    return out[:3]


def _ambiguous_components(section: Section, names: list[str], why: str) -> Refusal:
    options = ", ".join(f"{BY_NAME[n].name} ({BY_NAME[n].label}: {', '.join(BY_NAME[n].keys)})" for n in names)
    return Refusal("ambiguous", f"part {section.part or section.title!r} matches several components equally "
                                f"({options}): {why}. Say which is meant, or name the config key "
                                f"(section.key=value). Known components: {listing()}.")


def _unknown_message(section: Section) -> str:
    text = words(section.text())
    hint = ""
    if re.search(r"\bcorpus\b|\bdataset\b|\bdata set\b|training data|\bpg-?19\b|\barxiv\b", text):
        hint = " The training corpus is chosen with --corpus, not in a plan."
    elif re.search(r"tokeni[sz]er|vocab\w*|\bbpe\b|sentencepiece", text):
        hint = " The model reads bytes (model.vocab_size = 256); there is no tokenizer to change."
    return (f"part {section.part or section.title!r} matches no component the lab can ablate.{hint} Known "
            f"components: {listing()}. Name one of them, or give config keys as section.key=value.")

CONJOINED = re.compile(
    r"\b(?:remov\w*|no|without|disabl\w*|drop\w*|turn\w* off|switch\w* off|ablat\w*)\s+(?:both\s+)?"
    r"(?P<x>[^,;.()]{2,40}?)\s+(?:and|&|plus|as well as)\s+(?:also\s+)?(?:no\s+|without\s+)?"
    r"(?P<y>[^,;.()]{2,40}?)(?=$|[,;.()]|\s+(?:to|so|in|from|for|at)\b)")


def conjoined(section: Section) -> list[Component]:
    """'Remove the kNN memory and the XL cache': the two components a REMOVE names together, or []."""
    for source in (section.title, section.part, section.change, section.prose):
        for m in CONJOINED.finditer(words(blank_kept(source or ""))):
            named = [_strongest(m["x"]), _strongest(m["y"])]
            if all(named) and named[0] is not named[1]:
                return named
    return []


def _strongest(fragment: str) -> Component | None:
    scores: dict[str, float] = {}
    for h in phrase_hits(Section(title=fragment, line=0)):
        scores[h.component] = scores.get(h.component, 0) + h.weight
    best = max(scores.values(), default=0)
    top = [n for n, v in scores.items() if v == best]
    return BY_NAME[top[0]] if best >= 1 and len(top) == 1 else None
