"""Adressa: day files (or their folder), clicks only, dwell time < 10 s is a false positive.

20170101 (14 lines): clicks with activeTime on lines 1 (9 s), 2 (10 s), 4 (11 s), 6 (0 s),
10 (45 s, a repeat of line 1's user and article) and 13 (120 s); line 5 is a click without
activeTime; lines 3 and 11 are front-page events (no id), line 7 has no userId; malformed: 8
(truncated), 9 (activeTime "abc"), 14 (no time); 12 is blank.
20170102 (8 lines, no final newline): clicks on lines 1 (5 s), 2 (9 s), 4 (10 s), 5 (8 s, the
same pair as 20170101's line 1 but earlier in time) and 7 (12.5 s); line 6 is a click without
activeTime; line 3 is a front-page event; line 8 is a JSON string, not an object.
The folder also holds a hidden file, .notes, which is not an input.
"""

from __future__ import annotations

import pytest

from dataset_converters import convert

from .util import SAMPLES, counts, malformed_lines, read_inter, summary

FOLDER = SAMPLES / "adressa"
C1 = "cx:i2dv6hts0usehzl4:1pa7tabxh2bh0"
D1 = "fd6d9d2ad7c6b7ad6ab2c8d64fc8a3c9f6b09c4f"


def run(tmp_path, inputs=(FOLDER,), **options):
    stats = convert("adressa", list(inputs), tmp_path, **options)
    columns, rows = read_inter(tmp_path / "adressa" / "adressa.inter")
    assert columns == [
        "user_id:token",
        "item_id:token",
        "dwell_time:float",
        "timestamp:float",
        "false_positive:float",
    ]
    assert counts(rows) == summary(stats)
    return stats, rows


def test_folder_counts_and_dwell_boundary(tmp_path):
    # 11 clicks with a dwell time; below 10 s: 9, 0, 5, 9, 8 -> 5. 4 users, 4 articles.
    stats, rows = run(tmp_path)
    assert summary(stats) == (4, 4, 11, 5)
    assert stats["inputs"] == [str(FOLDER / "20170101"), str(FOLDER / "20170102")]
    assert stats["lines"] == 22
    assert stats["skipped"] == {"blank": 1, "missing_active_time": 2, "not_a_click": 4}
    assert stats["clicks_without_active_time"] == 2
    assert stats["missing_active_time"] == "drop"
    assert stats["malformed"] == 4 and malformed_lines(stats) == [8, 9, 14, 8]
    flags = {r[2]: r[4] for r in rows}
    assert (flags["9"], flags["10"], flags["11"]) == ("1.0", "0.0", "0.0")  # 10 s is clean
    assert flags["12.5"] == "0.0"


def test_day_files_as_inputs(tmp_path):
    stats, rows = run(tmp_path / "a", [FOLDER / "20170101", FOLDER / "20170102"])
    _, folder_rows = run(tmp_path / "b")
    assert rows == folder_rows
    assert summary(stats) == (4, 4, 11, 5)


def test_missing_active_time_as_false_positive(tmp_path):
    stats, rows = run(tmp_path, missing_active_time="fp")
    assert summary(stats) == (4, 4, 13, 7)
    assert "missing_active_time" not in stats["skipped"]
    assert stats["options"]["missing_active_time"] == "fp"
    assert sorted(r[:3] + r[4:] for r in rows if r[2] == "0") == [
        (
            "cx:14866962453641357491374:ddd3hbcbvjkr",
            "c2f0ec3fd8dc1b1d71e6d5e8e4a9d3d8c2a2c3c4",
            "0",
            "1.0",
        ),  # a real 0 s dwell (20170101 line 6)
        ("cx:14866962453641357491374:ddd3hbcbvjkr", D1, "0", "1.0"),  # 20170102 line 6
        (C1, "7ba3b4b6ddb9a8c88ac8d9b9fbf00c5a4c7fbfe9", "0", "1.0"),  # 20170101 line 5
    ]


def test_dedupe_keeps_the_earliest_click(tmp_path):
    # (C1, D1) was clicked three times; the earliest is 20170102 line 5 (8 s, a false positive).
    stats, rows = run(tmp_path, dedupe=True)
    assert summary(stats) == (4, 4, 9, 4)
    assert [r for r in rows if r[:2] == (C1, D1)] == [(C1, D1, "8", "1483225100", "1.0")]


def test_bad_option_and_wrong_file(tmp_path):
    with pytest.raises(ValueError, match="missing_active_time"):
        convert("adressa", [FOLDER], tmp_path, missing_active_time="keep")
    with pytest.raises(ValueError, match="not an Adressa event file"):
        convert("adressa", [SAMPLES / "yelp_business.json"], tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        convert("adressa", [empty], tmp_path)
