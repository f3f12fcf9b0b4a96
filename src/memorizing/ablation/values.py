"""Reading values out of plan text: numbers as people write them, value lists, and the words around them that
say a value is *not* being asked for (the baseline's value, what is kept, what something falls back to).

Numbers: 8192, 16,384, 16K / 16k (x 1024), 2^14, 1e-4, 0.25. A number glued to letters (T5, L2, PG-19, IVF-256)
is a name, never a value. Lists: `a, b`, `a; b`, `a / b`, `a or b`, `a and b` (where both sides are values),
`a vs b`, `x ∈ {a, b, c}`, `[a, b]`, `from 4K to 16K, doubling`. A unit or prefix written once is shared by the
whole list (`8K / 16K / 32K entries`, `k = 1, 4, 32`).
"""

import math
import re
from dataclasses import dataclass

from memorizing.ablation.markup import normalise

# ---- numbers ----------------------------------------------------------------------------------------------------
NUMBER = re.compile(
    r"(?<![\w.^/-])(?<![A-Za-z]-)"
    r"(?P<mant>\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?:\s*\^\s*(?P<pow>\d+)|\*\*(?P<pow2>\d+))?"
    r"(?P<suffix>[kKmM](?![A-Za-z]))?"
    r"(?![\w.]\d|[A-Za-z])")


@dataclass
class Num:
    value: float
    start: int
    end: int
    text: str

    @property
    def integer(self) -> int | None:
        return int(self.value) if self.value == int(self.value) and math.isfinite(self.value) else None


def with_suffix(value: float, suffix: str) -> float:
    """16K = 16384 (K is 1024, as in the spec); 65K, 131K, 262K: the power of two that papers write that way."""
    scale = 1024 if suffix == "k" else 1024 * 1024
    exact = value * scale
    if exact == int(exact) and int(exact) & (int(exact) - 1) == 0:
        return exact
    decimal = value * (1000 if suffix == "k" else 1000 ** 2)
    power = 2 ** round(math.log2(decimal)) if decimal > 0 else 0
    return float(power) if power and abs(power - decimal) <= 0.01 * power else exact


def numbers(text: str) -> list[Num]:
    """Every number of `text` with its position; names such as T5, L2 or PG-19 are not numbers."""
    out = []
    for m in NUMBER.finditer(text):
        mant = m["mant"].replace(",", "")
        try:
            value = float(mant)
            if m["exp"]:
                value *= 10 ** int(m["exp"])
            power = m["pow"] or m["pow2"]
            if power:
                value = value ** int(power)
            if m["suffix"]:
                value = with_suffix(value, m["suffix"].lower())
        except (OverflowError, ValueError):
            continue
        if not math.isfinite(value):
            continue
        out.append(Num(value, m.start(), m.end(), m.group(0)))
    return out


def words(text: str) -> str:
    """Lowercased text with markup and separators simplified, for phrase matching."""
    text = normalise(text).lower()
    text = re.sub(r"[*`\"“”]", "", text)
    text = re.sub(r"(?<=[a-z])_(?=[a-z])", " ", text)
    return re.sub(r"\s+", " ", text)


# ---- clauses: what is kept, where things sit, what the baseline does ---------------------------------------------
KEPT = re.compile(
    r"\b(?:is|are|be|being|been|stays?|remains?|left|is left|are left)\s+(?:kept|retained|unchanged|untouched|"
    r"intact|as is|the same|in place|on)\b|\bkeep(?:s|ing)?\b|\bretain(?:s|ing)?\b|\bunchanged\b|\buntouched\b|"
    r"\bintact\b|\b(?:kept|retained)\s*\)?\s*$|\bfalls?\s+back\b|\bfall-?back\b|\botherwise identical\b|"
    r"\beverything else\b|\bnothing else\b|\bthe rest of the\b|\b(?:shrinks?|grows?|scales?|adjusts?|follows?)\s+"
    r"(?:with it|accordingly|along)\b|\bstays?\b|\bremains?\b|\bas in the baseline\b|\bas before\b|\bincluding\b|"
    r"\bwould have liked\b|\bunlike\b|\bnot (?:available|supported)\b|\bunsupported\b|\bleav(?:e|es|ing)\b|"
    r"\bbecomes?\b|\bturns? into\b|\breduces? to\b|\bdegenerates? (?:in)?to\b|\bis (?:then )?equivalent to\b|"
    r"^\s*(?:i\.?\s?e\.?|that is|in other words|namely)\b(?![^()]*\d)|"  # a number it states is a value
    r"\+[^,;]*\bonly\s*$|\b(?:plain|vanilla|standard|ordinary) transformer(?:-xl)?\b|"
    r"\ball (?:else|other(?: settings| components)?) (?:equal|the same|unchanged|fixed|as in the baseline)\b")
