"""From a plan section to config changes: which component, which action, which values; or why not.

The decision, in order:
1. config keys written as `section.key=value` anywhere in the section are taken literally (authoritative);
2. a thing the model does not have (registry of `missing.py`) refuses the section by name, with the nearest
   option;
3. the component: values whose cue names one component only decide (`k=8`, `16 neighbours`, `exact_kNN`);
   otherwise the phrases of the title, part, change and prose vote, where clauses that say what is kept or
   fallen back to vote for nothing and the kNN memory named as a place ("in the external memory") counts little;
   a tie that the values cannot break is refused as ambiguous;
4. the action (REMOVE / REPLACE / ADD), from the action field or the section's verbs;
5. the variants: the component's REMOVE or ADD setting, or one variant per value, every number accounted for;
6. a REMOVE or ADD that gives the baseline is refused; a REPLACE value equal to the baseline stays, marked.
"""

import re
import tomllib
from dataclasses import dataclass, field

from memorizing.ablation.layout import Section
from memorizing.ablation.missing import find_missing
from memorizing.ablation.registry import (BY_NAME, COMPONENTS, MULTIPLIER, Component, Context, Parsed, listing,
                                         outside_parens, relative_factor)
from memorizing.ablation.values import (CLAUSE_EDGE, Item, is_baseline_sentence, is_kept, numbers, sentences,
                                        split_values, without_baseline_clauses, without_references, words)
from memorizing.config import Config, ConfigError

REASONS = ("not-available", "equals-baseline", "ambiguous", "unknown", "invalid")


class MappingError(ValueError):
    """A variant's changes that the config refuses (raised by apply_changes)."""


@dataclass
class Refusal:
    reason: str  # one of REASONS
    message: str


@dataclass
class Variant:
    name: str
    ablation: str  # the section's title
    replacement: str | None  # the plan's value, None for REMOVE or a bare ADD
    changes: dict  # config key -> value
    description: str = ""
    equals_baseline: bool = False  # the plan names the baseline's own setting (kept for comparison)


@dataclass
class Resolution:
    """What one section of a plan resolved to: variants, or a refusal; and why (the deciding words)."""
    section: Section
    component: Component | None = None
    action: str = ""
    evidence: list[str] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    refusal: Refusal | None = None


# ---- configs -------------------------------------------------------------------------------------------------------
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


# ---- 1. config keys written literally --------------------------------------------------------------------------------
LITERAL = re.compile(r"(?<![\w.])(?P<key>(?:model|memory|data|train)\.[A-Za-z_]\w*)\s*(?:=|:|\s to\s)\s*"
                     r"(?P<value>\"[^\"]*\"|'[^']*'|\[[^\]]*\]|[^\s,;)`]+)")
LITERAL_SET = re.compile(r"(?<![\w.])(?P<key>(?:model|memory|data|train)\.[A-Za-z_]\w*)\s*(?:∈|\bin\b)\s*"
                         r"[{\[](?P<values>[^{}\[\]]+)[}\]]")


def literal_value(raw: str):
    raw = raw.strip().rstrip(".")
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip("'\"")


def literal_variants(section: Section) -> list[tuple[str, dict]] | Refusal | None:
    """`memory.top_k=8` / `memory.top_k=128` -> two variants; keys on one line, or not repeated, form one."""
    said = [without_baseline_clauses(s) for s in sentences(section.text()) if not is_baseline_sentence(s)]
    text = without_references("\n".join(said))
    pairs = []
    for m in LITERAL_SET.finditer(text):  # memory.size ∈ {4096, 16384}: one variant per value
        pairs += [(m["key"], v.strip(), f"{m['key']}={v.strip()}") for v in re.split(r"[,;]", m["values"])
                  if v.strip()]
    text = LITERAL_SET.sub(" ", text)
    pairs += [(m["key"], m["value"], m.group(0).strip()) for m in LITERAL.finditer(text)]
    if not pairs:
        return None
    variants, current, names = [], {}, []
    for key, raw, said in pairs:
        value = literal_value(raw)
        try:
            Config().set(key, value)
        except ConfigError as e:
            reason = "unknown" if "unknown config key" in str(e) else "invalid"
            return Refusal(reason, f"config key {said!r}: {e}")
        if key in current:
            variants.append((", ".join(names), current))
            current, names = {}, []
        current[key] = value
        names.append(said)
    variants.append((", ".join(names), current))
    return variants


