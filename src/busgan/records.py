"""Stage records: ``WORK/records/NAME.json``, one per finished stage of ``busgan run``.

A record holds the hash of the config keys that decide the stage's result, the hash of its
inputs (its upstream stages' output hashes), the hash of its own outputs, a summary, the
software versions and timings. The pipeline writes them; the report only reads them. They are
strict JSON (``fileio.write_json``: a NaN in a summary is written as null and noted under
``_nonfinite``), so any JSON parser reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from busgan.fileio import read_json, write_json

RECORDS_DIR = "records"


def record_path(work: Path, stage_name: str) -> Path:
    """Where the record of the stage called ``stage_name`` lives."""
    return Path(work) / RECORDS_DIR / f"{stage_name}.json"


def read_record(work: Path, stage_name: str) -> dict[str, Any] | None:
    """The stage's record, or None when missing or unreadable (the stage then runs again)."""
    path = record_path(work, stage_name)
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def write_record(work: Path, stage_name: str, record: dict[str, Any]) -> None:
    write_json(record_path(work, stage_name), record)


def read_records(work: Path) -> dict[str, dict[str, Any]]:
    """Every readable record in ``work``, keyed by stage name."""
    folder = Path(work) / RECORDS_DIR
    names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    return {n: r for n in names if (r := read_record(work, n)) is not None}
