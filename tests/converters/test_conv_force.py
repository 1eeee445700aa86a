"""``--force`` replaces a dataset whole: no file of the old one stays beside the new one.

A dataset ``NAME`` is one interaction file (``NAME.inter``) or the authors' split files
(``NAME.{train,valid,test}.inter``), plus ``NAME.stats.json``. Each case asserts the exit code,
that the new dataset is exactly what a fresh conversion writes (nothing lost), and that nothing
of the old one, and no temporary or lock file, is left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dataset_converters import convert, denoisingrec
from dataset_converters.base import SPLIT_PARTS, dataset_files
from dataset_converters.cli import main

from .test_conv_base import failing_rows
from .util import SAMPLES

SPLIT_FILES = {"yelp.train.inter", "yelp.valid.inter", "yelp.test.inter", "yelp.stats.json"}
SINGLE_FILES = {"yelp.inter", "yelp.stats.json"}


def splits_args(out: Path) -> list[str]:
    """The authors' yelp splits into dataset ``yelp``."""
    return ["denoisingrec", "--input", str(SAMPLES / "denoisingrec_yelp"), "--output-dir", str(out)]


def amazon_args(out: Path) -> list[str]:
    """Amazon ratings into a dataset of the same name, ``yelp``: another source, one file."""
    csv = str(SAMPLES / "amazon_2014_ratings.csv")
    return [
        "amazon",
        "--input",
        csv,
        "--format",
        "2014-csv",
        "--name",
        "yelp",
        "--output-dir",
        str(out),
    ]


def contents(folder: Path) -> dict[str, bytes]:
    """Every entry of the folder (hidden ones too) with its bytes."""
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def fresh(args: list[str], folder: Path) -> dict[str, bytes]:
    """What the conversion writes into an empty folder; its stats name the inputs only."""
    assert main(args(folder)) == 0
    return contents(folder / "yelp")


def test_force_from_another_source_removes_the_old_split_files(tmp_path):
    out = tmp_path / "out"
    assert main(splits_args(out)) == 0
    assert set(contents(out / "yelp")) == SPLIT_FILES

    assert main([*amazon_args(out), "--force"]) == 0

    assert contents(out / "yelp") == fresh(amazon_args, tmp_path / "fresh")
    assert set(contents(out / "yelp")) == SINGLE_FILES  # no split file, temporary or lock


def test_force_back_to_splits_removes_the_single_file(tmp_path):
    out = tmp_path / "out"
    assert main(amazon_args(out)) == 0
    assert main([*splits_args(out), "--force"]) == 0
    assert contents(out / "yelp") == fresh(splits_args, tmp_path / "fresh")
    assert set(contents(out / "yelp")) == SPLIT_FILES


def test_force_from_the_same_source_is_idempotent(tmp_path):
    out = tmp_path / "out"
    assert main(splits_args(out)) == 0
    first = contents(out / "yelp")
    assert main([*splits_args(out), "--force"]) == 0
    assert main([*splits_args(out), "--force"]) == 0
    assert contents(out / "yelp") == first


def test_without_force_another_shape_is_refused_and_nothing_changes(tmp_path, capsys):
    """The old split files count as the dataset: no new NAME.inter appears beside them."""
    out = tmp_path / "out"
    assert main(splits_args(out)) == 0
    before = contents(out / "yelp")
    capsys.readouterr()
    assert main(amazon_args(out)) == 2
    err = capsys.readouterr().err
    assert "output exists (use --force to overwrite)" in err and "yelp.train.inter" in err
    assert contents(out / "yelp") == before


def test_force_keeps_files_that_are_not_the_datasets(tmp_path):
    """Only the dataset's own names are replaced: the user's notes and features stay."""
    out = tmp_path / "out"
    assert main(splits_args(out)) == 0
    mine = {"yelp.item": b"item_id:token\n0\n", "README.txt": b"mine\n"}
    for name, data in mine.items():
        (out / "yelp" / name).write_bytes(data)
    assert main([*amazon_args(out), "--force"]) == 0
    left = contents(out / "yelp")
    assert set(left) == SINGLE_FILES | set(mine)
    assert all(left[name] == data for name, data in mine.items())


def test_a_forced_conversion_that_fails_keeps_the_old_dataset_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(splits_args(out)) == 0
    before = contents(out / "yelp")
    failing_rows(monkeypatch, 5, RuntimeError)
    with pytest.raises(RuntimeError):
        convert(
            "amazon",
            [SAMPLES / "amazon_2014_ratings.csv"],
            out,
            name="yelp",
            format="2014-csv",
            force=True,
        )
    assert contents(out / "yelp") == before  # split files, stats; no temporary, no lock


def test_dataset_files_name_every_file_a_converter_writes():
    assert set(denoisingrec.SPLITS) == set(SPLIT_PARTS)
    assert set(dataset_files("yelp")) == SPLIT_FILES | SINGLE_FILES
