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
            continue
        heading = re.match(r"\s*<h([1-6])\b[^>]*>(.*?)</h\1\s*>(.*)", piece, re.S | re.I)
        if heading:
            out.append("#" * int(heading[1]) + " " + TAG.sub("", heading[2]).strip())
            piece = heading[3]
        if re.match(r"\s*<li\b", piece, re.I):
            piece = "- " + re.sub(r"^\s*<li\b[^>]*>", "", piece, flags=re.I)
        piece = re.sub(r"</?(?:strong|b)>", "**", piece, flags=re.I)
        piece = TAG.sub("", piece)
        if piece.strip() or not out:
            out.append(piece)
    return out


def clean(text: str) -> list[Line]:
    """The plan's lines with HTML turned into Markdown, entities decoded and code markup removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = IGNORED_BLOCK.sub(_keep_lines, text)
    text = BLOCK_ELEMENT.sub(_flatten, text)
    lines = []
    for number, raw in enumerate(text.split("\n"), 1):
        if re.match(r"\s*(```|~~~)", raw):
            continue  # a code fence: the block's content is read like any other text
        for piece in _html_line(raw):
            piece = html.unescape(piece).replace("\u00a0", " ").replace("\u200b", "").replace("`", "")
            lines.append(Line(number, piece.rstrip()))
    return lines