# ---- 3. the component --------------------------------------------------------------------------------------------------
PLACE = re.compile(r"\b(?:in|of|from|for|on|into|over|within|inside|across|at|to|by|through|about)\s+"
                   r"(?:the\s+|an?\s+|its\s+|each\s+|every\s+)?(?:\S+\s+){0,3}$")


def blank_kept(text: str) -> str:
    """`text` with each clause that says what is kept or fallen back to blanked out (positions preserved)."""
    out, start = [], 0
    for edge in list(CLAUSE_EDGE.finditer(text)) + [None]:
        end = edge.start() if edge else len(text)
        clause = text[start:end]
        out.append(" " * len(clause) if is_kept(clause) else clause)
        if edge:
            out.append(edge.group(0))
            start = edge.end()
    return "".join(out)


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


# ---- 4. the action --------------------------------------------------------------------------------------------------
ACTION_WORDS = {
    "REMOVE": r"remove|drop|disable|delete|ablate|eliminate|omit|exclude|off|turn off|switch off|without|no|"
              r"take out|leave out|cut|stop|deactivate|zero out",
    "REPLACE": r"replace|swap|change|vary|sweep|modify|set|tune|substitute|scale|reduce|increase|decrease|compare|"
               r"move|use|try|halve|double|shrink|grow|resize|adjust|alter",
    "ADD": r"add|introduce|incorporate|insert|enable|include|append|extend|equip|attach",
}
VERBS = (
    ("REMOVE", r"\b(?:remov(?:e|es|ed|ing)|drop(?:s|ped|ping)?|disabl(?:e|es|ed|ing)|(?:switch|turn)(?:s|ed|ing)? "
               r"off|(?:switch|turn)(?:s|ed|ing)? (?:\S+ ){1,5}off\b|without\b|no longer|ablat(?:e|es|ed|ing)|"
               r"eliminat\w+|delet\w+|get rid of|do not use|don't use|omit\w*|strip\w*|(?:take|takes|taking|took|"
               r"leave|leaving|cut|rip|knock)s? (?:\S+ ){0,4}?out\b|stop(?:s|ped|ping)?|ceas\w+|never|"
               r"do(?:es)? not|don't)|(?:^|[:;,(—–-]\s*)no\b|\boff\s*$"),
    ("ADD", r"\b(?:add(?:s|ed|ing)?|incorporat\w+|introduc\w+|insert\w*|enabl(?:e|es|ed|ing)|equip\w*)\b"),
    ("REPLACE", r"\b(?:replac\w+|swap\w*|substitut\w+|chang\w+|try|tries|trying|set|sets|setting|use|using|"
                r"increas\w+|decreas\w+|reduc\w+|var(?:y|ies|ied)|sweep\w*|mov(?:e|es|ed|ing)|halv\w+|doubl\w+|"
                r"shrink\w*|grow\w*|scal(?:e|es|ed|ing)|compar\w+|larger|smaller|bigger|shorter|longer|fewer|more|"
                r"instead)\b|→|->|\bvs\b|\bversus\b"),
)


def normalise_action(text: str) -> str | None:
    t = words(text).strip()
    for action, pattern in ACTION_WORDS.items():
        if re.match(rf"(?:{pattern})\b", t):
            return action
    return None


def read_action(section: Section, items: list[Item]) -> tuple[str | None, str]:
    """The section's action and the word that said it: the action field, else the verbs of the text (values
    without a verb mean REPLACE)."""
    if section.action:
        action = normalise_action(section.action)
        if action:
            return action, section.action.split()[0]
    inferred, said = infer_action(section)
    if items:
        return ("ADD", said) if inferred == "ADD" else ("REPLACE", said if inferred == "REPLACE" else "")
    return inferred, said


def infer_action(section: Section) -> tuple[str | None, str]:
    """The action a section's verbs say (the first one in title, change, prose), with the word that said it."""
    parts = [section.title, section.change]
    parts += [s for s in sentences(section.prose) if not is_baseline_sentence(s)]
    text = words(blank_kept(" . ".join(p for p in parts if p)))
    best = None
    for action, pattern in VERBS:
        m = re.search(pattern, text)
        if m and (best is None or m.start() < best[1]):
            best = (action, m.start(), m.group(0).strip(" :;,(—–"))
    return (best[0], best[2]) if best else (None, "")


