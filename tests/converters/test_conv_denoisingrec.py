"""The authors' preprocessed splits: flag 1 = clean, so false_positive = 1 - flag.

denoisingrec_yelp: yelp.train.rating (CRLF, 14 lines) has 11 rows, 3 with flag 0, a blank line
and 2 malformed lines (7: item "x", 12: flag "yes"); yelp.valid.rating (no final newline) has 5
rows, 2 with flag 0; yelp.test.negative has 4 clean rows. Users over all splits: 0-5 in train, 6
in valid, 7 in test = 8. Items: 0-5, and 6 in test = 7.
denoisingrec_adressa: 15 train rows (5 flagged 0), 2 valid rows, and a test file of (u, i)
tuples followed by negatives: 4 rows, line 3 "(4 5)" is malformed. Users 0-4 = 5 (4 only in
train); items 0-3 in train, 4-6 only in test = 7.
"""

from __future__ import annotations

import shutil

import pytest

from dataset_converters import convert

from .util import SAMPLES, counts, read_inter, read_stats, summary


def test_yelp_splits_crlf_and_no_final_newline(tmp_path):
    stats = convert("denoisingrec", [SAMPLES / "denoisingrec_yelp"], tmp_path)
    out = tmp_path / "yelp"
    assert summary(stats) == (8, 7, 11, 3)  # Table 2's convention: interactions of train
    assert stats["interactions_counted_over"] == "train"
    assert stats["splits"] == {
        "train": {"users": 6, "items": 6, "interactions": 11, "false_positives": 3},
        "valid": {"users": 5, "items": 5, "interactions": 5, "false_positives": 2},
        "test": {"users": 4, "items": 4, "interactions": 4, "false_positives": 0},
    }
    assert stats["files"] == ["yelp.train.inter", "yelp.valid.inter", "yelp.test.inter"]
    assert read_stats(out / "yelp.stats.json") == stats
    assert stats["skipped"] == {"blank": 1} and stats["malformed"] == 2
    for split in ("train", "valid", "test"):
        columns, rows = read_inter(out / f"yelp.{split}.inter")
        assert columns == ["user_id:token", "item_id:token", "false_positive:float"]
        assert counts(rows)[2:] == tuple(
            stats["splits"][split][k] for k in ("interactions", "false_positives")
        )
        assert not any("\r" in value for row in rows for value in row)
    _, train = read_inter(out / "yelp.train.inter")
    assert train[:2] == [("0", "0", "0.0"), ("0", "1", "1.0")]  # flag 1 -> clean, 0 -> FP
    _, valid = read_inter(out / "yelp.valid.inter")
    assert valid[-1] == ("6", "1", "1.0")  # the last line had no newline


def test_adressa_tuple_test_lines(tmp_path):
    stats = convert("denoisingrec", [SAMPLES / "denoisingrec_adressa"], tmp_path)
    assert summary(stats) == (5, 7, 15, 5)
    _, test = read_inter(tmp_path / "adressa" / "adressa.test.inter")
    assert test == [("0", "3", "0.0"), ("1", "4", "0.0"), ("3", "5", "0.0"), ("2", "6", "0.0")]
    assert stats["malformed_first"] == [
        f"{SAMPLES / 'denoisingrec_adressa' / 'adressa.test.negative'}:3: "
        "expected a (user, item) tuple"
    ]


def test_prefix_choice_and_output_name(tmp_path):
    both = tmp_path / "both"
    shutil.copytree(SAMPLES / "denoisingrec_yelp", both)
    for f in (SAMPLES / "denoisingrec_adressa").iterdir():
        shutil.copy(f, both)
    with pytest.raises(ValueError, match="several datasets"):
        convert("denoisingrec", [both], tmp_path / "out")
    stats = convert("denoisingrec", [both], tmp_path / "out", name="adressa")
    assert stats["dataset"] == "adressa" and stats["users"] == 5
    stats = convert(
        "denoisingrec", [SAMPLES / "denoisingrec_yelp"], tmp_path / "out", name="yelp-authors"
    )
    assert (tmp_path / "out" / "yelp-authors" / "yelp-authors.train.inter").is_file()


def test_missing_split_and_bad_inputs(tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(SAMPLES / "denoisingrec_yelp", folder)
    (folder / "yelp.valid.rating").unlink()
    with pytest.raises(ValueError, match="yelp.valid.rating"):
        convert("denoisingrec", [folder], tmp_path / "out")
    with pytest.raises(ValueError, match="folder"):
        convert("denoisingrec", [SAMPLES / "denoisingrec_yelp" / "yelp.train.rating"], tmp_path)
    with pytest.raises(ValueError, match="no NAME.train.rating"):
        convert("denoisingrec", [SAMPLES / "adressa"], tmp_path)
    with pytest.raises(ValueError, match="unknown option"):  # the authors' split stays as is
        convert("denoisingrec", [SAMPLES / "denoisingrec_yelp"], tmp_path, dedupe=True)
    (folder / "yelp.valid.rating").write_text("user item flag\n")
    with pytest.raises(ValueError, match="not in the authors' valid format"):
        convert("denoisingrec", [folder], tmp_path / "out")
