"""Read a few top-level fields from JSON-lines dumps without parsing whole lines.

``json.loads`` builds every value of a line, review texts included, and is the bottleneck on
multi-GB dumps. :class:`JsonFields` reads in three tiers, each falling back to the next:

1. **bulk**: one regular expression, built from the key order of a sample line, runs over a
   1 MiB block with ``findall``, so a whole block is matched in C. Gaps before keys near the start
   are skipped lazily; the first key past the middle of the sample (after the long text) is
   reached greedily from the end of the line. Each gap-and-key step is an atomic group, so a
   line that does not fit fails at once instead of backtracking. The regex engine steps over
   gaps byte by byte, so this tier is used only when the sample's keys lie within
   :data:`BULK_REACH` bytes of the line's ends (Amazon, Yelp), not mid-line (Adressa).
2. **per line**: ``bytes.find`` for each ``"key":``; this also handles absent optional keys.
3. **full parse**: ``json.loads`` (or ``ast.literal_eval`` for Python-literal dumps, never
   ``eval``), which also decides whether a line is malformed.

In valid JSON a quoted key followed by ``:`` cannot occur inside a string (its inner quotes are
escaped), so tiers 1-2 find the real key (nested objects reusing a needed key name are not
expected in these dumps). They take only plain values (strings without escapes or control
characters, plain numbers) and check that the line is framed by ``{`` ... ``}``; they do not
validate the parts of a line they skip, so a line whose needed fields are intact is read even if
another part is broken.

Values come back as UTF-8 bytes, numbers as their JSON text, ready to be written to a TSV file;
an absent optional field reads as ``b""``.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from . import base
from .base import LIMIT, LineLog, clean_id, open_binary

STR, NUM, FLOAT = "str", "num", "float"  # kinds: id string, integer >= 0, any JSON number
_VALUE = {
    STR: rb'"([^"\\\x00-\x1f]+)"',
    NUM: rb"(\d+)(?=[\s,}])",
    FLOAT: rb"(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)(?=[\s,}])",
}
_FIRST = itemgetter(0)
JSON_ARRAY = (
    "it holds a JSON array, but the converters read JSON lines (one object per line): "
    "convert it with jq -c '.[]'"
)
BULK_REACH = 300  # bytes the bulk regex may have to walk per line before tier 2 is faster


class Malformed(Exception):
    """A line that cannot be read; the message says why."""


@dataclasses.dataclass(frozen=True)
class Field:
    key: str
    kind: str = STR
    required: bool = True  # an absent optional field reads as b""
    convert: Callable[[bytes], bytes] | None = None  # for a required field; ValueError: bad

    def __post_init__(self) -> None:
        if self.convert and not self.required:
            raise ValueError("convert is for required fields")


class JsonFields:
    """Extract ``fields`` from the JSON-lines files whose first lines are ``head``.

    :meth:`records` yields, per block, the number of its first line and one entry per line:
    the tuple of field values, or None for a blank or malformed line (already logged).
    """

    def __init__(
        self, fields: Sequence[Field], head: Sequence[bytes], *, python_literals: bool = False
    ) -> None:
        if len(fields) < 2:
            raise ValueError("JsonFields needs at least two fields")
        self.fields = tuple(fields)
        self.python_literals = python_literals
        samples = list(_parsed(head, python_literals))
        if not samples:
            raise _no_object(head)
        self.sample = samples[0][1]
        full = next((s for s in samples if all(f.key in s[1] for f in fields)), None)
        bulk = full and _bulk_pattern(self.fields, *full)
        self._bulk, self._pick = bulk or (None, None)
        self._plan = _line_plan(self.fields, samples[0][0])
        self._converts = [(i, f.key, f.convert) for i, f in enumerate(fields) if f.convert]
        self._ids = [i for i, f in enumerate(fields) if f.kind is STR and not f.convert]

    # -- tier 1 --------------------------------------------------------------------------------

    def records(
        self, path: Path, log: LineLog
    ) -> Iterator[tuple[int, list[tuple[bytes, ...] | None]]]:
        pick = self._pick
        for first, n, block in _blocks(path):
            matches = self._bulk.findall(block) if self._bulk else []
            records = None
            if len(matches) == n and all(map(_FIRST, matches)):  # group 1 is "{" if it fit
                records = list(map(pick, matches))
                if self._converts:
                    try:
                        records = self._convert_all(records)
                    except ValueError:
                        records = None
            if records is None:  # one line at a time, so malformed lines are met in file order
                if len(matches) != n:  # no bulk pattern: every line takes tier 2
                    matches = [(b"", line) for line in block.split(b"\n")]
                records = [self._record(m, path, first + k, log) for k, m in enumerate(matches)]
            if not block.isascii():  # 40 us per MiB; ASCII ids are valid UTF-8
                records = self._utf8(records, path, first, log)
            log.lines += n
            yield first, records

    def _convert_all(self, records: list[tuple[bytes, ...]]) -> list[tuple[bytes, ...]]:
        """Apply the converters column-wise (in C via map and zip); raises ValueError."""
        if not records:
            return records
        columns: list[Iterable[bytes]] = list(zip(*records))
        for i, _, convert in self._converts:
            columns[i] = list(map(convert, columns[i]))
        return list(zip(*columns))

    def _utf8(
        self, records: list[Any], path: Path, first: int, log: LineLog
    ) -> list[tuple[bytes, ...] | None]:
        """Drop (as malformed) the records with an id that is not UTF-8; a few C passes if none."""
        present = list(filter(None, records))
        try:
            for i in self._ids:
                ids = b"\n".join(map(itemgetter(i), present))
                if not ids.isascii():
                    ids.decode()
            return records
        except UnicodeDecodeError:
            pass
        out = []
        for lineno, record in enumerate(records, first):
            if record is not None and (why := base.bad_id(*(record[i] for i in self._ids))):
                log.bad(path, lineno, why)
                record = None
            out.append(record)
        return out

    def _record(
        self, match: tuple[bytes, ...], path: Path, lineno: int, log: LineLog
    ) -> tuple[bytes, ...] | None:
        """The values of one line: from the bulk match if it fit, else from tiers 2-3."""
        values = self._pick(match) if match[0] else self._line(match[-1], path, lineno, log)
        if values is None or not self._converts:
            return values
        out = list(values)
        for i, key, convert in self._converts:
            try:
                out[i] = convert(out[i])
            except ValueError:
                log.bad(path, lineno, f"bad {key}: {out[i][:40].decode(errors='replace')!r}")
                return None
        return tuple(out)

    # -- tiers 2 and 3 -------------------------------------------------------------------------

    def _line(self, line: bytes, path: Path, lineno: int, log: LineLog) -> tuple[Any, ...] | None:
        values = self.fast(line)
        if values is not None:
            return values
        if not line.strip():
            log.skip("blank")
            return None
        try:
            return self.slow(line)
        except Malformed as exc:
            log.bad(path, lineno, str(exc))
            return None

    def fast(self, line: bytes) -> tuple[Any, ...] | None:
        """Tier 2: the values found with ``bytes.find``, or None when unsure."""
        try:
            if line[0] != 123 or (line[-1] != 125 and line.rstrip()[-1] != 125):
                return None
            out: list[Any] = []
            for finder, needle, size, kind, required, key in self._plan:
                p = finder(line, needle)
                if p < 0:
                    if required or line.find(key) >= 0:  # absent, or present in another shape
                        return None
                    out.append(b"")
                    continue
                p += size
                if kind is STR:
                    end = line.find(34, p)
                    value = line[p:end]
                    if end < 0 or not value or 92 in value or 9 in value or 13 in value:
                        return None
                else:
                    end = line.find(44, p)
                    value = line[p : end if end >= 0 else line.find(125, p)].strip()
                    number = int(value) if kind is NUM else float(value)
                    if not -LIMIT < number < LIMIT or b"_" in value or (kind is NUM and number < 0):
                        return None
                out.append(value)
            return tuple(out)
        except (ValueError, IndexError):
            return None

    def slow(self, line: bytes) -> tuple[Any, ...]:
        """Tier 3: parse the whole line; raises :class:`Malformed` with a reason."""
        record = parse_object(line, self.python_literals)
        out: list[Any] = []
        for f in self.fields:
            value = record.get(f.key)
            if value is None:
                if f.required:
                    raise Malformed(f"missing {f.key}")
                out.append(b"")
                continue
            parsed = clean_id(value) if f.kind is STR else _number(value, f.kind)
            if parsed is None:
                raise Malformed(f"bad {f.key}: {str(value)[:40]!r}")
            out.append(parsed)
        return tuple(out)


def first_object(lines: Sequence[bytes], python_literals: bool = False) -> dict[str, Any]:
    """The first of ``lines`` that parses as an object; raises :class:`Malformed`."""
    for _, record in _parsed(lines, python_literals):
        return record
    raise _no_object(lines)


def _no_object(lines: Sequence[bytes]) -> Malformed:
    if lines and lines[0].lstrip().startswith(b"["):
        return Malformed(JSON_ARRAY)
    return Malformed(f"no JSON object in the first {len(lines)} line(s)")


def _parsed(lines: Sequence[bytes], python_literals: bool) -> Iterator[tuple[bytes, dict]]:
    for line in lines:
        try:
            yield line, parse_object(line, python_literals)
        except Malformed:
            continue


def _bulk_pattern(
    fields: Sequence[Field], line: bytes, sample: dict[str, Any]
) -> tuple[re.Pattern[bytes], Callable[[tuple[bytes, ...]], tuple[bytes, ...]]] | None:
    """``^({) gap "k1": v1 gap "k2": v2 ... }$ | ^(line)$`` with the keys in the sample's order.

    Also returns the itemgetter that turns a match into the values in the fields' order. None
    when the regex would have to walk more than :data:`BULK_REACH` bytes of the sample.
    """
    keys = list(sample)
    ordered = sorted(fields, key=lambda f: keys.index(f.key))
    where = {f.key: line.find(b'"' + f.key.encode() + b'":') for f in ordered}
    early = [p for p in where.values() if p <= len(line) // 2]
    late = [p for p in where.values() if p > len(line) // 2]
    if max(early, default=0) + (len(line) - min(late, default=len(line))) > BULK_REACH:
        return None
    parts = [rb"^(\{)"]
    greedy_used = False
    for f in ordered:
        is_late = where[f.key] > len(line) // 2
        gap = rb".*" if is_late and not greedy_used else rb".*?"
        greedy_used |= is_late
        step = b"(?>" + gap + b'"' + re.escape(f.key.encode()) + b'": ?' + _VALUE[f.kind] + b")"
        parts.append(step if f.required else b"(?:" + step + b")?")
    parts.append(rb".*\}\r?$|^(.*)$")
    pattern = re.compile(b"".join(parts), re.MULTILINE)
    return pattern, itemgetter(*(1 + ordered.index(f) for f in fields))


def _line_plan(fields: Sequence[Field], sample: bytes) -> list[tuple[Any, ...]]:
    sep = b": " if sample.find(b'": ') >= 0 else b":"  # json.dumps style or compact
    plan = []
    for f in fields:
        key = b'"' + f.key.encode() + b'":'
        needle = key + sep[1:] + (b'"' if f.kind is STR else b"")  # up to the value
        # Keys after the middle of the sample follow the long text: search from the end.
        finder = bytes.rfind if sample.find(key) > len(sample) // 2 else bytes.find
        plan.append((finder, needle, len(needle), f.kind, f.required, key))
    return plan


def _blocks(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(first line number, number of lines, block of whole lines without the last newline)."""
    first, rest = 1, b""
    with open_binary(path) as f:
        while data := f.read(base.BATCH_BYTES):
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut + 1 :]
            n = block.count(b"\n") + 1
            f.lines = first + n - 1
            yield first, n, block
            first += n
    if rest:
        yield first, rest.count(b"\n") + 1, rest


def _number(value: Any, kind: str) -> bytes | None:
    """A parsed JSON number (or numeric string) as text, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            return None
    if isinstance(value, float) and value.is_integer() and kind is NUM:
        value = int(value)
    if isinstance(value, int):
        return str(value).encode() if kind is not NUM or value >= 0 else None
    if isinstance(value, float) and -LIMIT < value < LIMIT and kind is FLOAT:
        return repr(value).encode()
    return None


def parse_object(line: bytes, python_literals: bool = False) -> dict[str, Any]:
    """One JSON object (or, if allowed, a Python dict literal: never ``eval``)."""
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        raise Malformed("not valid UTF-8") from None
    except ValueError:
        record = None
        if python_literals and line.lstrip()[:2] == b"{'":
            try:
                record = ast.literal_eval(line.decode("utf-8").strip())
            except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
                pass
        if record is None:
            raise Malformed("broken JSON") from None
    if not isinstance(record, dict):
        raise Malformed("not a JSON object")
    return record
