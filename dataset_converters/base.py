"""Shared machinery of the converters: inputs, line accounting, filters, atomic output, stats.

A source module only turns raw lines into batches of rows ``(user, item, value, timestamp,
flag)``, all bytes: ids in UTF-8, numbers as text, the flag :data:`FP` or :data:`TP`.
:func:`convert_rows` does the rest: it streams the rows into a temporary file next to the
destination, applies ``--dedupe`` and ``--kcore`` by re-reading that file (so memory holds the
id maps, never the raw lines), moves the finished files into place with :func:`os.replace` and
writes ``NAME.stats.json``.

Bad input never becomes a wrong label:

- **Values**: a rating or dwell time that is not a number, or lies outside the source's range
  (:class:`FlagBelow`: stars 1-5, dwell time >= 0), makes its line malformed: counted in the
  stats, quoted on stderr, never labelled (fatal under ``--strict``).
- **Ids**: RecBole reads the ``.inter`` file as UTF-8 text with pandas, which also takes a
  leading ``"`` as quoting. An id that is not valid UTF-8 (including lone surrogates), or that
  holds a double quote, tab or line break, makes its line malformed (:func:`bad_id`); nothing
  is replaced or re-encoded, so every id written is the id read.
- **Files** (:func:`open_binary`): gzip is read on the fly, a UTF-8 byte-order mark is skipped,
  and corrupt or truncated gzip data, other compressions and UTF-16 text are errors that name
  the file (and, for damage, the line reached).

Output is all or nothing (:class:`Staging`): files are written under hidden temporary names in
the output folder and renamed into place at the end. A lock file ``.NAME.lock`` (created with
``O_EXCL``, holding the pid) makes a second conversion into the same folder fail instead of
replacing the first; a lock whose pid is gone is taken over with a note, and the temporaries a
killed run left behind are removed with a note. SIGTERM and SIGHUP become :class:`Terminated`
so that the temporaries are removed on the way out; the renames themselves are never cut short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import logging
import os
import re
import signal
import tempfile
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from operator import countOf, itemgetter
from pathlib import Path
from types import FrameType
from typing import IO, Any

logger = logging.getLogger("dataset_converters")

Row = tuple[bytes, bytes, bytes, bytes, bytes]
FP, TP = b"1.0", b"0.0"  # the false_positive column's values
FLAG = (TP, FP)  # indexed by "is a false positive"
LIMIT = 1e300  # numbers must lie within +-LIMIT (this also rejects NaN and infinities)
BATCH_BYTES = 1 << 20  # raw lines are read (and rows written) in batches of about 1 MiB
MAX_EXAMPLES = 5  # malformed lines quoted in the stats and in error messages
HEAD_LINE_BYTES = 1 << 20  # head() reads at most this much of one line
GZIP_STEP = 1 << 16  # gzip data is read in steps this big, to place damage near its line
SPLIT_PARTS = ("train", "valid", "test")  # pre-split datasets: NAME.<part>.inter


class ConversionError(ValueError):
    """Bad input or options. The CLI reports it and exits with code 2."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP during a conversion; like KeyboardInterrupt, not an Exception."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


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