# The reset switch is described by what the memory keeps: those clauses are the ablation itself.
KEPT_EXCEPT = re.compile(r"\bacross (?:\w+ )?(?:documents?|docs?|document boundar\w+)|\bbetween documents\b|"
                         r"\bprevious documents\b|\bearlier documents\b|"
                         r"\b(?:keep|keeps|keeping|retain\w*)\s+(?:only|just|"
                         r"at most|the (?:last|top|first|most recent|newest|\d+)|\d)"
                         r"(?![\d,.]*\s*(?:attention\s+)?(?:heads?|dims?|dimensions?)\b)")  # 'keeping 8 heads': kept
BASELINE_SENTENCE = re.compile(
    r"\b(?:the )?baseline(?:'s)? (?:uses|has|retrieves|keeps|is|clears|searches|stores|puts|mixes|places)\b|"
    r"^\s*(?:currently|normally|by default|today|at present|at the moment|right now|in the paper|as in the paper|"
    r"the paper uses|the paper has|usually|in the baseline)\b|"
    r"\bthe paper (?:uses|has|retrieves|places|puts)\b|\bis a fifo\b|\bdefault is\b|"
    # "The paper's 65K entries per head is expensive": a remark on the baseline's setting, not a change of it
    r"^\s*(?:the |our |its )?(?:paper|baseline|current|default)'s? (?:[^,;]*? )?(?:is|are|was|were)\b"
    r"(?! (?:\w+ed|cut|set|shrunk|grown|made|now|to be|replaced|swapped)\b)")
REFERENCE = re.compile(
    r"\b(?:instead of|rather than|in place of|replacing|compar\w* (?:to|with|against)|against|as opposed to|"
    r"unlike|(?:down|up) from)\b[^,;()]*|"
    r"\b(?:from|out of)\s+(?:the\s+)?layer\s+\d+\b|"
    # 'on top of the existing memory in layer 9': what is added to, the baseline's own
    r"\b(?:on top of|in addition to|besides|alongside|as well as|next to)\s+(?:the\s+|its\s+)?(?:existing|current|"
    r"baseline'?s?|original|paper'?s?|default|usual)\b[^,;()]*|"
    r"\b(?:vs\.?|versus)\s+(?=(?:the\s+)?(?:baseline|paper|current|default|original)\b|"
    r"[^,;()]*\b(?:in|of|from|for) the "
    r"(?:baseline|paper)\b)[^,;()]*|"
    r"\bthe baseline's\b[^,;()]*?(?=\bby\b|\bwith\b|$)|"
    r"\((?:[^()]*\b(?:baseline|currently|current|paper|default|originally|today)\b[^()]*)\)|"
    r"\b(?:baseline|paper|current|default)\s*[:=]\s*[^,;()]*")


# Where one statement ends and the next starts: punctuation, parentheses, 'but', 'so that', and an 'and' that
# starts a new verb ('remove X and keep the rest', 'remove X and train the otherwise identical model').
CLAUSE_EDGE = re.compile(
    r"(?<!\bapprox)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\bi)[.;:!?]|[()\[\]{}]|,\s|\s(?:but|so that|so|while|whereas|"
    r"although|then)\s|\s[—–]\s|\n|\s+and\s+(?=(?:keep|keeps|keeping|leave|leaves|leaving|retain\w*|falls?\s+back|"
    r"train|trains|run|runs|compare|evaluate|measure|report|check|see|hold|holds|let|make|log)\b)", re.I)


def clauses(text: str) -> list[str]:
    """`text` cut where one statement ends and another starts."""
    return [p.strip() for p in CLAUSE_EDGE.split(text) if p and p.strip()]


