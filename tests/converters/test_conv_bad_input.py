"""A corpus of bad inputs: each gives a clear error (exit 2) or a counted skip, never a wrong
label, a traceback, or a partial or stale file in the output folder.

Each case writes a few small files, runs the CLI in-process and checks the exit code, that no
traceback is printed, that the message names the problem, that the output folder holds no hidden
temporary or lock file (and, on an error, no output at all), and that every ``.inter`` written
reads back as UTF-8 text the way RecBole reads it (pandas, tab-separated).
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dataset_converters import base, convert
from dataset_converters.cli import main

from .util import SAMPLES, read_inter, read_stats

ML_HEADER = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
DOC = "d" * 40  # an Adressa article id


def amazon(*ratings: object, user: str = "A{}") -> bytes:
    """Amazon 2018 review lines, one per rating; users A0, A1, ..., items 000000000{k % 3}."""
    return b"".join(
        json.dumps(
            {
                "overall": r,
                "verified": True,
                "reviewerID": user.format(k),
                "asin": f"00000000{k % 3:02d}",
                "unixReviewTime": 1111622400 + k,
            }
        ).encode()
        + b"\n"
        for k, r in enumerate(ratings)
    )


def csv(*rows: str) -> bytes:
    return "".join(f"{r}\n" for r in rows).encode()


def ml(*rows: bytes) -> bytes:
    return ML_HEADER + b"".join(r + b"\n" for r in rows)


def yelp_reviews(*rows: tuple[bytes, object]) -> bytes:
    """Reviews (user, stars) of the restaurant B1."""
    return b"".join(
        b'{"review_id":"R%d","user_id":"%s","business_id":"B1","stars":%s,'
        b'"text":"ok","date":"2018-01-0%d 10:00:00"}\n' % (k, u, str(s).encode(), k % 9 + 1)
        for k, (u, s) in enumerate(rows)
    )


BUSINESS = b'{"business_id":"B1","name":"X","categories":"Restaurants, Pizza"}\n'


def adressa(*events: tuple[bytes, object]) -> bytes:
    """Article clicks (userId, activeTime)."""
    return b"".join(
        b'{"eventId":%d,"activeTime":%s,"time":%d,"userId":"%s","id":"%s"}\n'
        % (k, str(a).encode(), 1483225200 + k, u, DOC.encode())
        for k, (u, a) in enumerate(events)
    )


def splits(train: bytes) -> dict[str, bytes]:
    """The authors' three files with this training file."""
    return {
        "in/d.train.rating": train,
        "in/d.valid.rating": b"0\t1\t1\n1\t0\t0\n",
        "in/d.test.negative": b"0\t2\t5\t6\n",
    }


def big_gzip() -> bytes:
    """20,000 review lines, gzipped (about 150 kB)."""
    return gzip.compress(amazon(*(1 + k % 5 for k in range(20_000)), user="A{:09d}"))


def corrupt_gzip() -> bytes:
    packed = bytearray(big_gzip())
    packed[len(packed) // 2] ^= 0xFF
    return bytes(packed)


def zipped() -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("reviews.json", amazon(5.0))
    return buffer.getvalue()


@dataclasses.dataclass
class Case:
    files: dict[str, bytes]
    args: list[str]
    code: int
    message: str  # a regex that the printed output must match
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)  # expected stats entries


AMAZON = ["amazon", "--input", "{tmp}/in.json"]
CSV14 = ["amazon", "--input", "{tmp}/in.csv", "--format", "2014-csv"]
ML = ["ml-100k", "--input", "{tmp}/in.inter"]
YELP = ["yelp", "--input", "{tmp}/review.json", "--business", "{tmp}/business.json"]
ADRESSA = ["adressa", "--input", "{tmp}/day"]
DENOISING = ["denoisingrec", "--input", "{tmp}/in"]
OUT_OF_RANGE = r"1 malformed line\(s\) skipped, first: .*{} is out of range \(allowed: {}\)"

