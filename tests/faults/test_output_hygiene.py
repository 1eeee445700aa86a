"""Runs write only where they are told, with the user's umask, and keep one checkpoint per run.

Issue 17, item 4. Each end-to-end case runs the command line in a fresh working folder (a
subprocess, so that RecBole's process-wide logging and the umask are the run's own) and asserts
the exit code, what the run wrote and where, and that nothing else appeared. ``output_dir``
semantics: :mod:`recbole_adt.output`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_adt import quick_start
from recbole_adt.files import PARTIAL_SUFFIX, atomic_file, write_text_atomic
from recbole_adt.output import OutputSettings
from recbole_adt.quick_start import run_recbole_adt
from recbole_adt.trainer.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PHASES = "--phases=[warmup:1,adt:1,finetune:1]"


def run_cli(*args: str, cwd: Path, umask: int | None = None) -> subprocess.CompletedProcess:
    """The command line in ``cwd``, its umask set in the child only."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_adt.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def planted(data: Path) -> list[str]:
    """One quick GMF run on the planted data."""
    return [
        "--model=GMF",
        "--dataset=planted",
        f"--data_path={data}",
        "--epochs=1",
        "--train_batch_size=256",
        "--eval_batch_size=40960",
        "--seed=7",
    ]


def tree(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` (relative path -> permission bits)."""
    return {
        str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
        for path in sorted(folder.rglob("*"))
    }


def summary_path(stdout: str, label: str) -> str:
    """The path on the summary's ``label:`` line."""
    return re.search(rf"^{label}: (\S+)$", stdout, re.M).group(1)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def work(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_run_with_output_dir_writes_there_only_with_the_umask(umask, planted_data, work):
    data_before = tree(planted_data)
    done = run_cli(
        *planted(planted_data),
        "--adt_loss=TCE",
        "--output_dir=out",
        "--diagnostics_dir=diag",
        cwd=work,
        umask=umask,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = tree(work)
    assert {path.split(os.sep)[0] for path in written} == {"out"}
    assert {p.name for p in (work / "out").iterdir()} == {"log", "log_tensorboard", "saved", "diag"}
    assert tree(planted_data) == data_before  # the input folder is read only
    assert summary_path(done.stdout, "checkpoint").startswith("out/saved/GMF-")
    assert summary_path(done.stdout, "log").startswith("out/log/GMF/GMF-planted-")
    assert summary_path(done.stdout, "diagnostics") == "out/diag"

    names = [Path(path).name for path in written]
    for pattern in (r".*\.log", r"events\.out\.tfevents\..*", r".*\.pth", r"training\.csv"):
        assert any(re.fullmatch(pattern, name) for name in names), pattern
    assert "sparsity_groups.csv" in names
    for path, mode in written.items():
        expected = 0o777 & ~umask if (work / path).is_dir() else 0o666 & ~umask
        assert mode == expected, (path, oct(mode))


@pytest.mark.slow
def test_without_output_dir_only_recboles_folders_and_the_same_numbers(planted_data, work):
    """The documented default: log/, log_tensorboard/, saved/ (and diagnostics_dir as given)
    in the working folder; moving them with output_dir changes no number."""
    settings = (*planted(planted_data), "--adt_loss=TCE", "--diagnostics_dir=diag")
    done = run_cli(*settings, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in work.iterdir()} == {"log", "log_tensorboard", "saved", "diag"}
    assert len(list((work / "saved").iterdir())) == 1
    assert summary_path(done.stdout, "checkpoint").startswith("saved/GMF-")

    moved = run_cli(*settings, "--output_dir=out", cwd=work)
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert {p.name for p in work.iterdir()} == {"log", "log_tensorboard", "saved", "diag", "out"}
    assert len(list((work / "saved").iterdir())) == 1  # the second run's went to out/saved
    training = (work / "diag" / "training.csv").read_bytes()
    assert (work / "out" / "diag" / "training.csv").read_bytes() == training  # every loss mean
    scores = [line for line in done.stdout.splitlines() if line.startswith("  ")]
    assert [line for line in moved.stdout.splitlines() if line.startswith("  ")] == scores


@pytest.mark.slow
def test_a_phased_run_keeps_only_the_selected_checkpoint(planted_data, work):
    done = run_cli(*planted(planted_data), PHASES, "--output_dir=out", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    (kept,) = (work / "out" / "saved").iterdir()
    assert kept.name.endswith("-finetune.pth")
    assert summary_path(done.stdout, "checkpoint") == f"out/saved/{kept.name}"
    assert read_checkpoint(kept)["phase_index"] == 2  # loadable, the last phase's


@pytest.fixture(scope="module")
def kept_run(planted_data, tmp_path_factory) -> Path:
    """A phased run with keep_checkpoints: the working folder it ran in."""
    folder = tmp_path_factory.mktemp("kept")
    done = run_cli(
        *planted(planted_data), PHASES, "--output_dir=out", "--keep_checkpoints=True", cwd=folder
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def phase_files(folder: Path) -> dict[str, Path]:
    """phase name -> checkpoint, of the files in ``folder``."""
    return {path.stem.rsplit("-", 1)[1]: path for path in folder.glob("*.pth")}


@pytest.mark.slow
def test_keep_checkpoints_keeps_every_phases_checkpoint(kept_run):
    files = phase_files(kept_run / "out" / "saved")
    assert set(files) == {"warmup", "adt", "finetune"}
    stems = {path.name.rsplit("-", 1)[0] for path in files.values()}
    assert len(stems) == 1  # one run's
    assert [read_checkpoint(files[p])["phase_index"] for p in ("warmup", "adt", "finetune")] == [
        0,
        1,
        2,
    ]


@pytest.mark.slow
def test_resume_of_a_phased_run_prunes_only_its_own_files(kept_run, tmp_path):
    """--resume reads a phase checkpoint while it trains; the resumed run then keeps its own
    selected checkpoint and leaves the interrupted run's files (its input) as they were."""
    shutil.copytree(kept_run, tmp_path / "run")
    saved = tmp_path / "run" / "out" / "saved"
    before = {path.name: digest(path) for path in saved.iterdir()}
    resume = phase_files(saved)["adt"]
    done = run_cli(
        f"--resume={resume}", "--keep_checkpoints=False", "--epochs=2", cwd=tmp_path / "run"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test (clean): recall@10 0." in done.stdout
    after = {path.name: digest(path) for path in saved.iterdir()}
    new = set(after) - set(before)
    assert {name: after[name] for name in before} == before
    (kept,) = new
    assert kept.endswith("-finetune.pth") and summary_path(done.stdout, "checkpoint").endswith(kept)
    assert read_checkpoint(saved / kept)["phase_index"] == 2


@pytest.mark.slow
def test_a_failed_run_keeps_its_phase_checkpoints_for_resume(base_config, tmp_path, monkeypatch):
    """Earlier phases' checkpoints go only once a run has ended well."""

    def fails(*args, **kwargs):
        raise RuntimeError("the test stage failed")

    monkeypatch.setattr(quick_start, "evaluate_test", fails)
    settings = {**base_config, "phases": ["warmup:1", "adt:1"], "output_dir": str(tmp_path / "o")}
    settings.pop("checkpoint_dir")
    with pytest.raises(RuntimeError, match="the test stage failed"):
        run_recbole_adt("GMF", config_dict=settings)
    assert set(phase_files(tmp_path / "o" / "saved")) == {"warmup", "adt"}


@pytest.mark.parametrize(
    "where, message",
    [
        ("afile", "is a file, not a folder"),
        ("afile/out", "cannot be created: Not a directory"),
    ],
)
def test_an_output_dir_that_cannot_hold_the_run_is_refused_first(
    where, message, planted_data, work
):
    (work / "afile").write_text("mine\n")
    done = run_cli(*planted(planted_data), f"--output_dir={where}", cwd=work)
    assert done.returncode == 2
    assert f"output_dir {work / where} {message}" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(work) == {"afile": 0o644} and (work / "afile").read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_output_dir_in_a_read_only_folder_is_refused_first(planted_data, work):
    (work / "locked").mkdir(mode=0o555)
    done = run_cli(*planted(planted_data), "--output_dir=locked/out", cwd=work)
    assert done.returncode == 2
    assert "cannot be created: Permission denied" in done.stderr
    assert tree(work) == {"locked": 0o555}


def test_output_settings_resolve_relative_paths_under_output_dir(tmp_path):
    off = OutputSettings.from_config({"output_dir": None})
    assert off == OutputSettings(None, False)  # the working folder: paths as given
    assert off.resolve("saved") == "saved" and off.resolve(None) is None
    on = OutputSettings.from_config({"output_dir": "runs/a", "keep_checkpoints": True})
    assert on.output_dir == str(tmp_path / "runs" / "a") and on.keep_checkpoints
    assert on.resolve("saved") == str(tmp_path / "runs" / "a" / "saved")
    assert on.resolve("/elsewhere/ckpt") == "/elsewhere/ckpt"
    home = OutputSettings.from_config({"output_dir": "~/runs"})
    assert home.output_dir == os.path.join(os.path.expanduser("~"), "runs")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"output_dir": 3}, "output_dir must be a folder path"),
        ({"output_dir": " "}, "output_dir must be a folder path"),
        ({"output_dir": None, "keep_checkpoints": "yes"}, "keep_checkpoints must be True"),
    ],
)
def test_bad_output_settings_name_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        OutputSettings.from_config(settings)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_files_follow_the_umask(umask, tmp_path):
    code = (
        "import os, sys; from recbole_adt.files import write_text_atomic; "
        f"os.umask({umask}); write_text_atomic(sys.argv[1], 'ok\\n')"
    )
    target = tmp_path / "results.csv"
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, timeout=60)
    assert done.returncode == 0
    assert target.read_text() == "ok\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "results.csv"
    write_text_atomic(target, "old\n")
    with pytest.raises(OSError, match="disk full"), atomic_file(target) as stream:
        stream.write("new, half")
        raise OSError(28, "disk full")
    assert target.read_text() == "old\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
