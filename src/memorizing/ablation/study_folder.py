"""A study folder and its ledger: the one place that knows their file names and formats.

    study.json          the plan as variants and configs (written first; a rerun must match it)
    plan.resolved.toml  the plan as it was understood, in the TOML plan format (runs the same study)
    ledger.jsonl        append-only, one checksummed line per finished run (ok or failed)
    runs/KEY-sN/        each run's training folder (resumed from its checkpoint after an interruption)
    runs/trunk-KEY-sN/  the trunk that runs of seed N start from, in a warm-started study
    report.md, report.json, *.png   written from the ledger(s) by report.py
"""

import hashlib
import json
import os
from pathlib import Path

STUDY, LEDGER, RUNS, RESOLVED = "study.json", "ledger.jsonl", "runs", "plan.resolved.toml"
TRUNK = "trunk"  # train.init_from = "trunk:KEY" names the study's trunk KEY of the run's own seed


def trunk_of(init_from: str) -> str | None:
    """The trunk KEY a run's train.init_from = "trunk:KEY" names, or None (it starts otherwise)."""
    return init_from.split(":", 1)[1] if init_from.startswith(f"{TRUNK}:") else None


def run_id(key: str, seed: int, trunk: bool = False) -> str:
    return f"{TRUNK + '-' if trunk else ''}{key}-s{seed}"


def _checksum(record: dict) -> str:
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def append_ledger(folder: Path, record: dict) -> None:
    line = json.dumps({**record, "checksum": _checksum(record)}, sort_keys=True)
    with open(folder / LEDGER, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_ledger(folder: Path, warn=None) -> dict[str, dict]:
    """Finished runs by id; a torn or altered line is named and skipped (its run is redone)."""
    records = {}
    path = folder / LEDGER
    if not path.exists():
        return records
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            checksum = record.pop("checksum")
            if checksum != _checksum(record):
                raise ValueError("checksum mismatch")
        except (json.JSONDecodeError, KeyError, ValueError, AttributeError) as e:
            if warn:
                warn(f"{path}, line {number}: damaged ledger line skipped ({e}); that run will be redone.")
            continue
        records[record["run"]] = record
    return records


