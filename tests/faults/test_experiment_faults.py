"""Experiments check everything before the first run and survive faults (issue 17, item 3).

Classes, each case asserting the exit code, the message, that nothing was lost and that
nothing was left where it should not be:

- bad names and values, found before any run (no run is called, no folder made): an unknown
  ``--grid`` setting, an invalid grid value beside a valid one, repeated seeds, losses, models
  or grid values, a model that is a model and a baseline;
- damaged or wrong-shape ``grid_choice.json`` (``--tuned``, or an earlier search's in a
  grid's ``--output``): the file is named, with the fix;
- a bad ``--output``: a file, a path through a file, a read-only folder;
- concurrency: a second command on a locked ``--output`` exits 2 naming the holder's pid,
  the first finishes whole; a dead command's lock is taken over;
- kills: ``compare`` stopped by SIGTERM or SIGKILL in the middle of a real training, then run
  again, finishes without redoing a finished run, with complete, parseable results and no
  temporary left (in ``$TMPDIR``, ``DIR/.tmp`` or the working folder);
- file modes: results, tables, choices and figures follow the umask (022 and 027).

Cheap cases call the command in-process with a scripted ``run_recbole_adt``; the kills and
the concurrent run are subprocesses training GMF on the planted data (marked slow).
"""

from __future__ import annotations

import csv
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from recbole_adt.experiments import runner, workspace
from recbole_adt.experiments.cli import main

ROOT = Path(__file__).resolve().parents[2]


def fake_result(valid: float = 0.2, test: float = 0.3) -> dict:
    return {
        "best_valid_score": valid,
        "valid_score_bigger": True,
        "best_valid_result": {"ndcg@20": valid},
        "test_result": {"ndcg@20": test},
        "model_file": None,
        "checkpoint_rule": "valid_metric",
        "best_epoch": 1,
    }


@pytest.fixture
def calls(monkeypatch) -> list:
    """The runs the command starts, each answered with made-up scores."""
    started = []

    def run(model, dataset, config_file_list, config_dict):
        started.append((model, config_dict["adt_loss"], config_dict["seed"]))
        return fake_result(valid=0.1 + 0.01 * config_dict["seed"])

    monkeypatch.setattr(runner, "run_recbole_adt", run)
    return started


@pytest.fixture
def data(base_config) -> list[str]:
    """The planted dataset and quick settings, as command-line arguments."""
    return [
        "--dataset",
        "planted",
        f"--data_path={base_config['data_path']}",
        "--epochs=2",
        "--num_threads=1",
        "--train_batch_size=256",
        "--eval_batch_size=40960",
    ]


