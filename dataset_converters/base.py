"""Shared machinery of the converters: inputs, line accounting, filters, atomic output, stats.

A source module only turns raw lines into batches of rows ``(user, item, value, timestamp,
flag)``, all bytes: ids in UTF-8, numbers as text, the flag :data:`FP` or :data:`TP`.
:func:`convert_rows` does the rest: it streams the rows into a temporary file next to the
destination, applies ``--dedupe`` and ``--kcore`` by re-reading that file (so memory holds the
id maps, never the raw lines), moves the finished files into place with :func:`os.replace` and
writes ``NAME.stats.json``.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from operator import countOf, itemgetter
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("dataset_converters")

Row = tuple[bytes, bytes, bytes, bytes, bytes]
FP, TP = b"1.0", b"0.0"  # the false_positive column's values
FLAG = (TP, FP)  # indexed by "is a false positive"
ROW = b"%s\t%s\t%s\t%s\t%s\n"
LIMIT = 1e300  # numbers must lie within +-LIMIT (this also rejects NaN and infinities)
BATCH_BYTES = 1 << 20  # raw lines are read (and rows written) in batches of about 1 MiB
MAX_EXAMPLES = 5  # malformed lines quoted in the stats and in error messages


class ConversionError(ValueError):
    """Bad input or options. The CLI reports it and exits with code 2."""


@dataclasses.dataclass(frozen=True)
class BaseOptions:
    """Options every source accepts."""

    strict: bool = False  # the first malformed line is fatal


@dataclasses.dataclass(frozen=True)
class Options(BaseOptions):
    """Options of the sources that build one interaction file (all but denoisingrec)."""

    dedupe: bool = False  # keep the earliest interaction per (user, item)
    kcore: int = 0  # iteratively drop users and items with fewer interactions (0: off)

    def __post_init__(self) -> None:
        if not isinstance(self.kcore, int) or isinstance(self.kcore, bool) or self.kcore < 0:
            raise ConversionError(f"kcore must be an integer >= 0, got {self.kcore!r}")


def make_options(cls: type[BaseOptions], options: dict[str, Any]) -> BaseOptions:
    """Build ``cls`` from keyword options, turning unknown names into a ConversionError."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConversionError(f"unknown option(s) {unknown}; valid: {sorted(names)}")
    return cls(**options)


class LineLog:
    """Counts raw lines, skipped lines by reason, and malformed lines with their first places."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.lines = 0
        self.malformed = 0
        self.examples: list[str] = []
        self.skipped: Counter[str] = Counter()

    def bad(self, path: Path, lineno: int, reason: str) -> None:
        """Record a malformed line; fatal under ``--strict``."""
        self.malformed += 1
        where = f"{path}:{lineno}: {reason}"
        if self.strict:
            raise ConversionError(f"malformed line (--strict): {where}")
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(where)

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] += n


# ---------------------------------------------------------------------------------------- inputs


def resolve_inputs(paths: Sequence[str | os.PathLike[str]], *, folders: bool = False) -> list[Path]:
    """Check that every input exists; with ``folders``, a folder stands for its visible files."""
    if not paths:
        raise ConversionError("no input given")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if folders and path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not inside:
                raise ConversionError(f"input folder holds no files: {path}")
            files.extend(inside)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise ConversionError(f"input is not a file: {path}")
        else:
            raise ConversionError(f"input file not found: {path}")
    return files


def open_binary(path: Path) -> IO[bytes]:
    """Open a raw file for reading bytes, decompressing gzip (the dumps ship as .gz) on the fly."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


def line_batches(path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, lines) in batches of about 1 MiB, so memory stays bounded."""
    with open_binary(path) as f:
        first = 1
        while lines := f.readlines(BATCH_BYTES):
            yield first, lines
            first += len(lines)


def head(path: Path, n: int = 20) -> list[bytes]:
    """The first ``n`` non-blank lines of a file; an empty file is an error."""
    lines: list[bytes] = []
    with open_binary(path) as f:
        for line in f:
            if line.strip():
                lines.append(line)
                if len(lines) == n:
                    break
    if not lines:
        raise ConversionError(f"input file is empty: {path}")
    return lines


class FlagBelow:
    """``flag(raw)``: :data:`FP` when the number ``raw`` (bytes) is below ``threshold``.

    The few distinct ratings (or dwell times) are cached, so most rows cost one dict lookup;
    ``get`` is the cache's own lookup for loops that fall back to the call on a miss. Raises
    ValueError for text that is not a finite number.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.cache: dict[bytes, bytes] = {}
        self.get = self.cache.get

    def __call__(self, raw: bytes) -> bytes:
        value = float(raw)
        if not -LIMIT < value < LIMIT or b"_" in raw:
            raise ValueError(f"not a finite number: {raw!r}")
        flag = FLAG[value < self.threshold]
        if len(self.cache) < 65536:
            self.cache[raw] = flag
        return flag