def is_kept(clause: str) -> bool:
    """A clause that says what is kept, left alone or fallen back to: it votes for nothing. What it is compared
    with ('instead of keeping one memory per head') does not make a clause a kept one."""
    c = words(REFERENCE.sub(" ", clause))
    return bool(KEPT.search(c)) and not KEPT_EXCEPT.search(c)


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



ABBREVIATION = r"(?i:(?<!\bapprox)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\betc)(?<!\bcf)(?<!\bresp)(?<!\bincl))"


def sentences(text: str) -> list[str]:
    """`text` cut into sentences (not after abbreviations such as 'approx.', 'e.g.', 'vs.')."""
    parts = re.split(r"(?<=[a-z0-9)\]])" + ABBREVIATION + r"[.!?](?:\s+|$)|\n", text)
    return [s.strip() for s in parts if s and s.strip()]


def without_baseline_clauses(sentence: str) -> str:
    """A sentence without its clauses that describe the baseline ('the paper uses k = 32; we use 8')."""
    parts = re.split(r";\s*|,\s+(?:while|whereas|but|and)\s+|\s+(?:while|whereas)\s+", sentence)
    return "; ".join(p for p in parts if p.strip() and not is_baseline_sentence(p))


def is_baseline_sentence(sentence: str) -> bool:
    """A sentence that describes what the baseline does ('The baseline retrieves 32 neighbours per query.');
    a parenthetical remark ('(the paper uses 32)') does not make a sentence one."""
    return bool(BASELINE_SENTENCE.search(words(re.sub(r"\([^()]*\)", " ", sentence))))


def without_references(text: str) -> str:
    """`text` without what it is compared to: 'instead of 32', '(baseline: layer 9)', "the baseline's k = 32"."""
    return REFERENCE.sub(" ", text)


# ---- value lists ---------------------------------------------------------------------------------------------------
BASELINE_MARK = re.compile(r"\(\s*(?:=\s*)?(?:the\s+)?(?:baseline|paper|current|default|as in the paper|original|"
                           r"reference|control)\b[^)]*\)|[—–-]\s*(?:the\s+)?baseline\s*$|\s=\s*baseline\b", re.I)
PARAMETER_ONLY = re.compile(r"^\s*(?:(?:with\s+|and\s+|probing\s+)?(?:\d[\d,.]*\s*[kK]?\s*(?:lists?|probes?|buckets?|"
                            r"bits?|(?:hash )?tables?|clusters?|centroids?|cells?|sub-?quanti[sz]ers?|codes?|"
                            r"probes? per query|per query)(?:\s+(?:probed|searched|visited|scanned))?)|m\s*=\s*\d+|"
                            r"ef\w*\s*=\s*\d+|nprobe\s*=\s*\d+|"
                            r"nlists?\s*=\s*\d+)\s*(?:per query)?\s*$", re.I)
EXPLANATION = re.compile(r"^\s*\(?\s*(?:i\.?e\.?|e\.?g\.?|that is|namely|which|meaning|so|i\.e)\b", re.I)
SET = re.compile(r"(?P<prefix>[^{}\[\]]*?)(?:∈|\bin\b|=|:)?\s*[{\[](?P<items>[^{}\[\]]+)[}\]](?P<suffix>[^{}\[\]]*)")


@dataclass(frozen=True)
class Item:
    """One value as written (one variant), without the plan's marks such as '(baseline)'."""
    text: str


# In a value list, what a value is compared with names the baseline, not a second variant: "8 instead of the
# paper's 32", "exact rather than bucketed", "layer 12 vs. the default layer 9", "from 512 to 256 tokens".
VALUE_REFERENCE = re.compile(
    r"\s*\b(?:instead of|rather than|in place of|replacing|compar\w* (?:to|with|against)|against|as opposed to|"
    r"unlike|(?:down|up|reduced|increased|lowered|raised|changed|moved|cut|shrunk|grown|halved|doubled) from\b"
    r"(?![^,;()]*\bto\b))[^,;()]*|"
    r"\s*\b(?:vs\.?|versus)\s+(?=(?:the\s+)?(?:baseline|paper|current|default|original)\b|[^,;()]*(?:\(\s*(?:the\s+)?"
    r"(?:baseline|paper|current|default|original)\s*\)|\b(?:in|of|from|for) the (?:baseline|paper)\b))[^,;]*", re.I)
