"""Value parsers, one per kind of component: from one value as a plan writes it to config changes, or the problem
that stops it. A parser never takes a stray number: every number of a value is understood (and consumed) or
reported; a number in parentheses that restates the value or the baseline is a comment."""

import math
import re
from dataclasses import dataclass
from typing import Callable

from memorizing.ablation.values import Item, Num, numbers, words
from memorizing.config import Config


@dataclass
class Context:
    """What a parser may need besides the value: the baseline, the section's words and its action."""
    baseline: Config
    scope: str = ""  # the section's active text (kept / fallback clauses removed), lowercased
    part: str = ""  # the section's title and part, lowercased
    action: str = "REPLACE"


@dataclass
class Parsed:
    """A value's config changes, or the problem that stops it (with the refusal's reason)."""
    changes: dict | None = None
    problem: str | None = None
    reason: str = "ambiguous"

NB = r"neighbou?rs?"

OFF = re.compile(r"\b(?:off|false|no|none|without|disabled?|removed?|drop(?:ped)?|never|not|no longer|disable|"
                 r"deactivated?|remove)\b|^\s*0\s*$")

ON = re.compile(r"\b(?:on|true|yes|with|enabled?|added|add|activated?|keep)\b|^\s*1\s*$")

# What a value is for, not what it is: '..., so that retrieval never crosses documents' says nothing about on/off.
PURPOSE = re.compile(r"[,;]?\s+(?:so that|so as to|in order to|to (?:see|test|check|make sure|ensure|avoid)|because|"
                     r"since)\b.*$")

VAGUE = re.compile(r"\b(?:an?\s+(?:faster|slower|better|cheaper|different|other|new|alternative)|another|different|"
                   r"alternative|faster|cheaper|better|larger|bigger|smaller|higher|lower|more|fewer|less|tbd|"
                   r"to be (?:decided|determined|chosen|defined)|various|several|some|earlier|later|deeper|"
                   r"shallower|wider|narrower)\b")

# A multiple or a fraction of the baseline's value: 'halve', 'twice', 'a quarter of', 'a tenth of it', '4x',
# 'four times as many'. 'N times' only before a comparison ('three times as many', 'ten times the'), never 'run it
# three times'.
MULTIPLIER = re.compile(
    r"\b(?P<word>halved|halve|halving|half|quartered|quarter|doubled|double|doubling|twice|tripled|triple|tripling|"
    r"quadrupled|quadruple|quadrupling|thirds?|fifths?|tenths?)\b|"
    r"(?<![\w.])(?P<a>\d+(?:\.\d+)?)\s*[x×](?!\w)|(?<![\w.])[x×]\s*(?P<b>\d+(?:\.\d+)?)\b|"
    r"(?<![\w.])(?P<times>\d+(?:\.\d+)?|two|three|four|five|ten)\s+times\s+(?=as\b|the\b|more\b|larger\b|"
    r"bigger\b|higher\b|longer\b|greater\b)")

MULTIPLIER_WORDS = {"halved": 0.5, "halve": 0.5, "halving": 0.5, "half": 0.5, "quartered": 0.25, "quarter": 0.25,
                    "doubled": 2, "double": 2, "doubling": 2, "twice": 2, "tripled": 3, "triple": 3, "tripling": 3,
                    "quadrupled": 4, "quadruple": 4, "quadrupling": 4, "third": 1 / 3, "thirds": 1 / 3,
                    "fifth": 0.2, "fifths": 0.2, "tenth": 0.1, "tenths": 0.1, "two": 2, "three": 3, "four": 4,
                    "five": 5, "ten": 10}


def multiplier(m: re.Match) -> float:
    """The factor a MULTIPLIER match names."""
    if m["word"]:
        return MULTIPLIER_WORDS[m["word"]]
    said = m["a"] or m["b"] or m["times"]
    return float(MULTIPLIER_WORDS.get(said, None) or said)


OTHER_UNITS = re.compile(r"^\s*(?:lists?|probes?|buckets?|bits?|tables?|seeds?|steps?|heads?|layers?|gb|mb|"
                         r"hours?|%|percent|dims?|dimensions?|clusters?|centroids?|neighbou?rs?|entries|entry|slots?|"
                         r"tokens?|memories|keys|pairs|runs?|epochs?|documents?|docs?)\b", re.I)


def outside_parens(text: str) -> str:
    return re.sub(r"\([^()]*\)", " ", text)


def parens(text: str) -> str:
    return " ".join(re.findall(r"\(([^()]*)\)", text))