CASES: dict[str, Case] = {
    # -- silent wrong results: now refused, or counted and never labelled ------------------
    "wrong/denoisingrec third column holds ratings": Case(
        splits(b"196\t242\t3\n186\t302\t3\n22\t377\t1\n"),
        DENOISING,
        2,
        r"d\.train\.rating: the third column holds 3, but .* 0/1 flag .* looks like a file of "
        r"ratings.* ml-100k converter",
    ),
    "wrong/denoisingrec stray flag 2 after valid lines": Case(
        splits(b"0\t0\t1\n0\t1\t0\n1\t0\t1\n1\t1\t1\n2\t2\t2\n"),
        DENOISING,
        2,
        r"d\.train\.rating:5: the third column holds 2, but",
    ),
    "wrong/denoisingrec flag 'yes' is malformed": Case(
        splits(b"0\t0\t1\n0\t1\tyes\n1\t0\t0\n"),
        DENOISING,
        0,
        r"1 malformed line\(s\) skipped, first: .*d\.train\.rating:2: flag 'yes' is not 0 or 1",
        {"malformed": 1, "interactions": 2},
    ),
    "wrong/denoisingrec empty flag cell is malformed": Case(
        splits(b"0\t0\t1\n0\t1\t\n1\t0\t0\n"),
        DENOISING,
        0,
        r"d\.train\.rating:2: expected user, item and a 0/1 flag",
        {"malformed": 1, "interactions": 2},
    ),
    "wrong/amazon json rating 7": Case(
        {"in.json": amazon(5.0, 7.0, 1.0, 4.0)},
        AMAZON,
        0,
        OUT_OF_RANGE.format(r"in\.json:2: rating 7\.0", "1 to 5"),
        {"malformed": 1, "interactions": 3, "false_positives": 1},
    ),
    "wrong/amazon json rating 0": Case(
        {"in.json": amazon(5.0, 4.0, 0.0)},
        AMAZON,
        0,
        OUT_OF_RANGE.format(r"in\.json:3: rating 0\.0", "1 to 5"),
        {"malformed": 1, "interactions": 2, "false_positives": 0},
    ),
    "wrong/amazon 2014 csv rating 6": Case(
        {"in.csv": csv("A1,0001,5.0,100", "A2,0002,6.0,100", "A3,0003,2.0,100")},
        CSV14,
        0,
        OUT_OF_RANGE.format(r"in\.csv:2: rating 6\.0", "1 to 5"),
        {"malformed": 1, "interactions": 2, "false_positives": 1},
    ),
    "wrong/amazon 2018 csv rating -1": Case(
        {"in.csv": csv("0001,A1,5.0,100", "0002,A2,-1,100")},
        ["amazon", "--input", "{tmp}/in.csv", "--format", "2018-csv"],
        0,
        OUT_OF_RANGE.format(r"in\.csv:2: rating -1", "1 to 5"),
        {"malformed": 1, "interactions": 1, "false_positives": 0},
    ),
    "wrong/yelp stars 0": Case(
        {
            "review.json": yelp_reviews((b"U1", 5), (b"U2", 0), (b"U3", 2)),
            "business.json": BUSINESS,
        },
        YELP,
        0,
        OUT_OF_RANGE.format(r"review\.json:2: stars 0", "1 to 5"),
        {"malformed": 1, "interactions": 2, "false_positives": 1},
    ),
    "wrong/ml-100k rating 10": Case(
        {"in.inter": ml(b"1\t2\t4\t100", b"1\t3\t10\t100", b"2\t2\t1\t100")},
        ML,
        0,
        OUT_OF_RANGE.format(r"in\.inter:3: rating 10", "1 to 5"),
        {"malformed": 1, "interactions": 2, "false_positives": 1},
    ),
    "wrong/adressa negative activeTime": Case(
        {"day/20170101": adressa((b"cx:1", 30), (b"cx:2", -3), (b"cx:3", 5))},
        ADRESSA,
        0,
        OUT_OF_RANGE.format(r"20170101:2: activeTime -3", ">= 0"),
        {"malformed": 1, "interactions": 2, "false_positives": 1},
    ),
    "wrong/every rating out of range": Case(
        {"in.json": amazon(0.0, 6.0, 9.0)},
        AMAZON,
        2,
        r"no interactions left from .*in\.json \(3 lines, 3 malformed",
    ),
    "wrong/out of range under --strict": Case(
        {"in.json": amazon(5.0, 7.0)},
        [*AMAZON, "--strict"],
        2,
        r"malformed line \(--strict\): .*in\.json:2: rating 7\.0 is out of range",
    ),
    # -- ids that are not valid UTF-8, or that RecBole's reader would misparse --------------
    "ids/amazon csv user not UTF-8": Case(
        {"in.csv": b"A1,0001,5.0,100\nA\xff\xfe,0002,4.0,100\nA3,0003,2.0,100\n"},
        CSV14,
        0,
        r"in\.csv:2: id b'A\\xff\\xfe' is not valid UTF-8",
        {"malformed": 1, "interactions": 2},
    ),
    "ids/amazon json id not UTF-8 (fast reader)": Case(
        {"in.json": amazon(5.0, 4.0) + amazon(3.0).replace(b'"A0"', b'"A\xc3"')},
        AMAZON,
        0,
        r"in\.json:3: id b'A\\xc3' is not valid UTF-8",
        {"malformed": 1, "interactions": 2},
    ),
    "ids/amazon json lone surrogate escape": Case(
        {"in.json": amazon(5.0) + amazon(4.0).replace(b'"A0"', b'"A\\ud800"').replace(b"{", b"{ ")},
        AMAZON,
        0,
        r"in\.json:2: bad reviewerID",
        {"malformed": 1, "interactions": 1},
    ),
    "ids/amazon csv id with a quote": Case(
        {"in.csv": csv("A1,0001,5.0,100", '"""A2""",0002,4.0,100')},
        CSV14,
        0,
        r"in\.csv:2: id '\"A2\"' holds a double quote",
        {"malformed": 1, "interactions": 1},
    ),
    "ids/ml-100k item not UTF-8": Case(
        {"in.inter": ml(b"1\t2\t4\t100", b"1\t\xe9t\xe9\t4\t100", b"2\t\xc3\xa9t\xc3\xa9\t4\t100")},
        ML,
        0,
        r"in\.inter:3: id b'\\xe9t\\xe9' is not valid UTF-8",
        {"malformed": 1, "interactions": 2},  # the UTF-8 "été" is kept
    ),
    "ids/ml-100k id with a leading quote": Case(
        {"in.inter": ml(b"1\t2\t4\t100", b'"1\t3\t4\t100')},
        ML,
        0,
        r"in\.inter:3: id '\"1' holds a double quote",
        {"malformed": 1, "interactions": 1},
    ),
    "ids/yelp user not UTF-8": Case(
        {"review.json": yelp_reviews((b"U1", 5), (b"U\x80", 4)), "business.json": BUSINESS},
        YELP,
        0,
        r"review\.json:2: id b'U\\x80' is not valid UTF-8",
        {"malformed": 1, "interactions": 1},
    ),
    "ids/adressa userId not UTF-8": Case(
        {"day/20170101": adressa((b"cx:1", 30), (b"cx:\xff", 30))},
        ADRESSA,
        0,
        r"20170101:2: id b'cx:\\xff' is not valid UTF-8",
        {"malformed": 1, "interactions": 1},
    ),
    # -- damaged, compressed or mis-encoded files -------------------------------------------
    "files/truncated gzip": Case(
        {"in.json.gz": big_gzip()[:50_000]},
        ["amazon", "--input", "{tmp}/in.json.gz"],
        2,
        r"in\.json\.gz: corrupt or truncated gzip data after line [1-9][\d,]+ \(Compressed file "
        r"ended",
    ),
    "files/corrupt gzip": Case(
        {"in.json.gz": corrupt_gzip()},
        ["amazon", "--input", "{tmp}/in.json.gz"],
        2,
        r"in\.json\.gz: corrupt or truncated gzip data after line [1-9][\d,]+ .*download",
    ),
    "files/gzip magic, garbage after": Case(
        {"in.json.gz": b"\x1f\x8b" + b"garbage" * 10},
        ["amazon", "--input", "{tmp}/in.json.gz"],
        2,
        r"in\.json\.gz: corrupt or truncated gzip data after line 0",
    ),
    "files/bzip2": Case(
        {"in.json.bz2": bz2.compress(amazon(5.0))},
        ["amazon", "--input", "{tmp}/in.json.bz2"],
        2,
        r"in\.json\.bz2 is bzip2-compressed, not text lines: decompress it \(bunzip2\) first",
    ),
    "files/zip": Case(
        {"in.zip": zipped()},
        ["amazon", "--input", "{tmp}/in.zip"],
        2,
        r"in\.zip is a zip archive, not text lines: unzip it first",
    ),
    "files/UTF-16": Case(
        {"in.csv": "\ufeffA1,0001,5.0,100\n".encode("utf-16")},
        CSV14,
        2,
        r"in\.csv is UTF-16 text, not text lines: save it as UTF-8 first",
    ),
    "files/JSON array instead of JSON lines": Case(
        {"in.json": b"[" + amazon(5.0, 4.0).replace(b"}\n{", b"},{").rstrip() + b"]\n"},
        AMAZON,
        2,
        r"in\.json is not JSON lines: it holds a JSON array.*jq -c",
    ),
    "files/binary garbage": Case(
        {"in.json": bytes(range(256)) * 4},
        AMAZON,
        2,
        r"in\.json is not JSON lines",
    ),
    "files/empty": Case({"in.json": b"\n\n"}, AMAZON, 2, r"input file is empty: .*in\.json"),
    "files/BOM amazon csv": Case(
        {"in.csv": b"\xef\xbb\xbfA1,0001,5.0,100\nA2,0002,2.0,100\n"},
        CSV14,
        0,
        r"wrote amazon\.inter",
        {"malformed": 0, "interactions": 2, "users": 2},
    ),
    "files/BOM amazon json (gzip)": Case(
        {"in.json.gz": gzip.compress(b"\xef\xbb\xbf" + amazon(5.0, 2.0))},
        ["amazon", "--input", "{tmp}/in.json.gz"],
        0,
        r"wrote amazon\.inter",
        {"malformed": 0, "interactions": 2},
    ),
    "files/BOM ml-100k header": Case(
        {"in.inter": b"\xef\xbb\xbf" + ml(b"1\t2\t4\t100")},
        ML,
        0,
        r"wrote ml-100k-fp\.inter",
        {"malformed": 0, "interactions": 1},
    ),
    "files/BOM denoisingrec": Case(
        splits(b"\xef\xbb\xbf0\t0\t1\n1\t1\t0\n"),
        DENOISING,
        0,
        r"wrote d\.train\.inter",
        {"malformed": 0, "interactions": 2},
    ),
    # -- wrong files, options and names -----------------------------------------------------
    "usage/unknown option": Case({}, [*ML, "--fromat", "json"], 2, r"unrecognized arguments"),
    "usage/--kcore abc": Case({}, [*ML, "--kcore", "abc"], 2, r"--kcore: invalid int value"),
    "usage/unknown --format": Case(
        {}, [*CSV14[:3], "--format", "2015-csv"], 2, r"--format: invalid choice: '2015-csv'"
    ),
    "usage/unknown source": Case({}, ["netflix", "--input", "x"], 2, r"invalid choice: 'netflix'"),
    "usage/missing file": Case({}, AMAZON, 2, r"input file not found: .*in\.json"),
    "usage/input is a folder": Case(
        {"in.json/x": b""}, AMAZON, 2, r"input is not a file: .*in\.json"
    ),
    "usage/csv without --format": Case(
        {"in.csv": csv("A1,0001,5.0,100")},
        ["amazon", "--input", "{tmp}/in.csv"],
        2,
        r"in\.csv is not JSON lines; for a ratings CSV give --format",
    ),
    "usage/review file as --business": Case(
        {"review.json": yelp_reviews((b"U1", 5))},
        ["yelp", "--input", "{tmp}/review.json", "--business", "{tmp}/review.json"],
        2,
        r"--business .*review\.json is not a Yelp business file",
    ),
    "usage/denoisingrec file instead of folder": Case(
        splits(b"0\t0\t1\n"),
        ["denoisingrec", "--input", "{tmp}/in/d.train.rating"],
        2,
        r"denoisingrec --input takes the folder",
    ),
    "usage/--name with a slash": Case(
        {"in.json": amazon(5.0)}, [*AMAZON, "--name", "../x"], 2, r"invalid dataset name: '\.\./x'"
    ),
    "output/folder below a file": Case(
        {"in.json": amazon(5.0), "file": b"x"},
        [*AMAZON, "--output-dir", "{tmp}/file/out"],
        2,
        r"cannot create the output folder .*file/out/amazon: Not a directory",
    ),
}