# ---- 5. values --------------------------------------------------------------------------------------------------------
PART_VALUES = re.compile(r"\(\s*(?:try|trying|test|testing|sweep|values?:?|vary|varied|use|→|->)\s+([^()]+)\)", re.I)


def explicit_items(section: Section) -> list[Item]:
    """The values the section lists: its value fields, or values its part names ('top-k (try 8 and 64)')."""
    items = []
    for value in section.values or PART_VALUES.findall(section.part):
        items += split_values(value)
    return items


def free_targets(section: Section) -> list[str]:
    """What the change, the part ('replaced by X') and the prose say the new setting is, sentence by sentence."""
    out = []
    sources = [section.change]
    replaced = re.search(r"\breplaced\s+(?:by|with)\s+(.+)$", section.part, re.I)
    if replaced:
        sources.append(replaced[1])

    sources.append(section.prose)
    for source in sources:
        for sentence in sentences(source or ""):
            sentence = without_baseline_clauses(sentence)
            if not sentence.strip() or is_baseline_sentence(sentence):
                continue
            target = target_of(sentence)
            if target.strip(" ;,"):
                out.append(target)
    return out


PURPOSE = re.compile(r"[,;]?\s+(?:to (?:see|test|check|measure|find out|understand|quantify|evaluate|assess|study|"
                     r"isolate|compare|verify|confirm|show)|in order to|so that|so we|because|since|which (?:should|"
                     r"would|will|tests)|as a (?:sanity )?check|for comparison)\b.*$", re.I)


def target_of(sentence: str) -> str:
    """The new setting a sentence states: after an arrow, 'replace ... with X', 'set ... to X', 'use X';
    without what it replaces, what is kept and why it is done."""
    s = PURPOSE.sub("", blank_kept(without_references(sentence)))
    arrow = re.split(r"\s*(?:→|->|=>|⇒)\s*", s)
    if len(arrow) > 1:
        s = arrow[-1]
    m = re.search(r"\breplac\w*\b.*?\b(?:with|by)\s+(.+)$", s, re.I) or \
        re.search(r"\b(?:swap|exchang|trad)\w*\b.*?\bfor\s+(.+)$", s, re.I) or \
        re.search(r"\b(?:switch|chang|set|mov|increas|decreas|reduc|rais|lower|shrink|grow|go|fix|bring|cut)\w*\b"
                  r".*?\b(?:to|at)\s+(.+)$", s, re.I) or \
        re.search(r"\b(?:use|using|try|trying|tries)\s+(.+)$", s, re.I)
    if m:
        s = m[1]
    if not re.search(r"doubl|halv|powers? of|x\s*2\b|\b2\s*x", s, re.I):
        s = re.sub(r"\bfrom\s+\S+\s+(?:up\s+|down\s+)?to\s+", "", s, flags=re.I)
    s = re.sub(r"\(\s*\)", " ", s)
    return re.sub(r"\s+", " ", s).strip(" ,;")


def free_items(component: Component, targets: list[str], title: str, ctx: Context) -> tuple[list[Item], str]:
    """Values said in free text. A number counts only with the component's unit after it or keyword before it,
    or next to one that has them; a stray number of the text is never taken."""
    first_problem = ""
    for source, texts in (("text", targets), ("title", [title])):
        items = []
        for target in texts:
            if not component.numeric:
                pieces = [p for p in split_values(target) if component.parse(p, ctx).changes is not None]
                whole = Item(target)
                if pieces and len(pieces) > 1:
                    items += pieces
                elif component.parse(whole, ctx).changes is not None:
                    items.append(whole)
                elif pieces:
                    items += pieces
                continue
            pieces = split_values(target)
            cued = [p for p in pieces if _cued(component, p.text)]
            for p in pieces:
                nums = numbers(outside_parens(p.text))
                if source == "title" and p not in cued:
                    continue
                if nums and p not in cued and not (cued and _bare(p.text)):
                    continue
                if not nums and not (p in cued or MULTIPLIER.search(words(p.text))):
                    continue
                parsed = component.parse(p, ctx)
                if parsed.changes is not None:
                    items.append(p)
                elif nums and not first_problem:
                    first_problem = parsed.problem or ""
        if items:
            return items, ""
    return [], first_problem