def fmt(value) -> str:
    return str(int(value)) if isinstance(value, float) and value == int(value) else str(value)


def baseline_values(keys: tuple[str, ...], ctx: Context) -> set[float]:
    """The baseline's numbers for `keys` (a value restating them in a comment is not a new parameter)."""
    out = set()
    for key in keys:
        section, name = key.split(".")
        value = getattr(getattr(ctx.baseline, section), name)
        if key == "memory.layers":
            out |= {n + 1 for n in ctx.baseline.memory_placement()}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.add(float(value))
    return out


def leftovers(text: str, used: list[float], keys: tuple[str, ...], ctx: Context) -> list[Num]:
    """Numbers of a value that no parser consumed: outside parentheses always; inside them unless they restate
    a used value or the baseline's (comments such as '(moves out of layer 9)' or '(131072 entries)')."""
    known = set(used) | baseline_values(keys, ctx)
    out = [n for n in numbers(outside_parens(text)) if not any(math.isclose(n.value, u) for u in used)]
    inner = parens(text)
    out += [n for n in numbers(inner) if not any(math.isclose(n.value, k) for k in known) and _attached(inner, n)]
    return out


def _attached(text: str, n: Num) -> bool:
    """A number that is a parameter ('8 probes', 'M=32', 'layer 9'), not commentary ('1/16 of the baseline')."""
    after, before = text[n.end:], text[:n.start]
    return bool(re.match(r"\s*[A-Za-z]", after) and not re.match(r"\s*(?:of|x|times|than|or|and|to|vs)\b", after,
                                                                 re.I)
                or re.search(r"(?:[A-Za-z]\s*=|[A-Za-z]\s)\s*$", before) and not re.search(r"\b(?:of|than|to|vs|"
                                                                                      r"and|or|from)\s*$", before))


def extra_problem(extra: list[Num], text: str, label: str) -> Parsed:
    said = ", ".join(repr(n.text) for n in extra)
    return Parsed(problem=f"value {text!r} has a parameter ({said}) that is not understood for {label}: give "
                          f"only the value, or name the config key (section.key=value)", reason="unknown")


def switch(keys_of: Callable[[Context], tuple[str, ...]], label: str, extra_off: str = "", extra_on: str = ""):
    """On/off components: the memory branch, key/query normalisation, the per-document reset."""
    def parse(item: Item, ctx: Context) -> Parsed:
        t = words(outside_parens(item.text)) or words(item.text)
        t = PURPOSE.sub("", t) or t  # 'clear it at each document, so that retrieval never crosses': a reason
        if numbers(re.sub(r"^\s*[01]\s*$", "", t)):
            return Parsed(problem=f"value {item.text!r} is not understood for {label}, which is on or off")
        special_off = bool(extra_off and re.search(extra_off, t))
        special_on = bool(extra_on and re.search(extra_on, t))
        if special_off != special_on:  # the component's own words ('kept across documents') come first
            return Parsed({k: special_on for k in keys_of(ctx)})
        is_off, is_on = bool(OFF.search(t)), bool(ON.search(t))
        if is_off == is_on:
            return Parsed(problem=f"value {item.text!r} is not understood for {label}: say on or off")
        return Parsed({k: is_on for k in keys_of(ctx)})
    return parse


def qk_keys(ctx: Context) -> tuple[str, ...]:
    """Which layers a key/query-normalisation ablation means: the memory layer (the default: that is what 'the'
    normalisation against stale keys is), every layer, or every layer but the memory layer. Parentheses do not
    part a qualifier from its noun ('the local (non-memory) layers')."""
    s = re.sub(r"\s+", " ", re.sub(r"[()]", " ", ctx.scope))
    if re.search(r"memory layer and (?:in )?(?:all |the )?other layers|all other layers as well|both the memory|"
                 r"(?:memory|all) and (?:non-memory|other) layers", s):
        return ("memory.qk_norm", "model.qk_norm")
    if re.search(r"\b(?:except|but|other than|apart from|outside)\b[^;]{0,25}\bmemory layer", s):
        return ("model.qk_norm",)
    if re.search(r"\b(?:everywhere|all (?:the )?(?:attention )?layers|every layer|each layer|in all\b|whole "
                 r"(?:model|network)|globally)", s):
        return ("memory.qk_norm", "model.qk_norm")
    if re.search(r"\bnon-?memory (?:attention )?layers?|\bother layers?\b|outside (?:the )?memory|"
                 r"except (?:in )?the memory "
                 r"layer|(?:local|regular|standard|dense|ordinary|remaining|plain|vanilla|normal) (?:attention )?"
                 r"layers|all layers but|apart from the memory|(?:layers|blocks) without (?:the )?memory", s):
        return ("model.qk_norm",)
    return ("memory.qk_norm",)