FROM_TO = re.compile(r"\bfrom\s+(?:(?!to\b)\S+\s+){1,3}?(?:up\s+|down\s+)?to\s+(?=\S)", re.I)


def split_values(text: str) -> list[Item]:
    """A value list as written -> one item per variant, units and prefixes shared, '(baseline)' marks and what a
    value is compared with dropped (whether a value is the baseline's is decided on the config it gives)."""
    text = VALUE_REFERENCE.sub(" ", text.strip().strip("*").strip())
    text = re.sub(r"\s+([,;])", r"\1", text).strip()
    text = re.sub(r"(?<!\d)\.\s*$", "", text).strip()
    arrow = re.split(r"\s*(?:→|->|=>|⇒)\s*", text)
    text = arrow[-1]  # '64K → 16K': the new value
    if not text:
        return []
    if len(arrow) > 1 and re.fullmatch(r"\[[^\[\]]*\]", text):
        return [Item(text)]  # '[9] → [6, 9]': one new list
    text = new_side(text)
    probes = _expand_probes(text)
    if probes is not None:
        return [Item(t) for t in probes]
    expanded = _expand_set(text)
    if expanded is not None:
        return [item for piece in expanded for item in split_values(piece)] if len(expanded) > 1 else \
            [Item(expanded[0])]
    ranged = _expand_range(text)
    if ranged is not None:
        return [Item(t) for t in ranged]
    if not re.search(r"\bin steps of|\bpowers? of|\bdoubling|\bhalving|\bfactors? of|\bevery \d", text, re.I):
        text = FROM_TO.sub("", text)  # 'from 512 to 256 tokens': the new value (a sweep is no such change)
    pieces = _split_top(text)
    pieces = _merge_parameters(pieces)
    pieces = _share_units(pieces)
    items = []
    for piece in pieces:
        clean = re.sub(r"\.$", "", BASELINE_MARK.sub(" ", piece).strip(" ,;")).strip()
        if clean:
            items.append(Item(re.sub(r"\s+", " ", clean)))
    # the baseline itself next to other values is always run, and no variant; alone, it is the value asked for
    # ('top-k: as in the paper'), which then equals the baseline
    return [i for i in items if not is_baseline_value(i.text)] or items[:1]


# A value that names the baseline's own setting instead of giving one: 'as in the paper', "the paper's value",
# 'paper default', 'the baseline setting', 'as before'. Only these words: 'as in the paper but with 8' is no such
# value.
BASELINE_WORDS = r"(?:paper|baseline|default|original(?:\s+paper)?|preset|reference|published\s+(?:paper|model))"
BASELINE_TAIL = (r"(?:\s+(?:main|reported|published|original|own|default|usual|standard|runs?|experiments?|"
                 r"configuration|config|preset|choice|number|setup|settings?|values?|model))*")
BASELINE_VALUE = re.compile(
    r"\s*(?:(?:set|keep|use|leave|restore|reset|put|go|back|to|at|it|them|is|the same as|same as)\s+)*"
    r"(?:(?:exactly|just|unchanged,?)\s+)?"
    r"(?:as\s+(?:in|for|with|per)\s+(?:the\s+)?" + BASELINE_WORDS + r"(?:'s)?" + BASELINE_TAIL +
    r"|as\s+(?:published|before|reported)|(?:the\s+)?" + BASELINE_WORDS + r"(?:'s)?" + BASELINE_TAIL +
    r"|(?:the\s+)?current(?:\s+(?:value|setting|default|config(?:uration)?))?)\s*[.!]?\s*", re.I)


# 'top-k as in the paper': the component's name, then the reference
BASELINE_SUFFIX = re.compile(r"[,;:—–-]?\s*\b(?:exactly\s+|just\s+)?(?:as\s+(?:in|for|with|per)\s+(?:the\s+)?" +
                             BASELINE_WORDS + r"(?:'s)?" + BASELINE_TAIL + r"|at\s+(?:the\s+)?" + BASELINE_WORDS +
                             r"(?:'s)?\s+(?:value|setting|default))\s*[.!]?\s*$", re.I)


