"""Which component a plan section is about: values that name one component decide; otherwise the phrases of the
title, part, change and prose vote (kept and fallback clauses blanked, the kNN memory named as a place counting
little), and a tie that the values cannot break is refused as ambiguous."""

import re
from dataclasses import dataclass

from memorizing.ablation.layout import Section
from memorizing.ablation.parsers import Context
from memorizing.ablation.registry import BY_NAME, COMPONENTS, SHARED, Component, Refusal, listing
from memorizing.ablation.values import Item, blank_kept, numbers, words


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


def phrase_hits(section: Section, placement: frozenset = frozenset()) -> list[Hit]:
    """Every phrase of every component found in the section, nested matches dropped, kept clauses ignored."""
    hits = []
    for source, text in (("title", section.title), ("part", section.part), ("change", section.change),
                         ("values", " ; ".join(section.values)), ("prose", section.prose)):
        if not text:
            continue
        active = words(blank_kept(text))
        placed = without_qualifiers(active, placement)
        found = []
        for c in COMPONENTS:
            for pattern, weight in c.phrases:
                for m in re.finditer(pattern, placed if c.name == "memory_layers" else active):
                    w = 0.0 if m.groupdict().get("skip") else weight
                    if c.name == "memory" and PLACE.search(active[:m.start()][-40:]):
                        w *= 0.25  # "in the external memory": where something sits, not what is ablated
                    found.append(Hit(c.name, m.group(0).strip(), w, source, m.start(), m.end()))
        for pattern, names, weight, _ in SHARED:  # one concept of two components: a vote for each, equally
            for m in re.finditer(pattern, active):
                found += [Hit(n, m.group(0).strip(), weight, source, m.start(), m.end()) for n in names]
        found.sort(key=lambda h: h.start - h.end)
        kept: list[Hit] = []
        for h in found:
            if any(k.start <= h.start and h.end <= k.end and (k.end - k.start) > (h.end - h.start) for k in kept):
                continue
            kept.append(h)
        hits += [h for h in kept if h.weight > 0]
    return hits


# Where something sits: 'in every layer', 'in the memory layer', 'at layer 9', 'across all layers'.
LOCATION = re.compile(r"\b(?:in|at|of|across|for|on|inside|within|per|to|from|out of)\s+(?:the\s+|every\s+|each\s+|"
                      r"all\s+(?:the\s+)?|both\s+|its\s+|a\s+|that\s+|this\s+)?(?:\w+\s+){0,2}?layers?\b"
                      r"(?:\s*\(?\s*\d+(?:\s*(?:,|and|&|-|to)\s*\d+)*\s*\)?)?|\beverywhere\b|\bin all \d+ layers\b")

# The memory layer the baseline has, named as a place: 'in the memory layer', 'in its layer', 'in layer 9'.
EXISTING_LAYER = re.compile(r"^(?:in|at|of|on|inside|within|for|from|out of)\s+(?:(?:the|its|that|this)\s+(?:single\s+|"
                            r"existing\s+|current\s+|one\s+)?(?:(?:knn|memory|retrieval|knn-augmented|"
                            r"memory-augmented)[\s-]+)*layer|its\s+layer)$")


def without_qualifiers(text: str, placement: frozenset = frozenset()) -> str:
    """`text` (lowercased words) without the locations that do not say where the memory goes: a location after
    another component or a quantity of one ('Transformer-XL cache of 512 tokens in every layer': where the cache
    sits), and the memory layer the baseline already has ('the kNN memory in layer 9', 'in the memory layer': where
    the memory is). A location decides the memory's placement only where it names other layers for the memory
    itself ('put the kNN memory in every layer') or stands alone ('in layers 3 and 6')."""
    out = text
    for m in reversed(list(LOCATION.finditer(text))):
        clause = re.split(r"[.;:!?]|,\s|\s(?:and|but|while|then)\s", text[:m.start()])[-1]
        said = m.group(0).strip()
        layers = {int(n) for n in re.findall(r"\d+", said)}
        existing = bool(EXISTING_LAYER.match(said)) or (bool(layers) and layers <= placement and
                                                         not re.search(r"\b(?:to|into)\b", said))
        quantity = re.search(r"\d[\d,.]*\s*[km]?\s*(?!layers?\b)[a-z][a-z-]*\s*$", clause)  # '512 tokens'
        if existing or quantity or _names_other_component(f"{clause} {said}"):
            out = out[:m.start()] + " " * (m.end() - m.start()) + out[m.end():]
    return out


def _names_other_component(text: str) -> bool:
    """Whether `text` names a component other than the memory and its placement (by a defining or strong phrase);
    the last named wins ('the XL cache next to the kNN memory' names the memory)."""
    last, at = None, -1
    for c in COMPONENTS:
        for pattern, weight in c.phrases:
            if weight < 2:
                continue
            for m in re.finditer(pattern, text):
                if not m.groupdict().get("skip") and m.end() > at:
                    last, at = c.name, m.end()
    return last is not None and last not in ("memory", "memory_layers")


def cues(text: str, placement: frozenset = frozenset()) -> list[str]:
    """The components a value's cues name; a layer named as where something already sits is no cue."""
    t = words(text)
    named = [c.name for c in COMPONENTS if c.cue and re.search(c.cue, t)]
    if "memory_layers" in named and not re.search(BY_NAME["memory_layers"].cue, without_qualifiers(t, placement)):
        named.remove("memory_layers")
    return named


def memory_layers(baseline) -> frozenset:
    """The baseline's memory layers, 1-based."""
    return frozenset(n + 1 for n in baseline.memory_placement())


