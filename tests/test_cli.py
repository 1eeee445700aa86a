"""The entry point, end to end, as a user runs it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd):
    command = [sys.executable, str(ROOT / "run_recbole_adt.py"), *args, "--show_progress=False"]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "tce", "rce"])
def test_cli_runs_each_config(loss, planted_data, tmp_path):
    output = run_cli(
        "--model=GMF",
        f"--config_files={ROOT / 'properties' / f'{loss}.yaml'}",
        "--dataset=planted",
        f"--data_path={planted_data}",
        "--epochs=1",
        cwd=tmp_path,
    )
    assert re.search(r"test result.*'ndcg@20', 0\.\d+", output)
    assert ("drop rate" in output) == (loss == "tce")


@pytest.mark.slow
def test_cli_seeds_summary(planted_data, tmp_path):
    output = run_cli(
        "--model=NeuMF",
        "--dataset=planted",
        f"--data_path={planted_data}",
        "--epochs=1",
        "--seeds=1,2",
        cwd=tmp_path,
    )
    assert "over seeds [1, 2]" in output
    assert re.search(r"ndcg@20: 0\.\d{4} ± 0\.\d{4}", output)


@pytest.mark.slow
def test_embedded_default_dataset(tmp_path):
    """No dataset given: MovieLens-100K is converted once from RecBole's wheel, then trained on."""
    output = run_cli(
        "--model=GMF",
        f"--config_files={ROOT / 'properties' / 'tce.yaml'}",
        "--epochs=1",
        cwd=tmp_path,
    )
    converted = tmp_path / "dataset" / "ml-100k-fp" / "ml-100k-fp.inter"
    assert converted.exists()
    lines = converted.read_text().splitlines()
    assert lines[0].split("\t")[-1] == "false_positive:float" and len(lines) == 100_001
    assert "First use of ml-100k-fp: converting" in output
    assert "The number of inters: 100000" in output
    assert re.search(r"Clean test: kept \d+ true positives", output)
    assert re.search(r"test result.*'ndcg@20', 0\.\d+", output)


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
