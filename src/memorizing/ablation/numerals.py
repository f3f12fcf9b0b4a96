"""Numbers written as words, as digits: 'sixteen neighbours' is '16 neighbours', 'layer nine' is 'layer 9',
'one million steps' is '1000000 steps', 'thirty-two' is '32'. A number in words is a number like any other: the
readers then account for it (a value list never silently drops 'layer four' because it was spelled out).

How many runs, seeds or variants a plan asks for ('two runs', 'three seeds') is no value and stays in words.
'one' (and 'a') alone is left as it is ('one run', 'one memory layer' say how many runs, not a value), except
after a word that takes a number ('layer one') or before a scale ('one million').
"""

import re

UNITS = {"zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
         "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
         "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1000_000, "billion": 1000_000_000}

_UNIT = "|".join(sorted(UNITS, key=len, reverse=True))
_TEN = "|".join(TENS)
_SCALE = "|".join(SCALES)
_SMALL = rf"(?:(?:{_TEN})(?:[- ](?:{_UNIT}))?|{_UNIT})"
# 'one million', 'two hundred and fifty-six', 'sixty-four', 'nine'; 'one' only before a scale
NUMBER_WORDS = re.compile(
    rf"(?<![\w-])(?P<n>(?:{_SMALL}|one|a)(?:\s+(?:{_SCALE})(?:\s+(?:and\s+)?{_SMALL})?)+|{_SMALL})(?![\w-])"
    r"(?!\s+(?:\w+\s+)?(?:runs?|seeds?|variants?|arms?|times|replicates?|repeats?|experiments?|ablations?|"
    r"settings|configurations?|values|options|choices|ways|sections?|steps? (?:of|in) (?:the|this)))", re.I)
# 'layer one', 'a gate of one', 'set the gate to one': a word that takes a number makes a lone 'one' a number too
AFTER_NUMBERED = re.compile(r"(?P<lead>\blayers?\s+|\b(?:gate|gating value|mixing weight|weight)\s*(?:of|=|to|at|:)"
                            r"\s*)one\b", re.I)


def _value(words: str) -> int:
    total, current = 0, 0
    for w in re.split(r"[\s-]+", words.lower()):
        if w in ("and",):
            continue
        if w in ("one", "a"):
            current += 1
        elif w in UNITS:
            current += UNITS[w]
        elif w in TENS:
            current += TENS[w]
        elif w in SCALES:
            scale = SCALES[w]
            if scale == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * scale
                current = 0
    return total + current


def digits(text: str) -> str:
    """`text` with its numbers in words written as digits."""
    if not text:
        return text
    text = AFTER_NUMBERED.sub(lambda m: f"{m['lead']}1", text)

    def repl(m: re.Match) -> str:
        said = m["n"]
        if re.fullmatch(r"a", said.split()[0], re.I) and len(said.split()) == 1:
            return said
        return str(_value(said))
    return NUMBER_WORDS.sub(repl, text)
