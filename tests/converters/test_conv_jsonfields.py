"""The msgspec reader: plain values read from their raw text agree with ``json.loads``, whole
blocks take the column path, and lines that are not JSON (or not the expected shape) are
malformed for the reason ``json.loads`` gives, in file order."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest

from dataset_converters import amazon, base, convert, yelp
from dataset_converters import jsonfields as jf

from .util import SAMPLES, malformed_lines, read_inter, summary

YELP_FIELDS = [
    jf.Field("user_id"),
    jf.Field("business_id"),
    jf.Field("stars", jf.FLOAT),
    jf.Field("date", convert=yelp.utc_seconds_column),
]
ADRESSA_FIELDS = [
    jf.Field("userId", required=False),
    jf.Field("id", required=False),
    jf.Field("time", jf.NUM),
    jf.Field("activeTime", jf.FLOAT, required=False),
]
AMAZON_FIELDS = [
    jf.Field("reviewerID"),
    jf.Field("asin"),
    jf.Field("overall", jf.FLOAT),
    jf.Field("unixReviewTime", jf.NUM),
]
SAMPLE_FIELDS = [
    ("yelp_review.json", YELP_FIELDS),
    ("adressa/20170101", ADRESSA_FIELDS),
    ("adressa/20170102", ADRESSA_FIELDS),
    ("amazon_2014_reviews.json", AMAZON_FIELDS),
    ("amazon_2018_reviews.json", AMAZON_FIELDS),
]

# Raw texts put in place of one value: every shape a dump may hold, valid JSON or not.
RAW_VALUES = [
    b"5.00", b"1e0", b"-0", b"1e999", b"NaN", b"01", b"1.", b"null", b"true", b'""', b"[]",
    b'{"id": "nested"}', b'"\\u0041BC"', b'"A\\/B"', b'"A\xc3"', b'"A\\ud800"', b'"A\tB"',
    b"1488412800.0", b"1488412800.5", b"-3", b'"5"', b'"4 stars"', b"3", b"2.5", b"1" * 30,
]  # fmt: skip


def _reader(fields: list[jf.Field], path) -> jf.JsonFields:
    return jf.JsonFields(fields, base.head(path))


def _decoded(reader: jf.JsonFields, line: bytes) -> list:
    """[msgspec's decoding of ``line``], or [None] if it refuses the line."""
    return reader._decode_all([line])[0]


def _read(reader: jf.JsonFields, line: bytes) -> tuple[tuple[bytes, ...] | None, list[str]]:
    """The reader's record for one line, and the reasons it logged."""
    log = base.LineLog(strict=False)
    log.examples = []
    (record,) = reader._mixed([line], _decoded(reader, line), 1, SAMPLES, log)
    return record, [e.split(": ", 1)[1] for e in log.examples]


def _mutations(lines: list[bytes], keys: list[str], seed: int, n: int) -> list[bytes]:
    """``n`` lines, each a sample line with one needed value replaced, removed or duplicated, or
    the line cut short, given a trailing comma, or a key order shuffled."""
    rng = random.Random(seed)
    objects = []
    for line in lines:
        try:
            objects.append(json.loads(line))
        except ValueError:
            continue
    objects = [o for o in objects if isinstance(o, dict)]
    out = []
    for _ in range(n):
        record, key = dict(rng.choice(objects)), rng.choice(keys)
        what = rng.randrange(6)
        if what == 0:
            record.pop(key, None)
        elif what == 1:
            items = list(record.items())
            rng.shuffle(items)
            record = dict(items)
        record[key] = record.get(key, "@@") if what != 2 else "@@"
        line = json.dumps(record).encode()
        if what == 2:
            line = line.replace(b'"@@"', rng.choice(RAW_VALUES))
        elif what == 3:
            line = line[:-1] + b', "%s": %s}' % (key.encode(), rng.choice(RAW_VALUES))
        elif what == 4:
            line = line[: rng.randrange(1, len(line))]
        elif what == 5:
            line = line[:-1] + b",}"
        out.append(line)
    return out


@pytest.mark.parametrize("sample, fields", SAMPLE_FIELDS)
def test_read_values_agree_with_json_loads(sample, fields):
    """On sample lines and 400 mutations of them, the reader's outcome is json.loads's: the same
    values (numbers as written), or malformed for the same reason."""
    path = SAMPLES / sample
    reader = _reader(fields, path)
    lines = path.read_bytes().split(b"\n")
    for line in lines + _mutations(lines, [f.key for f in fields], seed=len(sample), n=400):
        record, reasons = _read(reader, line)
        log = base.LineLog(strict=False)
        try:
            expected = reader._converted(reader.slow(line), path, 1, log)
            why = [e.split(": ", 1)[1] for e in log.examples]
        except jf.Malformed as exc:
            expected, why = None, [str(exc)]
        if not line.strip():
            assert record is None and not reasons
        elif why == ["not valid UTF-8"]:  # json.loads decodes the whole line, the reader
            assert record is None and reasons[0].endswith("not valid UTF-8"), line  # the ids
        elif record is None:
            assert reasons == why, line
        elif expected is None:  # read as written, left to the caller's range check: only
            assert why[0].startswith("bad"), line  # numbers too large to be finite
            numbers = [float(v) for v, f in zip(record, fields) if f.kind is not jf.STR and v]
            assert any(not math.isfinite(v) or abs(v) >= base.LIMIT for v in numbers), line
        else:
            assert not reasons, line
            for value, want, f in zip(record, expected, fields):
                if f.kind is jf.FLOAT and value:  # as written ("5.00"), or repr'd ("5.0")
                    assert float(value) == float(want), line
                else:
                    assert value == want, line


def test_malformed_reasons_are_json_loads_reasons():
    reader = _reader(AMAZON_FIELDS, SAMPLES / "amazon_2018_reviews.json")
    good = b'{"overall": 5.0, "reviewerID": "A1", "asin": "B1", "unixReviewTime": 1000}'
    cases = {
        good[:-1] + b",}": "broken JSON",  # a trailing comma: the fields are intact, still broken
        good + good: "broken JSON",  # two records run together
        good.replace(b'"A1"', b'"A\\u00c9"'): None,  # an escaped id is read, decoded
        good.replace(b'"A1"', b'"A\\t"'): "bad reviewerID: 'A\\t'",
        good.replace(b'"A1"', b'"A\xc3"'): "id b'A\\xc3' is not valid UTF-8",
        good.replace(b"5.0", b'"five"'): "bad overall: 'five'",
        good.replace(b"1000", b"1000.0"): None,  # an integral float is a count
        good.replace(b"1000", b"-5"): "bad unixReviewTime: '-5'",
        good.replace(b'"asin": "B1", ', b""): "missing asin",
        good[:-1] + b', "overall": null}': "missing overall",  # the last key counts
        b"[1, 2]": "not a JSON object",
        b"   ": None,
    }
    for line, reason in cases.items():
        record, reasons = _read(reader, line)
        assert reasons == ([reason] if reason else []), line
        assert (record is None) == (reason is not None or not line.strip()), line
    record, _ = _read(reader, good.replace(b"1000", b"1000.0"))
    assert record == (b"A1", b"B1", b"5.0", b"1000")


def test_plain_blocks_are_read_a_column_at_a_time(tmp_path):
    """A dump of plain lines never takes the per-line path; one odd line sends only its block
    there, with the same values."""
    plain = b"".join(
        b'{"overall": %d.0, "reviewerID": "U%d", "asin": "I%d", "unixReviewTime": %d}\n'
        % (1 + k % 5, k % 7, k % 3, 1000 + k)
        for k in range(50)
    )
    path = tmp_path / "in.json"
    path.write_bytes(plain)
    reader = _reader(AMAZON_FIELDS, path)
    blocks = list(reader.blocks(path, base.LineLog(strict=False)))
    assert all(b.columns is not None for b in blocks)
    fast = [r for b in blocks for r in b.records]
    path.write_bytes(plain.replace(b'"U3"', b'"\\u00553"', 1))  # "U3", escaped
    blocks = list(reader.blocks(path, base.LineLog(strict=False)))
    assert blocks[0].columns is None
    assert [r for b in blocks for r in b.records] == fast


def test_nested_keys_and_wrong_types_are_not_read_as_absent(tmp_path):
    """A nested "id" is not the article id; a userId that is not a string is malformed, not a
    front-page event."""
    day = tmp_path / "day"
    day.mkdir()
    event = '{{"eventId": {k}, "time": {t}, "userId": {u}, "activeTime": {a}{rest}}}\n'
    (day / "20170101").write_text(
        event.format(k=1, t=100, u='"cx:1"', a=30, rest=', "id": "d1"')
        + event.format(k=2, t=101, u='"cx:2"', a=30, rest=', "profile": [{"id": "nested"}]')
        + event.format(k=3, t=102, u="0.5", a=30, rest=', "id": "d1"')
        + event.format(k=4, t=103, u='"cx:4"', a='"abc"', rest=', "id": "d1"')
    )
    stats = convert("adressa", [day], tmp_path / "out")
    assert summary(stats) == (1, 1, 1, 0)
    assert stats["skipped"] == {"not_a_click": 1}
    assert malformed_lines(stats) == [3, 4]
    assert stats["malformed_first"][1].endswith("bad activeTime: 'abc'")


def test_malformed_lines_are_reported_in_file_order(tmp_path):
    """A bad rating, then broken JSON, then a bad id, in one block: reported in that order."""
    good = '{{"overall": {r}, "reviewerID": "{u}", "asin": "B1", "unixReviewTime": 1000}}\n'
    path = tmp_path / "in.json"
    path.write_bytes(
        (good.format(r=5.0, u="A1") + good.format(r=7.0, u="A2") + "{broken\n").encode()
        + good.format(r=4.0, u="A\udcff").encode(errors="surrogateescape")
        + good.format(r=1.0, u="A4").encode()
    )
    stats = convert("amazon", [path], tmp_path / "out")
    assert malformed_lines(stats) == [2, 3, 4]
    assert ["out of range" in e for e in stats["malformed_first"]] == [True, False, False]
    with pytest.raises(ValueError, match=r"in\.json:2: rating 7\.0 is out of range"):
        convert("amazon", [path], tmp_path / "strict", strict=True)


def test_column_converters_match_their_one_value_forms():
    ms = [b"1588687728923", b"1588687728000", b"1588687728900", b"1000", b"999", b"5", b"0"]
    assert amazon._ms_to_seconds_column(ms) == [amazon._ms_to_seconds(v) for v in ms]
    assert amazon._ms_to_seconds_column(ms[:4]) == [
        b"1588687728.923",
        b"1588687728",
        b"1588687728.9",
        b"1",
    ]
    dates = [b"2018-07-07 22:09:11", b"2017-01-01", b"1969-12-31 23:59:59", b"2018-07-07 22:09:11"]
    assert yelp.utc_seconds_column(dates) == [yelp.utc_seconds(d) for d in dates]
    assert yelp.utc_seconds_column(dates) == [b"1531001351", b"1483228800", b"-1", b"1531001351"]
    with pytest.raises(ValueError):
        yelp.utc_seconds_column([b"2018-02-30 10:00:00"])


def test_batches_without_rows_write_nothing(tmp_path, monkeypatch):
    """Blocks whose reviews are all for other businesses leave no blank line in the output."""
    monkeypatch.setattr(base, "BATCH_BYTES", 64)
    stats = convert(
        "yelp",
        [SAMPLES / "yelp_review.json"],
        tmp_path,
        business=SAMPLES / "yelp_business.json",
    )
    _, rows = read_inter(tmp_path / "yelp" / "yelp.inter")
    assert len(rows) == stats["interactions"] and all(len(r) == 5 for r in rows)


def test_a_mixed_block_reads_its_plain_lines_alike(tmp_path):
    """Broken, blank and escaped lines in a block send it one line at a time: the plain lines
    read the same values as by column, and only the broken and blank ones are lost."""
    lines = [
        b'{"overall": %d.0, "reviewerID": "U%d", "asin": "I%d", "unixReviewTime": %d}\n'
        % (1 + k % 5, k % 7, k % 3, 1000 + k)
        for k in range(200)
    ]
    path = tmp_path / "in.json"
    path.write_bytes(b"".join(lines))
    reader = _reader(AMAZON_FIELDS, path)
    (plain,) = [list(b.records) for b in reader.blocks(path, base.LineLog(strict=False))]
    lines[17] = b"\n"
    lines[90] = lines[90][:30] + b"\n"
    lines[151] = lines[151].replace(b'"U', b'"\\u0055')  # the same id, escaped
    path.write_bytes(b"".join(lines))
    log = base.LineLog(strict=False)
    (block,) = reader.blocks(path, log)
    assert block.columns is None
    assert list(block.records) == [None if k in (17, 90) else r for k, r in enumerate(plain)]
    assert log.skipped == {"blank": 1} and malformed_lines({"malformed_first": log.examples}) == [
        91
    ]


@pytest.mark.parametrize("sample, fields", SAMPLE_FIELDS)
def test_one_line_and_column_reading_agree(sample, fields):
    """The per-line plain check is the column check for one line (converters and the UTF-8
    check aside)."""
    fields = [dataclasses.replace(f, convert=None) for f in fields]
    path = SAMPLES / sample
    reader = _reader(fields, path)
    lines = path.read_bytes().split(b"\n")
    for line in lines + _mutations(lines, [f.key for f in fields], seed=7, n=400):
        (decoded,) = _decoded(reader, line)
        if decoded is not None and jf._utf8(line):  # for one line, _line checks the ids
            columns = reader._columns([decoded])
            by_column = None if columns is None else tuple(c[0] for c in columns)
            assert reader._plain_line(decoded) == by_column, line
