"""The entry point, end to end, as a user runs it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    """The command, its stdout and stderr not a terminal (so no progress bars by default)."""
    command = [sys.executable, str(ROOT / "run_recbole_adt.py"), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def logged(done: subprocess.CompletedProcess, cwd) -> str:
    """The run's log file, named on the summary's ``log:`` line."""
    path = re.search(r"^log: (\S+)$", done.stdout, re.M).group(1)
    return (Path(cwd) / path).read_text(encoding="utf-8")


def assert_quiet(stderr: str, runs: int = 1) -> None:
    """A plain run's console: each run's start line and warnings only (no config dump, no
    per-epoch lines, no progress bar)."""
    info = [line for line in stderr.splitlines() if " INFO " in line]
    assert len(info) == runs, stderr
    for line in info:
        assert re.search(r" INFO  GMF, adt_loss \w+, dataset [\w-]+: training, up to", line)
    assert "General Hyper Parameters" not in stderr and "%|" not in stderr


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "tce", "rce"])
def test_cli_runs_each_config(loss, planted_data, tmp_path):
    done = run_cli(
        "--model=GMF",
        f"--config_files={ROOT / 'properties' / f'{loss}.yaml'}",
        "--dataset=planted",
        f"--data_path={planted_data}",
        "--epochs=1",
        cwd=tmp_path,
    )
    assert_quiet(done.stderr)
    assert re.search(
        r"^  test \(clean\): recall@10 0\.\d{4} .* ndcg@20 0\.\d{4}$", done.stdout, re.M
    )
    log = logged(done, tmp_path)
    assert "General Hyper Parameters" in log and re.search(r"test result.*'ndcg@20', 0\.\d+", log)
    assert ("drop rate" in log) == (loss == "tce")


@pytest.mark.slow
def test_cli_seeds_summary(planted_data, tmp_path):
    done = run_cli(
        "--model=NeuMF",
        "--dataset=planted",
        f"--data_path={planted_data}",
        "--epochs=1",
        "--seeds=1,2",
        cwd=tmp_path,
    )
    assert "over seeds [1, 2]" in done.stdout
    assert re.search(r"ndcg@20: 0\.\d{4} ± 0\.\d{4}", done.stdout)
    assert_quiet(done.stderr.replace("NeuMF", "GMF"), runs=2)
    assert "General Hyper Parameters" in logged(done, tmp_path)


@pytest.mark.slow
def test_embedded_default_dataset(tmp_path):
    """No dataset given: MovieLens-100K is converted once from RecBole's wheel, then trained on."""
    done = run_cli(
        "--model=GMF",
        f"--config_files={ROOT / 'properties' / 'tce.yaml'}",
        "--epochs=1",
        cwd=tmp_path,
    )
    converted = tmp_path / "dataset" / "ml-100k-fp" / "ml-100k-fp.inter"
    assert converted.exists()
    lines = converted.read_text().splitlines()
    assert lines[0].split("\t")[-1] == "false_positive:float" and len(lines) == 100_001
    log = logged(done, tmp_path)
    assert "First use of ml-100k-fp: converting" in log
    assert "The number of inters: 100000" in log
    assert re.search(r"Clean test: kept \d+ true positives", log)
    assert re.search(r"test result.*'ndcg@20', 0\.\d+", log)
    assert_quiet(done.stderr)
    assert done.stdout.startswith("GMF, adt_loss TCE, dataset ml-100k-fp: ")


def test_seed_and_seeds_conflict():
    from recbole_adt.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--seeds=1,2", "--seed=3"])
    assert parse_args(["--seeds=1,2", "--epochs=3"]).seeds == "1,2"


@pytest.mark.slow
def test_resume_from_the_command_line(planted_data, capsys):
    """--resume=PATH continues the run with its settings, into a new checkpoint."""
    from recbole_adt.cli import main

    main(
        [
            "--model=GMF",
            "--dataset=planted",
            f"--data_path={planted_data}",
            "--adt_loss=TCE",
            "--num_gradual=30",
            "--epochs=1",
            "--eval_step=0",  # save every epoch
            "--show_progress=False",
            "--state=WARNING",
        ]
    )
    first = re.search(r"^checkpoint: (\S+)$", capsys.readouterr().out, re.M).group(1)
    before = Path(first).read_bytes()
    interrupted = torch.load(first, weights_only=True)
    assert interrupted["epoch"] == 0

    main([f"--resume={first}", "--epochs=2"])
    second = re.search(r"^checkpoint: (\S+)$", capsys.readouterr().out, re.M).group(1)
    assert second != first and Path(first).read_bytes() == before
    resumed = torch.load(second, weights_only=True)
    assert resumed["epoch"] == 1
    assert resumed["adt_iteration"] == 2 * interrupted["adt_iteration"]
    assert resumed["config"]["dataset"] == "planted" and resumed["config"]["adt_loss"] == "TCE"


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--verbose", "--state=INFO"])
def test_verbose_brings_the_detail_back(option, planted_data, tmp_path):
    done = run_cli(
        "--dataset=planted", f"--data_path={planted_data}", "--epochs=1", option, cwd=tmp_path
    )
    for detail in ("General Hyper Parameters", "The number of inters", "epoch 0 training"):
        assert detail in done.stderr
    assert "%|" not in done.stderr  # progress bars: still only on a terminal
    assert done.stdout.startswith("GMF, adt_loss CE, dataset planted: ")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "fix"),
    [("SASRec", "--train_neg_sample_args=None"), ("FM", "--eval_args={mode:full}")],
)
def test_the_fix_a_refused_model_is_told_runs(model, fix, planted_data, tmp_path):
    """SASRec and FM are refused with this package's message (test_bad_input.py); the fix it
    names trains them as before, as plain RecBole baselines."""
    command = [sys.executable, str(ROOT / "run_recbole_adt.py"), f"--model={model}", fix]
    command += ["--dataset=planted", f"--data_path={planted_data}", "--epochs=1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ndcg@20" in done.stdout + done.stderr  # tested, whatever the summary's layout
