"""Shared machinery: atomic output, streaming in small blocks, flags and options."""

from __future__ import annotations

import pytest

from dataset_converters import amazon, base, convert

from .util import SAMPLES, read_inter, summary


def failing_rows(monkeypatch, after: int, error: type[BaseException]) -> None:
    """Make the Amazon CSV reader yield ``after`` rows and then fail midway."""
    real = amazon._csv_rows

    def rows(*args, **kwargs):
        for batch in real(*args, **kwargs):
            yield batch[:after]
            raise error("simulated failure")

    monkeypatch.setattr(amazon, "_csv_rows", rows)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_midway_leaves_old_output_intact(error, tmp_path, monkeypatch):
    csv = [SAMPLES / "amazon_2014_ratings.csv"]
    convert("amazon", csv, tmp_path, format="2014-csv")
    folder = tmp_path / "amazon"
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    failing_rows(monkeypatch, 5, error)
    with pytest.raises(error):
        convert("amazon", csv, tmp_path, format="2014-csv", force=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == old  # no temp files either


def test_failure_midway_leaves_no_inter(tmp_path, monkeypatch):
    failing_rows(monkeypatch, 5, RuntimeError)
    with pytest.raises(RuntimeError):
        convert("amazon", [SAMPLES / "amazon_2014_ratings.csv"], tmp_path, format="2014-csv")
    assert list(tmp_path.iterdir()) == []  # not even the dataset folder


def test_failure_in_dedupe_pass_cleans_scratch(tmp_path, monkeypatch):
    def boom(*args):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(base, "_kcore", boom)
    with pytest.raises(RuntimeError):
        convert(
            "amazon",
            [SAMPLES / "amazon_2014_ratings.csv"],
            tmp_path,
            format="2014-csv",
            kcore=2,
            dedupe=True,
        )
    assert list(tmp_path.iterdir()) == []


def test_overwrite_refused_via_api(tmp_path):
    convert("ml-100k", [SAMPLES / "ml100k_sample.inter"], tmp_path)
    with pytest.raises(FileExistsError):
        convert("ml-100k", [SAMPLES / "ml100k_sample.inter"], tmp_path)


@pytest.mark.parametrize(
    "source, sample, options",
    [
        ("amazon", "amazon_2014_reviews.json", {}),
        ("amazon", "amazon_2018_reviews.json", {}),
        ("amazon", "amazon_2014_ratings.csv", {"format": "2014-csv"}),
        ("yelp", "yelp_review.json", {"business": SAMPLES / "yelp_business.json"}),
        ("adressa", "adressa", {}),
    ],
)
def test_tiny_read_blocks_give_the_same_result(source, sample, options, tmp_path, monkeypatch):
    """Blocks of 64 bytes split lines across reads: output and line numbers must not change."""
    stats = convert(source, [SAMPLES / sample], tmp_path / "big", **options)
    monkeypatch.setattr(base, "BATCH_BYTES", 64)
    small = convert(source, [SAMPLES / sample], tmp_path / "small", **options)
    name = stats["dataset"]
    assert read_inter(tmp_path / "big" / name / f"{name}.inter") == read_inter(
        tmp_path / "small" / name / f"{name}.inter"
    )
    assert {k: v for k, v in small.items() if k != "inputs"} == {
        k: v for k, v in stats.items() if k != "inputs"
    }


def test_strict_stops_at_the_first_malformed_line(tmp_path):
    with pytest.raises(ValueError, match=r"adressa/20170101:8: broken JSON"):
        convert("adressa", [SAMPLES / "adressa"], tmp_path, strict=True)
    assert list(tmp_path.iterdir()) == []


def test_flag_threshold():
    flag = base.FlagBelow(10)
    assert [flag(v) for v in (b"9", b"9.99", b"10", b"10.0", b"11", b"-1")] == [
        base.FP,
        base.FP,
        base.TP,
        base.TP,
        base.TP,
        base.FP,
    ]
    for bad in (b"nan", b"inf", b"abc", b"1_0", b""):
        with pytest.raises(ValueError):
            flag(bad)


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown option"):
        convert("amazon", [SAMPLES / "amazon_2014_reviews.json"], ".", fromat="json")
    with pytest.raises(ValueError, match="unknown source"):
        convert("netflix", [SAMPLES / "amazon_2014_reviews.json"], ".")
    with pytest.raises(ValueError, match="kcore"):
        convert("amazon", [SAMPLES / "amazon_2014_reviews.json"], ".", kcore=-2)
    with pytest.raises(ValueError, match="dataset name"):
        convert("amazon", [SAMPLES / "amazon_2014_reviews.json"], ".", name="../x")


def test_gzip_input(tmp_path):
    import gzip

    packed = tmp_path / "reviews.json.gz"
    packed.write_bytes(gzip.compress((SAMPLES / "amazon_2018_reviews.json").read_bytes()))
    stats = convert("amazon", [packed], tmp_path / "out")
    assert summary(stats) == (4, 3, 18, 6)