def is_baseline_value(text: str) -> bool:
    """Whether a value is only a reference to the baseline's own setting ('as in the paper', "the paper's value",
    'paper default')."""
    return bool(BASELINE_VALUE.fullmatch(words(text)))


# 'swap the bucketed search for an IVF index', 'replace the learned gate with a fixed gate of 0.5': the value is
# what comes in, not what goes out ('substitute X for Y' is left alone: its order is the other way round)
SWAP = re.compile(r"^\s*(?:(?:swap|exchange)\w*\s+(?:out\s+)?(?P<old>.+?)\s+(?:for|with)|replac\w*\s+(?P<old2>.+?)"
                  r"\s+(?:with|by))\s+(?P<new>\S.*)$", re.I)


def new_side(text: str) -> str:
    """A value written as a swap ('swap X for Y', 'replace X with Y'): Y, what the variant runs."""
    m = SWAP.match(text)
    return m["new"].strip() if m else text


# An IVF index with one number of lists and several numbers of probed lists, in one statement: 'an inverted-file
# index of 4096 lists, probing either 8 or 32 lists per query', 'IVF with 1024 lists; probe 16 lists in one run and
# 64 in another'. Each probe count is a variant with the same lists.
IVF_NAME = re.compile(r"\bivf\b|inverted[- ]?file|inverted lists?|\bfaiss\b", re.I)
PROBE_WORD = re.compile(r"\bn?prob(?:e|es|ed|ing)\b", re.I)
LISTS = re.compile(r"(?<![\w.])(?P<n>\d[\d,]*\s*[kK]?)\s*(?:inverted )?(?:lists?|clusters?|centroids?|cells?)\b", re.I)
# the words a list of probe counts may hold besides its numbers: 'probing either 8 or 32 lists per query', 'probe
# 16 lists in one run and 64 in another'
PROBE_LIST_WORDS = re.compile(r"\b(?:n?prob(?:e|es|ed|ing)|either|or|and|vs|lists?|clusters?|cells?|per|query|queries|"
                              r"search|in|one|another|a|second|separate|other|run|runs|each|the|of|which|are|is|"
                              r"searched|visited|scanned|respectively|with|then)\b", re.I)


def _expand_probes(text: str) -> list[str] | None:
    """One value per probe count of an IVF setting that gives one number of lists and several probe counts, or
    None where the text is not such a setting (every other number of it must be a probe count)."""
    t = normalise(text)
    if not IVF_NAME.search(t) or not PROBE_WORD.search(t):
        return None
    probe_at = PROBE_WORD.search(t).start()
    index_lists = [m for m in LISTS.finditer(t) if not _is_probed(t, m, probe_at)]
    if len({numbers(m["n"])[0].value for m in index_lists if numbers(m["n"])}) != 1:
        return None
    lists = numbers(index_lists[0]["n"])[0]
    rest = t[:index_lists[0].start()] + " " * (index_lists[0].end() - index_lists[0].start()) + \
        t[index_lists[0].end():]
    probes = numbers(re.sub(r"\([^()]*\)", " ", rest))
    if len(probes) < 2 or any(p.integer is None or p.integer < 1 for p in probes):
        return None
    region = re.sub(r"\([^()]*\)", " ", rest)[min(probe_at, probes[0].start):]
    if PROBE_LIST_WORDS.sub(" ", NUMBER.sub(" ", region)).strip(" ,;:.-—–/{}[]∈="):
        return None  # another word among the probe counts: not only a list of them
    return [f"ivf with {lists.integer} lists, {p.integer} probes" for p in probes]


def _is_probed(text: str, m: re.Match, probe_at: int) -> bool:
    """'probe 16 lists', '16 lists probed per query': lists that are searched, not the index's lists."""
    before = text[:m.start()]
    return bool(re.search(r"\bn?prob(?:e|es|ed|ing)\s+(?:either\s+|only\s+)?$", before, re.I) or
                re.match(r"\s*(?:probed|searched|visited|scanned|per query|per search)\b", text[m.end():], re.I) or
                (m.start() > probe_at and re.search(r"\bn?prob(?:e|es|ed|ing)\b[^,;]*$", before, re.I)))