def _cued(component: Component, text: str) -> bool:
    """Whether a piece of free text is this component's value: a number with its unit or keyword, or words
    that name one of its values."""
    t = words(text)
    if not numbers(t):
        return bool(component.cue and re.search(component.cue, t))
    if isinstance(relative_factor(t), float):
        return True  # 'by a factor of 4', '4x smaller' 
    for n in numbers(t):
        after, before = t[n.end:].strip(), t[:n.start]
        if component.units and re.match(rf"(?:{component.units})\b", after):
            return True
        if component.keywords and re.search(component.keywords, before):
            return True
    return bool(component.cue and re.search(component.cue, t) and numbers(t)) or \
        (component.name == "gate" and re.search(r"sigmoid|equal mix|only", t) is not None)


def _bare(text: str) -> bool:
    return bool(re.fullmatch(r"\s*(?:and\s+|or\s+)?(?:also\s+)?[\d.,]+\s*[kK]?\s*", words(text)))


# ---- the whole section ------------------------------------------------------------------------------------------------
def resolve_section(section: Section, baseline: Config) -> Resolution:
    """The variants a section asks for, or why it is refused; every decision with the words that made it."""
    r = Resolution(section)
    if section.direct:
        r.action, r.evidence = "SET", ["config keys of a TOML plan"]
        r.variants = [Variant(name, section.title, replacement, dict(changes), description or "")
                      for name, changes, description, replacement in section.direct]
        return _finish(r, baseline, literal=True)
    literal = literal_variants(section)
    if isinstance(literal, Refusal):
        missing = find_missing(section.text()) if literal.reason == "unknown" else []
        r.refusal = _not_available(missing, also=literal.message) if missing else literal
        return r
    if literal:
        r.action, r.evidence = "SET", ["config keys written in the plan (authoritative)"]
        r.variants = [Variant(name, section.title, name, changes) for name, changes in literal]
        return _finish(r, baseline, literal=True)
    missing = find_missing(section.text())
    if missing:
        r.refusal = _not_available(missing)
        return r

    items = explicit_items(section)
    targets = free_targets(section)
    action, said = read_action(section, items)
    both = conjoined(section) if action == "REMOVE" and not items else []
    if both:
        return _remove_both(r, both, baseline)
    if action == "REMOVE":
        items = [i for i in items if not PLACEHOLDER.match(i.text)]
    ctx = Context(baseline, scope=words(blank_kept(section.text())), part=words(f"{section.title} {section.part}"),
                  action=action or "REPLACE")
    # values vote for the component; what free text says is only a value where the section sets something
    vote_items = items or ([Item(t) for t in targets if _cued_any(t)] if action != "REMOVE" else [])
    component, evidence, refusal = choose_component(section, vote_items, ctx)
    if refusal:
        r.refusal = refusal
        return r
    r.component, r.evidence, r.action = component, evidence, action or "REPLACE"
    if said and not (section.action and normalise_action(section.action)):
        r.evidence.append(f"action from {said!r}")
    if action is None and not targets:
        r.refusal = Refusal("ambiguous", f"the section names {component.label} but not what to do with it: say "
                                         f"REMOVE, REPLACE with values ({component.accepted}) or ADD.")
        return r
    _variants(r, component, items, targets, ctx)
    if r.refusal is not None:
        r.variants = []  # a section runs whole or not at all
        return r
    return _finish(r, baseline)


PLACEHOLDER = re.compile(r"^\s*(?:n/?a|none|nothing|-|–|—|off|removed?|disabled?|no replacement|not applicable|"
                         r"\(none\)|nil|null|0)\s*$", re.I)


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


def _remove_both(r: Resolution, both: list[Component], baseline: Config) -> Resolution:
    """One variant without both things a REMOVE names; refused when one of them has no REMOVE setting."""
    ctx = Context(baseline, scope=words(blank_kept(r.section.text())), action="REMOVE")
    changes = {}
    for c in both:
        parsed = c.remove(ctx)
        if parsed.changes is None:
            r.refusal = Refusal("ambiguous", _ambiguous(f"the section removes {both[0].label} and {both[1].label} "
                                                        f"together, and {parsed.problem}"))
            return r
        changes.update(parsed.changes)
    r.component, r.action = both[0], "REMOVE"
    r.evidence = [f"REMOVE names {both[0].label} and {both[1].label} together: one variant without both"]
    r.variants = [Variant(f"no {both[0].name}, no {both[1].name}", r.section.title, None, changes)]
    return _finish(r, baseline)