def count(key: str, label: str, units: str, multipliers: bool = True, zero: bool = False,
          off_means_zero: bool = False, real: bool = False, thousands: bool = False):
    """A positive integer with units (`16K entries`, `2^14`, `256 tokens`) or a multiple of the baseline ('halve
    it', 'a quarter of the baseline size', 'four times as many'); with `real`, a positive number (`3e-4`, 'a tenth
    of the baseline learning rate'); with `thousands`, a K is a thousand (`250k steps` = 250000)."""
    unit_re = re.compile(units) if units else None

    def new_value(factor: float, text: str, ctx: Context) -> Parsed:
        section, name = key.split(".")
        value = getattr(getattr(ctx.baseline, section), name) * factor
        if real:
            return Parsed({key: float(f"{value:.12g}")}) if value > 0 or zero and value == 0 else \
                Parsed(problem=f"value {text!r} does not give a positive {label}")
        if abs(value - round(value)) > 1e-9 or value < 1:
            return Parsed(problem=f"value {text!r} of the baseline's {label} is not a whole number")
        return Parsed({key: int(round(value))})

    def parse(item: Item, ctx: Context) -> Parsed:
        text = re.sub(r"\btop[-_](?=\d)", "top ", item.text, flags=re.I)  # 'top-64' is k = 64
        out = outside_parens(text)
        t = words(out)
        factor = relative_factor(t, ctx.scope)
        if re.search(r"\bby\s+\d", t) or factor == "unclear":
            return Parsed(problem=f"value {text!r} gives a change, not the new {label}: give the value itself")
        if re.search(r"\d\s*(?:halves|thirds?|quarters?|fifths?|tenths?)\b|\b(?:per ?cent|%)", t):
            return Parsed(problem=f"value {text!r} gives a fraction of the baseline's {label}: give the value itself")
        if isinstance(factor, float):
            out = MULTIPLIER.sub(" ", re.sub(r"(?:by )?a factor of \d+(?:\.\d+)?", " ", out))
            if numbers(out):
                return Parsed(problem=f"value {text!r} does not give a whole {label}")
            return new_value(factor, text, ctx)
        # 'four times as many': the factor's number is no value
        times = [m for m in MULTIPLIER.finditer(out) if m["times"]]
        nums = numbers(MULTIPLIER.sub(lambda m: " " * len(m.group(0)) if m["times"] else m.group(0), out))
        if len({multiplier(m) for m in MULTIPLIER.finditer(t)}) > 1:  # 'double ...: twice as many' is one
            return Parsed(problem=f"value {text!r} gives several multiples: give one {label} per variant")
        if times and nums:
            return Parsed(problem=f"value {text!r} gives both a multiple of the baseline's {label} and a number: give "
                                  f"one of them")
        if not nums:
            m = times[0] if times else MULTIPLIER.search(t)
            if m and multipliers:
                return new_value(multiplier(m), text, ctx)
            if off_means_zero and OFF.search(t):
                return Parsed({key: 0})
            inner = numbers(parens(text))
            if len(inner) == 1:
                nums, out = inner, parens(text)
            else:
                why = "is too vague" if VAGUE.search(t) else "is not understood"
                return Parsed(problem=f"value {text!r} {why} for {label}: give a number ({units_hint(units)})")
        if len(nums) > 1:
            return Parsed(problem=f"value {text!r} holds several numbers ({', '.join(n.text for n in nums)}) for "
                                  f"{label}: give one value per variant")
        written, n = nums[0].value, in_thousands(nums[0]) if thousands else nums[0]
        after = out[n.end:]
        if OTHER_UNITS.match(after) and not (unit_re and unit_re.match(after.strip().lower())):
            return Parsed(problem=f"value {text!r} is not a {label} (it counts {after.split()[0]})")
        if real:
            if not (n.value > 0 or zero and n.value == 0):
                return Parsed(problem=f"{label} must be {'zero or more' if zero else 'positive'}; {n.text!r} is not")
            extra = leftovers(text, [n.value], (key,), ctx)
            if extra:
                return extra_problem(extra, text, label)
            return Parsed({key: float(f"{n.value:.12g}")})
        if n.integer is None:
            return Parsed(problem=f"{label} must be a whole number; {n.text!r} is not")
        if n.integer < (0 if zero else 1):
            return Parsed(problem=f"{label} must be {'zero or more' if zero else 'positive'}; {n.text!r} is not")
        extra = leftovers(text, [n.value, written], (key,), ctx)
        if extra:
            return extra_problem(extra, text, label)
        return Parsed({key: n.integer})
    return parse


