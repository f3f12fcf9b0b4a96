"""From a plan section to config changes: which component, which action, which values; or why not.

The decision, in order:
1. config keys written as `section.key=value` anywhere in the section are taken literally (authoritative);
2. a thing the model does not have (registry of `missing.py`) refuses the section by name, with the nearest
   option;
3. the component: values whose cue names one component only decide (`k=8`, `16 neighbours`, `exact_kNN`);
   otherwise the phrases of the title, part, change and prose vote, where clauses that say what is kept or
   fallen back to vote for nothing and the kNN memory named as a place ("in the external memory") counts little;
   a layer named as where something sits ("XL cache in every layer", "the memory in layer 9") says nothing about
   the memory's placement; a concept two components make up ("attention span") votes for both; a tie that the
   values cannot break is refused as ambiguous, and so is a value that names another component than the
   section's (values that restate the baseline's setting of another component are dropped first);
4. the action (REMOVE / REPLACE / ADD), from the action field or the section's verbs;
5. the variants: the component's REMOVE or ADD setting, or one variant per value, every number accounted for;
6. a REMOVE or ADD that gives the baseline is refused; a REPLACE value equal to the baseline stays, marked.
"""

import re
import tomllib
from dataclasses import dataclass, field

from memorizing.ablation.choice import choose_component, conjoined, cued_any, memory_layers, named_by
from memorizing.ablation.combined import combined_changes
from memorizing.ablation.configs import MappingError, apply_changes, describe, differences
from memorizing.ablation.layout import Section
from memorizing.ablation.missing import find_missing
from memorizing.ablation.parsers import Context
from memorizing.ablation.prose import (NOTHING, PLACEHOLDER, explicit_items, free_items, free_targets, normalise_action,
                                       read_action)
from memorizing.ablation.registry import BY_NAME, REASONS, Component, Refusal
from memorizing.ablation.values import Item, blank_kept, is_baseline_sentence, numbers, sentences, split_values, \
    without_baseline_clauses, without_references, words
from memorizing.config import Config, ConfigError

__all__ = ["REASONS", "Refusal", "Resolution", "Variant", "apply_changes", "resolve", "resolve_section"]


@dataclass
class Variant:
    name: str
    ablation: str  # the section's title
    replacement: str | None  # the plan's value, None for REMOVE or a bare ADD
    changes: dict  # config key -> value
    description: str = ""
    equals_baseline: bool = False  # its config is the baseline's: a REPLACE value kept for comparison, marked


@dataclass
class Resolution:
    """What one section of a plan resolved to: variants, or a refusal; and why (the deciding words)."""
    section: Section
    component: Component | None = None
    action: str = ""
    evidence: list[str] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    refusal: Refusal | None = None


# ---- 1. config keys written in the plan: authoritative -----------------------------------------------------
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
        r.refusal = _not_available(missing, asked=_asked(section))
        return r
    return _read(r, baseline)


def _not_available(found, also: str = "", asked: str = "") -> Refusal:
    """The refusal for things the model does not have: not available, naming the nearest option; or, where all of
    them are nothing the lab can ablate, unknown (with what the section asks for, in its own words)."""
    absent = [f for f in found if f.missing.reason == "not-available"]
    if absent:
        return _absent(absent, also)
    said = ", ".join(repr(f.words) for f in found)
    also = f" Also: {also}" if also else ""
    asked = f" The section asks for {asked!r}." if asked else ""
    return Refusal("unknown", f"{' and '.join(f.missing.name for f in found)} is nothing the lab can ablate (the plan "
                              f"says {said}; {found[0].missing.nearest}).{asked} Drop the section.{also}")


def _asked(section: Section) -> str:
    """What a section asks for in its own words (its change, values or prose), shortened."""
    asked = " ".join((section.change or "; ".join(section.values) or section.prose).split())
    return asked[:100] + ("..." if len(asked) > 100 else "")


