"""Amazon: 2014/2018/2023 CSV and JSON samples. Expected counts were worked out by hand from
the sample files (see the comments); rating < 3 is a false positive."""

from __future__ import annotations

import pytest

from dataset_converters import convert
from dataset_converters.jsonfields import Malformed, parse_object

from .util import SAMPLES, counts, malformed_lines, read_inter, read_stats, summary

COLUMNS = [
    "user_id:token",
    "item_id:token",
    "rating:float",
    "timestamp:float",
    "false_positive:float",
]


def run(tmp_path, sample, **options):
    stats = convert("amazon", [SAMPLES / sample], tmp_path, **options)
    columns, rows = read_inter(tmp_path / "amazon" / "amazon.inter")
    assert columns == COLUMNS
    assert read_stats(tmp_path / "amazon" / "amazon.stats.json") == stats
    assert counts(rows) == summary(stats)  # the stats describe the file actually written
    return stats, rows


def test_2014_csv_user_first(tmp_path):
    # 24 lines: 20 ratings (6 below 3), 3 malformed (a word rating, 3 fields, a date as the
    # timestamp) and 1 blank line; 5 reviewers and 6 ASINs.
    stats, rows = run(tmp_path, "amazon_2014_ratings.csv", format="2014-csv")
    assert summary(stats) == (5, 6, 20, 6)
    assert stats["lines"] == 24
    assert stats["malformed"] == 3 and malformed_lines(stats) == [6, 12, 19]
    assert stats["skipped"] == {"blank": 1}
    assert stats["format"] == "2014-csv" and stats["warnings"] == []
    assert rows[2] == ("A3GJ7Q3ZK1X8HB", "000001371X", "2.0", "1289606400", "1.0")
    items = {r[1] for r in rows}
    assert {"0000013714", "000001371X", "0001712799"} <= items  # leading zeros and X kept


def test_2018_csv_is_item_first(tmp_path):
    # The same ratings with the item column first: the output must be identical.
    run(tmp_path / "a", "amazon_2014_ratings.csv", format="2014-csv")
    stats, rows = run(tmp_path / "b", "amazon_2018_ratings.csv", format="2018-csv")
    _, rows_2014 = read_inter(tmp_path / "a" / "amazon" / "amazon.inter")
    assert rows == rows_2014
    assert summary(stats) == (5, 6, 20, 6)


def test_crlf_csv_reads_the_same(tmp_path):
    crlf = tmp_path / "ratings_crlf.csv"
    crlf.write_bytes((SAMPLES / "amazon_2014_ratings.csv").read_bytes().replace(b"\n", b"\r\n"))
    stats = convert("amazon", [crlf], tmp_path / "crlf", format="2014-csv")
    run(tmp_path / "lf", "amazon_2014_ratings.csv", format="2014-csv")
    assert read_inter(tmp_path / "crlf" / "amazon" / "amazon.inter") == read_inter(
        tmp_path / "lf" / "amazon" / "amazon.inter"
    )
    assert summary(stats) == (5, 6, 20, 6)


def test_swapped_csv_columns_are_flagged(tmp_path):
    # A 2014 file read as 2018: the 6 ASINs become users; the stats warn about it.
    stats, _ = run(tmp_path, "amazon_2014_ratings.csv", format="2018-csv")
    assert (stats["users"], stats["items"]) == (6, 5)
    assert len(stats["warnings"]) == 1 and "swapped" in stats["warnings"][0]


def test_csv_needs_format(tmp_path):
    with pytest.raises(ValueError, match="--format"):
        convert("amazon", [SAMPLES / "amazon_2014_ratings.csv"], tmp_path)
    assert not (tmp_path / "amazon").exists()


def test_2023_csv_header_and_milliseconds(tmp_path):
    # 20 data lines: NaN rating (line 7), a fractional millisecond timestamp (line 8) and an
    # empty rating (line 17) are malformed; 17 ratings remain, 6 below 3 (lines 3, 4, 10, 12,
    # 15, 19); 5 users, 5 parent ASINs.
    stats, rows = run(tmp_path, "amazon_2023_ratings.csv", format="2023-csv")
    assert summary(stats) == (5, 5, 17, 6)
    assert malformed_lines(stats) == [7, 8, 17]
    times = {(r[0][:6], r[1]): r[3] for r in rows}
    assert times[("AGKHLE", "B00YQ6X8EO")] == "1588687728.923"
    assert times[("AGKHLE", "0593099060")] == "1588615855"
    assert times[("AHATA6", "B00YQ6X8EO")] == "1609459201.001"


def test_2023_csv_without_header_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="header"):
        convert("amazon", [SAMPLES / "amazon_2014_ratings.csv"], tmp_path, format="2023-csv")


