"""Shared helpers for the converter tests: the sample folder and a reader for .inter files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parent / "samples"


def read_inter(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    """Header columns and rows (as string tuples) of an atomic file, read without the converter."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    return lines[0].split("\t"), [tuple(line.split("\t")) for line in lines[1:-1]]


def read_stats(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def counts(rows: list[tuple[str, ...]]) -> tuple[int, int, int, int]:
    """(users, items, interactions, false positives) recounted from the written rows."""
    users = {r[0] for r in rows}
    items = {r[1] for r in rows}
    return len(users), len(items), len(rows), sum(r[-1] == "1.0" for r in rows)


def summary(stats: dict[str, Any]) -> tuple[int, int, int, int]:
    return stats["users"], stats["items"], stats["interactions"], stats["false_positives"]


def malformed_lines(stats: dict[str, Any]) -> list[int]:
    """Line numbers of the malformed-line examples (``path:line: reason``)."""
    return [int(e.split(": ", 1)[0].rsplit(":", 1)[1]) for e in stats["malformed_first"]]
