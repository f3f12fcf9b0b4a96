"""Ablation plans: the Markdown that planners write, or TOML that names config keys directly.

Markdown (the seed format): HTML and prose are ignored; each `### Title` starts an ablation with bullet fields
`**Ablated Part**` (free text), `**Action**` (REMOVE, REPLACE or ADD), `**Replacement**` (a nested bullet list of
values) and `**Metrics**`. TOML:

    [[ablation]]
    title = "Memory size"
    [[ablation.variant]]
    name = "4K entries"
    set = { "memory.size" = 4096 }
"""

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from memorizing.errors import UserError

ACTIONS = ("REMOVE", "REPLACE", "ADD")


class PlanError(UserError):
    """A plan that cannot be read or mapped onto the model."""


@dataclass
class Ablation:
    title: str
    part: str = ""
    action: str = ""
    replacements: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    line: int = 0  # where the ablation starts in the plan file (1-based)
    # TOML plans name their changes directly: one (name, {key: value}) per variant.
    direct: list[tuple[str, dict]] = field(default_factory=list)


FIELD = re.compile(r"^\s*[-*]\s*\*\*(?P<name>[^*]+?)\*\*\s*:?\s*(?P<value>.*)$")
ITEM = re.compile(r"^\s+[-*]\s+(?P<value>.+?)\s*$")
TAG = re.compile(r"<[^>]+>")


def parse_markdown(text: str, source: str = "plan") -> list[Ablation]:
    ablations: list[Ablation] = []
    current, list_field = None, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = TAG.sub("", raw).rstrip()
        if line.startswith("### "):
            current = Ablation(title=line[4:].strip(), line=number)
            ablations.append(current)
            list_field = None
            continue
        if current is None or not line.strip():
            continue
        if line.startswith("#"):  # any other heading ends the ablation
            current, list_field = None, None
            continue
        match = FIELD.match(line)
        if match:
            name, value = match["name"].strip().rstrip(":").lower(), match["value"].strip()
            list_field = None
            if name == "ablated part":
                current.part = value
            elif name == "action":
                current.action = value.upper()
            elif name in ("replacement", "replacements"):
                list_field = current.replacements
                current.replacements.extend(v.strip() for v in value.split(",") if v.strip())
            elif name == "metrics":
                list_field = current.metrics
                current.metrics.extend(v.strip() for v in value.split(",") if v.strip())
            continue
        item = ITEM.match(line)
        if item and list_field is not None:
            list_field.append(item["value"])
    if not ablations:
        raise PlanError(f"{source}: no ablation found; each ablation starts with a '### Title' line followed by "
                        f"'- **Ablated Part**: ...' and '- **Action**: REMOVE|REPLACE|ADD'.")
    for a in ablations:
        if a.action not in ACTIONS:
            raise PlanError(f"{source}, line {a.line} ('### {a.title}'): action {a.action or '(missing)'!r} is not "
                            f"one of {', '.join(ACTIONS)}: add '- **Action**: REMOVE', REPLACE or ADD.")
        if not a.part:
            raise PlanError(f"{source}, line {a.line} ('### {a.title}'): no '**Ablated Part**' given: say which "
                            f"part of the model the ablation changes.")
        if a.action == "REPLACE" and not a.replacements:
            raise PlanError(f"{source}, line {a.line} ('### {a.title}'): REPLACE needs a '**Replacement**' list "
                            f"of values.")
    return ablations


def parse_toml(text: str, source: str = "plan") -> list[Ablation]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{source} is not valid TOML ({e}): fix the file.") from None
    entries = data.get("ablation")
    if not isinstance(entries, list) or not entries:
        raise PlanError(f"{source}: expected [[ablation]] tables, each with a title and [[ablation.variant]] "
                        f"tables holding name and set = {{ \"section.key\" = value }}.")
    ablations = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            raise PlanError(f"{source}: ablation {i} needs a title = \"...\".")
        variants = entry.get("variant")
        if not isinstance(variants, list) or not variants:
            raise PlanError(f"{source}: ablation {entry['title']!r} has no [[ablation.variant]] tables.")
        direct = []
        for v in variants:
            if not (isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("set"), dict)
                    and v["set"]):
                raise PlanError(f"{source}: every variant of {entry['title']!r} needs name = \"...\" and a "
                                f"non-empty set = {{ \"section.key\" = value }}.")
            direct.append((v["name"], dict(v["set"])))
        ablations.append(Ablation(title=entry["title"], part=str(entry.get("part", entry["title"])),
                                  action=str(entry.get("action", "REPLACE")).upper(), line=i,
                                  replacements=[name for name, _ in direct], direct=direct,
                                  metrics=[str(m) for m in entry.get("metrics", ["perplexity"])]))
    return ablations


def load_plan(path: str | None) -> tuple[list[Ablation], str]:
    """The ablations of the plan at `path` (the built-in seed plan when None) and the plan's name."""
    if path is None:
        source = Path(__file__).parent.parent / "plans" / "seed.md"
        return parse_markdown(source.read_text(), "built-in seed plan"), "seed"
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise PlanError(f"plan {path} does not exist: check the path, or run `memorizing ablate` with no plan "
                        f"for the built-in seed plan.") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise PlanError(f"plan {path} is not a readable text file ({e}).") from None
    if file.suffix == ".toml":
        return parse_toml(text, str(path)), file.stem
    return parse_markdown(text, str(path)), file.stem