def in_thousands(n: Num) -> Num:
    """A number written with K read as thousands: counts of training steps are decimal ('250k steps' = 250000),
    unlike memory sizes ('16K entries' = 16384)."""
    m = re.fullmatch(r"(?P<mant>[\d.,]+)\s*[kK]", n.text)
    if not m:
        return n
    return Num(float(m["mant"].replace(",", "")) * 1000, n.start, n.end, n.text)


def relative_factor(text: str, scope: str = "") -> float | str | None:
    """'by a factor of 4' with 'reduce' (in the value or its section) is 1/4, with 'increase' 4; '4x smaller' is
    1/4; None when the value gives no factor, 'unclear' when it gives one without a direction."""
    m = re.search(r"\bfactor of\s+(\d+(?:\.\d+)?)|(?<![\w.])(\d+(?:\.\d+)?)\s*[x×]\s+(smaller|larger|bigger|"
                  r"fewer|more|less|shorter|longer|lower|higher|greater)\b", text)
    if not m:
        return None
    n = float(m[1] or m[2])
    where = m[3] or f"{text} {scope}"
    down = re.search(r"\b(?:reduc|decreas|shrink|lower|cut|divid|smaller|fewer|less|shorter)\w*", where)
    up = re.search(r"\b(?:increas|grow|enlarg|rais|multipl|larger|bigger|more|longer|higher|greater)\w*", where)
    if bool(down) == bool(up) or n <= 0:
        return "unclear"
    return 1 / n if down else n


def units_hint(units: str) -> str:
    return "e.g. 8192, 16K, 2^14" if "entr" in units else "e.g. 256 tokens" if "token" in units else "e.g. 16"


# 'memory only' as a gate value (1.0: the memory alone is read); 'memory only in the last layer' says where the
# memory is, not how it is mixed
WHERE_ONLY = r"(?!\s+(?:in|at|on|for|from)\s+(?:the\s+|layers?\s+|blocks?\s+)?(?:\w+\s+){0,3}?(?:layers?|blocks?)\b|" \
             r"\s+(?:in|at|on)\s+(?:layers?|blocks?)\s+\d)"
MEMORY_ONLY = r"(?:memory(?:[- ]attention)?[- ]only|only (?:the )?memory)" + WHERE_ONLY


def gate_parse(item: Item, ctx: Context) -> Parsed:
    """fixed_gate=0.5, gate = 1, gating value 0.25, fixed 0.9, sigmoid(0), equal mix, local attention only,
    joint softmax, learned (per-head) gate."""
    text = item.text
    t = words(text)
    out = words(outside_parens(text))
    if re.search(r"joint softmax|(?:single|one|shared|common) softmax|softmax over (?:both|memory and local|the "
                 r"concatenat)|concatenat\w+ (?:logits|scores)", t):
        return Parsed({"memory.combine": "joint"})
    values = []
    sig = re.search(r"sigmoid\s*\(\s*(-?\d+(?:\.\d+)?)\s*\)", t)
    if sig:
        values.append(1 / (1 + math.exp(-float(sig[1]))))
        out = out.replace(sig.group(0), " ")
    nums = [n for n in numbers(out) if not (sig and n.text == sig[1])]
    inner = words(parens(text))
    if not nums and not sig and len(numbers(inner)) == 1 and \
            re.fullmatch(r"\s*(?:(?:fixed[ _]?)?(?:gate|gating value|g|weight)\s*(?:=|:|of)?\s*)?[\d.]+\s*", inner):
        nums = numbers(inner)  # 'fixed(0.5)', 'equal weighting (0.5)', 'memory-only (gate = 1.0)'
    if len(nums) > 1:
        return Parsed(problem=f"value {text!r} holds several gate values: give one per variant")
    values += [n.value for n in nums]
    if re.search(r"equal mix|equal weight|50/50|half and half|even mix|\baverag\w*|\bmean of|\bequally\b", t):
        values.append(0.5)
    if re.search(r"local(?:[- ]attention)?[- ]only|only local|memory (?:output |attention )?ignored|no memory "
                 r"contribution", t):
        values.append(0.0)
    if re.search(MEMORY_ONLY + r"|local (?:output |attention )?ignored", t):
        values.append(1.0)
    if not values and re.search(r"\binitial\w*|\binit\b|\bat (?:its )?start", t):
        values.append(0.5)  # the learned gate starts at sigmoid(0)
    if not values:
        if re.search(r"\blearn\w*|\btrain(?:ed|able)\b|per-head gate|paper", t) and not OFF.search(out):
            return Parsed({"memory.combine": "gate"})
        return Parsed(problem=f"value {text!r} is not understood for the gate: give a fixed gate value in [0, 1] "
                              f"(fixed_gate=0.5), 'joint softmax' or 'learned gate'")
    if any(not math.isclose(v, values[0]) for v in values):
        return Parsed(problem=f"value {text!r} names two different gate values")
    g = values[0]
    if not 0.0 <= g <= 1.0:
        return Parsed(problem=f"gate value {fmt(g)} is outside [0, 1] (0 = local attention only, 1 = memory only)",
                      reason="invalid")
    return Parsed({"memory.combine": "fixed", "memory.gate": round(g, 6)})

