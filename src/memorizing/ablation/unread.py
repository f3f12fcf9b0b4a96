"""Lines of a plan that look like an ablation but that no section read: a warning, so that a layout the reader
misses (a terse note above the first heading, a list it takes for an aside) is never lost without a word.

A line looks like an ablation where it names a component by a defining or strong phrase or a value's cue ('k in
{8, 16}'), says REMOVE, REPLACE or ADD, or gives a config key. It counts as read where most of its words are in
the text of the sections (titles, fields, prose and notes of all sections together: the words, not the layout,
since fields lose their names and one paragraph may hold several sections). Lines under an aside heading
(Baseline, Summary, Notes, ...) and sentences that describe the baseline are not expected to be read."""

import re

from memorizing.ablation.choice import cues
from memorizing.ablation.fields import field_role
from memorizing.ablation.layout import CONTAINER_WORD, HEADING, ITEM, Section, is_aside_title
from memorizing.ablation.markup import clean
from memorizing.ablation.numerals import digits
from memorizing.ablation.registry import names_component
from memorizing.ablation.values import is_baseline_sentence, numbers, words

LOOKS_LIKE = re.compile(r"\b(?:REMOVE|REPLACE|ADD)\b|(?<![\w.])(?:model|memory|data|train)\.[a-z_]+\s*[=:∈]")
MAX_WORDS = 30  # a line longer than this that names components is discussion, unless it says an action
READ_SHARE = 0.6  # the share of a line's words that the sections must hold for the line to count as read


def unread_lines(text: str, sections: list[Section]) -> list[tuple[int, str]]:
    """(line number, text) of each line that looks like an ablation and that no section read."""
    read = set().union(*(_word_set(" ".join((s.title, s.text(), s.notes, s.metrics)))
                         for s in sections if not s.direct))
    if not read:
        return []
    out, aside = [], False
    for line in clean(text):
        said = line.text.strip()
        heading = HEADING.match(said)
        if heading:  # a heading no section is titled by holds others, or is an aside
            aside = is_aside_title(heading[2])
            continue
        said = re.sub(r"^[*_\s]*(?:\d{1,3}|[A-Za-z]\d{0,2})[.)]\s+", "", ITEM.sub(r"\g<text>", said))
        if not said or aside or not _looks_like_ablation(said) or _no_ablation(said):
            continue
        mine = _word_set(said)
        if mine and len(mine & read) < READ_SHARE * len(mine):
            out.append((line.number, " ".join(said.split())))
    return out


def _looks_like_ablation(text: str) -> bool:
    """A line that names a component or an action, short as a note or list item is (a paragraph of discussion
    that names components is no ablation unless it says REMOVE, REPLACE or ADD, or gives a config key)."""
    return bool(LOOKS_LIKE.search(text)) or len(text.split()) <= MAX_WORDS and (names_component(text) or
                                                                              bool(numbers(text) and cues(text)))


# what a line that is no ablation starts with: the baseline, the paper, a plan's own title
ABOUT_BASELINE = re.compile(r"^\W*(?:the\s+)?(?:baseline|paper|current (?:model|setup))\b", re.I)


def _no_ablation(text: str) -> bool:
    """A line that describes the baseline, labels an aside ('Notes: ...', 'Baseline: ...'), titles a list of
    ablations ('Memory-placement ablations:'), or heads a table with field names."""
    label = re.match(r"^\W*([A-Za-z][\w /&'-]{0,30}?)\W*:", text)
    cells = [c.strip(" *_") for c in text.strip().strip("|").split("|")] if text.lstrip().startswith("|") else []
    return bool(is_baseline_sentence(text) or ABOUT_BASELINE.match(text) or label and is_aside_title(label[1]) or
                len(text.split()) <= 12 and CONTAINER_WORD.search(text) or
                cells and all(field_role(c) or not c for c in cells))


def _word_set(text: str) -> set[str]:
    """The words of `text` that carry meaning (three letters or more, or numbers; no field names such as
    'Action' or 'Component', which the sections do not keep), numbers in words as digits."""
    found = re.findall(r"[a-z0-9][a-z0-9-]*", words(digits(text)))
    return {w for w in found if (len(w) >= 3 or w.isdigit()) and field_role(w, exact=True) is None}


def unread_warning(source: str, unread: list[tuple[int, str]]) -> str:
    """The warning for lines no section read."""
    shown = "; ".join(f"line {n}: {t[:80]!r}" for n, t in unread[:5])
    more = f" (and {len(unread) - 5} more)" if len(unread) > 5 else ""
    return (f"{source}: {len(unread)} line{'s' if len(unread) > 1 else ''} that look like an ablation were not read "
            f"as any section: {shown}{more}. Put each ablation under its own heading or list item (see "
            f"`--dry-run` for how the plan was read).")
