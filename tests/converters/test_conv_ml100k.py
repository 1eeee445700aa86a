"""ml-100k: RecBole's bundled atomic file (typed header), rating < 3 is a false positive."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dataset_converters import convert

from .util import SAMPLES, counts, malformed_lines, read_inter, summary


def bundled() -> Path | None:
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "dataset_example" / "ml-100k" / "ml-100k.inter"
    return path if path.is_file() else None


@pytest.mark.skipif(bundled() is None, reason="recbole's bundled ml-100k.inter is not installed")
def test_bundled_ml100k(tmp_path):
    stats = convert("ml-100k", [bundled()], tmp_path)
    assert stats["dataset"] == "ml-100k-fp"
    # awk -F'\t' 'NR>1 && $3<3' ml-100k.inter | wc -l  ->  17480 ratings of 1 or 2
    assert summary(stats) == (943, 1682, 100000, 17480)
    columns, rows = read_inter(tmp_path / "ml-100k-fp" / "ml-100k-fp.inter")
    assert columns == [
        "user_id:token",
        "item_id:token",
        "rating:float",
        "timestamp:float",
        "false_positive:float",
    ]
    assert rows[0] == ("196", "242", "3", "881250949", "0.0")
    assert counts(rows) == summary(stats)


def test_sample_with_bad_lines(tmp_path):
    # 20 rows under the header: "three" (line 17) and a 3-field row (line 18) are malformed;
    # 18 ratings remain, 7 of them 1 or 2; 17 users, 17 items.
    stats = convert("ml-100k", [SAMPLES / "ml100k_sample.inter"], tmp_path, name="tiny")
    assert summary(stats) == (17, 17, 18, 7)
    assert malformed_lines(stats) == [17, 18]
    assert (tmp_path / "tiny" / "tiny.inter").is_file()


def test_rejects_a_file_without_typed_header(tmp_path):
    with pytest.raises(ValueError, match="atomic"):
        convert("ml-100k", [SAMPLES / "amazon_2014_ratings.csv"], tmp_path)