def run(args: list[str], capsys, caplog) -> tuple[int, str]:
    """Exit code and everything printed (stderr, stdout and log records) of one CLI run."""
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    printed = capsys.readouterr()
    return code, printed.err + printed.out + caplog.text


def hidden(folder: Path) -> list[str]:
    """Temporary and lock files left anywhere below ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*")) if folder.exists() else []


def outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_readable_by_recbole(inter: Path) -> int:
    """Read an atomic file as RecBole 1.2.1 does; returns the number of rows."""
    import pandas as pd

    frame = pd.read_csv(inter, delimiter="\t", dtype=str, encoding="utf-8", engine="python")
    assert list(frame.columns) == read_inter(inter)[0]
    assert not frame.isna().any().any()
    return len(frame)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, capsys, caplog):
    spec = CASES[case]
    for name, data in spec.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path) for a in spec.args]
    if "--output-dir" not in args:
        args += ["--output-dir", str(out)]
    code, printed = run(args, capsys, caplog)
    assert code == spec.code, printed
    assert "Traceback" not in printed
    assert re.search(spec.message, printed, re.DOTALL), printed
    assert hidden(tmp_path) == []
    if code != 0:
        assert outputs(out) == []
        return
    (stats_file,) = out.glob("*/*.stats.json")
    stats = read_stats(stats_file)
    assert {k: stats[k] for k in spec.stats} == spec.stats
    rows = sum(assert_readable_by_recbole(p) for p in out.glob("*/*.inter"))
    assert rows == sum(s["interactions"] for s in stats.get("splits", {"": stats}).values())


# -- the output folder: existing output, locks, stale temporaries, permissions, a full disk --


def convert_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "ml-100k",
        "--input",
        str(SAMPLES / "ml100k_sample.inter"),
        "--output-dir",
        str(tmp_path / "out"),
        *extra,
    ]


def test_existing_output_is_kept(tmp_path, capsys, caplog):
    assert main(convert_args(tmp_path)) == 0
    before = {p: p.read_bytes() for p in outputs(tmp_path / "out")}
    code, printed = run(convert_args(tmp_path), capsys, caplog)
    assert code == 2 and "Traceback" not in printed
    assert re.search(
        r"error: output exists \(use --force to overwrite\): .*ml-100k-fp\.inter", printed
    )
    assert {p: p.read_bytes() for p in outputs(tmp_path / "out")} == before
    assert hidden(tmp_path) == []


def test_live_lock_refuses(tmp_path, capsys, caplog):
    folder = tmp_path / "out" / "ml-100k-fp"
    folder.mkdir(parents=True)
    lock = folder / ".ml-100k-fp.lock"
    lock.write_text(f"{os.getppid()}\n")  # a running process
    code, printed = run(convert_args(tmp_path), capsys, caplog)
    assert code == 2 and "Traceback" not in printed
    assert f"another conversion (pid {os.getppid()}) is writing to {folder}" in printed
    assert [p.name for p in folder.iterdir()] == [lock.name]  # theirs, untouched


def test_unreadable_lock_refuses(tmp_path, capsys, caplog):
    folder = tmp_path / "out" / "ml-100k-fp"
    folder.mkdir(parents=True)
    (folder / ".ml-100k-fp.lock").write_bytes(b"\x00garbage")
    code, printed = run(convert_args(tmp_path), capsys, caplog)
    assert code == 2 and "Traceback" not in printed
    assert re.search(r"another conversion is writing .* delete the lock file", printed)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_lock_and_temporaries_are_removed(tmp_path, capsys, caplog):
    folder = tmp_path / "out" / "ml-100k-fp"
    folder.mkdir(parents=True)
    pid = dead_pid()
    (folder / ".ml-100k-fp.lock").write_text(f"{pid}\n")
    stale = [".ml-100k-fp.inter.k2j4_x9a.tmp", ".scratch.abcdefgh.tmp", ".ml-100k-fp.lock.7.tmp"]
    for name in stale:
        (folder / name).write_bytes(b"partial")
    (folder / ".other.inter.abcdefgh.tmp").write_bytes(b"not ours")  # another dataset's name
    code, printed = run(convert_args(tmp_path), capsys, caplog)
    assert code == 0 and "Traceback" not in printed
    assert f"took over the lock of conversion pid {pid}, which is no longer running" in printed
    assert "removed 3 temporary file(s) left by an interrupted conversion" in printed
    assert sorted(p.name for p in folder.iterdir()) == [
        ".other.inter.abcdefgh.tmp",
        "ml-100k-fp.inter",
        "ml-100k-fp.stats.json",
    ]


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_output_files_follow_the_umask(mask, tmp_path):
    old = os.umask(mask)
    try:
        assert main(convert_args(tmp_path)) == 0
    finally:
        os.umask(old)
    for path in outputs(tmp_path / "out"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_full_disk_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE makes a write fail with EFBIG midway, as a full disk fails with ENOSPC."""
    (tmp_path / "in.csv").write_bytes(
        b"".join(b"A%d,%010d,4.0,100\n" % (k % 997, k % 991) for k in range(60000))
    )
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
        "from dataset_converters.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *(a.format(tmp=tmp_path) for a in CSV14)]
        + ["--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "error: File too large while writing to" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys, caplog):
    (tmp_path / "out" / "ml-100k-fp").mkdir(parents=True)
    (tmp_path / "out" / "ml-100k-fp").chmod(0o555)
    try:
        code, printed = run(convert_args(tmp_path), capsys, caplog)
    finally:
        (tmp_path / "out" / "ml-100k-fp").chmod(0o755)
    assert code == 2 and "Traceback" not in printed
    assert "cannot write to the output folder" in printed and "Permission denied" in printed


def test_signal_during_the_renames_waits_for_them(tmp_path):
    """A SIGTERM between two renames: both files move, then the signal is delivered."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from dataset_converters import base\n"
        "real = os.replace\n"
        "def replace(src, dst):\n"
        "    real(src, dst)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "os.replace = replace\n"
        "with base.Staging(Path(sys.argv[1]), ['a', 'b']) as staging:\n"
        "    staging.open('a').write(b'A')\n"
        "    staging.open('b').write(b'B')\n"
        "    staging.commit()\n"
        "    print('committed', flush=True)\n"
        "print('not reached', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == -15 and done.stdout == "committed\n", done
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b"]


# -- --debug: the traceback on request; bugs keep theirs ----------------------------------------


def python_m(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    root = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "dataset_converters", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root, **(env or {})},
    )


@pytest.mark.parametrize(
    "where, env",
    [("before", {}), ("after", {}), ("env", {"RECBOLE_ADT_DEBUG": "1"})],
)
def test_debug_shows_the_traceback(where, env, tmp_path):
    args = ["amazon", "--input", str(tmp_path / "nope.json"), "--output-dir", str(tmp_path)]
    plain = python_m(*args)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("error: input file not found")
    debug = python_m(
        *{"before": ["--debug", *args], "after": [*args, "--debug"]}.get(where, args), env=env
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "ConversionError: input file not found" in debug.stderr


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(base, "summary", bug)
    with pytest.raises(KeyError):
        main(convert_args(tmp_path))
    assert hidden(tmp_path) == [] and outputs(tmp_path / "out") == []


def test_a_live_lock_moved_aside_by_mistake_is_put_back(tmp_path):
    """Two runs saw the same dead lock; the slower one must not steal the faster one's lock."""
    staging = base.Staging(tmp_path)
    staging.lock.write_text(f"{os.getppid()}\n")  # the faster run's fresh lock
    staging._take_over(dead_pid())
    assert staging.lock.read_text() == f"{os.getppid()}\n"
    assert [p.name for p in tmp_path.iterdir()] == [staging.lock.name]


def test_conversion_in_a_thread(tmp_path):
    """Signal handlers can only be set in the main thread: elsewhere they are left alone."""
    import threading

    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            convert("ml-100k", [SAMPLES / "ml100k_sample.inter"], tmp_path)
        )
    )
    thread.start()
    thread.join()
    assert result and result[0]["interactions"] == 18


def test_clean_id_policy():
    assert base.clean_id("A1") == b"A1" and base.clean_id(7) == b"7"
    for bad in ("", "a\tb", "a\nb", 'a"b', "a\ud800", True, None, 1.5):
        assert base.clean_id(bad) is None
    assert base.bad_id(b"A1", "été".encode()) is None
    assert "UTF-8" in base.bad_id(b"A1", b"\xe9t\xe9")
    assert "quote" in base.bad_id(b'"A1')
