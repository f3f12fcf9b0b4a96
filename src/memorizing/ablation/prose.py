"""What a section's free text says: the action its verbs name, and the values it states ('replace the gate with
a fixed gate of 0.3', 'we try 16 neighbours instead, and also 128'). A number counts as a value only with the
component's unit after it or keyword before it, or next to one that has them: never a stray number of the text."""

import re
from dataclasses import dataclass, field

from memorizing.ablation.layout import Section
from memorizing.ablation.parsers import MULTIPLIER, Context, outside_parens, relative_factor
from memorizing.ablation.registry import Component
from memorizing.ablation.values import (Item, blank_kept, is_baseline_sentence, is_baseline_value, numbers, sentences,
                                        split_values, without_baseline_clauses, without_references, words)


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

PART_VALUES = re.compile(r"\(\s*(?:try|trying|test|testing|sweep|values?:?|vary|varied|use|→|->)\s+([^()]+)\)", re.I)


def explicit_items(section: Section) -> list[Item]:
    """The values the section lists: its value fields, or values its part names ('top-k (try 8 and 64)')."""
    items = []
    for value in section.values or PART_VALUES.findall(section.part):
        items += split_values(value)
    return items

NOTHING = re.compile(r"^\s*(?:none|nothing|n/?a|not applicable|no (?:value|replacement)s?|-+|–|—)\s*$", re.I)

PLACEHOLDER = re.compile(r"^\s*(?:n/?a|none|nothing|-|–|—|off|removed?|disabled?|no replacement|not applicable|"
                         r"\(none\)|nil|null|0)\s*$", re.I)


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
            if not sentence.strip() or is_baseline_sentence(sentence) or is_outcome(sentence):
                continue
            target = target_of(sentence)
            if target.strip(" ;,"):
                out.append(target)
    return out

# 'If perplexity improves, the memory is under-used at k=32': what a result would mean, not a setting to run
CONDITION = re.compile(r"^\s*(?:if|unless|should|once|whether|in case|when)\b[^,;]*,\s*(?P<then>.+)$", re.I)
EXPECTATION = re.compile(r"^\s*(?:(?:we|i)\s+)?(?:expect|predict|suspect|hope|guess|bet)\b|"
                         r"^\s*(?:expected|expectation|hypothesis|prediction)\b", re.I)


def is_outcome(sentence: str) -> bool:
    """A sentence that says what a result would show or is expected to be, and asks for nothing: its numbers are
    no values ('If perplexity improves, the memory is under-used at k=32'). A condition on a request ('if that
    helps, also try 128 neighbours') still asks for its setting."""
    if EXPECTATION.search(sentence):
        return True
    condition = CONDITION.match(sentence)
    if not condition:
        return False
    return not any(re.search(pattern, words(condition["then"])) for _, pattern in VERBS)


PURPOSE = re.compile(r"[,;]?\s+(?:to (?:see|test|check|measure|find out|understand|quantify|evaluate|assess|study|"
                     r"isolate|compare|verify|confirm|show)|in order to|so that|so we|because|since|which (?:should|"
                     r"would|will|tests)|as a (?:sanity )?check|for comparison)\b.*$", re.I)


AFTERWARDS = re.compile(r"\s+and\s+(?:then\s+)?(?:re-?train|re-?run|train|run|compare|evaluate|measure|report|check|"
                        r"see|log)\b[^,;]*$", re.I)