SEARCH_KINDS = (
    ("ivf", r"\bivf\b|inverted[- ]?file|inverted lists?|\bfaiss\b"),
    ("exact", r"\bexact\w*|brute[- ]?force|exhaustive\w*|\bflat\b|full search|dense search|no approximation|"
              r"linear scan|all stored keys"),
    ("bucketed", r"\bapprox\w*|\bbucket\w*|\btpu\b"),
)

# 'approx. kNN through an inverted-file index', 'approximate search using FAISS IVF': 'approximate' names the kind of
# search the index is, not the paper's bucketed search (which is not named by a bucket or the TPU here)
APPROXIMATE_BY_IVF = re.compile(r"^(?!.*\bbucket|.*\btpu\b).*\bapprox\w*\.?\s+(?:\S+\s+){0,3}?(?:through|via|using|"
                                r"with|by|by way of|by means of|based on|backed by|implemented (?:as|with|by))\s+"
                                r"(?:an?\s+|the\s+)?(?:\S+\s+){0,2}?(?:ivf|inverted[- ]?file|inverted lists?|faiss)\b")

# '16 lists probed per query', '8 cells searched': lists that are probed, not the index's lists
PROBED = r"\s+(?:probed|searched|visited|scanned|per query|per search)\b"

SEARCH_PARAMS = (
    ("memory.ivf_lists", "ivf", r"(\d[\d,]*\s*[kK]?)\s*(?:inverted )?(?:lists?|clusters?|centroids?|cells?)\b"
                                r"(?!" + PROBED + r")|"
                                r"\bnlists?\s*=\s*(\d+)|\blists?\s*=\s*(\d+)|\bivf[-_]?(\d+)\b"),
    ("memory.ivf_probe", "ivf", r"(\d+)\s*(?:probes?|probed lists?)\b|"
                                r"(\d+)\s*(?:lists?|clusters?|cells?)" + PROBED + "|"
                                r"\bn?probes?\s*=\s*(\d+)|\bprob(?:e|es|ing)\s+"
                                r"(\d+)|"
                                # '256 lists of which 8 are probed per query'
                                r"(\d+)\s+(?:of them\s+)?(?:are|is|get|gets|being)\s+(?:probed|searched|visited|"
                                r"scanned)\b"),
    ("memory.search_buckets", "bucketed", r"(\d+)\s*buckets?\b|\bbuckets?(?:\s+per\s+(?:neighbou?r|query|result|"
                                          r"retrieved key)s?)?\s*(?:=|:|of|to)?\s*(\d+)"),
)