def _read(r: Resolution, baseline: Config) -> Resolution:
    """Steps 3-6 for a section in words: its action, its component, its variants, the baseline rules."""
    section = r.section
    items = explicit_items(section)
    targets = free_targets(section)
    action, said = read_action(section, items)
    # 'Runs: one run with both the memory and the XL cache turned off': a value that removes two things at once
    both = conjoined(section) if action == "REMOVE" and not items or \
        len(items) == 1 and re.search(r"\bboth\b", items[0].text) else []
    if both:
        return _remove_both(r, both, baseline)
    if action == "REMOVE":
        items = [i for i in items if not PLACEHOLDER.match(i.text)]
    elif action == "ADD":  # 'none' is nothing to add
        items = [i for i in items if not NOTHING.match(i.text)]
    ctx = Context(baseline, scope=words(blank_kept(section.text())), part=words(f"{section.title} {section.part}"),
                  action=action or "REPLACE")
    items, restated = _without_restated(items, ctx)
    if restated and not items:  # 'top-k 32, 65536 entries, bucketed search, memory at layer 9': the paper as is
        said = ", ".join(repr(i.text) for i in restated)
        r.refusal = Refusal("equals-baseline", f"every value restates the baseline's own setting ({said}): the study "
                                               f"would run the baseline under another name. Drop the section, or ask "
                                               f"for a setting the baseline does not have.")
        return r
    combined = combined_changes(section, items, ctx)
    if combined:  # 'exact kNN search together with top-k = 128': one run that sets both
        said, changes = combined
        r.action, r.evidence = "REPLACE", [f"{said!r} sets two components in one run"]
        r.variants = [Variant(said, section.title, said, changes)]
        return _finish(r, baseline)
    # values vote for the component; what free text says is only a value where the section sets something
    vote_items = items or ([Item(t) for t in targets if cued_any(t, memory_layers(baseline))]
                           if action != "REMOVE" else [])
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
    if component.name == "memory_layers" and r.action == "REPLACE" and re.search(
            r"\b(?:second|another|extra|additional|further) (?:knn )?memory[- ]layer", ctx.scope):
        r.action = "ADD"  # 'a second memory layer at layer 4' adds to the baseline's
    _variants(r, component, items, targets, ctx)
    if r.refusal is not None:
        r.variants = []  # a section runs whole or not at all
        return r
    return _finish(r, baseline)


def _without_restated(items: list[Item], ctx: Context) -> tuple[list[Item], list[Item]]:
    """Values that name several components ('Memory size: 16K', 'Neighbours per query: 32'), without those that
    restate the baseline's own setting of their component (the baseline's values are no variants); and those.
    Where every value restates the baseline, none is left."""
    placement = memory_layers(ctx.baseline)
    named = [named_by(i.text, placement) for i in items]
    if len({n for n in named if n}) < 2:
        return items, []
    kept, restated = [], []
    for item, name in zip(items, named):
        if name and _restates(BY_NAME[name].parse(item, ctx).changes, ctx.baseline):
            restated.append(item)
            continue
        kept.append(item)
    return kept, restated


def _restates(changes: dict | None, baseline: Config) -> bool:
    """Whether parsed changes are the baseline's own setting (an invalid value is not: it is refused later)."""
    if changes is None:
        return False
    try:
        return not differences(baseline, apply_changes(baseline, changes))
    except MappingError:
        return False


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