def named_by(text: str, placement: frozenset = frozenset()) -> str | None:
    """The one component a value names by itself ('Neighbours per query: 32', 'k = 8', 'Segment length: 512'),
    by its cue or a defining or strong phrase; None where it names none or several."""
    named = cues(text, placement)
    if not named:
        t = words(text)
        named = list(dict.fromkeys(c.name for c in COMPONENTS for pattern, weight in c.phrases
                                   if weight >= 2 and re.search(pattern, t)))
    return named[0] if len(named) == 1 else None


def cue_votes(items: list[Item], placement: frozenset = frozenset()) -> dict[str, list[str]]:
    """Components named by values: a value votes when its cue names exactly one component."""
    votes: dict[str, list[str]] = {}
    for item in items:
        named = cues(item.text, placement)
        if len(named) == 1:
            votes.setdefault(named[0], []).append(item.text)
    return votes


def cued_any(text: str, placement: frozenset = frozenset()) -> bool:
    return bool(cues(text, placement))


def choose_component(section: Section, items: list[Item], ctx: Context) -> tuple[Component | None, list[str],
                                                                                     Refusal | None]:
    placement = memory_layers(ctx.baseline)
    choice = alternatives(section)
    if choice:  # 'either the segment or the XL cache, whichever is simpler': the plan leaves the choice open
        said, pair = choice
        values = ", ".join(repr(i.text) for i in items)
        return None, [], _ambiguous_components(section, [c.name for c in pair], (
            f"it leaves the choice between them open ({said!r}){' for ' + values if values else ''}"))
    votes = cue_votes(items, placement)
    hits = phrase_hits(section, placement)
    scores: dict[str, float] = {}
    for h in hits:
        scores[h.component] = scores.get(h.component, 0) + h.weight
    if len(votes) == 1:
        name = next(iter(votes))
        said = ", ".join(repr(v) for v in votes[name][:3])
        rival = max((n for n in scores if n not in (name, "memory")), key=lambda n: scores[n], default=None)
        if rival and scores[rival] >= 3 and scores[rival] > scores.get(name, 0):
            if not any(numbers(i.text) for i in items) and \
                    all(BY_NAME[rival].parse(i, ctx).changes is not None for i in items):
                # 'Memory reset: the memory keeps its entries across documents': the words' own values
                return BY_NAME[rival], [f"its words name {BY_NAME[rival].label}, whose values these are"] + \
                    _words_for(rival, hits), None
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
        shared = next(((h.words, because) for h in hits for p, names, _, because in SHARED
                       if set(tied) <= set(names) and re.fullmatch(p, h.words)), None)
        why = (f"{shared[0]!r} is made up of {' and '.join(BY_NAME[n].label for n in tied)} together "
               f"({shared[1]})") if shared else "its words name several components equally"
        return None, [], _ambiguous_components(section, tied, why)
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
    asked = " ".join((section.change or "; ".join(section.values) or section.prose).split())
    if asked:  # the plan's own words for what it wants, so the reader sees what was not understood
        hint = f" The section asks for {asked[:100] + ('...' if len(asked) > 100 else '')!r}.{hint}"
    return (f"part {section.part or section.title!r} matches no component the lab can ablate.{hint} Known "
            f"components: {listing()}. Name one of them, or give config keys as section.key=value.")

CONJOINED = re.compile(
    r"\b(?:remov\w*|no|without|disabl\w*|drop\w*|turn\w* off|switch\w* off|ablat\w*)\s+(?:both\s+)?"
    r"(?P<x>[^,;.()]{2,40}?)\s+(?:and|&|plus|as well as)\s+(?:also\s+)?(?:no\s+|without\s+)?"
    r"(?P<y>[^,;.()]{2,40}?)(?=$|[,;.()]|\s+(?:to|so|in|from|for|at)\b)|"
    # 'both the kNN memory and the XL cache switched off': the verb after the pair
    r"\bboth\s+(?P<x2>[^,;.()]{2,40}?)\s+(?:and|&)\s+(?P<y2>[^,;.()]{2,40}?)\s+(?:(?:are|is|being|get|gets)\s+)?"
    r"(?:switched off|turned off|removed|disabled|dropped|ablated)\b")


def conjoined(section: Section) -> list[Component]:
    """'Remove the kNN memory and the XL cache': the two components a REMOVE names together, or []."""
    for source in (section.title, section.part, section.change, section.prose, *section.values):
        for m in CONJOINED.finditer(words(blank_kept(source or ""))):
            named = [_strongest(m["x"] or m["x2"]), _strongest(m["y"] or m["y2"])]
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


ALTERNATIVES = re.compile(
    r"\beither\s+(?P<x>[^,;.()]{2,40}?)\s+or\s+(?P<y>[^,;.()]{2,40}?)(?=$|[,;.()]|\s+(?:whichever|depending|to|so|in|"
    r"for|at)\b)|"
    r"(?P<x2>[^,;.()]{2,40}?)\s+or\s+(?P<y2>[^,;.()]{2,40}?),?\s+(?:whichever|whatever|depending on|at (?:your|the "
    r"implementer's) (?:choice|discretion)|(?:your|our) (?:choice|call)|as (?:you|convenient))\b")


def alternatives(section: Section) -> tuple[str, list[Component]] | None:
    """'either the segment or the XL cache, whichever is simpler': the two components a section offers as
    alternatives (the words that say so, and the components), or None."""
    for source in (section.title, section.part, section.change, section.prose):
        for m in ALTERNATIVES.finditer(words(blank_kept(source or ""))):
            named = [_strongest(m["x"] or m["x2"]), _strongest(m["y"] or m["y2"])]
            if all(named) and named[0] is not named[1]:
                return m.group(0).strip(), named
    return None