def _cued_any(text: str) -> bool:
    t = words(text)
    return any(c.cue and re.search(c.cue, t) for c in COMPONENTS)


def _variants(r: Resolution, component: Component, items: list[Item], targets: list[str], ctx: Context) -> None:
    title = r.section.title
    if r.action in ("REMOVE", "ADD") and not items:
        parsed = (component.remove if r.action == "REMOVE" else component.add)(ctx)
        if parsed.changes is None:
            said, _ = free_items(component, targets, title, ctx)
            if not said:  # what it leaves open is not said anywhere else in the section either
                r.refusal = Refusal(parsed.reason, _ambiguous(parsed.problem))
                return
            r.action = "REPLACE"
            return _variants(r, component, said, targets, ctx)
        verb = "no" if r.action == "REMOVE" else "with"
        r.variants = [Variant(f"{verb} {component.name}", title, None, parsed.changes)]
        return
    if not items:
        items, problem = free_items(component, targets, title, ctx)
        if not items:
            detail = problem or (f"the section says to {r.action.lower()} {component.label} but gives no value")
            r.refusal = Refusal("ambiguous", _ambiguous(f"{detail}; accepted: {component.accepted}"))
            return
        r.evidence.append("values from the text: " + ", ".join(repr(i.text) for i in items))
    for item in items:
        parsed = component.parse(item, ctx)
        if parsed.changes is None:
            message = parsed.problem or f"value {item.text!r} is not understood for {component.label}"
            if parsed.reason == "ambiguous":
                message = _ambiguous(f"{message}; accepted: {component.accepted}")
            r.refusal = Refusal(parsed.reason, message)
            return
        changes = parsed.changes
        if component.name == "memory_layers" and r.action == "REPLACE" and re.search(
                r"\b(?:second|another|extra|additional|further) (?:knn )?memory[- ]layer", ctx.scope):
            r.action = "ADD"
        if r.action == "ADD" and component.name == "memory_layers":
            base = [n + 1 for n in ctx.baseline.memory_placement()]
            changes = {"memory.layers": sorted(set(base) | set(changes["memory.layers"]))}
        r.variants.append(Variant(item.text, title, item.text, changes))


def _ambiguous(detail: str) -> str:
    return f"leaves open what to run: {detail}."


def _not_available(found, also: str = "") -> Refusal:
    names = [f.missing.name for f in found]
    nearest = found[0].missing.nearest if len(found) == 1 else \
        "; ".join(dict.fromkeys(f"for {f.missing.name}: {f.missing.nearest}" for f in found))
    said = ", ".join(repr(f.words) for f in found)
    verb = "is" if len(names) == 1 else "are"
    return Refusal("not-available", f"{' and '.join(names)} {verb} not available in this model (the plan says "
                                    f"{said}). Nearest available: {nearest}. Drop the section or ask for the "
                                    f"nearest option.{(' Also: ' + also) if also else ''}")


def _finish(r: Resolution, baseline: Config, literal: bool = False) -> Resolution:
    """Validate each variant against the baseline, describe it, and apply the equals-baseline rules."""
    for v in r.variants:
        try:
            config = apply_changes(baseline, v.changes)
        except MappingError as e:
            r.refusal = Refusal("invalid", f"variant {v.name!r} is not a valid configuration: {e}")
            r.variants = []
            return r
        diff = differences(baseline, config)
        v.equals_baseline = not diff
        v.description = v.description or describe(diff, baseline, config)
    same = [v for v in r.variants if v.equals_baseline]
    if same and not literal:
        if r.action in ("REMOVE", "ADD") or len(same) == len(r.variants):
            what = (f"{r.action} of {r.component.label}" if r.action in ("REMOVE", "ADD") and r.component
                    else f"value {same[0].name!r}")
            settings = ", ".join(f"{k} = {_show(v)}" for k, v in same[0].changes.items())
            r.refusal = Refusal("equals-baseline",
                                f"{what} equals the baseline ({settings} is already the baseline's setting): the "
                                f"study would run the baseline under another name. Drop the section, or ask for a "
                                f"setting the baseline does not have.")
            r.variants = []
    return r


def _show(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


# ---- descriptions --------------------------------------------------------------------------------------------------------
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


def resolve(sections: list[Section], baseline: Config) -> list[Resolution]:
    return [resolve_section(s, baseline) for s in sections]