def search_parse(item: Item, ctx: Context) -> Parsed:
    """exact_kNN, brute force, approximate_kNN, bucketed, IVF / inverted file / FAISS with its lists and probes."""
    text = item.text
    t = words(text)
    main = words(outside_parens(text)) or t
    kinds = [k for k, rx in SEARCH_KINDS if re.search(rx, main)] or [k for k, rx in SEARCH_KINDS if re.search(rx, t)]
    if "ivf" in kinds and "exact" in kinds and re.search(r"\bflat\b", t) and not re.search(r"\bivf|inverted", t):
        kinds = ["exact"]
    if set(kinds) == {"ivf", "bucketed"} and APPROXIMATE_BY_IVF.search(main):
        kinds = ["ivf"]  # 'approximate kNN through an inverted-file index': the IVF index is how it approximates
    if VAGUE.search(outside_parens(t)) and not re.search(r"\bivf\b|inverted|exact|brute", t):
        return Parsed(problem=f"value {text!r} does not say which search: exact, bucketed (approximate) or ivf")
    if len(kinds) != 1:
        return Parsed(problem=f"value {text!r} {'names several searches' if kinds else 'is not understood'}: say "
                              f"exact (brute force), bucketed (approximate, the paper's) or ivf (inverted file)")
    kind = kinds[0]
    changes, used = {"memory.search": kind}, []
    for key, owner, rx in SEARCH_PARAMS:
        m = re.search(rx, t)
        if not m:
            continue
        if owner != kind:
            return Parsed(problem=f"value {text!r}: {key.split('.')[1]} belongs to {owner} search, not {kind}")
        raw = next(g for g in m.groups() if g)
        n = numbers(raw)
        if len(n) != 1 or n[0].integer is None or n[0].integer < 1:
            return Parsed(problem=f"value {text!r}: {raw!r} is not a positive whole number of {key}")
        changes[key] = n[0].integer
        used.append(n[0].value)
    extra = leftovers(text, used, ("memory.top_k", "memory.size"), ctx)
    if extra:
        return extra_problem(extra, text, "the kNN search")
    return Parsed(changes)


# The two memory position biases as plans describe them without their names: by the distance between query and
# stored key (how far back, how long ago), or by where in the document the stored key stands (was written).
RELATIVE_BIAS = (r"\bdistance\b|\bhow (?:far back|far away|long ago|old)\b|\boffset (?:between|from)|\bgap between|"
                 r"\b(?:age|recency) of\b|\btokens? (?:ago|back)\b|\bquery[- ]to[- ]key\b|\bkey[- ]query\b")
RELATIVE_DESCRIPTION = (r"\bdistance (?:between|from|to) (?:the |a |each )?(?:query|queries|stored key|key|"
                        r"current token|positions?)\b|\bhow (?:far back|long ago)\b(?=[^.;]{0,30}\b(?:keys?|memor\w*|"
                        r"stored|retriev\w*|written|entry|entries)\b)|\bquery[- ]to[- ]key distance|"
                        r"\bquery-key distance")
ABSOLUTE_BIAS = (r"\bposition (?:\w+ ){0,2}(?:in|within|inside) (?:the |its |a )?(?:document|doc|book|text)\b|"
                 r"\b(?:stored |retrieved )(?:key|keys|memory|memories|entry|entries)(?:'s?|') (?:own )?positions?\b|"
                 r"\bwhere in the (?:document|doc|book|text)\b|\b(?:document|doc)[- ]position|"
                 r"\b(?:indexed|keyed|conditioned) (?:on|by) (?:the )?(?:stored |retrieved )?(?:key's |keys' |"
                 r"memory's |entry's )?(?:own )?position\b|\bposition (?:at which|where) (?:it|the \w+) was "
                 r"(?:written|stored)")


def bias_parse(item: Item, ctx: Context) -> Parsed:
    t = words(item.text)
    kinds = set()
    if re.search(r"\bt5\b|\brelative\b", t):
        kinds.add("t5-relative")
    if re.search(r"\babsolute\b", t):
        kinds.add("learned-absolute")
    if not kinds:  # described, not named: a distance between positions is the relative kind
        kinds = {"t5-relative"} if re.search(RELATIVE_BIAS, t) else \
            {"learned-absolute"} if re.search(ABSOLUTE_BIAS, t) else set()
    if not kinds and re.search(r"^\s*(?:none|no(?: position)? bias|without(?: position bias)?|off)\s*$", t):
        kinds.add("none")
    if len(kinds) != 1:
        return Parsed(problem=f"value {item.text!r} {'names two position biases' if kinds else 'is not understood'}"
                              f" for the memory position bias: say t5-relative, learned-absolute or none")
    extra = leftovers(item.text, [], (), ctx)
    if extra:
        return extra_problem(extra, item.text, "the memory position bias")
    return Parsed({"memory.position_bias": kinds.pop()})