def clean_id(value: object) -> bytes | None:
    """An id from a parsed record as UTF-8 bytes, or None when it is unusable in a TSV file."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    if not text or "\t" in text or "\n" in text or "\r" in text:
        return None
    return text.encode()


# ----------------------------------------------------------------------------------------- output


class Staging:
    """Temporary files in the destination folder, moved into place only by :meth:`commit`.

    Anything not committed (an exception, Ctrl-C) is deleted on exit, so a destination file is
    either the old complete one or the new complete one, never a partial write.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pending: list[tuple[IO[bytes], Path]] = []
        self._scratch: list[IO[bytes]] = []
        self._created: list[Path] = []  # folders made here, removed again if nothing is committed

    def __enter__(self) -> Staging:
        missing = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        self._created = missing
        return self

    def _temp(self, stem: str) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(  # noqa: SIM115 - lifetime managed by this class
            "w+b", dir=self.directory, prefix=f".{stem}.", suffix=".tmp", delete=False
        )

    def open(self, filename: str) -> IO[bytes]:
        """A temporary file that :meth:`commit` renames to ``filename``."""
        f = self._temp(filename)
        self._pending.append((f, self.directory / filename))
        return f

    def scratch(self) -> IO[bytes]:
        """A temporary work file, always deleted on exit."""
        f = self._temp("scratch")
        self._scratch.append(f)
        return f

    def commit(self) -> None:
        for f, _ in self._pending:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for f, target in self._pending:
            os.replace(f.name, target)
        self._pending.clear()
        self._created.clear()
        try:  # make the renames themselves durable
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        for f in [f for f, _ in self._pending] + self._scratch:
            f.close()
            Path(f.name).unlink(missing_ok=True)
        self._pending.clear()
        self._scratch.clear()
        for folder in self._created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break


def refuse_overwrite(paths: Iterable[Path], force: bool) -> None:
    if force:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FileExistsError(f"output exists (use --force to overwrite): {', '.join(existing)}")


def header(value_field: str | None, timestamp: bool = True) -> bytes:
    cols = ["user_id:token", "item_id:token"]
    if value_field:
        cols.append(f"{value_field}:float")
    if timestamp:
        cols.append("timestamp:float")
    cols.append("false_positive:float")
    return ("\t".join(cols) + "\n").encode()


@dataclasses.dataclass
class Counts:
    """What ended up in one written file."""

    users: set[bytes] = dataclasses.field(default_factory=set)
    items: set[bytes] = dataclasses.field(default_factory=set)
    interactions: int = 0
    false_positives: int = 0


_USER, _ITEM, _FLAG = itemgetter(0), itemgetter(1), itemgetter(-1)


def _write_all(
    batches: Iterable[list[tuple[bytes, ...]]], out: IO[bytes], counts: Counts, fmt: bytes
) -> None:
    """Render batches of rows; every step runs over a whole batch in C (map, set.update)."""
    render = fmt.__mod__
    for rows in batches:
        counts.users.update(map(_USER, rows))
        counts.items.update(map(_ITEM, rows))
        counts.false_positives += countOf(map(_FLAG, rows), FP)
        counts.interactions += len(rows)
        out.writelines(map(render, rows))


def _spooled(spool: IO[bytes]) -> Iterator[tuple[int, bytes, bytes, bytes]]:
    """Re-read the rendered rows: (sequence number, user, item, whole line)."""
    spool.seek(0)
    for seq, line in enumerate(spool):
        user, item, _ = line.split(b"\t", 2)
        yield seq, user, item, line


def _earliest(spool: IO[bytes]) -> set[int]:
    """Sequence numbers of the earliest row of each (user, item) pair; ties keep the first."""
    best: dict[tuple[bytes, bytes], tuple[float, int]] = {}
    for seq, user, item, line in _spooled(spool):
        ts = float(line.split(b"\t", 4)[3])
        old = best.get((user, item))
        if old is None or ts < old[0]:
            best[(user, item)] = (ts, seq)
    return {seq for _, seq in best.values()}


def _kcore(spool: IO[bytes], keep: set[int] | None, k: int) -> tuple[set[bytes], set[bytes]]:
    """Users and items to drop so that every remaining one has at least ``k`` interactions."""
    gone_users: set[bytes] = set()
    gone_items: set[bytes] = set()
    while True:
        users: Counter[bytes] = Counter()
        items: Counter[bytes] = Counter()
        for seq, user, item, _ in _spooled(spool):
            if (keep is None or seq in keep) and user not in gone_users and item not in gone_items:
                users[user] += 1
                items[item] += 1
        new_users = {u for u, c in users.items() if c < k}
        new_items = {i for i, c in items.items() if c < k}
        if not new_users and not new_items:
            return gone_users, gone_items
        gone_users |= new_users
        gone_items |= new_items