def refused(argv: list[str], capsys) -> str:
    """Run the command, expect exit 2 without a traceback, return its error paragraph."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "Traceback" not in err and "error: " in err
    return " ".join(err.split())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- names and values, checked before any run ----------------------------------------------------


def test_unknown_grid_setting_is_refused_before_any_run(tmp_path, data, calls, capsys):
    out = tmp_path / "out"
    error = refused(["grid", "--grid", "drop_rat=0.1,0.2", "--output", str(out), *data], capsys)
    assert "Unknown setting 'drop_rat' in --grid" in error and "Did you mean drop_rate," in error
    assert calls == [] and not out.exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("0.1,abc", "drop_rate must be a number in [0, 1), got 'abc'"),
        ("0.1,1.5", "drop_rate must be a number in [0, 1), got 1.5"),
    ],
)
def test_invalid_grid_value_beside_a_valid_one_is_refused(
    values, message, tmp_path, data, calls, capsys
):
    out = tmp_path / "out"
    argv = ["grid", "--grid", f"drop_rate={values}", "--grid", "num_gradual=5"]
    error = refused([*argv, "--num_gradual_unit=iterations", "--output", str(out), *data], capsys)
    bad = values.split(",")[1]
    assert f"No run was started: the run GMF T-CE drop_rate={bad} num_gradual=5 seed 1" in error
    assert message in error
    assert calls == [] and not out.exists()  # the valid 0.1 did not run first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--models", "GMF", "--seeds=1,1"], "--seeds 1,1 gives seed 1 more than once"),
        (
            ["grid", "--grid", "beta=0.1", "--losses", "rce", "--final_seeds", "2,3,2"],
            "--final_seeds 2,3,2 gives seed 2 more than once",
        ),
        (
            ["compare", "--models", "GMF", "--losses", "tce,ce,T-CE"],
            "--losses names tce twice (as 'tce' and 'T-CE')",
        ),
        (["compare", "--models", "GMF,gmf"], "--models names GMF twice (as 'GMF' and 'gmf')"),
        (["grid", "--grid", "drop_rate=0.1,0.10"], "--grid drop_rate lists 0.1 twice"),
        (
            ["compare", "--models", "GMF", "--baselines", "GMF,BPR"],
            "GMF in both --models and --baselines",
        ),
    ],
    ids=["seeds", "final-seeds", "losses", "models", "grid-values", "model-and-baseline"],
)
def test_repeats_are_refused(argv, message, tmp_path, data, calls, capsys):
    out = tmp_path / "out"
    error = refused([*argv, "--output", str(out), *data], capsys)
    assert message in error
    assert calls == [] and not out.exists()


# -- grid_choice.json ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"GMF/tce": {"settings": {"drop_rate": 0.1', "is damaged: it is not valid JSON"),
        (b"\xff\xfe{}", "is damaged: it is not UTF-8 text"),
        ('[{"GMF/tce": {}}]', "does not hold a grid search's choices: it holds an array"),
        ('{"GMF": {"settings": {}}}', "its key 'GMF' is not MODEL/loss"),
        ('{"GMF/rce": {"settings": [0.1]}}', 'GMF/rce has no "settings" object'),
        ('{"GMF/rce": {"settings": {"betta": 0.1}}}', "Unknown setting 'betta' in --tuned"),
    ],
    ids=["truncated", "not-utf8", "array", "key", "settings", "unknown-name"],
)
def test_bad_tuned_file_is_named(text, message, tmp_path, data, calls, capsys):
    choice = tmp_path / "grid" / "grid_choice.json"
    choice.parent.mkdir()
    (choice.write_bytes if isinstance(text, bytes) else choice.write_text)(text)
    out = tmp_path / "out"
    argv = ["compare", "--models", "GMF", "--losses", "ce,rce", "--tuned", str(choice.parent)]
    error = refused([*argv, "--output", str(out), *data], capsys)
    assert str(choice) in error and message in error
    if "Unknown" not in message:
        assert "Run the grid search that wrote it again" in error
    assert calls == [] and not out.exists()


def test_damaged_earlier_choices_stop_a_grid_before_it_runs(tmp_path, data, calls, capsys):
    """A grid merges its choices into DIR/grid_choice.json: a damaged one is found first,
    not after hours of runs, and left as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid_choice.json").write_text('{"GMF/tce": ')
    error = refused(
        ["grid", "--grid", "beta=0.1", "--losses", "rce", "--output", str(out), *data], capsys
    )
    assert f"{out / 'grid_choice.json'} is damaged: it is not valid JSON" in error
    assert "Move it away" in error
    assert calls == [] and (out / "grid_choice.json").read_text() == '{"GMF/tce": '
    assert sorted(p.name for p in out.iterdir()) == ["grid_choice.json"]


# -- the output folder ---------------------------------------------------------------------------


def test_output_that_is_a_file_is_refused(tmp_path, data, calls, capsys):
    out = tmp_path / "results"
    out.write_text("mine\n")
    error = refused(["compare", "--models", "GMF", "--output", str(out), *data], capsys)
    assert f"--output {out} is a file, not a folder. Give a folder you can write to" in error
    assert calls == [] and out.read_text() == "mine\n"


def test_output_under_a_file_is_refused(tmp_path, data, calls, capsys):
    parent = tmp_path / "notes.txt"
    parent.write_text("mine\n")
    out = parent / "out"
    error = refused(["compare", "--models", "GMF", "--output", str(out), *data], capsys)
    assert f"--output {out} lies under {parent}, which is a file, not a folder" in error
    assert calls == [] and parent.read_text() == "mine\n"


def test_output_in_a_read_only_folder_is_refused(tmp_path, data, calls, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o555)
    try:
        if os.access(shared, os.W_OK):
            pytest.skip("this user (root) may write in a read-only folder")
        out = shared / "out"
        error = refused(["compare", "--models", "GMF", "--output", str(out), *data], capsys)
        assert f"--output {out}: its parent {shared} is not writable for you" in error
        assert calls == [] and list(shared.iterdir()) == []
    finally:
        shared.chmod(0o755)


def test_output_that_cannot_be_written_is_refused(tmp_path, data, calls, capsys, monkeypatch):
    """What the operating system says when the lock cannot be made (a read-only file system,
    which no permission bit shows and root meets too): one paragraph, nothing run."""
    real_open = os.open

    def read_only(path, flags, *args):
        if Path(path).name == workspace.LOCK_FILE:
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(workspace.os, "open", read_only)
    out = tmp_path / "out"
    error = refused(["compare", "--models", "GMF", "--output", str(out), *data], capsys)
    assert f"--output {out} is not writable (Read-only file system)" in error
    assert calls == [] and not out.exists()  # the folder it made is removed again


# -- a second command on the same folder ---------------------------------------------------------


