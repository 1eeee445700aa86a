"""MovieLens-100K, read from RecBole's bundled atomic file ``ml-100k.inter``.

The file starts with a typed header (``user_id:token item_id:token rating:float
timestamp:float``); columns are found by name. As for Amazon and Yelp, rating < 3 is a false
positive, and a rating outside 1-5 makes its line malformed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import (
    LIMIT,
    ConversionError,
    FlagBelow,
    LineLog,
    Options,
    Row,
    bad_id,
    convert_rows,
    head,
    line_batches,
    resolve_inputs,
    suspect,
)

NAME = "ml-100k"
HELP = "RecBole's bundled ml-100k.inter (typed atomic header); rating < 3 is a false positive"
DEFAULT_NAME = "ml-100k-fp"
NEEDED = ("user_id", "item_id", "rating", "timestamp")
OPTIONS = Options  # the common options only


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""


def _columns(path: Path) -> list[int]:
    """Positions of the needed columns, from the typed header (``name:type`` fields)."""
    first = head(path, 1)[0].decode("utf-8", "replace").split()
    names = [c.split(":", 1)[0] for c in first]
    if not all(":" in c for c in first) or any(n not in names for n in NEEDED):
        raise ConversionError(
            f"{path} is not a RecBole atomic .inter file with columns {', '.join(NEEDED)} "
            f"(first line: {' '.join(first)[:80]!r})"
        )
    return [names.index(n) for n in NEEDED]


def _rows(files: Sequence[Path], log: LineLog) -> Iterator[list[Row]]:
    flag = FlagBelow(3, low=1, high=5, what="rating")
    cached = flag.get
    for path in files:
        cu, ci, cr, ct = _columns(path)
        width = max(cu, ci, cr, ct) + 1
        header_pending = True
        for first, lines in line_batches(path):
            rows: list[Row] = []
            check_ids = suspect(lines)
            for lineno, line in enumerate(lines, first):
                fields = line.split(b"\t")
                if header_pending and line.strip():
                    header_pending = False
                    continue
                if len(fields) < width:
                    _short(line, path, lineno, log)
                    continue
                user, item = fields[cu].strip(), fields[ci].strip()
                rating, ts = fields[cr].strip(), fields[ct].strip()
                fp = cached(rating) or flag.at(rating, path, lineno, log)
                if fp is None:
                    continue
                try:
                    if not -LIMIT < float(ts) < LIMIT:
                        raise ValueError(ts)
                except ValueError:
                    log.bad(
                        path,
                        lineno,
                        f"timestamp {ts[:20].decode(errors='replace')!r} is not a number",
                    )
                    continue
                if not user or not item:
                    log.bad(path, lineno, "empty id")
                    continue
                if check_ids and (why := bad_id(user, item)):
                    log.bad(path, lineno, why)
                    continue
                rows.append((user, item, rating, ts, fp))
            log.lines += len(lines)
            yield rows


def _short(line: bytes, path: Path, lineno: int, log: LineLog) -> None:
    if line.strip():
        log.bad(path, lineno, "too few tab-separated fields")
    else:
        log.skip("blank")


def convert(
    inputs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    name: str | None,
    opts: Options,
    force: bool,
) -> dict[str, Any]:
    files = resolve_inputs(inputs)
    return convert_rows(
        source=NAME,
        name=name or DEFAULT_NAME,
        output_dir=output_dir,
        inputs=files,
        value_field="rating",
        rows=lambda log: _rows(files, log),
        opts=opts,
        force=force,
    )