def _expand_set(text: str) -> list[str] | None:
    """'k ∈ {4, 16, 64}' -> ['k = 4', 'k = 16', 'k = 64']; '[0.0, 1.0]' -> ['0.0', '1.0']."""
    m = SET.fullmatch(text.strip())
    if not m or "," not in m["items"] and ";" not in m["items"]:
        return None
    prefix = m["prefix"].strip()
    prefix = re.sub(r"\s*(?:∈|\bin\b|=|:)\s*$", "", prefix).strip()
    prefix = re.sub(r"^(?:.*\b(?:by|to|with|:)\s+)", "", prefix).strip()
    suffix = m["suffix"].strip().rstrip(".")
    items = [i.strip() for i in re.split(r"[,;]\s*", m["items"]) if i.strip()]
    label = f"{prefix} = " if prefix and re.fullmatch(r"[\w|ℓ|-]{1,12}", prefix) else (f"{prefix} " if prefix else "")
    return [f"{label}{i}{(' ' + suffix) if suffix else ''}".strip() for i in items]


def _expand_range(text: str) -> list[str] | None:
    """'from 4K up to 16K entries, doubling each time' -> ['4096 entries', '8192 entries', '16384 entries']."""
    m = re.search(r"\bfrom\s+(?P<a>\S+)\s+(?:up\s+|down\s+)?to\s+(?P<b>\S+)(?P<unit>[^,;]*)[,;]?\s*(?P<step>.*)$",
                  text, re.I)
    if not m:
        return None
    a, b = numbers(m["a"]), numbers(m["b"])
    if len(a) != 1 or len(b) != 1:
        return None
    step = m["step"].lower()
    unit = m["unit"].strip()
    said_step = re.search(r",?\s*(?:\bin\s+|\bby\s+)?(?:powers? of (?:two|2)|doubling\w*|halving\w*|"
                          r"quadrupling\w*)(?:\s+each time)?\s*$", unit, re.I)
    if said_step:  # 'k from 8 to 64 in powers of two': the step, not a unit
        step, unit = f"{step} {said_step.group(0).lower()}", unit[:said_step.start()].strip()
    prefix = text[:m.start()].strip()
    if prefix and not re.fullmatch(r"[\w|ℓ-]{1,12}(?:\s*[=:])?", prefix):
        return None
    prefix = re.sub(r"\s*[=:]$", "", prefix)
    lo, hi = a[0].value, b[0].value
    factor = 2 if re.search(r"doubl|x\s*2|2\s*x|powers? of (?:two|2)|halv", step) else \
        4 if re.search(r"x\s*4|4\s*x|quadrupl", step) else None
    if factor is None or lo <= 0 or hi <= 0:
        return None
    values, v = [], min(lo, hi)
    while v <= max(lo, hi) + 1e-9 and len(values) < 64:
        values.append(v)
        v *= factor
    if lo > hi:
        values.reverse()
    return [f"{(prefix + ' = ') if prefix else ''}{_fmt(v)}{(' ' + unit) if unit else ''}" for v in values]


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v)


def _split_top(text: str) -> list[str]:
    """Split at list separators outside parentheses: ';', ',', ' / ', ' or ', ' and ', ' vs '."""
    pieces, depth, current, i = [], 0, "", 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if depth == 0:
            sep = _separator_at(text, i)
            if sep:
                pieces.append(current)
                current = ""
                i += sep
                continue
        current += ch
        i += 1
    pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def _separator_at(text: str, i: int) -> int:
    """The length of a list separator starting at text[i], or 0."""
    rest = text[i:]
    if rest[0] == ";":
        return 1
    if rest[0] == "," and (not re.match(r",\d{3}(?!\d)", rest) or rest.startswith(", ")):
        if re.search(r"\blayers\s+\d+(?:\s*,\s*\d+)*\s*$", text[:i], re.I) and re.match(r",\s*\d", rest):
            return 0  # 'layers 4, 8 and 12' is one set of layers
        return 1
    m = re.match(r"\s+[/|]\s+", rest)  # '8K / 16K', 'layer 6 | layer 9': one variant each
    if m:
        return m.end()
    fifty_fifty = re.search(r"(?<!\d)50$", text[:i]) and rest.startswith("/50")  # one mix, not two values
    if rest[0] == "/" and re.search(r"\d[kKmM]?$", text[:i]) and re.match(r"/\s*\d", rest) and not fifty_fifty:
        return 1  # '8K/16K/32K'

    m = re.match(r"\s+(?:or|and|vs\.?|versus|&)\s+", rest, re.I)
    if m:
        before, after = text[:i], rest[m.end():]
        if _value_like(before, tail=True) and _value_like(after, tail=False) and not _layer_list(before, after):
            return m.end()
    return 0


