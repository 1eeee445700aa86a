"""Read a few top-level fields from JSON-lines dumps with msgspec.

``json.loads`` builds every value of a line, review texts included, and is the bottleneck on
multi-GB dumps. :class:`JsonFields` decodes each line with msgspec against a Struct that names
only the needed keys, typed ``msgspec.Raw``: the whole line is still checked to be JSON (in C),
but nothing is built for the other keys, and each needed value comes back as its raw JSON text.

A value is *plain* when it can be written as it stands: a string without escapes, a run of
digits for a count (:data:`NUM`), a JSON number (:data:`FLOAT`), or an absent optional key.
The lines of a 1 MiB block are checked a field at a time (a few passes in C over the joined
values), so a plain dump costs no Python work per line here. Any other line (escapes, ids given
as numbers, ``null``, missing keys, Python dict literals, blank lines, and lines that are not
JSON, even where the needed fields are intact) is parsed whole with ``json.loads``
(:meth:`JsonFields.slow`), which also decides whether it is malformed and why. A block with such
lines still reads its runs of plain lines a field at a time; malformed lines are logged in file
order, as the caller reaches them.

Values come back as UTF-8 bytes, numbers as their JSON text, ready to be written to a TSV file;
an absent optional field reads as ``b""``. Ids read as they stand are checked to be UTF-8 (the
raw text is not decoded); ids from ``json.loads`` are valid by construction.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from msgspec.structs import astuple

from . import base
from .base import LIMIT, LineLog, clean_id

STR, NUM, FLOAT = "str", "num", "float"  # kinds: id string, integer >= 0, any JSON number
JSON_ARRAY = (
    "it holds a JSON array, but the converters read JSON lines (one object per line): "
    "convert it with jq -c '.[]'"
)
ABSENT = msgspec.Raw(b"")  # what an absent optional key decodes to
DIGITS = b"0123456789\n"  # a count is plain when its raw text holds only these (see _columns)
NUMBER = b"-+.0123456789eE\n"  # a JSON value made only of these bytes is a number
NUMBER_START = b"-0123456789"  # a JSON value that starts with one of these is a number
QUOTE, BACKSLASH = ord('"'), ord("\\")  # as ints: "bytes in bytes" first tries int(needle)


class Malformed(Exception):
    """A line that cannot be read; the message says why."""


@dataclasses.dataclass(frozen=True)
class Field:
    key: str
    kind: str = STR
    required: bool = True  # an absent optional field reads as b""
    # For a required field: maps a column of values to new values; ValueError when one is bad.
    convert: Callable[[list[bytes]], list[bytes]] | None = None

    def __post_init__(self) -> None:
        if self.convert and not self.required:
            raise ValueError("convert is for required fields")


class Block(NamedTuple):
    """About 1 MiB of lines, starting at line ``first``.

    ``records`` holds one entry per line: the tuple of field values, or None for a blank or
    malformed line, logged when the entry is reached (so that the caller's own reports stay in
    file order). When every line was plain, ``columns`` holds the same values a field at a
    time, for callers that work on whole columns; otherwise it is None.
    """

    first: int
    columns: list[list[bytes]] | None
    records: Iterable[tuple[bytes, ...] | None]


class JsonFields:
    """Extract ``fields`` from the JSON-lines files whose first lines are ``head``."""

    def __init__(
        self, fields: Sequence[Field], head: Sequence[bytes], *, python_literals: bool = False
    ) -> None:
        if len(fields) < 2:
            raise ValueError("JsonFields needs at least two fields")
        self.fields = tuple(fields)
        self.python_literals = python_literals
        self.sample = first_object(head, python_literals)
        names = [f"f{i}" for i in range(len(fields))]  # any JSON key, even "class" or "a b"
        struct = msgspec.defstruct(
            "Needed",
            [
                (n, msgspec.Raw) if f.required else (n, msgspec.Raw, ABSENT)
                for n, f in zip(names, fields)
            ],
            rename=dict(zip(names, (f.key for f in fields))),
            kw_only=True,
            gc=False,  # holds only bytes: no cycles, and no collector passes over each line
        )
        self._decode = msgspec.json.Decoder(struct).decode
        self._get = list(map(attrgetter, names))
        self._ids = [i for i, f in enumerate(fields) if f.kind is STR and not f.convert]
        self._converts = [(i, f) for i, f in enumerate(fields) if f.convert]

    def blocks(self, path: Path, log: LineLog) -> Iterator[Block]:
        """The file's lines in blocks (see :class:`Block`); counts them in ``log.lines``."""
        for first, lines in base.line_batches(path):
            log.lines += len(lines)
            decoded, refused = self._decode_all(lines)
            columns = None if refused else self._columns(decoded)
            if columns is not None:
                yield Block(first, columns, zip(*columns))
            else:
                yield Block(first, None, self._mixed(lines, decoded, first, path, log))

    def _decode_all(self, lines: list[bytes]) -> tuple[list[Any], bool]:
        """Each line decoded, or None where msgspec refuses it; and whether it refused one."""
        decoded: list[Any] = []
        rest = iter(lines)
        refused = False
        while True:
            try:  # extend keeps what it appended before the error; map has consumed the line
                decoded.extend(map(self._decode, rest))
                return decoded, refused
            except (msgspec.DecodeError, msgspec.ValidationError):
                decoded.append(None)
                refused = True

    def _mixed(
        self, lines: list[bytes], decoded: list[Any], first: int, path: Path, log: LineLog
    ) -> Iterator[tuple[bytes, ...] | None]:
        """The records of a block with lines that msgspec refused or that are not all plain.

        Each run of lines between refused ones is still read a column at a time if it is all
        plain, and otherwise one line at a time; malformed lines are logged as reached.
        """
        refused = [k for k, one in enumerate(decoded) if one is None]
        start = 0
        for end in [*refused, len(lines)]:
            columns = self._columns(decoded[start:end]) if end > start else None
            if columns is not None:
                yield from zip(*columns)
            else:
                for k in range(start, end):
                    yield self._line(lines[k], decoded[k], path, first + k, log)
            if end < len(lines):
                yield self._line(lines[end], None, path, first + end, log)
            start = end + 1

    def _columns(self, decoded: list[Any]) -> list[list[bytes]] | None:
        """The values of decoded lines, a field at a time; None unless all are plain.

        Each field's raw texts are joined with newlines (which no raw JSON value holds), so the
        checks are a few passes in C over one bytes object per field.
        """
        columns = []
        for get, f in zip(self._get, self.fields):
            joined = b"\n".join(map(get, decoded))
            if f.kind is STR:  # quoted, without escapes (so no quote inside), or absent
                if BACKSLASH in joined or b'""' in joined or not _utf8(joined):
                    return None
                quoted = joined.startswith(b'"') + joined.count(b'\n"')
                values = joined.replace(b'"', b"").split(b"\n")
                if quoted != len(values) - values.count(b""):
                    return None
            elif joined.translate(None, DIGITS if f.kind is NUM else NUMBER):
                return None
            else:
                values = joined.split(b"\n")
            if f.convert:
                try:
                    values = f.convert(values)
                except ValueError:
                    return None
            columns.append(values)
        return columns

    def _line(
        self, line: bytes, decoded: Any, path: Path, lineno: int, log: LineLog
    ) -> tuple[bytes, ...] | None:
        """One line's record (``decoded`` is None if msgspec refused it); logs why it has none."""
        plain = None if decoded is None else self._plain_line(decoded)
        if plain is not None:
            record = self._converted(plain, path, lineno, log)
            if record is None or line.isascii():  # ASCII ids are valid UTF-8
                return record
            if why := base.bad_id(*(record[i] for i in self._ids)):
                log.bad(path, lineno, why)
                return None
            return record
        if not line.strip():
            log.skip("blank")
            return None
        try:
            return self._converted(self.slow(line), path, lineno, log)
        except Malformed as exc:
            log.bad(path, lineno, str(exc))
            return None

    def _plain_line(self, decoded: Any) -> tuple[bytes, ...] | None:
        """One decoded line's values if all are plain, before conversion: :meth:`_columns` for
        one line, without its fixed cost per field."""
        out = []
        raw = b"\n".join(astuple(decoded)).split(b"\n")  # cheaper than bytes() of each
        for value, f in zip(raw, self.fields):
            if not value:  # an absent optional key
                pass
            elif f.kind is STR:
                if value[0] != QUOTE or BACKSLASH in value or len(value) == 2:
                    return None
                value = value[1:-1]
            elif f.kind is NUM:
                if not value.isdigit():
                    return None
            elif value[0] not in NUMBER_START:
                return None
            out.append(value)
        return tuple(out)

    def _converted(
        self, values: tuple[bytes, ...], path: Path, lineno: int, log: LineLog
    ) -> tuple[bytes, ...] | None:
        if not self._converts:
            return values
        out = list(values)
        for i, f in self._converts:
            try:
                (out[i],) = f.convert([out[i]])  # type: ignore[misc]
            except ValueError:
                log.bad(path, lineno, f"bad {f.key}: {out[i][:40].decode(errors='replace')!r}")
                return None
        return tuple(out)

    def slow(self, line: bytes) -> tuple[Any, ...]:
        """Parse the whole line with ``json.loads``; raises :class:`Malformed` with a reason."""
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


def _utf8(text: bytes) -> bool:
    """Whether raw text is valid UTF-8 (msgspec does not check the raw values it returns)."""
    try:
        return text.isascii() or bool(text.decode())
    except UnicodeDecodeError:
        return False


def first_object(lines: Sequence[bytes], python_literals: bool = False) -> dict[str, Any]:
    """The first of ``lines`` that parses as an object; raises :class:`Malformed`."""
    for line in lines:
        try:
            return parse_object(line, python_literals)
        except Malformed:
            continue
    if lines and lines[0].lstrip().startswith(b"["):
        raise Malformed(JSON_ARRAY)
    raise Malformed(f"no JSON object in the first {len(lines)} line(s)")


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