BOM = b"\xef\xbb\xbf"
# Leading bytes of what cannot be read as text lines: (magic, what it is, what to do).
UNREADABLE = (
    (b"PK\x03\x04", "a zip archive", "unzip it"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it (xz -d)"),
    (b"BZh", "bzip2-compressed", "decompress it (bunzip2)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "decompress it (zstd -d)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive", "extract it"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8"),
)


class RawInput:
    """A raw file read as bytes: gzip decompressed on the fly, a UTF-8 byte-order mark skipped.

    Read errors (corrupt or truncated gzip data, I/O errors) become a :class:`ConversionError`
    that names the file and the number of lines read before the damage.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0  # whole lines read so far, for the error message
        with open(path, "rb") as probe:
            self.gzipped = probe.read(2) == b"\x1f\x8b"
        if self.gzipped:
            self._f: IO[bytes] = gzip.open(path, "rb")  # type: ignore[assignment]
        else:
            self._f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        try:
            start = self._call(self._f.read, 8)
            for magic, what, fix in UNREADABLE:
                if start.startswith(magic) and (magic != b"BZh" or start[4:8] == b"1AY&"):
                    raise ConversionError(f"{path} is {what}, not text lines: {fix} first")
            self._call(self._f.seek, len(BOM) if start.startswith(BOM) else 0)
        except BaseException:
            self._f.close()
            raise

    def _call(self, read: Callable[[int], Any], size: int, partial: Sequence[bytes] = ()) -> Any:
        """``read(size)``; ``partial`` holds what this call has read before, for the message."""
        try:
            return read(size)
        except (OSError, EOFError, zlib.error) as exc:
            lines = self.lines + sum(p.count(b"\n") for p in partial)
            damage = "corrupt or truncated gzip data" if self.gzipped else "read error"
            fix = "; download or compress the file again" if self.gzipped else ""
            raise ConversionError(
                f"{self.path}: {damage} after line {lines:,} ({exc}){fix}"
            ) from exc

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; the caller keeps :attr:`lines` up to date (it counts anyway).

        Gzip data is read in steps of :data:`GZIP_STEP`, so that damage is placed within a few
        hundred lines.
        """
        if not self.gzipped:
            data: bytes = self._call(self._f.read, size)
            return data
        pieces: list[bytes] = []
        while size > 0 and (piece := self._call(self._f.read, min(size, GZIP_STEP), pieces)):
            pieces.append(piece)
            size -= len(piece)
        return b"".join(pieces)

    def readlines(self, hint: int) -> list[bytes]:
        """Whole lines, about ``hint`` bytes of them (in steps of :data:`GZIP_STEP` for gzip)."""
        if not self.gzipped:
            lines: list[bytes] = self._call(self._f.readlines, hint)
        else:
            lines, size = [], 0
            while size < hint and (more := self._call(self._f.readlines, GZIP_STEP, lines)):
                lines += more
                size += sum(map(len, more))
        self.lines += len(lines)
        return lines

    def readline(self, limit: int) -> bytes:
        line: bytes = self._call(self._f.readline, limit)
        self.lines += line.endswith(b"\n")
        return line

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> RawInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_binary(path: Path) -> RawInput:
    """Open a raw file for reading bytes (see :class:`RawInput`)."""
    return RawInput(path)


def line_batches(path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, lines) in batches of about 1 MiB, so memory stays bounded."""
    with open_binary(path) as f:
        first = 1
        while lines := f.readlines(BATCH_BYTES):
            yield first, lines
            first += len(lines)


def head(path: Path, n: int = 20) -> list[bytes]:
    """The first ``n`` non-blank lines of a file (each cut at 1 MiB); empty is an error."""
    lines: list[bytes] = []
    with open_binary(path) as f:
        while len(lines) < n and (line := f.readline(HEAD_LINE_BYTES)):
            if line.strip():
                lines.append(line)
    if not lines:
        raise ConversionError(f"input file is empty: {path}")
    return lines


class FlagBelow:
    """``flag(raw)``: :data:`FP` when the number ``raw`` (bytes) is below ``threshold``.

    The few distinct ratings (or dwell times) are cached, so most rows cost one dict lookup;
    ``get`` is the cache's own lookup for loops that fall back to :meth:`at` on a miss. Raises
    ValueError for text that is not a finite number or lies outside ``[low, high]``.
    """

    def __init__(
        self, threshold: float, *, low: float = -LIMIT, high: float = LIMIT, what: str = "value"
    ) -> None:
        self.threshold, self.low, self.high, self.what = threshold, low, high, what
        self.cache: dict[bytes, bytes] = {}
        self.get = self.cache.get

    def __call__(self, raw: bytes) -> bytes:
        shown = raw[:20].decode(errors="replace")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{self.what} {shown!r} is not a number") from None
        if not -LIMIT < value < LIMIT or b"_" in raw:
            raise ValueError(f"{self.what} {shown!r} is not a finite number")
        if not self.low <= value <= self.high:
            allowed = f"{self.low:g} to {self.high:g}" if self.high < LIMIT else f">= {self.low:g}"
            raise ValueError(f"{self.what} {shown} is out of range (allowed: {allowed})")
        flag = FLAG[value < self.threshold]
        if len(self.cache) < 65536:
            self.cache[raw] = flag
        return flag

    def at(self, raw: bytes, path: Path, lineno: int, log: LineLog) -> bytes | None:
        """The flag, or None after logging the line as malformed."""
        try:
            return self(raw)
        except ValueError as exc:
            log.bad(path, lineno, str(exc))
            return None


def clean_id(value: object) -> bytes | None:
    """An id from a parsed record as UTF-8 bytes, or None when it is unusable (see bad_id)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    if not text or "\t" in text or "\n" in text or "\r" in text or '"' in text:
        return None
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape
        return None


def suspect(lines: list[bytes]) -> bool:
    """Whether a batch may hold ids that :func:`bad_id` refuses (one pass in C)."""
    joined = b"".join(lines)
    return not joined.isascii() or 34 in joined


def bad_id(*ids: bytes) -> str | None:
    """Why one of ``ids`` (raw bytes, already stripped) cannot be written, or None."""
    for raw in ids:
        if 34 in raw:
            return f"id {raw[:40].decode(errors='replace')!r} holds a double quote"
        try:
            raw.decode()
        except UnicodeDecodeError:
            return f"id {raw[:40]!r} is not valid UTF-8"
    return None


# ----------------------------------------------------------------------------------------- output


class Staging:
    """Temporary files in the destination folder, moved into place only by :meth:`commit`.

    On entry it takes the folder's lock (``.NAME.lock``, see :meth:`_lock`), removes the
    temporaries of an earlier run that was killed, refuses to overwrite ``targets`` or any of
    ``replaces`` unless ``force``, and turns SIGTERM and SIGHUP into :class:`Terminated`.
    Anything not committed (an exception, Ctrl-C, SIGTERM) is deleted on exit, so a destination
    file is either the old complete one or the new complete one, never a partial write.
    Committed files get the permissions of the user's umask.

    ``replaces`` names the files of the dataset that a conversion replaces as a whole
    (:func:`dataset_files`): :meth:`commit` removes those it did not write again, so a forced
    conversion from another source leaves none of the old dataset's files (its split files,
    say) beside the new one.
    """

    def __init__(
        self,
        directory: Path,
        targets: Sequence[str] = (),
        force: bool = False,
        replaces: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.targets = targets
        self.force = force
        self.replaces = [name for name in replaces if name not in targets]
        self.lock = directory / f".{directory.name}.lock"
        self._pending: list[tuple[IO[bytes], Path]] = []
        self._scratch: list[IO[bytes]] = []
        self._created: list[Path] = []  # folders made here, removed again if nothing is committed
        self._locked = False
        self._handlers: dict[int, Any] = {}  # signal -> the handler it had before
        self._protected = False  # True while renaming: signals wait until the end
        self._deferred: int | None = None

    def __enter__(self) -> Staging:
        missing = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        try:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConversionError(
                    f"cannot create the output folder {self.directory}: {exc.strerror}"
                ) from None
            self._created = missing
            self._lock()
            self._remove_stale()
            owned = [*self.targets, *self.replaces]
            refuse_overwrite([self.directory / t for t in owned], self.force)
            self._catch_signals()
        except BaseException:
            self.__exit__()
            raise
        return self

    # -- the lock ------------------------------------------------------------------------------

    def _lock(self) -> None:
        """Create ``.NAME.lock`` with O_EXCL; a lock whose pid is not running is taken over."""
        for _ in range(5):
            try:
                fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                pid = _lock_pid(self.lock)
                if pid is None and not self.lock.exists():  # released meanwhile
                    continue
                if pid is None or _running(pid):
                    raise ConversionError(
                        f"another conversion{f' (pid {pid})' if pid else ''} is writing to "
                        f"{self.directory}: wait for it to finish. If none is running, delete "
                        f"the lock file {self.lock}"
                    ) from None
                self._take_over(pid)
                continue
            except OSError as exc:
                raise ConversionError(
                    f"cannot write to the output folder {self.directory}: {exc.strerror}"
                ) from None
            self._locked = True
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return
        raise ConversionError(f"could not take the lock {self.lock}: other runs keep taking it")

    def _take_over(self, pid: int) -> None:
        """Remove the lock of dead ``pid``; only one of several racing runs can move it aside."""
        aside = self.lock.with_name(f"{self.lock.name}.{os.getpid()}.tmp")
        try:
            os.rename(self.lock, aside)
        except FileNotFoundError:  # another run took it over first
            return
        if _lock_pid(aside) == pid:
            aside.unlink()
            logger.warning(
                "took over the lock of conversion pid %d, which is no longer running: %s",
                pid,
                self.lock,
            )
        else:  # a live run's fresh lock was moved aside: put it back
            os.rename(aside, self.lock)

    def _remove_stale(self) -> None:
        """Delete the temporaries (of this dataset) that a killed run left behind."""
        pattern = re.compile(rf"\.(?:scratch|{re.escape(self.directory.name)})\..*\.tmp")
        stale = sorted(p for p in self.directory.iterdir() if pattern.fullmatch(p.name))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            logger.warning(
                "removed %d temporary file(s) left by an interrupted conversion in %s: %s",
                len(stale),
                self.directory,
                ", ".join(p.name for p in stale),
            )

    # -- signals -------------------------------------------------------------------------------

    def _catch_signals(self) -> None:
        """Replace the default actions of SIGTERM, SIGHUP and SIGINT (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        defaults = (
            ("SIGTERM", signal.SIG_DFL),
            ("SIGHUP", signal.SIG_DFL),  # absent on Windows
            ("SIGINT", signal.default_int_handler),
        )
        for name, default in defaults:
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) is default:
                self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._protected:
            self._deferred = signum
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise Terminated(signum)

    # -- files ---------------------------------------------------------------------------------

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
        mode = 0o666 & ~_umask()
        for f, _ in self._pending:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.chmod(f.name, mode)
        self._protected = True  # a signal now waits until __exit__: all files or none move
        for f, target in self._pending:
            os.replace(f.name, target)
        self._pending.clear()
        self._created.clear()
        self._remove_replaced()
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

    def _remove_replaced(self) -> None:
        """Delete the old dataset's files that the new one does not have (after the renames:
        a crash in between leaves the new dataset whole, beside some old files)."""
        removed = []
        for name in self.replaces:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
                removed.append(name)
        if removed:
            logger.info(
                "removed %s of the earlier dataset in %s (not written by this conversion)",
                ", ".join(removed),
                self.directory,
            )

    def __exit__(self, *exc: object) -> None:
        self._protected = True
        for f in [f for f, _ in self._pending] + self._scratch:
            with contextlib.suppress(OSError):  # closing flushes, which fails on a full disk
                f.close()
            with contextlib.suppress(OSError):
                os.unlink(f.name)
        self._pending.clear()
        self._scratch.clear()
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers.clear()
        if self._locked:
            with contextlib.suppress(OSError):
                self.lock.unlink()
            self._locked = False
        for folder in self._created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        if self._deferred is not None:  # delivered now, to the handler it had before
            signal.raise_signal(self._deferred)


def _lock_pid(path: Path) -> int | None:
    """The pid in a lock file, or None when it is unreadable."""
    try:
        return int(path.read_text(encoding="ascii", errors="replace").strip())
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (our own pid is a lock left by an earlier container)."""
    if pid == os.getpid() or pid <= 0:
        return False
    if os.name != "posix":
        return True  # cannot tell safely: keep the lock
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def dataset_files(name: str) -> tuple[str, ...]:
    """Every file a converter writes for dataset ``name``, in any of its shapes: one
    interaction file, or the split files ``NAME.<part>.inter`` (:data:`SPLIT_PARTS`), and the
    stats. A conversion replaces all of them or none."""
    splits = (f"{name}.{part}.inter" for part in SPLIT_PARTS)
    return (f"{name}.inter", *splits, f"{name}.stats.json")


def refuse_overwrite(paths: Iterable[Path], force: bool) -> None:
    paths = list(paths)
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise ConversionError(f"a folder is in the way of the output: {', '.join(folders)}")
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


def _write_all(batches: Iterable[list[tuple[bytes, ...]]], out: IO[bytes], counts: Counts) -> None:
    """Write batches of rows, tab-separated; every step runs over a whole batch in C."""
    for rows in batches:
        if not rows:
            continue
        counts.users.update(map(_USER, rows))
        counts.items.update(map(_ITEM, rows))
        counts.false_positives += countOf(map(_FLAG, rows), FP)
        counts.interactions += len(rows)
        out.write(b"\n".join(map(b"\t".join, rows)) + b"\n")  # one call: writelines costs 3x


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
) -> tuple[Counts, dict[str, int]]:
    """Write rows to ``out`` after the optional filters; returns counts and rows removed."""
    counts = Counts()
    if not isinstance(opts, Options) or (not opts.dedupe and opts.kcore <= 1):
        _write_all(batches, out, counts)
        return counts, {"duplicates": 0, "kcore": 0}
    spool = staging.scratch()
    raw = Counts()
    _write_all(batches, spool, raw)
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
    log = LineLog(opts.strict)
    with Staging(directory, [inter, stats_file], force, dataset_files(name)) as staging:
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
    if not name or name in {".", ".."} or "/" in name or os.sep in name or "\0" in name:
        raise ConversionError(f"invalid dataset name: {name!r}")
