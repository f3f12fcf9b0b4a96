"""Plan layout: from the text people and planners write to a list of sections.

What this module knows is the *shape* of a plan, not its meaning. Accepted, and mixed freely:
- Markdown headings of any level; a heading with sub-headings, or titled like "Ablation plan", holds sections;
  one titled like an aside ("Reasoning trace", "Summary", "Baseline") is read only when nothing else is;
- bullet (`-`, `*`, `+`, `•`) and numbered (`1.`, `1)`, `A1.`, `(a)`) items, nested by indentation, as sections
  or as values; task-list boxes (`- [ ]`);
- fields as `**Ablated Part**: ...`, `Component: ...`, `**Values:**` followed by a list, or inline on one line
  (`Component: x; Action: REPLACE; Values: a, b`, `Title — REPLACE — values`, `Title → values`,
  `Title: values`), or as sub-headings (`#### Action`), or as the items of a list (`1. Change: ...`,
  `2. Values: ...`, `<li>Action: ...</li>`: one ablation's fields, not ablations);
- Markdown and HTML tables with one ablation per row; tables of one ablation's variants (`| Variant | Segment
  length |`: a column headed by a component holds its values) or fields (`| Field | Value |`); a baseline row
  is the reference the other rows differ from; header cells are never values, placeholders (`n/a`, `—`) no value;
- bold-lead paragraphs (`**A. Title.** prose`), paragraphs of field lines, paragraphs that enumerate ablations
  (`(1) ..., (2) ...`, `First, ... Second, ...`), plain prose under a heading;
- italic lead-ins (`*Gate behaviour.* prose`, as memos write them); `== title ==` banners (run sheets) as headings;
  terse notes of one labelled line per ablation (`no-mem: memory off.`, `k sweep: k in {8, 16}`; mail headers
  and field names are no labels); task lists and run sheets under a heading are lists of ablations;
- YAML-like (`- name: ...`, its fields indented below) and JSON lists;
- HTML tags and entities, `<think>`/`<style>` blocks (ignored), code fences and inline code; Unicode dashes,
  spaces and quotes (read as their ASCII forms).

Each section keeps its title, the line where it starts, and its text sorted by role: what is ablated (`part`),
the action, the values as written, the change described, free prose, and notes (hypothesis, rationale: never
used to decide anything).
"""

import json
import re
from dataclasses import dataclass, field

from memorizing.ablation.fields import field_role, split_inline
from memorizing.ablation.markup import Line, clean, normalise
from memorizing.ablation.numerals import digits
from memorizing.ablation.registry import names_component


# Headings and sections that hold no ablation: asides (read only when a plan has nothing else), and lists of
# ablations (their items or tables are the sections).
ASIDE_ANY = (r"summary|overview|notes?|reasoning(?: trace)?|thoughts?|thinking|introduction|background|motivation|"
             r"conclusions?|references|appendix|timeline|schedule|budget|compute(?: budget)?|resources|next steps|"
             r"discussion|risks?|limitations|caveats|assumptions|expected (?:results|outcomes|effects)|"
             r"implementation (?:notes|details)|priorit(?:y|ies|isation|ization)|rationale|open questions")

ASIDE_EXACT = (r"baseline(?: (?:model|run|setup|config(?:uration)?|settings?))?|control(?: run)?|reference(?: run| "
               r"model)?|full model|setup|experimental setup|evaluation(?: protocol| plan| setup)?|metrics|results|"
               r"goals?|objectives?|analysis|hypothes[ie]s|context")

ASIDE_TITLE = re.compile(rf"^(?:the |our |a |general )?(?:(?:{ASIDE_ANY})\b.*|(?:{ASIDE_EXACT})(?:\s*\(.*\))?"
                         rf"(?:\s*[:—–-]\s*.*)?)$")

CONTAINER_TITLE = re.compile(
    r"^(?:the |our |proposed |planned |suggested |candidate |prioriti[sz]ed |\w+ )?(?:(?:ablation |experiment(?:al)? )?"
    r"plans?|ablations|ablation (?:study|studies|list|plans?|overview|queue)|experiments|ablation experiments|"
    r"list of ablations)\b(?!\s*:)[\w\s()-]*(?::.*)?$")

CONTAINER_WORD = re.compile(r"\b(?:ablations|ablation (?:plan|study|studies|list|queue)|plans?|experiments|runs|"
                            r"ideas|todo|to-do|list|queue|proposals|candidates|studies|check-?list|run sheet|"
                            r"batch)\b", re.I)

ACTION_WORD = re.compile(r"\b(REMOVE|REPLACE|ADD)\b")


# What a plan writes where it has no value: a REMOVE row's value cell, 'Values: n/a'. Never a value to parse.
NO_VALUE = re.compile(r"^\s*(?:n\s*/\s*a|n\.a\.?|not applicable|[-–—]+|\(\s*(?:none|n\s*/\s*a|empty|[-–—]+)\s*\)|"
                      r"none (?:given|specified|needed|required|listed)|no values?(?: given| needed)?|nothing|"
                      r"empty|null|nil|"
                      r"\.\.\.|tbd|\?+)\s*(?:\([^()]*\))?\s*[.;,]?\s*$", re.I)


