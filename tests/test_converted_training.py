"""Convert raw files with dataset_converters, then train on them through run_recbole_adt.py."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synthetic import planted_interactions
from tests.test_cli import logged, run_cli


def convert(*args, cwd):
    command = [sys.executable, "-m", "dataset_converters", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def project_on_path(monkeypatch):
    """The subprocesses import dataset_converters from this checkout, installed or not."""
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", root)
    return root


@pytest.mark.slow
def test_amazon_2023_reviews_train_end_to_end(tmp_path, project_on_path):
    rows = planted_interactions(seed=1)
    raw = tmp_path / "Books.jsonl"
    with raw.open("w") as f:
        for user, item, rating, seconds, _ in rows:
            record = {
                "rating": rating,
                "title": "t",
                "text": "x",
                "parent_asin": item,
                "asin": item + "v",
                "user_id": user,
                "timestamp": seconds * 1000,
                "verified_purchase": True,
                "helpful_vote": 0,
            }
            f.write(json.dumps(record) + "\n")
    out = tmp_path / "data"
    convert("amazon", "--input", str(raw), "--output-dir", str(out), "--name", "amz", cwd=tmp_path)
    stats = json.loads((out / "amz" / "amz.stats.json").read_text())
    assert stats["interactions"] == len(rows)
    assert stats["false_positives"] == sum(1 for *_, fp in rows if fp)

    done = run_cli(
        "--model=GMF",
        "--dataset=amz",
        f"--data_path={out}",
        "--epochs=1",
        "--adt_loss=TCE",
        "--num_gradual=5",
        cwd=tmp_path,
    )
    output = logged(done, tmp_path)
    assert "drop rate" in output
    assert re.search(r"test result.*'ndcg@20', 0\.\d+", output)


@pytest.mark.slow
def test_authors_split_trains_with_benchmark_filename(tmp_path, project_on_path):
    rows = planted_interactions(seed=2)
    folder = tmp_path / "raw"
    folder.mkdir()
    # every 10th row to test (clean ones only, as in the authors' files), every 10th + 1 to valid
    parts = {"train": [], "valid": [], "test": []}
    for n, (user, item, _, _, fp) in enumerate(rows):
        part = "test" if n % 10 == 0 else "valid" if n % 10 == 1 else "train"
        if part == "test" and fp:
            continue
        parts[part].append((user[1:], item[1:], int(1 - fp)))
    for part, suffix in (("train", "train.rating"), ("valid", "valid.rating")):
        lines = [f"{u}\t{i}\t{flag}" for u, i, flag in parts[part]]
        (folder / f"toy.{suffix}").write_text("\n".join(lines) + "\n")
    (folder / "toy.test.negative").write_text(
        "".join(f"({u}, {i})\t7\t8\n" for u, i, _ in parts["test"])
    )
    out = tmp_path / "data"
    convert("denoisingrec", "--input", str(folder), "--output-dir", str(out), cwd=tmp_path)

    done = run_cli(
        "--model=NeuMF",
        "--dataset=toy",
        f"--data_path={out}",
        "--epochs=1",
        f"--config_files={Path(project_on_path) / 'properties/datasets/denoisingrec.yaml'}",
        cwd=tmp_path,
    )
    output = logged(done, tmp_path)
    assert f"kept {len(parts['test'])} true positives of {len(parts['test'])}" in output
    assert re.search(r"test result.*'ndcg@20', 0\.\d+", output)
