"""Adressa news clicks (one_week / three_month day files); dwell time < 10 s is a false positive.

Each day file holds one JSON event per line. A click is an event with both ``userId`` and an
article ``id`` (front-page events have no ``id``); other events are skipped. ``activeTime`` (the
dwell time in seconds) becomes the ``dwell_time`` column: below 10 is a false positive, exactly
10 is clean. Events without ``activeTime`` are dropped by default; ``--missing-active-time fp``
keeps them as false positives with a dwell time of 0. An event without ``time``, or with a
negative ``activeTime``, is malformed.
Repeated (user, article) clicks are kept unless ``--dedupe``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import jsonfields as jf
from .base import (
    FP,
    ConversionError,
    FlagBelow,
    LineLog,
    Options,
    Row,
    convert_rows,
    head,
    resolve_inputs,
)

NAME = "adressa"
HELP = "Adressa day files (or their folder); dwell time (activeTime) < 10 s is a false positive"
MISSING = ("drop", "fp")
DWELL_THRESHOLD = 10


@dataclasses.dataclass(frozen=True)
class AdressaOptions(Options):
    missing_active_time: str = "drop"  # events without activeTime: "drop" or keep as "fp"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.missing_active_time not in MISSING:
            raise ConversionError(
                f"missing_active_time must be one of {MISSING}, got {self.missing_active_time!r}"
            )


OPTIONS = AdressaOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--missing-active-time",
        choices=MISSING,
        default="drop",
        help="clicks without activeTime: drop them (default) or keep them as false positives "
        "with dwell_time 0",
    )


def _fields(path: Path) -> jf.JsonFields:
    try:
        fields = jf.JsonFields(
            [
                jf.Field("userId", required=False),
                jf.Field("id", required=False),
                jf.Field("time", jf.NUM),
                jf.Field("activeTime", jf.FLOAT, required=False),
            ],
            head(path),
        )
    except jf.Malformed as exc:
        raise ConversionError(f"{path} is not an Adressa event file: {exc}") from None
    if not {"eventId", "userId"} & fields.sample.keys():
        raise ConversionError(
            f"{path} is not an Adressa event file (expected eventId, userId, ...; found "
            f"{sorted(fields.sample)[:8]})"
        )
    return fields


def _rows(
    files: Sequence[Path], log: LineLog, keep_missing: bool, info: dict[str, int]
) -> Iterator[list[Row]]:
    flag = FlagBelow(DWELL_THRESHOLD, low=0, what="activeTime")
    cached = flag.get
    not_click = no_dwell = 0
    for path in files:
        for first, _, records in _fields(path).blocks(path, log):
            rows: list[Row] = []
            append = rows.append
            for lineno, record in enumerate(records, first):
                if record is None:
                    continue
                user, item, ts, dwell = record
                if not user or not item:
                    not_click += 1
                elif dwell:
                    if fp := cached(dwell) or flag.at(dwell, path, lineno, log):
                        append((user, item, dwell, ts, fp))
                else:
                    no_dwell += 1
                    if keep_missing:
                        append((user, item, b"0", ts, FP))
            yield rows
    log.skip("not_a_click", not_click)
    if not keep_missing:
        log.skip("missing_active_time", no_dwell)
    info["clicks_without_active_time"] = no_dwell


def convert(
    inputs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    name: str | None,
    opts: AdressaOptions,
    force: bool,
) -> dict[str, Any]:
    files = resolve_inputs(inputs, folders=True)
    info: dict[str, Any] = {"missing_active_time": opts.missing_active_time}
    return convert_rows(
        source=NAME,
        name=name or NAME,
        output_dir=output_dir,
        inputs=files,
        value_field="dwell_time",
        rows=lambda log: _rows(files, log, opts.missing_active_time == "fp", info),
        opts=opts,
        force=force,
        details=lambda: info,
    )