def write_interactions(
    batches: Iterable[list[tuple[bytes, ...]]],
    out: IO[bytes],
    staging: Staging,
    opts: BaseOptions,
    fmt: bytes = ROW,
) -> tuple[Counts, dict[str, int]]:
    """Write rows to ``out`` after the optional filters; returns counts and rows removed."""
    counts = Counts()
    if not isinstance(opts, Options) or (not opts.dedupe and opts.kcore <= 1):
        _write_all(batches, out, counts, fmt)
        return counts, {"duplicates": 0, "kcore": 0}
    spool = staging.scratch()
    raw = Counts()
    _write_all(batches, spool, raw, fmt)
    keep = _earliest(spool) if opts.dedupe else None
    gone_users, gone_items = _kcore(spool, keep, opts.kcore) if opts.kcore > 1 else (set(), set())
    kept = (
        line
        for seq, user, item, line in _spooled(spool)
        if (keep is None or seq in keep) and user not in gone_users and item not in gone_items
    )
    fp_end = b"\t%s\n" % FP
    while batch := list(islice(kept, 65536)):
        counts.users.update(line.split(b"\t", 1)[0] for line in batch)
        counts.items.update(line.split(b"\t", 2)[1] for line in batch)
        counts.interactions += len(batch)
        counts.false_positives += sum(line.endswith(fp_end) for line in batch)
        out.writelines(batch)
    dropped_dupes = raw.interactions - len(keep) if keep is not None else 0
    removed = {
        "duplicates": dropped_dupes,
        "kcore": raw.interactions - dropped_dupes - counts.interactions,
    }
    return counts, removed


def summary(counts: Counts) -> dict[str, int]:
    return {
        "users": len(counts.users),
        "items": len(counts.items),
        "interactions": counts.interactions,
        "false_positives": counts.false_positives,
    }


def stats_bytes(stats: dict[str, Any]) -> bytes:
    return (json.dumps(stats, indent=2) + "\n").encode()


def log_stats(stats: dict[str, Any], log: LineLog) -> dict[str, Any]:
    """The line-accounting part of the stats."""
    if log.malformed:
        logger.warning(
            "%d malformed line(s) skipped, first: %s", log.malformed, "; ".join(log.examples)
        )
    return {
        **stats,
        "lines": log.lines,
        "skipped": dict(sorted(log.skipped.items())),
        "malformed": log.malformed,
        "malformed_first": log.examples,
    }


def convert_rows(
    *,
    source: str,
    name: str,
    output_dir: str | os.PathLike[str],
    inputs: Sequence[Path],
    value_field: str,
    rows: Callable[[LineLog], Iterable[list[Row]]],
    opts: Options,
    force: bool,
    details: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run one single-file conversion: ``DIR/NAME/NAME.inter`` plus ``NAME.stats.json``.

    ``rows`` is called with the shared :class:`LineLog` and yields batches of rows;
    ``details`` (called once they are consumed) adds source-specific entries to the stats.
    """
    check_name(name)
    directory = Path(output_dir) / name
    inter, stats_file = f"{name}.inter", f"{name}.stats.json"
    refuse_overwrite([directory / inter, directory / stats_file], force)
    log = LineLog(opts.strict)
    with Staging(directory) as staging:
        out = staging.open(inter)
        out.write(header(value_field))
        counts, removed = write_interactions(rows(log), out, staging, opts)
        if counts.interactions == 0:
            raise ConversionError(
                f"no interactions left from {', '.join(map(str, inputs))} ({log.lines} lines, "
                f"{log.malformed} malformed, skipped: {dict(log.skipped)}, removed: {removed})"
            )
        stats: dict[str, Any] = {
            "dataset": name,
            "source": source,
            **summary(counts),
            **(details() if details else {}),
            "inputs": [str(p) for p in inputs],
            "options": options_dict(opts),
            "removed": removed,
            "columns": header(value_field).decode().split(),
            "files": [inter],
        }
        stats = log_stats(stats, log)
        staging.open(stats_file).write(stats_bytes(stats))
        staging.commit()
    return stats


def options_dict(opts: BaseOptions) -> dict[str, Any]:
    """The options as JSON-ready values (paths as strings)."""
    return {
        k: os.fspath(v) if isinstance(v, os.PathLike) else v
        for k, v in dataclasses.asdict(opts).items()
    }


def check_name(name: str) -> None:
    if not name or name in {".", ".."} or "/" in name or os.sep in name:
        raise ConversionError(f"invalid dataset name: {name!r}")
