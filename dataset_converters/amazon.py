"""Amazon reviews (McAuley et al., 2014 / 2018 / 2023 releases); rating < 3 is a false positive.

The release and file type are parameters, not classes:

- JSON lines are recognised from their fields: ``reviewerID``/``asin``/``overall``/
  ``unixReviewTime`` (2014 and 2018 reviews) or ``user_id``/``parent_asin``/``rating``/
  ``timestamp`` in milliseconds (2023). Python dict literals (the 2014 loose format) are read
  with ``ast.literal_eval``, never ``eval``.
- Ratings-only CSVs have no header in 2014 (user,item,rating,timestamp) and 2018
  (item,user,rating,timestamp: item first), so CSV input requires ``--format``; the 2023 CSV has
  a ``user_id,parent_asin,rating,timestamp`` header.

Ids stay strings (ASINs keep leading zeros and a trailing X); times become UTC unix seconds.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import jsonfields as jf
from .base import (
    ConversionError,
    LineLog,
    Options,
    Row,
    convert_rows,
    head,
    open_binary,
    resolve_inputs,
)

NAME = "amazon"
HELP = "Amazon reviews 2014/2018/2023 (JSON lines or ratings CSV); rating < 3 is a false positive"
FORMATS = ("2014-csv", "2018-csv", "2023-csv", "json")
logger = logging.getLogger(__name__)

# Column order (user, item, rating, timestamp) of the headerless ratings CSVs.
CSV_COLUMNS = {"2014-csv": (0, 1, 2, 3), "2018-csv": (1, 0, 2, 3)}
CSV_2023 = (("user_id",), ("parent_asin", "asin"), ("rating",), ("timestamp",))


@dataclasses.dataclass(frozen=True)
class AmazonOptions(Options):
    format: str | None = None  # None: JSON detected from its fields; CSV needs a format

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format is not None and self.format not in FORMATS:
            raise ConversionError(f"unknown format {self.format!r}; choose from {FORMATS}")


OPTIONS = AmazonOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS,
        help="input type: 2014-csv (user,item,rating,ts), 2018-csv (item,user,rating,ts), "
        "2023-csv (with header) or json (2014/2018/2023 flavour detected from the fields). "
        "Required for CSV input, which has no way to tell the column order.",
    )


def _seconds(ts: int | float, divisor: int) -> int | float:
    """Milliseconds (2023) to seconds, staying an int when exact."""
    return ts // divisor if ts % divisor == 0 else ts / divisor


def _flavour(path: Path, sample: dict[str, Any]) -> tuple[str, tuple[str, ...], int]:
    """Release, (user, item, rating, timestamp) keys and timestamp divisor of a JSON file."""
    if "user_id" in sample and "parent_asin" in sample:
        return "2023-json", ("user_id", "parent_asin", "rating", "timestamp"), 1000
    if "reviewerID" in sample and "asin" in sample:
        release = "2018-json" if "verified" in sample else "2014-json"
        return release, ("reviewerID", "asin", "overall", "unixReviewTime"), 1
    raise ConversionError(
        f"{path} is not Amazon review JSON: expected reviewerID/asin/overall or "
        f"user_id/parent_asin/rating fields, found {sorted(sample)[:8]}"
    )


def _json_rows(path: Path, log: LineLog, flavours: list[str]) -> Iterator[Row]:
    sample_line, sample = _sniff_json(path)
    flavour, (user_key, item_key, rating_key, ts_key), divisor = _flavour(path, sample)
    flavours.append(flavour)
    fields = jf.JsonFields(
        [jf.Field(user_key), jf.Field(item_key), jf.Field(rating_key, jf.FLOAT),
         jf.Field(ts_key, jf.NUM)],
        sample_line,
        python_literals=True,
    )
    fast, slow = fields.fast, fields.slow
    lineno = 0
    with open_binary(path) as f:
        for lineno, line in enumerate(f, 1):
            values = fast(line)
            if values is None:
                if not line.strip():
                    log.skip("blank")
                    continue
                try:
                    values = slow(line)
                except jf.Malformed as exc:
                    log.bad(path, lineno, str(exc))
                    continue
            user, item, rating, ts = values
            if divisor != 1:
                ts = _seconds(ts, divisor)
            yield user, item, rating, ts, rating < 3
    log.lines += lineno


def _sniff_json(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        return jf.sniff(head(path), python_literals=True)
    except jf.Malformed as exc:
        raise ConversionError(f"{path} is not JSON lines: {exc}") from None


def _csv_columns(path: Path, fmt: str) -> tuple[tuple[int, int, int, int], int, bool]:
    """(user, item, rating, timestamp) positions, column count, and whether line 1 is a header."""
    first = head(path, 1)[0]
    if first.lstrip().startswith(b"{"):
        raise ConversionError(f"{path} is JSON lines, not CSV: use --format json")
    names = [c.strip().strip('"') for c in first.decode("utf-8", "replace").split(",")]
    if fmt != "2023-csv":
        try:
            float(names[2])
        except (IndexError, ValueError):
            raise ConversionError(
                f"{path}: line 1 is not user/item,rating,timestamp for --format {fmt} "
                f"({first[:60]!r}); a file with a header is --format 2023-csv"
            ) from None
        return CSV_COLUMNS[fmt], 4, False
    try:
        cols = tuple(next(names.index(n) for n in alts if n in names) for alts in CSV_2023)
    except StopIteration:
        raise ConversionError(
            f"{path}: --format 2023-csv needs a header with user_id, parent_asin, rating, "
            f"timestamp; line 1 is {first[:60]!r}"
        ) from None
    return cols, len(names), True  # type: ignore[return-value]


def _asin_like(value: bytes) -> bool:
    return len(value) == 10 and value.isalnum() and not value.islower()


def _csv_rows(path: Path, log: LineLog, fmt: str, warnings: list[str]) -> Iterator[Row]:
    (cu, ci, cr, ct), width, has_header = _csv_columns(path, fmt)
    divisor = 1000 if fmt == "2023-csv" else 1
    asin_users = asin_items = 0  # ASIN-shaped ids seen in each column, to catch a swap
    lineno = 0
    with open_binary(path) as f:
        if has_header:
            next(f)
        for lineno, line in enumerate(f, 1 + has_header):
            fields = line.split(b",")
            if len(fields) != width or b'"' in line or b"\t" in line:
                if not line.strip():
                    log.skip("blank")
                    continue
                if b'"' in line and b"\t" not in line:  # quoted fields: the rare slow path
                    fields = [c.encode() for c in next(csv.reader([line.decode("utf-8")]))]
                if len(fields) != width or b"\t" in line:
                    log.bad(path, lineno, f"expected {width} comma-separated fields")
                    continue
            user, item = fields[cu].strip(), fields[ci].strip()
            try:
                rating = float(fields[cr])
                ts = int(fields[ct])
            except ValueError:
                log.bad(path, lineno, "non-numeric rating or timestamp")
                continue
            if not user or not item or not -1e300 < rating < 1e300:
                log.bad(path, lineno, "empty id or non-finite rating")
                continue
            if lineno <= 1000:
                asin_users += _asin_like(user)
                asin_items += _asin_like(item)
            yield user, item, rating, _seconds(ts, divisor), rating < 3
    log.lines += lineno
    if asin_users > asin_items:
        warnings.append(
            f"{path}: the user column holds more ASIN-like ids ({asin_users}) than the item "
            f"column ({asin_items}) in the first lines: are users and items swapped? "
            "(2014 CSVs are user first, 2018 CSVs item first)"
        )
        logger.warning(warnings[-1])


def convert(
    inputs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    name: str | None,
    opts: AmazonOptions,
    force: bool,
) -> dict[str, Any]:
    files = resolve_inputs(inputs)
    flavours: list[str] = []
    warnings: list[str] = []
    if opts.format in (None, "json"):
        for path in files:
            if not head(path, 1)[0].lstrip().startswith(b"{"):
                raise ConversionError(
                    f"{path} is not JSON lines; for a ratings CSV give --format "
                    "2014-csv (user first), 2018-csv (item first) or 2023-csv (header)"
                )

    def rows(log: LineLog) -> Iterator[Row]:
        for path in files:
            if opts.format in (None, "json"):
                yield from _json_rows(path, log, flavours)
            else:
                yield from _csv_rows(path, log, opts.format, warnings)

    return convert_rows(
        source=NAME,
        name=name or NAME,
        output_dir=output_dir,
        inputs=files,
        value_field="rating",
        rows=rows,
        opts=opts,
        force=force,
        details=lambda: {
            "format": ", ".join(sorted(set(flavours))) or opts.format,
            "warnings": warnings,
        },
    )
