import sys

import pytest
import torch

from tests.synthetic import planted_interactions, write_dataset

# Two threads make these tiny ops several times slower on 2-core machines.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_run(tmp_path, monkeypatch):
    """RecBole reads sys.argv and writes log/, saved/ under the working directory."""
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def planted_data(tmp_path_factory):
    """data_path holding dataset 'planted': 160 users, 120 items, 20% false positives."""
    data_path = tmp_path_factory.mktemp("data")
    write_dataset(data_path, "planted", planted_interactions())
    return data_path


def planted_settings(data_path, checkpoint_dir) -> dict:
    """Small, fast settings for the 'planted' dataset (one thread, quiet, seed 7)."""
    return {
        "dataset": "planted",
        "data_path": str(data_path),
        "checkpoint_dir": str(checkpoint_dir),
        "epochs": 2,
        "show_progress": False,
        "state": "WARNING",
        "train_batch_size": 256,
        "eval_batch_size": 40960,
        "num_threads": 1,
        "seed": 7,
        # The tests' small num_gradual values (5, 10, 30 ...) count batches, as Eq. (3) does.
        "num_gradual_unit": "iterations",
    }


@pytest.fixture
def base_config(planted_data, tmp_path):
    return planted_settings(planted_data, tmp_path / "saved")