def _value_like(side: str, tail: bool) -> bool:
    """Whether the words next to an 'and'/'or' are a value on their own (a number, or a short name)."""
    side = re.sub(r"\([^()]*\)?", " ", side)
    seg = re.split(r"[,;]\s*", side)[-1 if tail else 0].strip()
    seg = re.split(r"\s+(?:or|and|vs\.?|versus)\s+", seg)[-1 if tail else 0]
    if numbers(seg):
        return True
    return 0 < len(seg.split()) <= 3


def _layer_list(before: str, after: str) -> bool:
    """'layers 3 and 6' is one set of layers, not two variants."""
    return bool(re.search(r"\blayers\s+\d+(?:\s*,\s*\d+)*\s*$", before, re.I) and re.match(r"\s*\d", after))


# 'a learned scalar per head, keyed on where the key was written': a clause that qualifies the value before it
MODIFIER = re.compile(r"^\s*(?:\w+ed|\w+ing)\s+(?:on|by|from|with|over|across|in|at|for|per|to)\b(?!.*\d)", re.I)


def _merge_parameters(pieces: list[str]) -> list[str]:
    """'IVF with 256 lists', '8 probes' -> one item; 'sigmoid(0)', 'i.e. an equal mix' -> one item; 'a learned
    scalar', 'keyed on the stored key's position' -> one item."""
    out = []
    for p in pieces:
        if out and (PARAMETER_ONLY.match(p) or EXPLANATION.match(p) or MODIFIER.match(p)):
            out[-1] = f"{out[-1]}, {p}"
        else:
            out.append(p)
    return out


UNIT = re.compile(r"^(?P<num>[\d.,]+\s*(?:\^\s*\d+)?[kKmM]?)\s+(?P<unit>[A-Za-z][\w -]*)$")
PREFIX = re.compile(r"^(?P<prefix>.*?[A-Za-z_ℓ|][^\d]*?)\s*(?P<num>\d[\d.,]*\s*(?:\^\s*\d+)?[kKmM]?)$")


def _share_units(pieces: list[str]) -> list[str]:
    """'8K', '16K', '32K entries' -> all with 'entries'; 'k = 1', '4', '32' -> all with 'k = '."""
    if len(pieces) < 2:
        return pieces
    bare = [bool(re.fullmatch(r"[\d.,]+(?:[eE][-+]?\d+)?\s*(?:\^\s*\d+)?[kKmM]?(?:\s*\([^)]*\))?", p))
            for p in pieces]
    last = UNIT.match(re.sub(r"\s*\([^)]*\)\s*$", "", pieces[-1]))
    # 'memories of 2^13', '2^15', '2^17 entries per head': the first may have its words before the number
    led = bool(PREFIX.match(pieces[0]) and last and not re.search(r"\d", last["unit"])) and len(pieces) > 2
    if last and all(bare[1:-1]) and (bare[0] or led):
        unit = last["unit"]
        pieces = [f"{p} {unit}" if b or (i == 0 and led) else p for i, (p, b) in enumerate(zip(pieces, bare))]
    first = PREFIX.match(pieces[0])
    if first and all(bare[1:]) and re.search(r"[=:]\s*$|\b(?:k|top-?k|layer|gate|fixed)\s*$", first["prefix"], re.I):
        prefix = first["prefix"]
        pieces = [pieces[0]] + [f"{prefix} {p}" if b else p for p, b in zip(pieces[1:], bare[1:])]
    return pieces