def layers_parse(item: Item, ctx: Context) -> Parsed:
    """'layer 3', 'layers 3 and 6', 'ℓ = 12', 'the last layer', 'every layer', '3'."""
    text = item.text
    t = words(outside_parens(text))
    depth = ctx.baseline.model.depth
    if re.search(r"\bevery (?:other|second|third|\d+(?:st|nd|rd|th)?)\b|\balternat\w*|\bexcept\b|\bbut (?:the|layer)|"
                 r"\bother than\b|\bapart from\b|\bhalf of\b|\b(?:upper|lower|top|bottom) half\b", t):
        return Parsed(problem=f"value {text!r} does not list the layers: name them (e.g. 'layers 2, 4 and 6')")
    span = re.search(r"\b(last|final|top|first|bottom|lowest)\s+(\d+|two|three|four|five|six)\s+(?:\w+\s+)?layers\b", t)
    if span:
        n = int(span[2]) if span[2].isdigit() else ["two", "three", "four", "five", "six"].index(span[2]) + 2
        if not 1 <= n <= depth:
            return Parsed(problem=f"value {text!r}: the model has {depth} layers")
        first = span[1] in ("first", "bottom", "lowest")
        return Parsed({"memory.layers": list(range(1, n + 1)) if first else list(range(depth - n + 1, depth + 1))})
    span = re.search(r"\blayers\s+(\d+)\s*(?:-|to|through|thru|\.\.)\s*(\d+)\b|\blayer\s+(\d+)\s*-\s*(\d+)\b", t)
    if span:  # 'layers 1-6', 'layers 3 to 5': every layer of the range ('layer 3 to 5' may be a move)
        first, last = int(span[1] or span[3]), int(span[2] or span[4])
        rest = t[:span.start()] + " " + t[span.end():]
        if first > last or numbers(rest):
            return Parsed(problem=f"value {text!r} does not list the layers: name them (e.g. 'layers 2, 4 and 6')")
        return Parsed({"memory.layers": list(range(first, last + 1))})
    if re.search(r"\b(?:every|each|all)(?: the)? (?:\w+ )?layers?\b|\ball \d+ layers\b", t):
        return Parsed({"memory.layers": list(range(1, depth + 1))})
    for position, layer in ((r"\b(?:last|final|top(?:most)?)\b", depth), (r"\b(?:first|bottom|lowest)\b", 1)):
        if re.search(position, t) and not numbers(t):
            said = [n.integer for n in numbers(words(parens(text)))]
            if any(n != layer for n in said):  # 'the final layer (layer 11)' in a 12-layer model: which one?
                return Parsed(problem=f"value {text!r} names layer {layer} by its position but also layer "
                                      f"{', '.join(map(str, said))}: name the layer by its number (1..{depth})")
            return Parsed({"memory.layers": [layer]})
    if re.search(r"(?<![\w.])\d+\s+(?:\w+\s+)?layers\b|\b(?:two|three|four|several|multiple)\s+(?:\w+\s+)?layers\b",
                 t) and not re.search(r"\blayers\s+\d", t):
        return Parsed(problem=f"value {text!r} says how many memory layers, not which: name the layers "
                              f"(e.g. 'layers 3 and 6')")
    nums = numbers(t)
    if nums and not re.search(r"\blayers?\b|ℓ", t) and re.search(r"(?:number|count) of (?:\w+ )?layers|how many "
                                                                r"(?:\w+ )?layers", ctx.part):
        return Parsed(problem=f"value {text!r} is a number of memory layers, not which layers: name them "
                              f"(e.g. 'layers 3 and 6')")
    if not nums:
        why = "does not say which layer" if VAGUE.search(t) or "layer" in t else "is not understood"
        return Parsed(problem=f"value {text!r} {why}: name the layer numbers (1..{depth}), 'last' or 'every layer'")
    if any(n.integer is None for n in nums):
        return Parsed(problem=f"value {text!r}: layer numbers are whole numbers")
    layers = sorted({n.integer for n in nums})
    extra = [n for n in leftovers(text, [n.value for n in nums], ("memory.layers",), ctx)
             if not _restated_count(text, n, layers, ctx)]
    if extra:
        return extra_problem(extra, text, "the memory layers")
    return Parsed({"memory.layers": layers})


def _restated_count(text: str, n: Num, layers: list[int], ctx: Context) -> bool:
    """'layers 3 and 6 (one run, two memory layers)', 'layers 4 and 10 (three memory layers with the baseline's)':
    a count of memory layers in parentheses that the named layers already give, alone or with the baseline's
    (an ADD) is a restatement, no parameter."""
    inner = parens(text)
    if not re.search(rf"(?<![\w.]){re.escape(n.text)}\s+(?:\w+\s+){{0,2}}?layers\b", inner):
        return False
    with_baseline = set(layers) | {k + 1 for k in ctx.baseline.memory_placement()}
    return n.integer in ({len(layers), len(with_baseline)} if ctx.action == "ADD" else {len(layers)})