def test_2014_json(tmp_path):
    # 21 lines. Valid: lines 1-4, 8 (a Python dict literal), 10, 11, 12, 13, 14, 16, 17, 19, 21
    # = 14 reviews, 5 below 3 (lines 2, 4, 11, 14, 21). Malformed: 5 truncated, 6 no overall,
    # 7 overall "five", 9 a Python expression, 18 no asin, 20 a JSON array. Line 15 is blank.
    # Users: 7 (lines 10 and 11 are one reviewer, once \u-escaped, once raw UTF-8). Items: 6.
    stats, rows = run(tmp_path, "amazon_2014_reviews.json")
    assert summary(stats) == (7, 6, 14, 5)
    assert stats["format"] == "2014-json"
    assert stats["malformed"] == 6 and malformed_lines(stats) == [5, 6, 7, 9, 18]
    assert stats["skipped"] == {"blank": 1}
    assert [r[1] for r in rows if r[0] == "AÉCLAIR00001"] == ["0002005263", "0439023483"]
    assert ("A3LITERAL0001", "0002005263", "3.0", "1390780800", "0.0") in rows
    # Line 17's text and summary quote "overall" and "unixReviewTime": the real fields win.
    assert ("A3TRICKY00001", "B00005N7P0", "5.0", "1391385600", "0.0") in rows


def test_python_literals_are_never_evaluated(tmp_path):
    marker = tmp_path / "evaluated"
    line = b"{'reviewerID': __import__('pathlib').Path(%r).touch(), 'asin': 'x'}" % str(marker)
    with pytest.raises(Malformed):
        parse_object(line, python_literals=True)
    assert not marker.exists()
    assert parse_object(b"{'asin': '0000013714', 'overall': 5.0}", python_literals=True) == {
        "asin": "0000013714",
        "overall": 5.0,
    }


def test_2018_json_keeps_duplicates_unless_dedupe(tmp_path):
    # 21 lines: lines 2 and 6 repeat lines 1 and 5 exactly. Malformed: 8 (overall null),
    # 9 (a tab in the reviewer id), 12 (fractional timestamp). Line 11's 1488412800.0 is an
    # integer. 18 reviews, 6 below 3 (lines 3, 5, 6, 14, 18, 21); 4 users, 3 items.
    stats, rows = run(tmp_path / "all", "amazon_2018_reviews.json")
    assert summary(stats) == (4, 3, 18, 6)
    assert stats["format"] == "2018-json"
    assert malformed_lines(stats) == [8, 9, 12]
    assert rows[0] == rows[1]
    assert ("A1REUF3A1YCPHM", "0002007770", "4.0", "1488412800", "0.0") in rows
    # Line 13 has its keys in another order than the others.
    assert ("A2ZZ0000000000", "0001713353", "4.0", "1490000000", "0.0") in rows

    # 12 distinct (user, item) pairs. The earliest of each is kept: lines 2, 6 (exact repeats)
    # and the later 17, 19, 20, 21 go; of the false positives, 6 and 21 go.
    stats, rows = run(tmp_path / "dedupe", "amazon_2018_reviews.json", dedupe=True)
    assert summary(stats) == (4, 3, 12, 4)
    assert stats["removed"] == {"duplicates": 6, "kcore": 0}
    assert len({r[:2] for r in rows}) == len(rows)
    assert ("A3NOZJ6MFV3BMT", "0002007770", "5.0", "1488326400", "0.0") in rows


def test_2023_jsonl_uses_parent_asin_and_seconds(tmp_path):
    # 20 lines, no final newline. Malformed: 6 (no parent_asin), 7 (rating "4 stars"),
    # 13 (rating null), 15 (no timestamp). 16 reviews, 5 below 3 (lines 2, 3, 9, 11, 16);
    # 5 users; items are parent ASINs: 5.
    stats, rows = run(tmp_path, "amazon_2023_reviews.jsonl")
    assert summary(stats) == (5, 5, 16, 5)
    assert stats["format"] == "2023-json"
    assert malformed_lines(stats) == [6, 7, 13, 15]
    assert ("AHATA6X6MYTC3VNBFJ3WIYVK257A", "B081TJ8YS3", "1.0", "1650000001.5", "1.0") in rows
    assert rows[0] == ("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B00YQ6X8EO", "5.0", "1588687728.923", "0.0")
    assert "B01N5GH9E4" not in {r[1] for r in rows}  # the variant asin is not the item
    assert rows[-1][3] == "1609459202.999"  # the last line, without a newline


def test_kcore(tmp_path):
    # 3-core of the 2014 CSV, by hand: drop items 0002005263 and B00005N7P0 (2 ratings each),
    # then AZ9X3KJL0QW2E (2 left), then 000001371X (2 left), then A3GJ7Q3ZK1X8HB (2 left).
    # Left: 3 users x 3 items, 10 ratings, 3 below 3.
    stats, rows = run(tmp_path, "amazon_2014_ratings.csv", format="2014-csv", kcore=3)
    assert summary(stats) == (3, 3, 10, 3)
    assert stats["removed"] == {"duplicates": 0, "kcore": 10}
    assert {r[0] for r in rows} == {"A2SUAM1J3GNN3B", "A1Z7Y2G3O5G8AX", "A14OJS0VWMOSWO"}
    assert {r[1] for r in rows} == {"0000013714", "0001712799", "0439023483"}


def test_json_format_rejects_csv_and_foreign_json(tmp_path):
    with pytest.raises(ValueError, match="not JSON lines"):
        convert("amazon", [SAMPLES / "amazon_2014_ratings.csv"], tmp_path, format="json")
    with pytest.raises(ValueError, match="not Amazon review JSON"):
        convert("amazon", [SAMPLES / "yelp_review.json"], tmp_path)
    with pytest.raises(ValueError, match="JSON lines, not CSV"):
        convert("amazon", [SAMPLES / "amazon_2014_reviews.json"], tmp_path, format="2014-csv")
