"""Read a few top-level fields from JSON-lines records without parsing whole lines.

``json.loads`` builds every value of a line, review texts included, and is the bottleneck on
multi-GB dumps. :class:`JsonFields` instead finds each needed ``"key":`` with ``bytes.find`` (or
``rfind`` when the sample line shows the key after the long text) and parses only that scalar.
In valid JSON a quoted key followed by ``:`` cannot occur inside a string (its inner quotes are
escaped), so this finds the real key. Whenever the fast path is unsure (no ``{...}`` framing, an
escaped or unusual value, a raw tab, a required key not found) the line goes through
``json.loads``, which also decides whether it is malformed. The fast path does not validate the
parts of a line it skips: a line whose needed fields are intact is read even if other parts are
broken.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from .base import clean_id

STR, NUM, FLOAT = "str", "num", "float"  # kinds: id string, int (or float), float
_FRAMED = (b"}\n", b"}", b"}\r\n")
_LIMIT = 1e300  # also rejects NaN and infinities


class Malformed(Exception):
    """A line that cannot be read; the message says why."""


@dataclasses.dataclass(frozen=True)
class Field:
    key: str
    kind: str = STR
    required: bool = True


def _number(value: Any, kind: str) -> int | float | None:
    """Coerce a parsed JSON value to a number, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value) if kind == NUM and value.strip().lstrip("-").isdigit() else float(
                value
            )
        except ValueError:
            return None
    if isinstance(value, int):
        return float(value) if kind == FLOAT else value
    if isinstance(value, float) and -_LIMIT < value < _LIMIT:
        return int(value) if kind == NUM and value.is_integer() else value
    return None


class JsonFields:
    """Extract ``fields`` from JSON-lines records shaped like ``sample`` (a parsed first line).

    Calling the object on a raw line returns the values in field order: ids as UTF-8 bytes,
    numbers as int/float, and None for an absent optional field. It raises :class:`Malformed`.
    """

    def __init__(
        self, fields: Sequence[Field], sample: bytes, *, python_literals: bool = False
    ) -> None:
        self.fields = tuple(fields)
        self.python_literals = python_literals
        self._plan = []
        for f in self.fields:
            needle = b'"%s":' % f.key.encode()
            # Keys after the midpoint of the sample follow the long text: search from the end.
            back = sample.find(needle) > len(sample) // 2
            finder = bytes.rfind if back else bytes.find
            self._plan.append((finder, needle, len(needle), f.kind, f.required))

    def __call__(self, line: bytes) -> list[Any]:
        values = self.fast(line)
        return self.slow(line) if values is None else values

    def fast(self, line: bytes) -> list[Any] | None:
        """The values, or None when the line needs a full parse."""
        if line[:1] != b"{" or not line.endswith(_FRAMED) or b"\t" in line:
            return None
        out: list[Any] = []
        for finder, needle, size, kind, required in self._plan:
            p = finder(line, needle)
            if p < 0:
                if required:
                    return None
                out.append(None)
                continue
            p += size
            if line[p] == 32:  # '": ' (json.dumps) as well as '":' (compact dumps)
                p += 1
            if kind is STR:
                if line[p] != 34:
                    return None
                end = line.find(b'"', p + 1)
                value = line[p + 1 : end]
                if end < 0 or not value or b"\\" in value:
                    return None
                out.append(value)
                continue
            end = line.find(b",", p)
            if end < 0:
                end = line.find(b"}", p)
            try:
                number = int(line[p:end]) if kind is NUM else float(line[p:end])
            except ValueError:
                return None
            if not -_LIMIT < number < _LIMIT:
                return None
            out.append(number)
        return out

    def slow(self, line: bytes) -> list[Any]:
        """Parse the whole line; raises :class:`Malformed` with a reason."""
        record = parse_object(line, self.python_literals)
        out: list[Any] = []
        for f in self.fields:
            value = record.get(f.key)
            if value is None:
                if f.required:
                    raise Malformed(f"missing {f.key}")
                out.append(None)
                continue
            parsed = clean_id(value) if f.kind is STR else _number(value, f.kind)
            if parsed is None:
                raise Malformed(f"bad {f.key}: {str(value)[:40]!r}")
            out.append(parsed)
        return out


def parse_object(line: bytes, python_literals: bool = False) -> dict[str, Any]:
    """One JSON object (or, if allowed, a Python dict literal: never ``eval``)."""
    try:
        record = json.loads(line)
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


def sniff(lines: Sequence[bytes], python_literals: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The first line of ``lines`` that parses as an object, and that object."""
    for line in lines:
        try:
            return line, parse_object(line, python_literals)
        except Malformed:
            continue
    raise Malformed(f"no JSON object in the first {len(lines)} line(s)")
