"""Sections that change two components in one run: 'a single run that uses exact kNN search together with
top-k = 128', 'double the learning rate and halve the training steps, together in a single run', 'k=64 with memory
at layers 9 and 10 (single run)', or one value whose sentences each set a component ('8 layers instead of 12. Layer
9 no longer exists, so the memory layer moves to layer 5.'). Each side names its component and gives its value;
the variant sets both. Anything less clear is left to the ordinary reading (which refuses a section whose words and
values name different components)."""

import re

from memorizing.ablation.choice import memory_layers, named_by
from memorizing.ablation.layout import Section
from memorizing.ablation.parsers import Context
from memorizing.ablation.prose import target_of
from memorizing.ablation.registry import BY_NAME
from memorizing.ablation.values import Item, blank_kept, clauses, sentences, without_references

JOINED = re.compile(r"\s+(?:together with|combined with|in combination with|jointly with|at the same time as|"
                    r"alongside)\s+", re.I)
# 'X and Y, together in a single run': the words that say the two changes of an 'and' are one run
ONE_RUN = re.compile(r",?\s*\(?\b(?:(?:both\s+)?(?:together|jointly|simultaneously|at once|at the same time)"
                     r"(?:\s+in\s+(?:a\s+single|one|the\s+same)\s+run)?|in\s+(?:a\s+single|one|the\s+same)\s+"
                     r"run|(?:as\s+)?(?:a\s+)?single\s+run)\b\)?", re.I)
AND = re.compile(r"\s+(?:and|plus|&)\s+(?:also\s+)?", re.I)
WITH = re.compile(r"\s+with\s+", re.I)


def combined_changes(section: Section, items: list[Item], ctx: Context) -> tuple[str, dict] | None:
    """The one variant a section asks for that sets two components at once (its words, and the changes), or
    None. Read from its one value where it lists one, else from its change and prose."""
    value = section.values[0] if len(section.values) == 1 and items else None
    texts = [value] if value else [] if items else [section.change, section.prose]
    for source in texts:
        for sentence in sentences(source or ""):
            found = _joined(sentence, ctx)
            if found:
                return found
    return _sentence_by_sentence(value, ctx) if value else None


def _joined(sentence: str, ctx: Context) -> tuple[str, dict] | None:
    """Two changes joined in one sentence ('X together with Y', 'X and Y, in one run', 'X with Y (single run)')."""
    text = without_references(blank_kept(sentence))
    parts = JOINED.split(text)
    if len(parts) != 2 and ONE_RUN.search(text):
        rest = ONE_RUN.sub(" ", text)
        parts = WITH.split(rest)
        if len(parts) != 2:
            parts = AND.split(rest)
    if len(parts) != 2:
        return None
    left, right = clauses(parts[0])[-1:], clauses(parts[1])[:1]
    if not left or not right:
        return None
    return _both(left[0], right[0], ctx)


# the second sentence of a value says what follows from the first: one run, not two
CONSEQUENCE = re.compile(r"\b(?:so|therefore|hence|thus|consequently|accordingly|as a result|which means)\b", re.I)


def _sentence_by_sentence(value: str, ctx: Context) -> tuple[str, dict] | None:
    """One value of two sentences, each setting a different component, the second saying what follows from the
    first ('8 layers instead of 12. Layer 9 no longer exists, so the memory layer moves to layer 5.'): one run
    with both."""
    said = sentences(re.sub(r"(?<=[a-z0-9])\.\s+(?=[A-Z])", ".\n", value))
    if len(said) != 2 or not CONSEQUENCE.search(said[1]):
        return None
    return _both(target_of(said[0]), target_of(said[1]), ctx)


def _both(left: str, right: str, ctx: Context) -> tuple[str, dict] | None:
    """The changes of two sides that each name a different component and give a value of it, or None."""
    placement = memory_layers(ctx.baseline)
    changes, names = {}, []
    for side in (left, right):
        name = named_by(side, placement)
        parsed = BY_NAME[name].parse(Item(side), ctx) if name else None
        if parsed is None or parsed.changes is None or name in names:
            return None
        names.append(name)
        changes.update(parsed.changes)
    return f"{left.strip()} with {right.strip()}", changes
