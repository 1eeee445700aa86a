"""Amazon reviews (McAuley et al., 2014 / 2018 / 2023 releases); rating < 3 is a false positive.

The release and file type are parameters, not classes:

- JSON lines are recognised from their fields: ``reviewerID``/``asin``/``overall``/
  ``unixReviewTime`` (2014 and 2018 reviews) or ``user_id``/``parent_asin``/``rating``/
  ``timestamp`` in milliseconds (2023). Python dict literals (the 2014 loose format) are read
  with ``ast.literal_eval``, never ``eval``.
- Ratings-only CSVs have no header in 2014 (user,item,rating,timestamp) and 2018
  (item,user,rating,timestamp: item first), so CSV input requires ``--format``; the 2023 CSV has
  a ``user_id,parent_asin,rating,timestamp`` header.

Ids stay strings (ASINs keep leading zeros and a trailing X); times become UTC unix seconds. A
rating outside 1-5 makes its line malformed (counted and reported, never labelled).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from . import jsonfields as jf
from .base import (
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

NAME = "amazon"
HELP = "Amazon reviews 2014/2018/2023 (JSON lines or ratings CSV); rating < 3 is a false positive"
FORMATS = ("2014-csv", "2018-csv", "2023-csv", "json")
logger = logging.getLogger(__name__)

# Column order (user, item, rating, timestamp) of the headerless ratings CSVs.
CSV_COLUMNS = {"2014-csv": (0, 1, 2, 3), "2018-csv": (1, 0, 2, 3)}
CSV_2023 = ("user_id", "parent_asin", "rating", "timestamp")  # header names, any order


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
        "--format",
        choices=FORMATS,
        help="input type: 2014-csv (user,item,rating,ts), 2018-csv (item,user,rating,ts), "
        "2023-csv (with header) or json (2014/2018/2023 flavour detected from the fields). "
        "Required for CSV input, which has no way to tell the column order.",
    )


def _ms_to_seconds(ms: bytes) -> bytes:
    """Milliseconds (2023 timestamps, digits only) to seconds, exactly, as text."""
    whole, frac = ms[:-3].lstrip(b"0") or b"0", ms[-3:].rjust(3, b"0").rstrip(b"0")
    return whole + b"." + frac if frac else whole


_THOUSANDTHS = {b"%03d" % k: (b".%03d" % k).rstrip(b"0").rstrip(b".") for k in range(1000)}
_WHOLE, _LAST3 = itemgetter(slice(None, -3)), itemgetter(slice(-3, None))


def _ms_to_seconds_column(ms: list[bytes]) -> list[bytes]:
    """:func:`_ms_to_seconds` of each value, in C (a few maps) for JSON integers >= 1000."""
    if min(map(len, ms)) < 4:
        return list(map(_ms_to_seconds, ms))
    return list(map(bytes.__add__, map(_WHOLE, ms), map(_THOUSANDTHS.__getitem__, map(_LAST3, ms))))


def _flavour(path: Path, sample: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """Release and (user, item, rating, timestamp) keys of a JSON file."""
    if "user_id" in sample and "parent_asin" in sample:
        return "2023-json", ("user_id", "parent_asin", "rating", "timestamp")
    if "reviewerID" in sample and "asin" in sample:
        release = "2018-json" if "verified" in sample else "2014-json"
        return release, ("reviewerID", "asin", "overall", "unixReviewTime")
    raise ConversionError(
        f"{path} is not Amazon review JSON: expected reviewerID/asin/overall or "
        f"user_id/parent_asin/rating fields, found {sorted(sample)[:8]}"
    )


def _json_rows(path: Path, log: LineLog, flavours: list[str]) -> Iterator[list[Row]]:
    first_lines = head(path)
    try:
        sample = jf.first_object(first_lines, python_literals=True)
    except jf.Malformed as exc:
        raise ConversionError(f"{path} is not JSON lines: {exc}") from None
    flavour, (user_key, item_key, rating_key, ts_key) = _flavour(path, sample)
    flavours.append(flavour)
    seconds = _ms_to_seconds_column if flavour == "2023-json" else None
    fields = jf.JsonFields(
        [
            jf.Field(user_key),
            jf.Field(item_key),
            jf.Field(rating_key, jf.FLOAT),
            jf.Field(ts_key, jf.NUM, convert=seconds),
        ],
        first_lines,
        python_literals=True,
    )
    flag = FlagBelow(3, low=1, high=5, what="rating")
    cached = flag.get
    for first, columns, records in fields.blocks(path, log):
        if columns is not None:  # every line plain: label whole columns if no rating is new
            flags = list(map(cached, columns[2]))
            if None not in flags:
                yield list(zip(*columns, flags))
                continue
        rows: list[Row] = []
        append = rows.append
        for lineno, record in enumerate(records, first):
            if record is None:
                continue
            user, item, rating, ts = record
            fp = cached(rating) or flag.at(rating, path, lineno, log)
            if fp is None:
                continue
            append((user, item, rating, ts, fp))
        yield rows


def _csv_columns(path: Path, fmt: str) -> tuple[tuple[int, int, int, int], int, bool]:
    """(user, item, rating, timestamp) positions, column count, and whether there is a header."""
    first = head(path, 1)[0]
    if first.lstrip().startswith(b"{"):
        raise ConversionError(f"{path} is JSON lines, not CSV: use --format json")
    names = [c.strip().strip('"') for c in first.decode("utf-8", "replace").split(",")]
    if fmt != "2023-csv":
        try:
            float(names[2])
        except (IndexError, ValueError):
            raise ConversionError(
                f"{path}: the first line is not user/item,rating,timestamp for --format {fmt} "
                f"({first[:60]!r}); a file with a header is --format 2023-csv"
            ) from None
        return CSV_COLUMNS[fmt], 4, False
    if not set(CSV_2023) <= set(names):
        raise ConversionError(
            f"{path}: --format 2023-csv needs a header with {', '.join(CSV_2023)}; "
            f"the first line is {first[:60]!r}"
        )
    cu, ci, cr, ct = (names.index(n) for n in CSV_2023)
    return (cu, ci, cr, ct), len(names), True


def _asin_like(value: bytes) -> bool:
    return len(value) == 10 and value.isalnum() and not value.islower()


def _csv_rows(path: Path, log: LineLog, fmt: str, warnings: list[str]) -> Iterator[list[Row]]:
    (cu, ci, cr, ct), width, header_pending = _csv_columns(path, fmt)
    millis = fmt == "2023-csv"
    flag = FlagBelow(3, low=1, high=5, what="rating")
    cached = flag.get
    asin_users = asin_items = 0  # ASIN-shaped ids in each column, to catch swapped columns
    for first, lines in line_batches(path):
        rows: list[Row] = []
        append = rows.append
        check_ids = suspect(lines)
        for lineno, line in enumerate(lines, first):
            if header_pending and line.strip():  # the 2023 header: the first non-blank line
                header_pending = False
                continue
            fields = line.split(b",")
            if len(fields) != width or 34 in line or 9 in line:
                fields = _csv_slow(line, width, path, lineno, log)
                if fields is None:
                    continue
            user, item = fields[cu].strip(), fields[ci].strip()
            rating, ts = fields[cr].strip(), fields[ct].strip()
            fp = cached(rating) or flag.at(rating, path, lineno, log)
            if fp is None:
                continue
            if not ts.isdigit() or not user or not item:
                log.bad(path, lineno, "empty id or non-integer timestamp")
                continue
            if check_ids and (why := bad_id(user, item)):
                log.bad(path, lineno, why)
                continue
            append((user, item, rating, _ms_to_seconds(ts) if millis else ts, fp))
        if first == 1:
            asin_users = sum(_asin_like(r[0]) for r in rows[:1000])
            asin_items = sum(_asin_like(r[1]) for r in rows[:1000])
        log.lines += len(lines)
        yield rows
    if asin_users > asin_items:
        warnings.append(
            f"{path}: the user column holds more ASIN-like ids ({asin_users}) than the item "
            f"column ({asin_items}) in the first rows: are users and items swapped? "
            "(2014 CSVs are user first, 2018 CSVs item first)"
        )
        logger.warning(warnings[-1])


def _csv_slow(line: bytes, width: int, path: Path, lineno: int, log: LineLog) -> list[bytes] | None:
    """Fields of a line the fast split declined: blank, quoted, or malformed (logged)."""
    if not line.strip():
        log.skip("blank")
        return None
    if 9 not in line and 34 in line:  # quoted fields; bad UTF-8 is kept for bad_id to report
        try:
            text = line.decode("utf-8", "surrogateescape")
            fields = [c.encode("utf-8", "surrogateescape") for c in next(csv.reader([text]))]
        except (csv.Error, StopIteration):
            fields = []
        if len(fields) == width:
            return fields
    log.bad(path, lineno, f"expected {width} comma-separated fields without tabs")
    return None


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
            first = head(path, 1)[0].lstrip()
            if first.startswith(b"["):
                raise ConversionError(f"{path} is not JSON lines: {jf.JSON_ARRAY}")
            if not first.startswith(b"{"):
                raise ConversionError(
                    f"{path} is not JSON lines; for a ratings CSV give --format "
                    "2014-csv (user first), 2018-csv (item first) or 2023-csv (header)"
                )

    def rows(log: LineLog) -> Iterator[list[Row]]:
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
