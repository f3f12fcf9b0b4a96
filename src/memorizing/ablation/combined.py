"""Sections that change two components in one run: 'a single run that uses exact kNN search together with
top-k = 128', 'double the learning rate and halve the training steps, together in a single run'. Each side of the
joining words names its component and gives its value; the variant sets both. Anything less clear is left to the
ordinary reading (which refuses a section whose words and values name different components)."""

import re

from memorizing.ablation.choice import memory_layers, named_by
from memorizing.ablation.layout import Section
from memorizing.ablation.parsers import Context
from memorizing.ablation.registry import BY_NAME
from memorizing.ablation.values import Item, blank_kept, clauses, sentences, without_references

JOINED = re.compile(r"\s+(?:together with|combined with|in combination with|jointly with|at the same time as|"
                    r"alongside)\s+", re.I)
# 'X and Y, together in a single run': the words that say the two changes of an 'and' are one run
ONE_RUN = re.compile(r",?\s*\(?\b(?:(?:both\s+)?(?:together|jointly|simultaneously|at once|at the same time)"
                     r"(?:\s+in\s+(?:a\s+single|one|the\s+same)\s+run)?|in\s+(?:a\s+single|one|the\s+same)\s+"
                     r"run)\b\)?", re.I)
AND = re.compile(r"\s+(?:and|plus|&)\s+(?:also\s+)?", re.I)


def combined_changes(section: Section, ctx: Context) -> tuple[str, dict] | None:
    """The one variant a section asks for that sets two components at once (its words, and the changes), or
    None."""
    placement = memory_layers(ctx.baseline)
    for source in (section.change, section.prose):
        for sentence in sentences(source or ""):
            text = without_references(blank_kept(sentence))
            parts = JOINED.split(text)
            if len(parts) != 2 and ONE_RUN.search(text):
                parts = AND.split(ONE_RUN.sub(" ", text))
            if len(parts) != 2:
                continue
            left, right = clauses(parts[0])[-1:], clauses(parts[1])[:1]
            if not left or not right:
                continue
            changes, names = {}, []
            for side in (left[0], right[0]):
                name = named_by(side, placement)
                parsed = BY_NAME[name].parse(Item(side), ctx) if name else None
                if parsed is None or parsed.changes is None or name in names:
                    break
                names.append(name)
                changes.update(parsed.changes)
            else:
                return f"{left[0].strip()} with {right[0].strip()}", changes
    return None
