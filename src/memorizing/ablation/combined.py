"""Sections that change two components in one run: 'a single run that uses exact kNN search together with
top-k = 128'. Each side of the joining words names its component and gives its value; the variant sets both.
Anything less clear is left to the ordinary reading (which refuses a section whose words and values name
different components)."""

import re

from memorizing.ablation.choice import memory_layers, named_by
from memorizing.ablation.layout import Section
from memorizing.ablation.parsers import Context
from memorizing.ablation.registry import BY_NAME
from memorizing.ablation.values import Item, blank_kept, clauses, sentences, without_references

JOINED = re.compile(r"\s+(?:together with|combined with|in combination with|jointly with|at the same time as|"
                    r"alongside)\s+", re.I)


def combined_changes(section: Section, ctx: Context) -> tuple[str, dict] | None:
    """The one variant a section asks for that sets two components at once (its words, and the changes), or
    None."""
    placement = memory_layers(ctx.baseline)
    for source in (section.change, section.prose):
        for sentence in sentences(source or ""):
            parts = JOINED.split(without_references(blank_kept(sentence)))
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