def _variants(r: Resolution, component: Component, items: list[Item], targets: list[str], ctx: Context) -> None:
    """The section's variants: the component's REMOVE or ADD setting (or, where that is open, what the text
    says instead), else one per value, listed or said in the text. A value that does not parse refuses all."""
    title = r.section.title
    if r.action == "ADD" and not items and component.numeric:
        said = free_items(component, targets + [r.section.part], "", ctx)
        if said.partial:
            r.refusal = Refusal("ambiguous", _ambiguous(said.problem))
            return
        if said.items:  # 'add a Transformer-XL cache of 256 tokens': the size it says
            return _variants(r, component, said.items, targets, ctx)
    if r.action in ("REMOVE", "ADD") and not items:
        parsed = (component.remove if r.action == "REMOVE" else component.add)(ctx)
        if parsed.changes is None:
            said = free_items(component, targets, title, ctx)
            if not said.items:  # what it leaves open is not said anywhere else in the section either
                r.refusal = Refusal(parsed.reason, _ambiguous(said.problem if said.partial else parsed.problem))
                return
            r.action = "REPLACE" if r.action == "REMOVE" else r.action  # an ADD of layers still adds
            return _variants(r, component, said.items, targets, ctx)
        verb = "no" if r.action == "REMOVE" else "with"
        r.variants = [Variant(f"{verb} {component.name}", title, None, parsed.changes)]
        return
    if not items:
        said = free_items(component, targets, title, ctx)
        items, problem = said.items, said.problem
        if said.partial:
            r.refusal = Refusal("ambiguous", _ambiguous(problem))
            return
        if not items:
            detail = problem or (f"the section says to {r.action.lower()} {component.label} but gives no value")
            r.refusal = Refusal("ambiguous", _ambiguous(f"{detail}; accepted: {component.accepted}"))
            return
        r.evidence.append("values from the text: " + ", ".join(repr(i.text) for i in items))
    items = _qualified(r.section, items, component, ctx)
    placement = memory_layers(ctx.baseline)
    for item in items:
        other = named_by(blank_kept(item.text), placement)  # '2048 tokens (XL cache stays 512)': kept, no vote
        if other not in (None, component.name, "memory") and BY_NAME[other].parse(item, ctx).changes is not None:
            # 'Neighbours per query: 8' is no memory size
            r.refusal = Refusal("ambiguous", _ambiguous(
                f"value {item.text!r} names {BY_NAME[other].label}, but the section is about {component.label}; a "
                f"section changes one component: split it, or name the config keys (section.key=value)"))
            return
        parsed = component.parse(item, ctx)
        if parsed.changes is None:
            message = parsed.problem or f"value {item.text!r} is not understood for {component.label}"
            if parsed.reason == "ambiguous":
                message = _ambiguous(f"{message}; accepted: {component.accepted}")
            r.refusal = Refusal(parsed.reason, message)
            return
        changes = parsed.changes
        adds = re.match(r"\s*(?:add|adding|also add|plus)\b", item.text, re.I)  # 'add memory at layer 6'
        if component.name == "memory_layers" and (r.action == "ADD" or adds) and \
                isinstance(changes["memory.layers"], list):
            base = [n + 1 for n in ctx.baseline.memory_placement()]
            changes = {"memory.layers": sorted(set(base) | set(changes["memory.layers"]))}
        r.variants.append(Variant(item.text, title, item.text, changes))


def _qualified(section: Section, items: list[Item], component: Component, ctx: Context) -> list[Item]:
    """'With: constant mixing weight' then 'Values: [0.0, 0.5, 1.0]': a first value field without numbers that is
    no value of the component by itself, before one field that lists the numbers, says what they are; each of
    them is read with it ('constant mixing weight 0.5'). Anything else (a word among the values of one list, say)
    is left as it is."""
    if len(section.values) != 2 or numbers(section.values[0]) or not numbers(section.values[1]):
        return items
    described, numbered = split_values(section.values[0]), split_values(section.values[1])
    if len(described) != 1 or [i.text for i in items] != [i.text for i in described + numbered] or \
            component.parse(described[0], ctx).changes is not None:
        return items
    qualified = [Item(f"{described[0].text} {i.text}") for i in numbered]
    for q, n in zip(qualified, numbered):
        alone, read = component.parse(n, ctx).changes, component.parse(q, ctx).changes
        if read is None or alone is not None and alone != read:
            return items  # the words change what the numbers mean: not a mere description of them
    return qualified


def _ambiguous(detail: str) -> str:
    return f"leaves open what to run: {detail}."


def _absent(found, also: str = "") -> Refusal:
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


def resolve(sections: list[Section], baseline: Config) -> list[Resolution]:
    """Every section of a plan, resolved against the baseline."""
    return [resolve_section(s, baseline) for s in sections]
