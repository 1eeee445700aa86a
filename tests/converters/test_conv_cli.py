"""The command line: help, the Table 2 printout, and exit code 2 for every kind of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_converters import SOURCES
from dataset_converters.cli import main, table

from .util import SAMPLES, read_stats

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {  # each source's own options, which its --help must document
    "amazon": ["--format", "2014-csv", "2018-csv", "2023-csv", "json"],
    "yelp": ["--business", "--categories"],
    "adressa": ["--missing-active-time"],
    "denoisingrec": [],
    "ml-100k": [],
}


def python_m(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dataset_converters", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_module_help_lists_sources(tmp_path):
    done = python_m("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert set(OPTIONS) == set(SOURCES)
    for source in SOURCES:
        assert source in done.stdout


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_each_source_help(source, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([source, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--input", "--output-dir", "--name", "--force", "--strict", *OPTIONS[source]):
        assert option in text
    assert ("--dedupe" in text and "--kcore" in text) == (source != "denoisingrec")


def test_prints_table_2_row(tmp_path):
    done = python_m(
        "amazon",
        "--input",
        str(SAMPLES / "amazon_2014_ratings.csv"),
        "--format",
        "2014-csv",
        "--output-dir",
        str(tmp_path),
        "--name",
        "amazon-book",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["Dataset", "#User", "#Item", "#Interaction", "#FP Interaction"]
    assert cells[2] == ["amazon-book", "5", "6", "20", "6"]
    assert "3 malformed line(s)" in done.stderr and "amazon_2014_ratings.csv:6:" in done.stderr
    stats = read_stats(tmp_path / "amazon-book" / "amazon-book.stats.json")
    assert stats["options"] == {"strict": False, "dedupe": False, "kcore": 0, "format": "2014-csv"}


def test_table_uses_thousands_separators():
    text = table(
        [
            {
                "dataset": "amazon-book",
                "users": 80464,
                "items": 98663,
                "interactions": 2714021,
                "false_positives": 199475,
            }
        ]
    )
    assert "| amazon-book | 80,464 | 98,663 |    2,714,021 |         199,475 |" in text


BAD = {
    "csv without --format": ["amazon", "--input", "{samples}/amazon_2014_ratings.csv"],
    "missing file": ["amazon", "--input", "{tmp}/nope.json"],
    "empty file": ["amazon", "--input", "{tmp}/empty.json"],
    "wrong format": ["amazon", "--input", "{samples}/yelp_review.json"],
    "strict": ["amazon", "--input", "{samples}/amazon_2014_reviews.json", "--strict"],
    "yelp without --business": ["yelp", "--input", "{samples}/yelp_review.json"],
    "unknown --format": [
        "amazon",
        "--input",
        "{samples}/amazon_2014_ratings.csv",
        "--format",
        "2015-csv",
    ],
    "negative --kcore": ["ml-100k", "--input", "{samples}/ml100k_sample.inter", "--kcore", "-1"],
    "unwritable output": [
        "ml-100k",
        "--input",
        "{samples}/ml100k_sample.inter",
        "--output-dir",
        "{tmp}/empty.json/below-a-file",
    ],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2(case, tmp_path, capsys):
    (tmp_path / "empty.json").write_text("\n\n")
    args = [a.format(samples=SAMPLES, tmp=tmp_path) for a in BAD[case]]
    if "--output-dir" not in args:
        args += ["--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_:
        sys.exit(main(args))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error" in err
    if case == "strict":
        assert "amazon_2014_reviews.json:5: broken JSON" in err
    assert not list(tmp_path.glob("out/*/*.inter"))


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    args = [
        "ml-100k",
        "--input",
        str(SAMPLES / "ml100k_sample.inter"),
        "--output-dir",
        str(tmp_path),
    ]
    assert main(args) == 0
    inter = tmp_path / "ml-100k-fp" / "ml-100k-fp.inter"
    before = inter.read_bytes()
    inter.write_bytes(before + b"marker\n")
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert inter.read_bytes() == before + b"marker\n"  # untouched
    assert main([*args, "--force"]) == 0
    assert inter.read_bytes() == before