@dataclass
class Section:
    """One ablation as written: its text sorted by role. `values` are the value lines as written (not split)."""
    title: str
    line: int  # 1-based line of the plan where the section starts
    part: str = ""
    action: str = ""
    values: list[str] = field(default_factory=list)
    change: str = ""
    prose: str = ""
    notes: str = ""
    metrics: str = ""
    # TOML plans name their changes directly: (name, {key: value}, description, replacement) per variant
    direct: list[tuple[str, dict, str | None, str | None]] = field(default_factory=list)

    def add(self, role: str, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if role == "title":
            self.title = self.title or text
        elif role in ("values", "change") and NO_VALUE.match(text):
            return
        elif role == "values":
            self.values.append(text)
        else:
            old = getattr(self, role)
            setattr(self, role, f"{old}{_line_break(old, text)}{text}" if old else text)

    def text(self) -> str:
        """Everything that may say what the section ablates (not its notes or metrics)."""
        return "\n".join(t for t in (self.title, self.part, self.action, self.change, *self.values, self.prose) if t)


def _line_break(before: str, after: str) -> str:
    """What joins two lines of one field: a space where the second continues the sentence the first left open (a
    paragraph wrapped by hand: 'with half' / 'the memory, and ...'), else a line break."""
    return " " if re.search(r"[\w,)'’-]$", before) and re.match(r"[a-z(]", after) else "\n"


HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")

RULE = re.compile(r"^\s*([-*_=])(\s*\1){2,}\s*$")

TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")

ITEM = re.compile(r"^(?P<indent>\s*)(?P<marker>[-*+•▪◦‣–]|\d{1,3}[.)]|[A-Za-z]\d{0,2}[.)]|\(\w{1,3}\))\s+"
                  r"(?P<text>\S.*)$")

# '**A. Retrieval count.** Replace k ...', or in italics, as memos write it: '*Gate behaviour.* Replace the gate ...'
# (an italic lead ends with a period or colon: '*Note* that ...' is emphasis, not a title).
BOLD_LEAD = re.compile(r"^\s*(?:\*\*(?P<title>[^*]+?)\*\*|(?P<m>[*_])(?P<italic>[^*_\s][^*_]{0,80}?[.:])(?P=m)"
                       r"(?=\s+\S))\s*(?P<rest>.*)$")

FIELD_LINE = re.compile(r"^\s*(?:\*{1,2}|_{1,2})?(?P<name>[A-Za-z][\w /&'()-]{0,40}?)\s*(?:\*{1,2}|_{1,2})?\s*:\s*"
                        r"(?:\*{1,2}|_{1,2})?"
                        r"\s*(?P<value>.*)$")


@dataclass(eq=False)  # entries are found by identity: a plan may repeat a line word for word
class Entry:
    number: int
    indent: int
    kind: str  # blank | heading | rule | row | item | text
    text: str  # without marker and indentation
    level: int = 0  # heading level
    marker: str = ""


SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")

# A title between runs of '=' or '~' ('== memory-layer sweep ==', as run sheets and wikis write them): a heading.
BANNER = re.compile(r"^\s*(?P<mark>={2,6}|~{2,6})\s*(?P<title>[^=~\s](?:.*?[^=~\s])?)\s*(?P=mark)\s*$")
BANNER_LEVEL = 3


def entries(lines: list[Line]) -> list[Entry]:
    """Each line as an entry of its kind; a line underlined with '===' or '---' is a heading (level 1 or 2)."""
    out = []
    underline = set()
    for k, line in enumerate(lines[:-1]):
        below = SETEXT.match(lines[k + 1].text)
        if below and line.text.strip() and not ITEM.match(line.text) and not HEADING.match(line.text) and \
                not line.text.strip().startswith("|") and (k == 0 or not lines[k - 1].text.strip()):
            underline.add(k + 1)
    for k, line in enumerate(lines):
        raw = line.text.expandtabs(4)
        indent = len(raw) - len(raw.lstrip())
        if k in underline:
            continue
        if k + 1 in underline:
            level = 1 if lines[k + 1].text.strip().startswith("=") else 2
            out.append(Entry(line.number, 0, "heading", raw.strip().strip("*").strip(), level=level))
        elif not raw.strip():
            out.append(Entry(line.number, 0, "blank", ""))
        elif (m := HEADING.match(raw)):
            out.append(Entry(line.number, 0, "heading", m[2].strip().strip("*").strip(), level=len(m[1])))
        elif (m := BANNER.match(raw)):
            out.append(Entry(line.number, 0, "heading", m["title"], level=BANNER_LEVEL))
        elif RULE.match(raw):
            out.append(Entry(line.number, indent, "rule", ""))
        elif TABLE_RULE.match(raw) and "-" in raw:
            out.append(Entry(line.number, indent, "table-rule", ""))
        elif raw.strip().startswith("|") and raw.strip().endswith("|") and raw.count("|") >= 3:
            out.append(Entry(line.number, indent, "row", raw.strip()))
        elif (m := ITEM.match(raw)) and not _is_bold_marker(raw):
            text = re.sub(r"^\[[ xX✓]?\]\s*", "", m["text"].strip())  # a task-list box
            out.append(Entry(line.number, len(m["indent"]), "item", _dash_field(text), marker=m["marker"]))
        elif (title := _bold_title(lines, k)) is not None:
            out.append(Entry(line.number, 0, "heading", title, level=BOLD_TITLE_LEVEL))
        else:
            out.append(Entry(line.number, indent, "text", _dash_field(raw.strip())))
    return out


BOLD_TITLE = re.compile(r"^(?:\*\*|__)(?P<title>[^*_]{2,100}?)(?:\*\*|__)\s*:?\s*$")
BOLD_TITLE_LEVEL = 7  # below every Markdown heading: a bold title line is the innermost heading


def _bold_title(lines: list[Line], k: int) -> str | None:
    """A line that is only a bold title ('**2. Exact search**'), after a blank line or a heading, with field lines
    below it: a heading of its own. A bold field name ('**Values**') is not one."""
    m = BOLD_TITLE.match(lines[k].text)
    if not m or lines[k].text[:1].isspace() or field_role(m["title"], exact=True):
        return None
    above = lines[k - 1].text if k else ""
    if above.strip() and not HEADING.match(above):
        return None
    for line in [x for x in lines[k + 1:] if x.text.strip()][:8]:
        if HEADING.match(line.text) or BOLD_TITLE.match(line.text):
            break
        item = ITEM.match(line.text)
        field = FIELD_LINE.match(_dash_field(item["text"] if item else line.text.strip()))
        if field and field_role(field["name"]) in ("part", "action", "values", "change"):
            return m["title"].strip()
    return None


DASH_FIELD = re.compile(r"^(?P<mark>\*{1,2}|_{1,2})?(?P<name>[A-Za-z][\w /&'()-]{0,40}?)(?P=mark)?\s*(?:—|–|--?|=|→|->)"
                        r"\s+(?P<value>\S.*)$")


def _dash_field(text: str) -> str:
    """'**Values** — layer 3; layer 6', 'Action = REPLACE', 'Component - the gate': a field name (one a plan
    uses for fields, not a title) with a dash or '=' in place of the colon, as 'Values: layer 3; layer 6'."""
    m = DASH_FIELD.match(text)
    if m and field_role(m["name"], exact=True) not in (None, "title"):
        return f"{m['mark'] or ''}{m['name']}{m['mark'] or ''}: {m['value']}"
    return text


def _lead(match: re.Match) -> str:
    """The title of a bold or italic lead."""
    return match["title"] or match["italic"]


def _is_bold_marker(raw: str) -> bool:
    """'**A. Title.**' starts with '*' but is bold text, not a bullet."""
    return raw.lstrip().startswith("**")

SEPARATOR = re.compile(r"\s+(?:—|–|--|\|)\s+")

ARROW = re.compile(r"\s*(?:→|->|=>|⟶|⇒)\s*")


def strip_number(title: str) -> str:
    """'1. Remove X' -> 'Remove X', '**A. Retrieval count.**' -> 'Retrieval count'; IDs such as 'A1.' stay."""
    title = title.strip().strip("*").strip()
    title = re.sub(r"^(?:\d{1,3}[.)]|[A-Za-z][.)]|\(\w{1,3}\))\s+", "", title)
    return title.rstrip(".:").strip().strip("*").strip()


def read_head(section: Section, text: str, has_body: bool = False) -> None:
    """The first line of an item or a table-less one-liner: a title, inline fields, an action, an arrow. With
    field lines of its own below it, a plain head line is only the title."""
    if not text.strip():
        return
    bold = BOLD_LEAD.match(text)
    if bold and not field_role(_lead(bold)) and not bold["rest"].startswith(":"):
        section.title = strip_number(_lead(bold))
        text = bold["rest"].lstrip(" .:—–-")
        if not text:
            return
        lead, fields = split_inline(text)
        if fields:
            _take_fields(section, lead, fields, lead_is_title=False)
        else:
            _one_liner(section, text, has_title=True)
        return
    lead, fields = split_inline(text)
    if fields and (len(lead) < 80 or _is_one_liner(lead)):
        _take_fields(section, lead, fields, lead_is_title=True)
        return
    if has_body and not SEPARATOR.search(text) and not ARROW.search(text) and not ACTION_WORD.search(text):
        section.title = strip_number(text)
        return
    _one_liner(section, text, has_title=False)


def _is_one_liner(text: str) -> bool:
    """'Top-k — REPLACE — k = 4, 8': a title, an action and values, separated by dashes."""
    return bool(SEPARATOR.search(text) and ACTION_WORD.search(text))


def _take_fields(section: Section, lead: str, fields: list, lead_is_title: bool) -> None:
    if lead:
        if lead_is_title and not section.title and _is_one_liner(lead):
            _one_liner(section, lead, has_title=False)  # 'Top-k — REPLACE — k = 4, 8. Metric: ppl'
        elif lead_is_title and not section.title:
            section.title = strip_number(lead)
        else:
            section.add("prose", lead)
    for role, value in fields:
        _add_field(section, role, value)
    if not section.title:
        section.title = next((v for r, v in fields if r == "part" and v), "") or \
            next((v for r, v in fields if v and r not in ("metrics", "notes")), "(untitled)")


def _add_field(section: Section, role: str | None, value: str) -> None:
    if role == "action":
        _add_action(section, value)
    elif role is None:
        section.add("prose", value)
    else:
        section.add(role, value)


def _add_action(section: Section, text: str) -> None:
    """'REPLACE → exact (brute force)': the action, and the values or change that follow it."""
    word = re.match(r"\s*((?:turn|switch|take|leave|zero|cut)\s+(?:off|on|out)\b|\w+)", text, re.I)
    if not word:
        return
    rest = text[word.end():].strip()
    section.action = section.action or word[1]
    if not rest:
        return
    arrow = re.match(r"^(?:→|->|=>|:|with\b|by\b|to\b)\s*(.+)$", rest)
    if arrow:
        section.add("values", arrow[1])
    else:
        section.add("change", rest)


def _one_liner(section: Section, text: str, has_title: bool) -> None:
    """'Memory off — REMOVE the kNN memory', 'Gate → fixed 0.5 / fixed 0.9', 'XL cache → 0', or a sentence."""
    parts = [p.strip() for p in SEPARATOR.split(text) if p.strip()]
    if not parts:
        return
    named = re.match(r"^(?P<name>[^:.;]{2,40}?)\s*:\s+(?P<rest>\S.*)$", text)
    if len(parts) == 1 and not has_title and named and len(named["name"].split()) <= 5:
        section.title = strip_number(named["name"])
        section.add("part", named["name"])
        rest = named["rest"]
        if len(rest.split()) <= 4 or re.match(r"\s*[\d{\[]", rest):
            section.add("values", rest)
        else:
            section.add("change", rest)
        return
    if len(parts) == 1 and not has_title:
        arrow = ARROW.split(text, maxsplit=1)
        if len(arrow) == 2 and arrow[0].strip() and len(arrow[0]) < 80:
            section.title = strip_number(arrow[0])
            section.add("part", arrow[0])
            section.add("values", arrow[1])
            return
        section.title = strip_number(_first_clause(text))
        section.add("prose", text)
        return
    if not has_title:
        section.title = strip_number(parts.pop(0))
        section.add("part", section.title)
    for piece in parts:
        action = re.match(r"^(REMOVE|REPLACE|ADD)\b\s*(.*)$", piece)
        if action and not section.action:
            _add_action(section, piece)
            continue
        arrow = ARROW.split(piece, maxsplit=1)
        if len(arrow) == 2:
            section.add("part", arrow[0])
            section.add("values", arrow[1])
        elif section.action and section.action.upper() != "REMOVE":
            section.add("values", piece)
        else:
            section.add("prose", piece)


def _first_clause(text: str) -> str:
    """The title of a section written as one sentence: the sentence up to its first full stop."""
    sentence = re.split(r"(?<=[a-z0-9)])\.(?:\s|$)", text, maxsplit=1)[0]
    return sentence.strip()


def read_body(section: Section, body: list[Entry]) -> None:
    """The lines under a section's title: fields, value lists, prose, notes."""
    list_role, list_indent = None, -1
    paragraph: list[str] = []
    bare_items: list[str] = []
    # fields written as list items ('1. Change: ...', '<li>Action: ...</li>'): an item beside them that is not a
    # field describes the part; it is not a value
    field_indents = {e.indent for e in body if e.kind == "item" and _field_item(e)}

    def flush():
        if paragraph:
            text = " ".join(paragraph)
            section.add("notes" if re.fullmatch(r"\(.*\)", text.strip()) else "prose", text)
            paragraph.clear()

    tables = {id(t[0]): t for t in _split_tables(body)}
    in_table = set()
    for i, e in enumerate(body):
        if id(e) in tables:
            flush()
            list_role = None
            _table_into(section, tables[id(e)])
            in_table |= {id(x) for x in tables[id(e)]}
            continue
        if id(e) in in_table:
            continue
        if e.kind == "blank":
            flush()
            nxt = next((b for b in body[i + 1:] if b.kind != "blank"), None)
            if list_role and (nxt is None or nxt.kind != "item"):
                list_role = None
            continue
        if e.kind in ("rule", "heading", "table-rule"):
            flush()
            list_role = None
            continue
        text = e.text
        field = FIELD_LINE.match(text)
        role = field_role(field["name"], value=field["value"].strip().strip("*")) if field else None
        bold_field = bool(field) and bool(re.match(r"^\s*(\*\*|__)", text))
        if field and (role or bold_field):
            flush()
            value = field["value"].strip().strip("*").strip()
            lead, inline = split_inline(value) if role != "values" else (value, [])
            if inline:
                _add_field(section, role, lead)
                for r, v in inline:
                    _add_field(section, r, v)
                list_role = None
                continue
            _add_field(section, role, value)
            # a field that is an item and has its value holds only what is nested under it
            deeper = e.kind == "item" and bool(value)
            list_role, list_indent = (role or "prose"), e.indent + (1 if deeper else 0)
            continue
        if e.kind == "item":
            flush()
            if list_role and e.indent >= list_indent:
                _add_field(section, list_role if list_role != "action" else "values", text)
            elif e.indent in field_indents:
                section.add("prose", text)
            else:
                bare_items.append(text)  # a list of its own: the values, unless the section names them
            continue
        if list_role and e.indent > list_indent and list_role in ("values", "change", "part", "notes"):
            _add_field(section, list_role, text)
            continue
        paragraph.append(text)
    flush()
    if bare_items:
        if section.values:
            section.add("prose", "; ".join(bare_items))
        else:
            for item in bare_items:
                section.add("values", item)


def _title_words(title: str) -> str:
    """A title's words for classifying it: lowercase ASCII (emoji, even mis-encoded ones, are dropped)."""
    words = re.sub(r"[^a-z0-9\s():—–-]", " ", title.lower())
    words = re.sub(r"\s+", " ", words).strip()
    return re.sub(r"^(?:\d+|[a-z])[.)]?\s+", "", words)


def is_aside_title(title: str) -> bool:
    """'Reasoning trace', 'Summary of results', 'Baseline: full model', 'Notes': no ablation of its own."""
    return bool(ASIDE_TITLE.match(_title_words(title)))


def is_container_title(title: str) -> bool:
    """'Ablation plan', 'Proposed ablations': a heading whose body lists the ablations."""
    return bool(CONTAINER_TITLE.match(_title_words(title)))


def _field_item(e: Entry) -> str | None:
    """The role of an item that starts with a field name ('1. Change: ADD ...', '- Measure: perplexity')."""
    m = FIELD_LINE.match(e.text)
    return field_role(m["name"]) if m else None


def _is_field_list(body: list[Entry]) -> bool:
    """A list whose items are the fields of one ablation: at least half of its top-level items start with a field
    name, no field name twice (but values), one of them saying what is ablated, done or run ('1. Change: ...',
    '2. Values: ...', '3. Measure: ...'). Items that repeat field names ('- Component: x; Action: y' per item) are
    ablations."""
    items = [e for e in body if e.kind == "item"]
    if not items:
        return False
    top = min(e.indent for e in items)
    tops = [e for e in items if e.indent == top]
    roles = [r for r in (_field_item(e) for e in tops) if r]
    once = [r for r in roles if r != "values"]  # 'Variant A: ...', 'Variant B: ...' are one field's values
    return any(r in ("part", "action", "values", "change") for r in roles) and len(once) == len(set(once)) \
        and 2 * len(roles) >= len(tops)


def _has_own_fields(body: list[Entry]) -> bool:
    """Whether a heading's body holds fields at its own level (then it is a section, its lists are values)."""
    if _is_field_list(body):
        return True
    item = None
    for e in body:
        if e.kind == "item":
            item = e
        if e.kind == "text" and item is not None and e.indent > item.indent:
            continue  # '- name: fixed-gate' then '    action: replace': the item's field, not the heading's
        if e.kind in ("text", "item"):
            m = FIELD_LINE.match(e.text)
            if m and field_role(m["name"]) in ("part", "action", "values", "change"):
                if e.kind == "text" or (e.indent == 0 and not _is_section_item(e, body)):
                    return True
    return False


def _is_section_item(e: Entry, body: list[Entry]) -> bool:
    """An item that is an ablation of its own: inline fields, an action word, an arrow or nested fields."""
    lead, fields = split_inline(e.text)
    if sum(1 for r, _ in fields if r in ("part", "action", "values", "change")) >= 2:
        return True
    if ACTION_WORD.search(e.text) or ARROW.search(e.text):
        return True
    start = body.index(e)
    for nxt in body[start + 1:]:
        if nxt.kind == "blank":
            continue
        if nxt.indent <= e.indent and nxt.kind == "item" or nxt.kind == "heading":
            break
        if nxt.indent > e.indent or nxt.kind == "text":
            m = FIELD_LINE.match(nxt.text)
            if m and field_role(m["name"]) in ("part", "action", "values", "change"):
                return True
        if nxt.indent <= e.indent and nxt.kind != "item":
            break
    return False


def sections_from_heading(title: str, number: int, body: list[Entry]) -> list[Section]:
    """A leaf heading: one section, unless its body is a list of ablations (then each item is one)."""
    if not _has_own_fields(body):
        items = _section_items(body, container=bool(CONTAINER_WORD.search(title)))
        if items:
            return items
        tables = _table_sections(body, whole=False)
        if len(tables) == 1 and not any(c.role == "part" for t in _split_tables(body) for c in _table_columns(t)[0]):
            tables[0].title = strip_number(title)  # one row labelled, not named by a part: the heading's ablation
        if tables:
            return tables
    blocks = _paragraph_sections(body)
    if len(blocks) >= 2 and all(b.part or b.action for b in blocks):
        return blocks
    if not _has_own_fields(body):
        bold = _bold_lead_sections(body)  # '**A. Memory off.** Remove ...', '**B. ...**': ablations of their own
        if len(bold) >= 2:
            return bold
    section = Section(title=strip_number(title), line=number)
    read_body(section, body)
    return [section] if _has_content(section) else []


def _has_content(section: Section) -> bool:
    return bool(section.part or section.action or section.values or section.change or section.prose)


def _section_items(body: list[Entry], container: bool = False) -> list[Section]:
    """Top-level items of a body, when at least one of them reads as an ablation of its own (under a heading
    that names a list of ablations: when they read as ablations rather than bare values)."""
    items = [e for e in body if e.kind == "item"]
    if not items:
        return []
    top = min(e.indent for e in items)
    tops = [e for e in items if e.indent == top]
    if any(_is_section_item(e, body) for e in tops):
        return _items_to_sections(body, tops)
    if container and sum(_reads_as_ablation(e.text) for e in tops) * 2 > len(tops):
        return _items_to_sections(body, tops)
    return []


def _reads_as_ablation(text: str) -> bool:
    """'Memory size: 4K, 16K' or 'Remove the memory position bias', not a bare value such as '8K entries'."""
    return bool(re.match(r"^[^:]{2,40}:\s+\S", text)) or len(re.findall(r"[A-Za-z]{2,}", text)) >= 3


def _items_to_sections(body: list[Entry], tops: list[Entry]) -> list[Section]:
    sections = []
    for k, item in enumerate(tops):
        start = body.index(item)
        end = body.index(tops[k + 1]) if k + 1 < len(tops) else len(body)
        rest = body[start + 1:end]
        # the item's own lines: nested deeper, or continuation text before a blank line + unindented paragraph
        own = []
        for j, e in enumerate(rest):
            if e.kind in ("heading", "rule"):
                break
            if e.kind == "blank":
                nxt = next((b for b in rest[j + 1:] if b.kind != "blank"), None)
                if nxt is None or nxt.indent <= item.indent and nxt.kind != "item":
                    break
                own.append(e)
                continue
            own.append(e)
        section = Section(title="", line=item.number)
        head = item.text
        yaml = re.match(r"^(name|title|id)\s*:\s*(.+)$", head, re.I)
        if yaml:
            section.title = yaml[2].strip().strip("'\"")
        else:
            read_head(section, head, has_body=any(_field_entry(e) for e in own))
        read_body(section, [Entry(e.number, max(0, e.indent - item.indent - 1), e.kind, e.text, e.level, e.marker)
                            for e in own])
        if not section.title:
            section.title = section.part or "(untitled)"
        sections.append(section)
    return sections


# ---- tables --------------------------------------------------------------------------------------------------
# A table's header names its columns: fields ('Component', 'Action', 'Values'), a component whose values the
# column holds ('Memory size (entries per head)', 'Neighbours per query'), the row's title (the first column
# otherwise), an index ('#'). Header cells are never values.
@dataclass
class Column:
    role: str  # a field role, "component" (the values of the component its header names), "index" or "label"
    header: str


def _split_tables(body: list[Entry]) -> list[list[Entry]]:
    """The tables of a body: runs of rows (and their rule lines), broken by any other text or by a header row (a
    row with a rule line under it)."""
    tables, current = [], []
    for e in body:
        if e.kind == "table-rule" and len(current) > 1 and current[-1].kind == "row":
            tables.append(current[:-1])  # the row above the rule heads a new table
            current = current[-1:]
        if e.kind in ("row", "table-rule"):
            current.append(e)
        elif e.kind != "blank" and current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return [t for t in tables if any(e.kind == "row" for e in t)]


def cells(e: Entry) -> list[str]:
    return [c.strip() for c in e.text.strip().strip("|").split("|")]


def _empty(cell: str) -> bool:
    return bool(NO_VALUE.match(cell)) or bool(re.fullmatch(r"\s*(?:none)?\s*", cell, re.I))


# Columns beside the value column: the baseline's value ('Baseline value', 'Paper', 'From') is a note; the new value
# ('Proposed', 'Ablated', 'New') is the value.
BASELINE_COLUMN = re.compile(r"^(?:baseline|paper|default|current|original|reference|old|before|from|today)\b", re.I)
VALUE_COLUMN = re.compile(r"^(?:new|proposed|ablated|ablation value|after|target|tested|trial|to)\b", re.I)


def _column(header: str, first: bool) -> Column:
    name = re.sub(r"\([^()]*\)|\[[^\[\]]*\]", " ", header).strip(" *_:")
    named = field_role(name, exact=True)
    if named and len(name.split()) > 1:  # a field's whole name ('Ablated part') before its first word ('Ablated')
        return Column(named, header)
    if not first and BASELINE_COLUMN.match(name):
        return Column("notes", header)
    if not first and VALUE_COLUMN.match(name):
        return Column("values", header)
    role = field_role(name) if name else None
    if role:
        return Column(role, header)
    if not name or re.fullmatch(r"#|no\.?|nr\.?|n°|idx|index|row|step", name, re.I):
        return Column("index", header)
    if names_component(header):
        return Column("component", header)
    return Column("label" if first else "prose", header)


def _table_columns(table: list[Entry]) -> tuple[list[Column], list[Entry]]:
    """The columns of a table and its data rows. The first row is the header when a rule line follows it (a
    Markdown table, or an HTML table with <th> cells), or when one of its cells names a field or a component."""
    rows = [e for e in table if e.kind == "row"]
    first = cells(rows[0])
    columns = [_column(c, k == 0) for k, c in enumerate(first)]
    ruled = len(table) > 1 and table[1].kind == "table-rule"
    if not ruled and all(c.role in ("label", "prose", "index") for c in columns):
        return [Column("label" if k == 0 else "prose", "") for k in range(len(first))], rows
    data = rows[1:]
    # '| Parameter | Baseline | Ablation |': after a column that says what the row is, 'Ablation' holds its value
    for k, c in enumerate(columns):
        if c.role == "title" and any(d.role in ("title", "label", "part", "component") for d in columns[:k]):
            columns[k] = Column("values", c.header)
    if any(c.role == "component" for c in columns):  # 'Setting | Neighbours per query': 'Setting' labels the row
        columns = [Column("label" if k == 0 else "notes", c.header) if c.role == "values" else c
                   for k, c in enumerate(columns)]
    elif not any(c.role in ("values", "change") for c in columns):
        # 'Component | Tokens': a column of short numeric cells under a non-field header holds the values
        for k, c in enumerate(columns):
            column_cells = [cells(r)[k] for r in data if k < len(cells(r)) and not _empty(cells(r)[k])]
            if c.role == "prose" and column_cells and all(re.search(r"\d", x) and len(x.split()) <= 4
                                                          for x in column_cells):
                columns[k] = Column("values", c.header)
    return columns, data


def _field_table(columns: list[Column], data: list[Entry]) -> bool:
    """'| Field | Value |' with rows '| Component | top-k |', '| Action | REPLACE |': one ablation's fields."""
    roles = [field_role(cells(r)[0], exact=True) for r in data if cells(r)]
    return len(columns) >= 2 and bool(data) and 2 * sum(bool(r) for r in roles) > len(roles) and \
        any(r in ("part", "action", "values", "change") for r in roles)


def _variant_table(columns: list[Column], data: list[Entry]) -> bool:
    """'| Variant | Segment length |' with rows '| short | 256 |': the variants of one ablation. A table whose rows
    name their own part, action or title ('Ablation'), or whose labels name components, lists ablations."""
    roles = {c.role for c in columns}
    if "component" not in roles or roles & {"part", "action", "title"}:
        return False
    labels = [cells(r)[k] for r in data for k, c in enumerate(columns) if c.role == "label" and k < len(cells(r))]
    return not any(names_component(x) for x in labels)


BASELINE_ROW = re.compile(r"^\s*(?:the\s+)?(?:baseline|default|paper|reference|control|full model|original)\b", re.I)


def _unit(header: str) -> str:
    """The unit a column header gives its numbers: 'Memory size (entries per head)' -> 'entries per head',
    'Value (tokens)' -> 'tokens', 'Tokens' -> 'tokens'."""
    m = re.search(r"\(([^()]*)\)\s*$", header)
    if m and re.search(r"[A-Za-z]", m[1]) and not re.search(r"\d|\b(?:baseline|paper|default|e\.g|optional)\b", m[1],
                                                            re.I):
        return m[1].strip()
    return header.strip().lower() if re.fullmatch(r"\s*(?:tokens|entries|neighbou?rs|layers|slots)\s*", header, re.I) \
        else ""


def _reference(columns: list[Column], data: list[Entry]) -> list[str] | None:
    """The cells of the table's baseline row ('| Baseline | 65536 | 32 |'), which is no ablation of its own."""
    for row in data:
        labels = [cell for c, cell in zip(columns, cells(row)) if c.role in ("title", "label", "part")]
        if labels and BASELINE_ROW.match(labels[0]):
            return cells(row)
    return None


def _without_parens(text: str) -> str:
    return re.sub(r"\s*\([^()]*\)", "", text).strip()


def _row_values(columns: list[Column], row_cells: list[str], reference: list[str] | None) -> list[tuple[str, str]]:
    """(header, value) of a row's value cells: empty ones and those that repeat the baseline row's value of the
    column's component dropped, a bare number given the column's unit ('16384' under 'Size (entries)' is '16384
    entries'), and each value named by its column where a row sets several columns ('Neighbours per query: 8')."""
    out = []
    for k, (c, cell) in enumerate(zip(columns, row_cells)):
        if c.role not in ("component", "values") or _empty(cell):
            continue
        if c.role == "component" and reference is not None and k < len(reference) and \
                reference[k].strip() == cell.strip():
            continue  # the baseline's value of this column's component
        unit = _unit(c.header)
        if unit and re.fullmatch(r"\s*[\d.,]+\s*[kKmM]?\s*|\s*\d+\s*\^\s*\d+\s*", cell):
            cell = f"{cell.strip()} {unit}"
        out.append((c.header if c.role == "component" else "", cell.strip()))
    if sum(1 for h, _ in out if h) > 1:
        out = [("", f"{_without_parens(h)}: {v}" if h else v) for h, v in out]  # the values name their columns
    return out


def _table_into(section: Section, table: list[Entry]) -> None:
    """A table inside one ablation (its fields, or its variants): read into `section`."""
    columns, data = _table_columns(table)
    if _field_table(columns, data):
        for row in data:
            row_cells = cells(row)
            value = " ".join(row_cells[1:]).strip()
            _add_field(section, field_role(row_cells[0], exact=True, value=value) or "prose", value)
        return
    reference = _reference(columns, data)
    for row in data:
        row_cells = cells(row)
        if reference is not None and row_cells == reference:
            continue
        for header, value in _row_values(columns, row_cells, reference):
            if header and header not in section.part.split("\n"):
                section.add("part", header)
            section.add("values", value)
        for c, cell in zip(columns, row_cells):
            if not cell.strip() or c.role in ("index", "component", "values"):
                continue
            if c.role in ("label", "prose"):
                section.add("notes", cell)  # a row's label or remark: which variant, not what it runs
            elif c.role == "change" and _empty(cell):
                continue
            else:
                _add_field(section, c.role, cell)


def _table_sections(body: list[Entry], whole: bool = True) -> list[Section]:
    """Tables of ablations, one per row (a header row naming the columns, then the rows). A table of one
    ablation's fields or variants is one section where `whole` (text outside headings), else left to the heading's
    section."""
    sections = []
    for table in _split_tables(body):
        columns, data = _table_columns(table)
        if _field_table(columns, data) or _variant_table(columns, data):
            if whole:
                component = next((c.header for c in columns if c.role == "component"), "")
                section = Section(title=strip_number(_without_parens(component)), line=table[0].number)
                _table_into(section, table)
                section.title = section.title or section.part.split("\n")[0] or "(untitled)"
                sections.append(section)
            continue
        reference = _reference(columns, data)
        for row in data:
            row_cells = cells(row)
            if all(not c for c in row_cells) or reference is not None and row_cells == reference:
                continue
            section = Section(title="", line=row.number)
            for c, cell in zip(columns, row_cells):
                if c.role in ("index", "component", "values") or not cell.strip():
                    continue
                if c.role == "change" and _empty(cell):
                    continue
                if c.role in ("title", "label"):
                    section.title = section.title or strip_number(cell)
                elif c.role == "part":
                    section.add("part", cell)
                    section.title = section.title or strip_number(cell)
                else:
                    _add_field(section, c.role, cell)
            for header, value in _row_values(columns, row_cells, reference):
                if header:
                    section.add("part", header)
                section.add("values", value)
            if not any(c.role == "part" for c in columns) and section.title:
                section.part = "\n".join(t for t in (section.title, section.part) if t)  # the title says the part
            section.title = section.title or section.part.split("\n")[0] or "(untitled)"
            sections.append(section)
    return sections


def _field_entry(e: Entry) -> bool:
    m = FIELD_LINE.match(e.text) if e.kind in ("text", "item") else None
    return bool(m) and field_role(m["name"]) in ("part", "action", "values", "change")


def _paragraph_sections(body: list[Entry]) -> list[Section]:
    """Blocks separated by blank lines, each with field lines of its own ('Ablation 1: X' then 'Component: ...')."""
    blocks, current = [], []
    for e in body + [Entry(0, 0, "blank", "")]:
        if e.kind in ("blank", "rule"):
            if current:
                blocks.append(current)
            current = []
        else:
            current.append(e)
    blocks = [b for b in blocks if sum(_field_entry(e) for e in b) >= 1]
    if len(blocks) < 2 and not (blocks and not _field_entry(blocks[0][0])):
        return []
    if all(_field_entry(b[0]) for b in blocks):
        roles = [{_field_item(e) for e in b if _field_entry(e)} for b in blocks]
        if all(not (a & b) for k, a in enumerate(roles) for b in roles[k + 1:]):
            return []  # one ablation's fields, spread over paragraphs ('Component: x', blank, 'Action: y')
    sections = []
    for block in blocks:
        head = block[0]
        section = Section(title="", line=head.number)
        if _field_entry(head):
            read_body(section, block)
        else:
            section.title = strip_number(re.sub(r"^(?:\*\*|__)(.*?)(?:\*\*|__)$", r"\1", head.text))
            read_body(section, block[1:])
        if not section.title:
            section.title = section.part or "(untitled)"
        sections.append(section)
    return sections

ENUMERATOR = re.compile(r"(?:^|(?<=[\s,;:]))\((?:\d{1,2}|[ivx]{1,4}|[a-h])\)\s+|(?:^|(?<=[.;!?]\s))(?:first|second|"
                        r"third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|next|then|finally|lastly|last)\b,?\s+",
                        re.I)


def _enumerated_sections(body: list[Entry]) -> list[Section]:
    """A paragraph that lists ablations inline: '(1) remove the memory, (2) ...' or 'First, ... Second, ...'."""
    sections = []
    paragraph: list[Entry] = []
    for e in body + [Entry(0, 0, "blank", "")]:
        if e.kind == "text":
            paragraph.append(e)
            continue
        text = " ".join(p.text for p in paragraph)
        marks = list(ENUMERATOR.finditer(text))
        if len(marks) >= 2:
            for k, m in enumerate(marks):
                end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
                chunk = re.sub(r"(?:[,;]\s*|\s+)(?:and|or)?\s*$", "", text[m.end():end].strip()).strip(" ,;.")
                if chunk:
                    section = Section(title=_first_clause(chunk)[:80], line=paragraph[0].number)
                    section.add("prose", chunk)
                    sections.append(section)
        paragraph = []
    return sections


def _bold_lead_sections(body: list[Entry]) -> list[Section]:
    """Paragraphs that open with a bold title, '**A. Retrieval count.** Replace k by ...'."""
    sections = []
    current = None
    for e in body:
        bold = BOLD_LEAD.match(e.text) if e.kind == "text" else None
        if bold and not field_role(_lead(bold)) and bold["rest"] and not bold["rest"].startswith(":"):
            current = Section(title="", line=e.number)
            read_head(current, e.text)
            sections.append(current)
        elif e.kind == "text" and current is not None:
            current.add("prose", e.text)
        elif e.kind == "blank":
            current = None
    return sections


def find_sections(lines: list[Line]) -> list[Section]:
    """Sections under ablation headings; else lists, tables or paragraphs outside them; asides (summary, notes,
    reasoning) only when nothing else holds an ablation."""
    all_entries = entries(lines)
    headings = [i for i, e in enumerate(all_entries) if e.kind == "heading"]
    sections: list[Section] = []
    asides: list[list[Entry]] = []
    preamble = all_entries[:headings[0]] if headings else all_entries
    for k, i in enumerate(headings):
        heading = all_entries[i]
        end = headings[k + 1] if k + 1 < len(headings) else len(all_entries)
        nxt = all_entries[end] if end < len(all_entries) else None
        body = all_entries[i + 1:end]
        # a rule line ends the heading's text (what follows is a footer), unless nothing came before it
        body = body[:next((j for j, e in enumerate(body) if e.kind == "rule" and
                           any(b.kind not in ("blank", "rule") for b in body[:j])), len(body))]
        if nxt is not None and nxt.level > heading.level:
            fielded = _field_headings(all_entries, headings, k)
            if fielded is not None:
                sections.append(fielded)
            elif not is_aside_title(heading.text):  # its own list or table of ablations, before the sub-headings
                sections += _section_items(body) or _table_sections(body, whole=False)
            continue  # a heading with sub-headings holds them, not an ablation
        if field_role(heading.text, exact=True) in ("part", "action", "values", "change", "metrics", "notes"):
            continue  # '#### Action': a field of the ablation above it (see _field_headings)
        listed = _sections_in_free_region(body) if is_container_title(heading.text) and \
            not _has_own_fields(body) else []
        if is_aside_title(heading.text):
            asides.append(body)
        else:
            sections += listed or sections_from_heading(heading.text, heading.number, body)
    if not sections:  # no ablation heading: the text outside headings, then the asides
        for region in [preamble] + asides:
            sections += _sections_in_free_region(region)
    return _attach_untitled([s for s in sections if not _is_aside_section(s)])


def _attach_untitled(sections: list[Section]) -> list[Section]:
    """A piece with no title and nothing it ablates ('2. Measure: perplexity' read on its own) belongs to the
    section above it, not to a section of its own."""
    out: list[Section] = []
    for s in sections:
        if out and s.title == "(untitled)" and not (s.part or s.action or s.values or s.change) and not s.direct:
            for role in ("prose", "metrics", "notes"):
                out[-1].add(role, getattr(s, role))
            continue
        out.append(s)
    return out


def _field_headings(all_entries: list[Entry], headings: list[int], k: int) -> Section | None:
    """An ablation whose fields are sub-headings ('#### Component', '#### Action', '#### Values'), or None.
    The sub-headings are then skipped as sections (they have field names, which no ablation title is)."""
    heading = all_entries[headings[k]]
    children = []
    for j in headings[k + 1:]:
        if all_entries[j].level <= heading.level:
            break
        children.append(j)
    roles = [field_role(all_entries[j].text, exact=True) for j in children]
    if not children or not all(roles) or not any(r in ("part", "action", "values", "change") for r in roles):
        return None
    section = Section(title=strip_number(heading.text), line=heading.number)
    for j, role in zip(children, roles):
        end = next((i for i in headings if i > j), len(all_entries))
        body = [e for e in all_entries[j + 1:end] if e.kind not in ("blank", "rule")]
        if role == "values" and len(body) > 1:
            for e in body:
                section.add("values", e.text)
        else:
            _add_field(section, role, " ".join(e.text for e in body))
    return section


def _is_aside_section(section: Section) -> bool:
    """A list item or table row that describes the baseline or a note, with no action of its own."""
    acts = re.match(r"\s*(?:remove|replace|add|drop|disable|swap|change|vary|sweep|ablate|introduce|set|turn|"
                    r"switch|take|use|try|increase|decrease|reduce|move)\b", section.action, re.I)
    return is_aside_title(section.title) and not acts and not section.values


def _sections_in_free_region(body: list[Entry]) -> list[Section]:
    """Text outside any ablation heading: a table, a list of ablations, or bold-lead paragraphs."""
    found = _table_sections(body)
    if found:
        return found
    items = [e for e in body if e.kind == "item"]
    if items:
        found = _section_items(body)
        if found:
            return found
        top = min(e.indent for e in items)
        tops = [e for e in items if e.indent == top]
        bold = _bold_lead_sections(body)
        if bold and len(bold) >= len(tops):
            return bold
        return _items_to_sections(body, tops)
    return _bold_lead_sections(body) or _paragraph_sections(body) or _label_line_sections(body) or \
        _label_paragraph_sections(body) or _enumerated_sections(body)


# 'no-mem: kNN memory off entirely.' / 'k sweep: k in {8, 16, 64}.': a terse note, one labelled line per ablation.
LABEL_LINE = re.compile(r"^(?P<label>[A-Za-z0-9][\w +/&'-]{0,30}?)\s*:\s+(?P<rest>\S.*)$")
MAIL_HEADER = re.compile(r"^(?:subject|to|from|cc|bcc|re|date|sent|fwd?|attn|hi|hello|dear|thanks|cheers|"
                         r"ps|p\.s)\b", re.I)


def _label_line_sections(body: list[Entry]) -> list[Section]:
    """Paragraphs of two or more lines that each start with a short label that is no field name and no mail
    header: each line is one ablation, titled by its label."""
    sections, paragraph = [], []
    for e in body + [Entry(0, 0, "blank", "")]:
        if e.kind == "text":
            paragraph.append(e)
            continue
        labelled = [(e, LABEL_LINE.match(e.text)) for e in paragraph]
        if len(paragraph) >= 2 and all(m and field_role(m["label"]) is None and not MAIL_HEADER.match(m["label"])
                                       for _, m in labelled):
            for line, m in labelled:
                section = Section(title=m["label"].strip(), line=line.number)
                section.add("prose", m["rest"])
                sections.append(section)
        paragraph = []
    return sections


def _label_paragraph_sections(body: list[Entry]) -> list[Section]:
    """Two or more paragraphs that each open with a short label that is no field name and no mail header ('Cache
    size: Mei suggested we try halving it.', as a mail lists its ablations): each such paragraph is one ablation,
    titled by its label; paragraphs without a label (greetings, the baseline, sign-off) are not read as ablations."""
    sections, paragraph = [], []
    for e in body + [Entry(0, 0, "blank", "")]:
        if e.kind == "text":
            paragraph.append(e)
            continue
        m = LABEL_LINE.match(paragraph[0].text) if paragraph else None
        if m and len(m["label"].split()) <= 5 and field_role(m["label"]) is None and \
                not MAIL_HEADER.match(m["label"]):
            section = Section(title=m["label"].strip(), line=paragraph[0].number)
            for text in [m["rest"]] + [p.text for p in paragraph[1:]]:
                section.add("prose", text)
            sections.append(section)
        paragraph = []
    return sections if len(sections) >= 2 else []


def json_sections(text: str) -> list[Section] | None:
    """A plan written as JSON (alone or in a code block): a list of objects, or an object holding one."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        return None
    sections = []
    for entry, at in zip(data, _object_starts(text, start)):
        section = Section(title="", line=text[:at].count("\n") + 1)
        for key, value in entry.items():
            values = value if isinstance(value, list) else [value]
            role = field_role(str(key), value=" ".join(map(str, values))) or "prose"
            for v in values:
                _add_field(section, role, v if isinstance(v, str) else json.dumps(v))
        section.title = section.title or section.part or "(untitled)"
        if section.part or section.action or section.values or section.change:
            sections.append(section)
    return sections or None


def _object_starts(text: str, start: int):
    """Where each object of the JSON list at `start` begins (for the line numbers of messages)."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if ch == "{" and depth == (3 if text[start] == "{" else 2):
                yield i
        elif ch in "]}":
            depth -= 1


def read_sections(text: str) -> list[Section]:
    """The sections of a plan, in plan order; numbers written as words read as digits (titles stay as written)."""
    text = normalise(text)
    found = json_sections(text) if re.match(r"\s*(?:```\w*\s*)?[\[{]", text) else None
    return [_with_digits(s) for s in (found or find_sections(clean(text)))]


def _with_digits(section: Section) -> Section:
    for role in ("part", "action", "change", "prose"):
        setattr(section, role, digits(getattr(section, role)))
    section.values = [digits(v) for v in section.values]
    return section