MODEL_DIMS = (
    ("model.depth", r"(?<![\w.])(\d+)\s*-?\s*(?:transformer\s+)?layers?\b|\bdepth\s*(?:of\s*|=\s*|to\s*)?(\d+)|"
                    r"\b(\d+)\s*-?\s*layer\b"),
    ("model.heads", r"(?<![\w.])(\d+)\s*(?:attention\s+)?heads\b|\bheads\s*(?:=\s*|to\s*)?(\d+)"),
    ("model.head_dim", r"\bheads?\s+of\s+(\d+)|\bhead[ _-]?(?:dim\w*|size)\s*(?:of\s*|=\s*|to\s*)?(\d+)|"
                       r"(\d+)[- ]dim(?:ensional)? heads|(\d+)\s*dim(?:ension)?s?\s+(?:per|each|a|for each)\s+head\b"),
    ("model.dim", r"\b(?:width|d[ _]?model|model dim\w*|hidden(?: size| dim\w*)?|dim(?:ension)?)\s*(?:of\s*|=\s*|"
                  r"to\s*)?(\d+)|(\d+)[- ]wide\b"),
)

MODEL_NAMES = {"model.depth": r"\bdepth\b|\bdeeper\b|\bshallower\b|number of (?:transformer )?layers",
               "model.heads": r"\bheads\b", "model.head_dim": r"head (?:dim\w*|size)",
               "model.dim": r"(?<!ffn )(?<!mlp )(?:\bwidth\b|\bwider\b|\bnarrower\b|d[ _]?model|hidden (?:size|dim)|"
                            r"model dim)"}


def model_parse(item: Item, ctx: Context) -> Parsed:
    """'24 layers', 'depth 16', '16 heads of 64', 'width 2048'; a bare number where the part names one dimension."""
    text = item.text
    t = words(f"{outside_parens(text)} {' '.join(consequences(text))}")
    changes, used = {}, []
    for key, rx in MODEL_DIMS:
        for m in re.finditer(rx, t):
            raw = next(g for g in m.groups() if g)
            changes[key] = int(raw)
            used.append(float(raw))
    if not changes:
        nums = numbers(t)
        named = [k for k, rx in MODEL_NAMES.items() if re.search(rx, ctx.part)]
        factor = MULTIPLIER.search(t)
        if len(nums) == 1 and nums[0].integer and len(named) == 1:
            changes[named[0]] = nums[0].integer
            used.append(nums[0].value)
        elif not nums and factor and len(named) == 1 and _factor_of(t, factor, MODEL_NAMES[named[0]]):
            # 'halved' of the one dimension the part names
            section, name = named[0].split(".")
            value = getattr(getattr(ctx.baseline, section), name) * multiplier(factor)
            if value == int(value) and value >= 1:
                changes[named[0]] = int(value)
        else:
            return Parsed(problem=f"value {text!r} does not say which dimension of the model changes: give e.g. "
                                  f"'24 layers', '16 heads of 64' or 'width 2048' (model.depth, model.heads, "
                                  f"model.head_dim, model.dim)")
    extra = leftovers(text, used, ("model.depth", "model.heads", "model.head_dim", "model.dim"), ctx)
    if extra:
        return extra_problem(extra, text, "the model size")
    return Parsed(changes)


# '(so 64 dims per head)', '(i.e. 64 per head)': a parenthesis that states what the value implies
CONSEQUENCE = re.compile(r"\(\s*(?:so|hence|thus|i\.?\s?e\.?|that is|giving|which gives|making)\b,?\s*([^()]*)\)", re.I)


def consequences(text: str) -> list[str]:
    """What a model value says follows from it ('width 512, keeping 8 heads (so 64 dims per head)'): the model's
    dimensions are tied (width = heads x head size), so a dimension stated as a consequence is part of the
    variant."""
    return CONSEQUENCE.findall(text)


def _factor_of(text: str, factor: re.Match, dimension: str) -> bool:
    """Whether a multiple in a model value is one of `dimension`: the value names it, or says nothing else ('halved',
    'double it'); 'each with half-size keys' is a multiple of something else."""
    rest = text[:factor.start()] + " " + text[factor.end():]
    rest = re.sub(r"\b(?:it|them|the|its|their|a|an|of|to|be|is|are|by|size[d]?|number|count|baseline'?s?)\b|[-,.;:]",
                  " ", rest)
    return bool(re.search(dimension, text)) or not rest.strip()


def fixed(changes: dict | Callable[[Context], dict]):
    return lambda ctx: Parsed(changes(ctx) if callable(changes) else dict(changes))


def open_choice(problem: str):
    return lambda ctx: Parsed(problem=problem)


def xl_add(ctx: Context) -> Parsed:
    return Parsed({"model.xl_cache": ctx.baseline.data.segment})
