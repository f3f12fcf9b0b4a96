"""Plan markup to plain Markdown lines: HTML tags (tables as Markdown rows, headings, lists, bold) and entities,
<think>/<style>/<script> blocks and comments dropped, code fences and inline code unwrapped. Line numbers are
kept: every line says where it stands in the plan file, for messages."""

import html
import re
from dataclasses import dataclass


@dataclass
class Line:
    number: int
    text: str

IGNORED_BLOCK = re.compile(r"<(think|thinking|style|script|reasoning)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.S | re.I)

BLOCK_ELEMENT = re.compile(r"<(tr|li|h[1-6]|p|td|th|dt|dd)\b[^>]*>.*?</\1\s*>", re.S | re.I)

TAG = re.compile(r"</?[A-Za-z][^<>]*>")


# Unicode punctuation as plain text: hyphens and minus signs as '-' (and an en or em dash between two letters),
# the horizontal bar as an em dash (a separator), spaces of every width as ' ' (a thin space between digit groups,
# '65 536', separates thousands), curly quotes as straight ones; invisible characters dropped.
PUNCTUATION = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-", "\u2043": "-",
                             "\ufe63": "-", "\uff0d": "-", "\u2015": "\u2014", "\u2018": "'", "\u2019": "'",
                             "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"',
                             "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
                             "\u2026": "...", "\uff1a": ":", "\uff1d": "=",
                             **{c: None for c in "\u00ad\u200b\u200c\u200d\u2060\ufeff"}})
SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
THOUSANDS = re.compile(r"(?<=\d)[\u2009\u202f\u2007](?=\d{3}(?!\d))")
WORD_DASH = re.compile(r"(?<=[A-Za-z])[\u2013\u2014](?=[A-Za-z])")  # 'query–key' is 'query-key'; ' — ' separates


def normalise(text: str) -> str:
    """`text` with Unicode punctuation and spaces as plain ASCII ones ('memory-only' written with a non-breaking
    hyphen is 'memory-only', 'gate = 1.0' with non-breaking spaces is 'gate = 1.0')."""
    return WORD_DASH.sub("-", SPACES.sub(" ", THOUSANDS.sub("", text.translate(PUNCTUATION))))


DEFINITION = re.compile(r"<dt\b[^>]*>(.*?)</dt\s*>\s*<dd\b[^>]*>(.*?)</dd\s*>", re.S | re.I)


def _definition(match: re.Match) -> str:
    """'<dt>Action</dt><dd>REMOVE</dd>' is the field line 'Action: REMOVE' (line numbers kept)."""
    text = match.group(0)
    return f"<li>{match[1].strip()}: {match[2].strip()}</li>".replace("\n", " ") + "\n" * text.count("\n")


def _keep_lines(match: re.Match) -> str:
    return "\n" * match.group(0).count("\n")


def _flatten(match: re.Match) -> str:
    """An HTML block element spread over several lines, put on its first line (line numbers stay right)."""
    text = match.group(0)
    return text.replace("\n", " ") + "\n" * text.count("\n")


def _html_line(text: str) -> list[str]:
    """One line of text with HTML in it, as Markdown lines (a table row per <tr>, a heading per <hN>...)."""
    if "<" not in text:
        return [text]
    text = re.sub(r"<br\s*/?>", "; ", text, flags=re.I)
    pieces = re.split(r"(?=<(?:tr|li|h[1-6]|p|div|table|ul|ol)\b)", text, flags=re.I)
    out = []
    for piece in pieces:
        row = re.match(r"\s*<tr\b", piece, re.I)
        if row:
            cells = re.findall(r"<t[hd]\b[^>]*>(.*?)(?:</t[hd]\s*>|(?=<t[hd]\b)|$)", piece, re.S | re.I)
            out.append("| " + " | ".join(TAG.sub("", c).strip() for c in cells) + " |")
            if re.search(r"<th\b", piece, re.I) and not re.search(r"<td\b", piece, re.I):
                out.append("|" + "---|" * len(cells))  # a header row, as in Markdown
            continue
        heading = re.match(r"\s*<h([1-6])\b[^>]*>(.*?)</h\1\s*>(.*)", piece, re.S | re.I)
        if heading:
            out.append("#" * int(heading[1]) + " " + TAG.sub("", heading[2]).strip())
            piece = heading[3]
        if re.match(r"\s*<li\b", piece, re.I):
            piece = "- " + re.sub(r"^\s*<li\b[^>]*>", "", piece, flags=re.I)
        piece = re.sub(r"</?(?:strong|b)>", "**", piece, flags=re.I)
        piece = TAG.sub("", piece)
        out.append(piece)
    # the indentation before a tag ('  <li>') is not a line of its own
    return [p for p in out if p.strip()] or out[:1]


def clean(text: str) -> list[Line]:
    """The plan's lines with HTML turned into Markdown, entities decoded and code markup removed."""
    text = normalise(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = IGNORED_BLOCK.sub(_keep_lines, text)
    text = DEFINITION.sub(_definition, text)
    text = BLOCK_ELEMENT.sub(_flatten, text)
    lines = []
    for number, raw in enumerate(text.split("\n"), 1):
        if re.match(r"\s*(```|~~~)", raw):
            continue  # a code fence: the block's content is read like any other text
        for piece in _html_line(raw):
            piece = normalise(html.unescape(piece)).replace("`", "")
            lines.append(Line(number, piece.rstrip()))
    return lines
