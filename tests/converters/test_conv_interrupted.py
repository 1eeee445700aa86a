"""Interrupted and concurrent conversions, run as subprocesses on 300,000 generated lines.

SIGTERM leaves no temporary file and the old output as it was; after SIGKILL the next run into
the same folder takes over the dead run's lock and removes its temporaries, with a note; a second
conversion into a folder that another is writing fails clearly instead of replacing its output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .util import SAMPLES, read_stats

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LINES = 300_000


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    """Amazon 2018 review lines: 20,011 users, 5,003 items, every line valid and distinct."""
    path = tmp_path_factory.mktemp("raw") / "reviews.json"
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(
            f'{{"overall": {1 + k % 5}.0, "verified": true, "reviewerID": "A{k % 20011:07d}", '
            f'"asin": "{k * 7919 % 5003:010d}", "reviewText": "fine {k}", '
            f'"unixReviewTime": {1111622400 + k}}}\n'
            for k in range(LINES)
        )
    return path


def start(reviews: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    args = ["amazon", "--input", str(reviews), "--output-dir", str(out), "--name", "big", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "dataset_converters", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def wait_until_writing(folder: Path, proc: subprocess.Popen[str]) -> None:
    """Return once the run has written 100 kB to a temporary (its .inter or scratch file)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        temps = list(folder.glob(".*.tmp")) if folder.exists() else []
        if any(p.stat().st_size > 100_000 for p in temps if p.exists()):
            return
        time.sleep(0.005)
    raise AssertionError(f"the conversion did not start writing (exit code {proc.poll()})")


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*"))


SLOW = ("--dedupe", "--kcore", "3")  # more passes over the data: a wider window to interrupt


def test_sigterm_leaves_the_old_output(reviews, tmp_path):
    folder = tmp_path / "out" / "big"
    sample = SAMPLES / "amazon_2018_reviews.json"
    done = subprocess.run(
        [sys.executable, "-m", "dataset_converters", "amazon", "--input", str(sample)]
        + ["--output-dir", str(tmp_path / "out"), "--name", "big"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    proc = start(reviews, tmp_path / "out", "--force", *SLOW)
    wait_until_writing(folder, proc)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "terminated by signal 15; no partial output was left" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == old  # and nothing hidden


def test_sigkill_then_rerun_cleans_up(reviews, tmp_path):
    folder = tmp_path / "out" / "big"
    proc = start(reviews, tmp_path / "out", *SLOW)
    wait_until_writing(folder, proc)
    proc.kill()
    finish(proc)
    left = hidden(folder)
    assert ".big.lock" in left and any(n.startswith(".scratch.") for n in left), left
    assert not (folder / "big.inter").exists()
    code, err = finish(start(reviews, tmp_path / "out"))
    assert code == 0, err
    assert f"took over the lock of conversion pid {proc.pid}, which is no longer running" in err
    assert f"removed {len(left) - 1} temporary file(s) left by an interrupted conversion" in err
    assert hidden(folder) == []
    assert read_stats(folder / "big.stats.json")["interactions"] == LINES


def test_concurrent_conversion_fails_clearly(reviews, tmp_path):
    folder = tmp_path / "out" / "big"
    first = start(reviews, tmp_path / "out", *SLOW)
    wait_until_writing(folder, first)
    code, err = finish(start(reviews, tmp_path / "out", "--force"))
    assert code == 2 and "Traceback" not in err
    assert f"error: another conversion (pid {first.pid}) is writing to {folder}" in err
    code, err = finish(first)
    assert code == 0, err
    assert read_stats(folder / "big.stats.json")["options"]["kcore"] == 3  # the first run's
    assert hidden(folder) == []
    code, err = finish(start(reviews, tmp_path / "out"))  # and later, without --force
    assert code == 2 and "output exists (use --force to overwrite)" in err
