"""Yelp Open Dataset reviews of catering businesses; stars < 3 is a false positive.

``--business`` (``yelp_academic_dataset_business.json``) decides which businesses count: those
whose category *tokens* include one of ``--categories`` (default Restaurants and Bars). Tokens
are matched exactly, so "Restaurant Supplies" and "Juice Bars & Smoothies" do not count.
``categories`` is a comma-separated string, null, or (2017-era dumps) a JSON list. Review dates
(``YYYY-MM-DD HH:MM:SS``, or ``YYYY-MM-DD`` in 2017-era dumps) are read as UTC. Stars outside
1-5 make a review malformed (counted and reported, never labelled).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
from collections.abc import Iterator, Sequence
from itertools import compress
from operator import add, itemgetter
from pathlib import Path
from typing import Any

from . import jsonfields as jf
from .base import (
    ConversionError,
    FlagBelow,
    LineLog,
    Options,
    Row,
    convert_rows,
    head,
    line_batches,
    resolve_inputs,
)

NAME = "yelp"
HELP = "Yelp reviews of restaurants and bars (needs --business); stars < 3 is a false positive"
CATEGORIES = ("Restaurants", "Bars")
_EPOCH = dt.date(1970, 1, 1).toordinal()
_DAYS: dict[bytes, int] = {}  # b"YYYY-MM-DD" -> unix seconds at midnight UTC
_TIMES: dict[bytes, int] = {b"": 0}  # b" HH:MM:SS" -> seconds since midnight
_DATE, _TIME = itemgetter(slice(None, 10)), itemgetter(slice(10, None))


@dataclasses.dataclass(frozen=True)
class YelpOptions(Options):
    business: str | os.PathLike[str] | None = None  # the business file; required
    categories: tuple[str, ...] = CATEGORIES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.business is None:
            raise ConversionError("yelp needs --business (yelp_academic_dataset_business.json)")
        if isinstance(self.categories, str) or not self.categories:
            raise ConversionError(f"categories must be a non-empty list, got {self.categories!r}")
        object.__setattr__(self, "categories", tuple(self.categories))


OPTIONS = YelpOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--business",
        required=True,
        metavar="PATH",
        help="yelp_academic_dataset_business.json, to keep only catering businesses",
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        default=list(CATEGORIES),
        metavar="CATEGORY",
        help="keep businesses with one of these category tokens (exact match; "
        "default: %(default)s)",
    )


def catering(path: Path, wanted: Sequence[str], log: LineLog) -> tuple[set[bytes], int]:
    """Ids of the businesses with a wanted category token, and the number of businesses."""
    first = head(path)
    try:
        sample = jf.first_object(first)
    except jf.Malformed as exc:
        raise ConversionError(f"--business {path} is not JSON lines: {exc}") from None
    if "business_id" not in sample or "review_id" in sample:
        raise ConversionError(
            f"--business {path} is not a Yelp business file (expected business_id and "
            f"categories, found {sorted(sample)[:8]})"
        )
    needles = [w.encode() for w in wanted]
    wanted_set = set(wanted)
    kept: set[bytes] = set()
    total = 0
    for start, lines in line_batches(path):
        for lineno, line in enumerate(lines, start):
            if not line.strip():
                continue
            total += 1
            if not any(line.find(n) >= 0 for n in needles):  # cheap prefilter: no parse needed
                continue
            try:
                record = jf.parse_object(line)
                business = jf.clean_id(record.get("business_id"))
                if business is None:
                    raise jf.Malformed("missing business_id")
            except jf.Malformed as exc:
                log.bad(path, lineno, str(exc))
                continue
            if wanted_set.intersection(_tokens(record.get("categories"))):
                kept.add(business)
    return kept, total


def _tokens(categories: object) -> list[str]:
    if isinstance(categories, str):
        return [c.strip() for c in categories.split(",")]
    if isinstance(categories, list):
        return [c.strip() for c in categories if isinstance(c, str)]
    return []  # null or absent


def utc_seconds_column(dates: list[bytes]) -> list[bytes]:
    """:func:`utc_seconds` of each date, in C (a few maps) once the caches hold them all."""
    days = list(map(_DAYS.get, map(_DATE, dates)))
    times = list(map(_TIMES.get, map(_TIME, dates)))
    if None in days or None in times:  # fill the caches; ValueError for a bad date
        return list(map(utc_seconds, dates))
    return list(map(b"%d".__mod__, map(add, days, times)))


def utc_seconds(date: bytes) -> bytes:
    """``YYYY-MM-DD[ HH:MM:SS]`` (UTC) as unix seconds; raises ValueError when invalid.

    Days and times of day are cached separately (a few thousand days, at most 86,400 times), so
    most reviews cost two dict lookups.
    """
    day, tod = _DAYS.get(date[:10]), _TIMES.get(date[10:])
    if day is None:
        day = _day(date[:10])
    if tod is None:
        tod = _time_of_day(date[10:])
    return b"%d" % (day + tod)


def _day(ymd: bytes) -> int:
    if len(ymd) != 10 or ymd[4] != 45 or ymd[7] != 45 or not ymd.replace(b"-", b"").isdigit():
        raise ValueError(ymd)
    day = (dt.date(int(ymd[:4]), int(ymd[5:7]), int(ymd[8:])).toordinal() - _EPOCH) * 86400
    if len(_DAYS) < 100_000:
        _DAYS[ymd] = day
    return day


def _time_of_day(hms: bytes) -> int:
    """`` HH:MM:SS`` (or ``THH:MM:SS``) in seconds; an empty string (date only) is midnight."""
    if not hms:
        return 0
    h, m, s = hms[1:3], hms[4:6], hms[7:]
    if (
        len(hms) != 9
        or hms[0] not in b" T"
        or hms[3] != 58
        or hms[6] != 58
        or not (h + m + s).isdigit()
        or int(h) > 23
        or int(m) > 59
        or int(s) > 59
    ):
        raise ValueError(hms)
    _TIMES[hms] = tod = 3600 * int(h) + 60 * int(m) + int(s)
    return tod


def _rows(files: Sequence[Path], kept: set[bytes], log: LineLog) -> Iterator[list[Row]]:
    for path in files:
        try:
            fields = jf.JsonFields(
                [
                    jf.Field("user_id"),
                    jf.Field("business_id"),
                    jf.Field("stars", jf.FLOAT),
                    jf.Field("date", convert=utc_seconds_column),
                ],
                head(path),
            )
        except jf.Malformed as exc:
            raise ConversionError(f"{path} is not JSON lines: {exc}") from None
        if not {"user_id", "business_id", "stars"} <= fields.sample.keys():
            raise ConversionError(
                f"{path} is not a Yelp review file (expected user_id, business_id, stars, "
                f"date; found {sorted(fields.sample)[:8]})"
            )
        flag = FlagBelow(3, low=1, high=5, what="stars")
        cached = flag.get
        other = 0
        for first, columns, records in fields.blocks(path, log):
            if columns is not None:  # every line plain: whole columns if no rating is new
                flags = list(map(cached, columns[2]))
                if None not in flags:
                    keep = list(map(kept.__contains__, columns[1]))
                    other += keep.count(False)
                    yield list(compress(zip(*columns, flags), keep))
                    continue
            rows: list[Row] = []
            append = rows.append
            for lineno, record in enumerate(records, first):
                if record is None:
                    continue
                user, business, stars, ts = record
                if business not in kept:
                    other += 1
                elif fp := cached(stars) or flag.at(stars, path, lineno, log):
                    append((user, business, stars, ts, fp))
            yield rows
        log.skip("other_business", other)


def convert(
    inputs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    name: str | None,
    opts: YelpOptions,
    force: bool,
) -> dict[str, Any]:
    files = resolve_inputs(inputs)
    (business,) = resolve_inputs([opts.business])  # type: ignore[list-item]
    info: dict[str, Any] = {}

    def rows(log: LineLog) -> Iterator[list[Row]]:
        kept, total = catering(business, opts.categories, log)
        info.update(businesses=total, catering_businesses=len(kept))
        yield from _rows(files, kept, log)

    return convert_rows(
        source=NAME,
        name=name or NAME,
        output_dir=output_dir,
        inputs=files,
        value_field="rating",
        rows=rows,
        opts=opts,
        force=force,
        details=lambda: info,
    )
