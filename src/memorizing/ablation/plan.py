"""Ablation plans as files: Markdown as people and planners write it (read by `layout.py`), or TOML that names
config keys directly; and the resolved plan written back as TOML (`memorizing ablate PLAN --resolve OUT.toml`).

TOML plans:

    [[ablation]]
    title = "Memory size"
    [[ablation.variant]]
    name = "4K entries"
    set = { "memory.size" = 4096 }
    description = "memory of 4,096 entries per lane and head"   # optional

A resolved plan is such a file with the section's part, action and component, and for each variant a
`description`, the plan's own words for the value (`replacement`, absent for a REMOVE or a bare ADD) and
`equals_baseline` where the plan asked for the baseline's own setting.
Running it gives the same study as the plan it was resolved from.
"""

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from memorizing.ablation.layout import Section, read_sections
from memorizing.ablation.unread import unread_lines, unread_warning
from memorizing.errors import UserError


class PlanError(UserError):
    """A plan that cannot be read, or sections of it that cannot be run (all of them listed)."""


@dataclass
class Plan:
    name: str  # for the report: the file's stem, or "seed"
    source: str  # for messages: the path, or "built-in seed plan"
    path: str | None
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)  # e.g. lines that look like an ablation but were not read


SEED = Path(__file__).parent.parent / "plans" / "seed.md"
FORMATS = ("each ablation under a heading ('### Title') or as a list item, a table row or a bold-lead paragraph, "
           "with the ablated part ('Ablated Part: ...' / 'Component: ...'), the action (REMOVE, REPLACE or ADD) and "
           "for REPLACE the values ('Replacement: ...' / 'Values: 8, 64'); or config keys as section.key=value")


def parse_markdown(text: str, source: str = "plan") -> list[Section]:
    """The sections of a Markdown (or HTML, or plain-text) plan."""
    sections = read_sections(text)
    if not sections:
        raise PlanError(f"{source}: no ablation found. Write {FORMATS}; or a TOML plan with [[ablation]] tables.")
    return sections


def parse_toml(text: str, source: str = "plan") -> list[Section]:
    """The sections of a TOML plan: one per [[ablation]], each variant's config changes taken literally."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{source} is not valid TOML ({e}): fix the file.") from None
    entries = data.get("ablation")
    if not isinstance(entries, list) or not entries:
        raise PlanError(f"{source}: expected [[ablation]] tables, each with a title and [[ablation.variant]] "
                        f"tables holding name and set = {{ \"section.key\" = value }}.")
    sections = []
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
            description = v.get("description")
            replacement = v.get("replacement")  # the plan's own words for the value, when it had some
            direct.append((v["name"], dict(v["set"]), description if isinstance(description, str) else None,
                           replacement if isinstance(replacement, str) else None))
        sections.append(Section(title=entry["title"], line=i, part=str(entry.get("part", entry["title"])),
                                action=str(entry.get("action", "REPLACE")), direct=direct))
    return sections


def load_plan(path: str | None) -> Plan:
    """The plan at `path` (the built-in seed plan when None)."""
    if path is None:
        return Plan("seed", "built-in seed plan", None, parse_markdown(SEED.read_text(), "built-in seed plan"))
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise PlanError(f"plan {path} does not exist: check the path, or run `memorizing ablate` with no plan "
                        f"for the built-in seed plan.") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise PlanError(f"plan {path} is not a readable text file ({e}).") from None
    if file.suffix == ".toml":
        return Plan(file.stem, str(path), str(path), parse_toml(text, str(path)))
    sections = parse_markdown(text, str(path))
    unread = unread_lines(text, sections)
    return Plan(file.stem, str(path), str(path), sections, [unread_warning(str(path), unread)] if unread else [])


# ---- the resolved plan as TOML ----------------------------------------------------------------------------------
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"{value!r} has no TOML form")


def resolved_toml(plan: Plan, resolutions: list, preset: str, sets: list[str]) -> str:
    """The plan as the study will run it, in the TOML plan format, one comment per variant saying what it is."""
    setting = f"preset `{preset}`" + (f" with {', '.join(sets)}" if sets else "")
    lines = [f"# Resolved from {plan.source} against {setting} by `memorizing ablate --resolve`.",
             f"# `memorizing ablate THIS.toml --preset {preset}` runs the same study. Edit freely: every variant is a "
             f"set of config keys.", ""]
    for r in resolutions:
        s = r.section
        lines += ["[[ablation]]", f"title = {toml_value(s.title)}"]
        if s.part and not s.direct:
            lines.append(f"part = {toml_value(' '.join(s.part.split()))}")
        lines.append(f"action = {toml_value(r.action)}")
        if r.component is not None:
            lines.append(f"component = {toml_value(r.component.name)}  # {r.component.label}")
        lines.append(f"line = {s.line}  # in {plan.source}")
        for v in r.variants:
            lines += ["", f"# {v.description}", "[[ablation.variant]]", f"name = {toml_value(v.name)}",
                      "set = { " + ", ".join(f"{toml_value(k)} = {toml_value(val)}" for k, val in v.changes.items())
                      + " }", f"description = {toml_value(v.description)}"]
            if v.replacement is not None:
                lines.append(f"replacement = {toml_value(v.replacement)}")
            if v.equals_baseline:
                lines.append("equals_baseline = true  # the plan asks for the baseline's own setting")
        lines.append("")
    return "\n".join(lines)