@pytest.fixture
def other_process():
    """A live process (not this one) to hold a lock."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_locked_output_is_refused_naming_the_holder(tmp_path, data, calls, capsys, other_process):
    out = tmp_path / "out"
    argv = ["compare", "--models", "GMF", "--losses", "ce", "--seeds", "2", "--no_plots"]
    with pytest.raises(SystemExit):
        main([*argv, "--output", str(out), *data])
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    calls.clear()
    lock = out / workspace.LOCK_FILE
    lock.write_text(f"{other_process.pid} {workspace.socket.gethostname()}\n")
    error = refused([*argv, "--seeds", "3", "--output", str(out), *data], capsys)
    assert f"another compare or grid (pid {other_process.pid}) is writing to {out}" in error
    assert f"If none is running, delete the lock file {lock}" in error
    assert calls == []
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == {**before, ".lock": lock.read_bytes()}  # nothing lost, the lock kept


def test_a_dead_commands_lock_is_taken_over(tmp_path, data, calls, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / workspace.LOCK_FILE).write_text(f"{dead.pid} {workspace.socket.gethostname()}\n")
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "compare",
                "--models",
                "GMF",
                "--losses",
                "ce",
                "--seeds",
                "1,",
                "--no_plots",
                "--output",
                str(out),
                *data,
            ]
        )
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert f"took over the lock of pid {dead.pid} in {out}, which is no longer running" in printed
    assert len(calls) == 1 and hidden(out) == []


# -- file modes ----------------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o027], ids=["umask-022", "umask-027"])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def test_results_follow_the_umask(umask, tmp_path, data, calls, capsys):
    mode = 0o666 & ~umask
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "compare",
                "--models",
                "GMF",
                "--losses",
                "ce,tce",
                "--seeds",
                "2",
                "--output",
                str(out),
                *data,
            ]
        )
    assert stop.value.code == 0
    grid = tmp_path / "grid"
    with pytest.raises(SystemExit) as stop:
        main(["grid", "--grid", "beta=0.1,0.2", "--losses", "rce", "--output", str(grid), *data])
    assert stop.value.code == 0
    written = [out / "results.csv", out / "results.md", out / "compare.png"]
    written += [grid / "results.csv", grid / "grid.md", grid / "grid_choice.json"]
    written += [grid / "grid_GMF_rce.png"]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.name: oct(mode) for p in written
    }


# -- kills and concurrent commands, on real trainings --------------------------------------------

DRIVER = textwrap.dedent(
    """\
    # python driver.py HANG_SEED MODE ARGS: the experiments command, whose run of HANG_SEED
    # trains "forever" (MODE train: 100000 epochs) or waits for a file named release beside
    # this script before it trains (MODE wait).
    import sys, time
    from pathlib import Path
    import torch
    from recbole_adt.experiments import runner
    from recbole_adt.experiments.cli import main

    torch.set_num_threads(1)
    seed, mode, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    real = runner.run_recbole_adt
    release = Path(__file__).with_name("release")

    def run(model, dataset, files, settings):
        if settings["seed"] == seed and mode == "train":
            settings = {**settings, "epochs": 100000, "stopping_step": 100000}
        while settings["seed"] == seed and mode == "wait" and not release.exists():
            time.sleep(0.02)
        return real(model, dataset, files, settings)

    runner.run_recbole_adt = run  # in --jobs processes too: spawn imports this file again
    if __name__ == "__main__":
        main(argv)
    """
)


def start(tmp_path: Path, work: Path, private_tmp: Path, seed: int, mode: str, argv):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(private_tmp)}
    return subprocess.Popen(
        [sys.executable, str(driver), str(seed), mode, *argv],
        cwd=work,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(
                f"exited ({process.returncode}) before {what}: {process.stderr.read()}"
            )
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def training_rows(run_dir: Path) -> int:
    path = run_dir / "training.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A clean working folder and a private TMPDIR, for the subprocess and for this process."""
    work, private_tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    private_tmp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    return work, private_tmp


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_compare_then_rerun_finishes_without_redoing_runs(
    signum, tmp_path, places, data, capsys, monkeypatch
):
    work, private_tmp = places
    out = work / "out"
    argv = [
        "compare",
        "--models",
        "GMF",
        "--losses",
        "ce",
        "--seeds",
        "3",
        "--no_plots",
        "--output",
        "out",
        *data,
    ]
    process = start(tmp_path, work, private_tmp, 2, "train", argv)
    hanging = out / "runs" / "GMF_ce_seed-2"
    wait_for(lambda: training_rows(hanging) >= 2, process, "seed 2 trained two epochs")
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    rows = read_csv(out / "results.csv")  # complete and parseable
    first = rows[0]
    assert first["run_id"] == "GMF_ce_seed-1" and first["status"] == "ok"
    if signum == signal.SIGTERM:
        assert process.returncode == 143 and "Traceback" not in err
        assert "stopped by SIGTERM: the finished runs are kept in out/results.csv" in err
        assert [(r["run_id"], r["status"]) for r in rows[1:]] == [("GMF_ce_seed-2", "interrupted")]
        assert hidden(out) == []  # no lock, no .tmp
    else:
        assert process.returncode == -signal.SIGKILL
        assert len(rows) == 1
        assert hidden(out) == [".lock", ".tmp"]
        assert any(p.name.startswith("checkpoints-GMF_ce_seed-2") for p in (out / ".tmp").iterdir())
    assert list(private_tmp.iterdir()) == []  # nothing ever went to $TMPDIR

    ran = []
    real = runner.run_recbole_adt

    def counted(model, dataset, files, settings):
        ran.append(settings["seed"])
        return real(model, dataset, files, settings)

    monkeypatch.setattr(runner, "run_recbole_adt", counted)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    printed = capsys.readouterr().out
    assert stop.value.code == 0
    assert ran == [2, 3]  # seed 1 is not redone
    assert "1 of 3 runs already finished" in printed
    if signum == signal.SIGKILL:
        assert f"took over the lock of pid {process.pid}" in printed
        assert "removed what an interrupted command left" in printed and ".tmp" in printed
    rows = read_csv(out / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"] and rows[0] == first
    assert "3 of 3 runs finished" in (out / "results.md").read_text()
    assert training_rows(hanging) == 2  # the rerun's own epochs only
    assert hidden(out) == [] and list(private_tmp.iterdir()) == []
    assert [p.name for p in work.iterdir()] == ["out"]  # nothing else in the working folder


@pytest.mark.slow
def test_second_command_on_the_same_output_is_refused_and_the_first_finishes(
    tmp_path, places, data, capsys
):
    work, private_tmp = places
    out = work / "out"
    argv = [
        "compare",
        "--models",
        "GMF",
        "--losses",
        "ce",
        "--seeds",
        "1,",
        "--no_plots",
        "--output",
        "out",
        *data,
    ]
    first = start(tmp_path, work, private_tmp, 1, "wait", argv)
    wait_for(lambda: (out / "runs" / "GMF_ce_seed-1").exists(), first, "the first run started")
    error = refused(argv, capsys)  # the same command, in this process
    assert f"another compare or grid (pid {first.pid}) is writing to {out}" in error
    (tmp_path / "release").touch()
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    rows = read_csv(out / "results.csv")
    assert [(r["run_id"], r["status"]) for r in rows] == [("GMF_ce_seed-1", "ok")]
    training = (out / "runs" / "GMF_ce_seed-1" / "training.csv").read_text().splitlines()
    assert training[0].startswith("phase,") and [line[:6] for line in training[1:]] == [
        "adt,0,",
        "adt,1,",
    ]  # one header, the two epochs once each: no second writer
    assert hidden(out) == [] and list(private_tmp.iterdir()) == []
    assert [p.name for p in work.iterdir()] == ["out"]


@pytest.mark.slow
def test_killed_parallel_compare_keeps_what_finished(tmp_path, places, data, capsys):
    """--jobs 2: SIGTERM stops the run in the other process too, and keeps the finished ones."""
    work, private_tmp = places
    out = work / "out"
    argv = [
        "compare",
        "--models",
        "GMF",
        "--losses",
        "ce",
        "--seeds",
        "3",
        "--jobs",
        "2",
        "--no_plots",
        "--output",
        "out",
        *data,
    ]
    process = start(tmp_path, work, private_tmp, 1, "train", argv)

    def others_finished() -> bool:
        path = out / "results.csv"
        return (
            path.exists()
            and len(read_csv(path)) == 2
            and training_rows(out / "runs" / "GMF_ce_seed-1") >= 2
        )

    wait_for(others_finished, process, "seeds 2 and 3 finished while seed 1 trains")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in err, err
    rows = {r["run_id"]: r["status"] for r in read_csv(out / "results.csv")}
    assert rows == {
        "GMF_ce_seed-1": "interrupted",
        "GMF_ce_seed-2": "ok",
        "GMF_ce_seed-3": "ok",
    }
    assert hidden(out) == [] and list(private_tmp.iterdir()) == []
    assert [p.name for p in work.iterdir()] == ["out"]


@pytest.mark.slow
def test_compare_on_the_embedded_dataset_creates_only_its_output(tmp_path, monkeypatch):
    """With no --dataset and no data_path, the embedded dataset is converted into DIR/dataset:
    the working folder gets nothing but DIR."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["compare", "--models", "GMF", "--losses", "ce", "--seeds", "1,", "--epochs=1"]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--output", "out"])
    assert stopped.value.code == 0
    assert sorted(os.listdir(work)) == ["out"]
    assert (work / "out" / "dataset" / "ml-100k-fp" / "ml-100k-fp.inter").is_file()
    rows = read_csv(work / "out" / "results.csv")
    assert [row["status"] for row in rows] == ["ok"]
