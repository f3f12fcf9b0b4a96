"""Field names of plans, by the role they play: what is ablated (part), the action, the values, the change
described, the metrics, and notes (hypothesis, rationale: never used to decide anything). Names are matched
whole ('Ablated Part', 'What changes', 'Action/Operation'), else by their head word ('Target module', 'Variant 1',
'Proposed change'); fields may also stand inline, several on one line."""

import re


# Every field name a plan may use, by the role it plays. Names are compared lowercased, without '*', '_' and ':'.
FIELD_ROLES = {
    "title": ("name", "title", "id", "ablation", "experiment", "ablation name", "ablation id", "study"),
    "part": ("ablated part", "ablated component", "component", "part", "what", "ablated what", "ablated module",
             "module", "target", "ablation target", "ablated", "what is ablated", "subject", "ablated element",
             "element", "mechanism", "ablated mechanism", "feature", "ablated feature"),
    "action": ("action", "action/operation", "operation", "action type", "type", "op", "kind", "how"),
    "values": ("replacement", "replacements", "values", "value", "variants", "variant", "setting", "settings",
               "options", "replace with", "new value", "new values", "alternatives", "candidates", "sweep",
               "grid", "levels", "conditions", "override", "overrides", "config", "config override",
               "config overrides", "arms", "with", "to"),
    "change": ("change", "changes", "what changes", "modification", "intervention", "procedure", "description",
               "details", "method", "implementation", "what to change", "proposal", "treatment",
               "ablation details", "setup", "configuration change", "experiment setup"),
    "metrics": ("metric", "metrics", "evaluation", "measure", "measures", "measured by", "eval", "report",
                "metric(s)", "evaluate", "evaluation metric", "evaluation metrics"),
    "notes": ("hypothesis", "rationale", "motivation", "expected outcome", "expected outcomes", "expected result",
              "expected results", "expectation", "expectations", "notes", "note", "why", "purpose", "summary",
              "goal", "goals", "question", "risk", "risks", "cost", "seeds", "priority", "baseline", "compute",
              "budget", "reasoning", "justification", "prediction", "predicted effect", "expected effect",
              "expected impact", "comment", "comments", "remark", "remarks", "reference", "references", "status",
              "owner", "duration", "runs", "control", "controls", "expected", "outcome", "result", "results",
              "why it matters", "predicted outcome", "success criterion", "success criteria", "dependencies"),
}

ROLE_OF = {name: role for role, names in FIELD_ROLES.items() for name in names}

HEAD_WORDS = {"component": "part", "part": "part", "module": "part", "target": "part", "action": "action",
              "operation": "action", "replacement": "values", "replacements": "values", "values": "values",
              "value": "values", "variant": "values", "variants": "values", "setting": "values",
              "settings": "values", "option": "values", "options": "values", "change": "change",
              "changes": "change", "intervention": "change", "modification": "change", "metric": "metrics",
              "metrics": "metrics", "hypothesis": "notes", "rationale": "notes", "notes": "notes", "note": "notes",
              "expected": "notes", "motivation": "notes"}


# 'Runs' lists what is run ('Runs: memory.size=131072, memory.size=262144', 'Two runs: gate 0.25 and 0.75'), unless
# it counts runs ('Runs: 3 seeds', 'Runs: 2 (one per value)'): then it is a note.
RUN_FIELDS = ("runs", "run")
RUN_COUNT = re.compile(r"^\s*(?:\d+|one|two|three|four|five|six|eight|ten)\s*(?:$|[(×]|(?:seeds?|runs?|repeats?|"
                       r"replicates?|each|per|x|total|in total|jobs?)\b)", re.I)


def field_role(name: str, exact: bool = False, value: str | None = None) -> str | None:
    """The role of a field name: exact names first, then (unless `exact`) the name's first or last word
    ('Target module', 'Variant 1', 'Proposed change', 'Evaluation metric'). A 'Runs' field with its `value` given
    holds values unless it counts runs."""
    key = re.sub(r"[*_:]", " ", name).strip().lower()
    key = re.sub(r"\s+", " ", key)
    if key in RUN_FIELDS and value is not None and value.strip() and not RUN_COUNT.match(value):
        return "values"
    if key in ROLE_OF or exact:
        return ROLE_OF.get(key)
    parts = re.findall(r"[a-z]+", key)
    if not parts or len(parts) > 3:
        return None
    return HEAD_WORDS.get(parts[-1]) or HEAD_WORDS.get(parts[0])


def _inline_field_names() -> str:
    names = sorted(ROLE_OF, key=len, reverse=True)
    names = [n for n in names if len(n) > 2 and n not in ("with", "to", "how", "what", "type", "kind", "plan",
                                                            "design", "element", "feature", "report", "id")]
    return "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in names)

INLINE_FIELD = re.compile(r"(?:^|(?<=[\s;,.—–|(]))(?:\*{1,2}|_{1,2})?(?P<name>" + _inline_field_names() +
                          r")(?:\*{1,2}|_{1,2})?\s*(?::|\*{1,2}:|:\*{1,2})\s*(?:\*{1,2}|_{1,2})?", re.I)


def _depth(text: str, at: int) -> int:
    """How many parentheses are open at `at` ('Memory layers (baseline: layer 9)': 'baseline' is not a field)."""
    return max(0, text[:at].count("(") - text[:at].count(")"))


def split_inline(text: str) -> tuple[str, list[tuple[str, str]]]:
    """'Top-k — Component: k. Action: REPLACE. Values: 8 or 64.' -> ('Top-k', [(part, k), (action, REPLACE),
    (values, 8 or 64)]). The text before the first field is returned as the lead."""
    matches = [m for m in INLINE_FIELD.finditer(text) if _depth(text, m.start()) == 0]
    if not matches:
        return text, []
    lead = text[:matches[0].start()]
    fields = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end():end]
        value = re.sub(r"[\s;,—–|*]+$", "", value)
        value = re.sub(r"(?<!\d)\.\s*$", "", value).strip()
        fields.append((field_role(m["name"], value=value), value))
    lead = re.sub(r"[\s;,.—–|:*-]+$", "", lead).strip()
    return lead, fields
