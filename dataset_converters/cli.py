"""Command line: ``python -m dataset_converters SOURCE --input PATH... --output-dir DIR``.

One argparse subcommand per source. Every error a user can cause (options, input files, the
output folder, refusing to overwrite, another conversion writing there) prints one paragraph
and exits with code 2; ``--debug`` (or ``RECBOLE_ADT_DEBUG=1``) shows the traceback instead.
Anything else is a bug and keeps its traceback. The stats are printed as a table shaped like
the paper's Table 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import SOURCES, convert
from .base import ConversionError, Options, Terminated

EPILOG = """\
Output: DIR/NAME/NAME.inter with the columns
  user_id:token  item_id:token  <rating|dwell_time>:float  timestamp:float  false_positive:float
(denoisingrec: NAME.{train,valid,test}.inter with user_id, item_id, false_positive), and
DIR/NAME/NAME.stats.json. Existing output is never overwritten without --force; --force
replaces the dataset whole (its files that the new conversion does not write, such as the split
files of an earlier denoisingrec conversion, are removed). Files are written to a temporary name
first, so an interrupted run leaves no partial .inter file. A lock
file DIR/NAME/.NAME.lock makes a second conversion into the same folder fail; a run killed with
SIGKILL leaves it and its temporaries, which the next run removes with a note.
Malformed lines (broken records, ratings outside 1-5, negative dwell times, ids that are not
UTF-8) are counted in the stats and skipped; --strict makes the first one fatal.
Exit codes: 0 success, 2 bad input or options (--debug or RECBOLE_ADT_DEBUG=1 shows the
traceback), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""


def _common(parser: argparse.ArgumentParser, filters: bool) -> None:
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", nargs="+", required=True, metavar="PATH", help="raw input(s)")
    io.add_argument("--output-dir", required=True, metavar="DIR", help="parent output folder")
    io.add_argument("--name", help="dataset name, the output subfolder and file prefix")
    io.add_argument("--force", action="store_true", help="replace an existing dataset NAME whole")
    io.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first malformed line instead of counting and skipping it",
    )
    io.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # so that "--debug SOURCE ..." is not reset here
        help="show the traceback of an error (also: environment RECBOLE_ADT_DEBUG=1)",
    )
    if filters:
        f = parser.add_argument_group("filters (default: keep every interaction)")
        f.add_argument(
            "--dedupe",
            action="store_true",
            help="keep only the earliest interaction of each (user, item) pair",
        )
        f.add_argument(
            "--kcore",
            type=int,
            default=0,
            metavar="N",
            help="iteratively drop users and items with fewer than N interactions (0: off)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_converters",
        description="Convert raw datasets into RecBole atomic files with a false_positive flag.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name, module in SOURCES.items():
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p, filters=issubclass(module.OPTIONS, Options))
        module.add_arguments(p)
    return parser


def table(stats: Sequence[dict[str, Any]]) -> str:
    """A Markdown table shaped like the paper's Table 2."""
    rows = [("Dataset", "#User", "#Item", "#Interaction", "#FP Interaction")]
    for s in stats:
        rows.append(
            (
                s["dataset"],
                *(f"{s[k]:,}" for k in ("users", "items", "interactions", "false_positives")),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    lines = [
        "| "
        + " | ".join(
            v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))
        )
        + " |"
        for r in rows
    ]
    rule = "|" + "|".join("-" * (w + 1) + (":" if c else "-") for c, w in enumerate(widths)) + "|"
    return "\n".join([lines[0], rule, *lines[1:]])


def _describe(exc: Exception, output_dir: str) -> str:
    """The message; an OS error without a file name (a full disk, say) came from writing."""
    if isinstance(exc, OSError) and exc.errno and not exc.filename:
        return f"{exc.strerror} while writing to {output_dir}; no partial output was left"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("RECBOLE_ADT_DEBUG", "") not in ("", "0")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    module = SOURCES[args.source]
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(module.OPTIONS)}
    try:
        stats = convert(
            args.source, args.input, args.output_dir, name=args.name, force=args.force, **options
        )
    except (ConversionError, OSError) as exc:  # bad input or options, existing output, I/O
        if debug:
            raise
        print(f"error: {_describe(exc, args.output_dir)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        if debug:
            raise
        print(f"{str(exc) or 'interrupted'}; no partial output was left", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)
    print(table([stats]))
    if stats["skipped"]:
        print(f"skipped lines: {stats['skipped']}", file=sys.stderr)
    print(
        f"wrote {', '.join(stats['files'])} in {args.output_dir}/{stats['dataset']}",
        file=sys.stderr,
    )
    return 0