def target_of(sentence: str) -> str:
    """The new setting a sentence states: after an arrow, 'replace ... with X', 'set ... to X', 'use X';
    without what it replaces, what is kept and why it is done."""
    s = PURPOSE.sub("", blank_kept(without_references(sentence)))
    s = AFTERWARDS.sub("", s)  # 'lower the learning rate to 3e-4 and retrain': what is done after, no value
    arrow = re.split(r"\s*(?:→|->|=>|⇒)\s*", s)
    if len(arrow) > 1:
        old = re.search(r"\S*\d\S*(?:\s+[A-Za-z-]+){0,2}\s*$", arrow[-2])
        # 'Neighbours: 32 → 8': the new number, with what it counts
        s = _with_subject(arrow[-2][:old.start()], arrow[-1]) if old else arrow[-1]
    setting = re.search(r"\b(?:switch|chang|set|mov|increas|decreas|reduc|rais|lower|shrink|grow|go|fix|bring|cut)\w*\b"
                        r"(?P<subject>.*?)\b(?:to|at)\s+(?P<value>.+)$", s, re.I)
    if setting and all(_bare(v) for v in re.split(r",|;|\s/\s|\s(?:and|or)\s", setting["value"].rstrip(" .;,!"))):
        return _with_subject(setting["subject"], setting["value"])  # 'reduce top-k to 8': 'top-k 8'
    m = re.search(r"\breplac\w*\b.*?\b(?:with|by)\s+(.+)$", s, re.I) or \
        re.search(r"\b(?:swap|exchang|trad)\w*\b.*?\bfor\s+(.+)$", s, re.I) or \
        (setting and re.search(r"(.+)", setting["value"])) or \
        re.search(r"\b(?:sweep|swept|vary|varies|varied|varying|rang(?:e|es|ing))\w*\b.*?\b(?:over|across|among|"
                  r"between|through|in)\s+(.+)$", s, re.I) or \
        re.search(r"\b(?:use|using|try|trying|tries)\s+(.+)$", s, re.I)
    if m:
        s = m[1]
    if not re.search(r"doubl|halv|powers? of|x\s*2\b|\b2\s*x", s, re.I):
        s = re.sub(r"\bfrom\s+\S+\s+(?:up\s+|down\s+)?to\s+", "", s, flags=re.I)
    s = re.sub(r"\(\s*\)", " ", s)
    return re.sub(r"\s+", " ", s).strip(" ,;")


def _with_subject(subject: str, value: str) -> str:
    """A bare number with the words that say what it counts ('the number of neighbours (from 32)', '8' ->
    'number of neighbours 8'); the subject's own numbers are dropped."""
    subject = re.sub(r"\bfrom\s+(?:\S+\s+){0,2}?\S*\d\S*", " ", subject, flags=re.I)
    subject = re.sub(r"\S*\d\S*", " ", subject)
    tail = " ".join(subject.split()[-4:]).strip(" ,;:")
    return f"{tail} {value.strip()}".strip(" ,;.") if tail else value.strip(" ,;.")


@dataclass
class Said:
    """The values free text states, or the problem with them; `partial` where the text lists more numbers than
    could be read as values (then no value is taken: taking some would run a different study than the plan's)."""
    items: list[Item] = field(default_factory=list)
    problem: str = ""
    partial: bool = False


def free_items(component: Component, targets: list[str], title: str, ctx: Context) -> Said:
    """Values said in free text. A number counts only with the component's unit after it or keyword before it,
    or next to one that has them; a stray number of the text is never taken. Where a list gives values and also
    numbers that are none of them ('4096 lists, probing either 8 or 32'), nothing is taken."""
    first_problem = ""
    for source, texts in (("text", targets), ("title", [without_id(title)])):
        items = []
        for target in texts:
            taken = _values_of(component, target, source, ctx)
            if isinstance(taken, str):
                first_problem = first_problem or taken
                continue
            left = _left_out(target, taken)
            if taken and left:
                return Said(problem=_partial_problem(component, taken, left), partial=True)
            failed = _failed(component, target, taken, ctx) if taken else None
            if failed:  # 'layer 4, and, in a separate run, the final layer (layer 11)': not just the first
                return Said(problem=f"the text gives {', '.join(repr(i.text) for i in taken)} for "
                                    f"{component.label} but also {failed.text!r}, which is not understood: "
                                    f"{component.parse(failed, ctx).problem}", partial=True)
            items += taken
        if items:  # 'as in the paper' next to values is a remark on them, no variant of its own
            return Said([i for i in items if not is_baseline_value(i.text)] or items)
    return Said(problem=first_problem)


def _values_of(component: Component, target: str, source: str, ctx: Context) -> list[Item] | str:
    """The values of one sentence (or title) for `component`, or the problem with its first numeric value."""
    if not component.numeric:
        pieces = [p for p in split_values(target) if component.parse(p, ctx).changes is not None]
        settings = {repr(sorted(component.parse(p, ctx).changes.items())) for p in pieces}
        if len(settings) > 1:  # 'exact or bucketed'; not 'a bucketed relative bias, as in T5' (one setting)
            return pieces
        whole = Item(target)
        return [whole] if component.parse(whole, ctx).changes is not None else pieces
    pieces = split_values(target)
    cued = [p for p in pieces if _cued(component, p.text)]
    items, problem = [], ""
    for p in pieces:
        nums = numbers(outside_parens(p.text))
        if source == "title" and p not in cued and not (cued and _bare(p.text)):
            continue
        if nums and p not in cued and not (cued and _bare(p.text)):
            continue
        if not nums and not (p in cued or MULTIPLIER.search(words(p.text)) or is_baseline_value(p.text) or
                             _names(component, p.text)):
            continue
        parsed = component.parse(p, ctx)
        if parsed.changes is not None:
            items.append(p)
        elif (nums or MULTIPLIER.search(words(p.text))) and not problem:
            problem = parsed.problem or ""
    return items if items or not problem else problem


def _failed(component: Component, target: str, taken: list[Item], ctx: Context) -> Item | None:
    """A piece of a value list that names the component (its cue) but does not parse: a value the list asks
    for that cannot be read, so taking the others alone would run part of the plan's study."""
    whole = [_squashed(t.text) for t in taken]
    for p in split_values(target):
        if any(_squashed(p.text) in t for t in whole) or not _cued(component, p.text):
            continue
        if component.parse(p, ctx).changes is None:
            return p
    return None


def _left_out(target: str, taken: list[Item]) -> list[Item]:
    """The pieces of a value list that hold numbers (outside parentheses) and were not taken as values."""
    whole = [_squashed(t.text) for t in taken]
    return [p for p in split_values(target) if not any(_squashed(p.text) in t for t in whole)
            and numbers(outside_parens(p.text))]


def _squashed(text: str) -> str:
    """Text without its separators ('1024 lists and probing 16' and '1024 lists, probing 16' are the same words)."""
    return re.sub(r"\W+|\b(?:and|or)\b", "", text.lower())


def _partial_problem(component: Component, taken: list[Item], left: list[Item]) -> str:
    said = ", ".join(repr(i.text) for i in taken)
    other = ", ".join(repr(i.text) for i in left)
    return (f"the text gives {said} for {component.label} but also {other}, which is not read as a value of it; "
            f"write each variant whole, one per line (e.g. 'Values: ...; ...'), or name the config keys "
            f"(section.key=value)")


TITLE_ID = re.compile(r"^\s*(?:(?:ablation|experiment|exp|study|run|test|variant|arm|section|part|item|step|no\.?)\s*"
                      r"#?\s*[A-Za-z]?\d+[a-z]?\s*(?:[.:)—–|-]+\s*|\s+(?=[A-Za-z]))|(?:#?\d+|[A-Za-z]\d{1,2})"
                      r"(?:\.\d+)*\s*[.:)—–|-]+\s+)", re.I)


def without_id(title: str) -> str:
    """A title without the identifier it starts with ('Ablation 2 — Fixed mixing', 'A3: Top-k', '4) Reset'): an
    identifier's number is never a value."""
    return TITLE_ID.sub("", title, count=1)


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
        if component.units and re.match(rf"-?\s*(?:{component.units})\b", after):  # '256 tokens', '256-token'
            return True
        if component.keywords and re.search(component.keywords, before):
            return True
    return bool(component.cue and re.search(component.cue, t) and numbers(t)) or \
        (component.name == "gate" and re.search(r"sigmoid|equal mix|only", t) is not None)


def _names(component: Component, text: str) -> bool:
    """Whether a piece of free text names the component by a defining or strong phrase ('no XL cache at all': its
    off value, for a component whose numbers have one)."""
    t = words(text)
    return any(weight >= 2 and re.search(pattern, t) for pattern, weight in component.phrases)


def _bare(text: str) -> bool:
    """A number on its own, perhaps after the word that joins it to the list ('and 16', 'plus 32', 'at 128')."""
    return bool(re.fullmatch(r"\s*(?:(?:and|or|plus|also|then|finally|at|to)\s+)*[\d.,]+(?:e[-+]?\d+)?\s*[kK]?\s*",
                             words(text)))
