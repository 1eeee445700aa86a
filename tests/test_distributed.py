"""Distributed training (RecBole's DDP) on CPU with gloo: settings, one-rank groups in this
process, and 2-process runs spawned as a user's ``nproc: 2`` run would be."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from recbole.trainer import Trainer

from recbole_adt import quick_start
from recbole_adt.config import Config
from recbole_adt.distributed import leave_group, spawns_workers
from recbole_adt.model.denoising import STAT_NAMES
from recbole_adt.quick_start import run_recbole_adt, run_recbole_adts
from recbole_adt.trainer import ADTTrainer, WeightsOnlyCheckpointMixin
from tests.pipeline import prepare


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.fixture
def one_rank_group():
    """Settings that make this process rank 0 of a 1-process gloo group; the group is left."""
    yield {"local_rank": 0, "nproc": 1, "world_size": 1, "port": free_port()}
    leave_group()


# Settings, checked in the launching process before any worker starts.


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"nproc": 2, "adt_loss": "DCF"}, "adt_loss DCF keeps a loss memory"),
        ({"nproc": 2, "world_size": 3, "offset": 2}, "do not fit"),
        ({"nproc": 2, "world_size": 1}, "do not fit"),
        ({"nproc": 0}, "nproc is the number of processes"),
        ({"nproc": 2.5}, "nproc must be an integer"),
        ({"nproc": 2, "port": 70000}, "port must be a TCP port"),
        ({"nproc": 2, "ip": ""}, "ip must be the address"),
    ],
)
def test_bad_distributed_settings_raise_before_any_process_starts(base_config, settings, message):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, **settings})
    assert not dist.is_initialized()


def test_nproc_2_spawns_and_one_process_does_not(base_config):
    config = Config("GMF", config_dict={**base_config, "nproc": 2, "port": "29999"})
    assert spawns_workers(config) and config["world_size"] == 2 and config["port"] == 29999
    assert not dist.is_initialized()  # the launching process joins no group
    for settings in ({}, {"nproc": 1}, {"nproc": 1, "world_size": -1}):
        config = Config("GMF", config_dict={**base_config, **settings})
        assert not spawns_workers(config) and config["single_spec"]


# A worker of a 1-process group, in this process: the code paths of every rank, without spawning.


def test_a_cpu_worker_joins_with_gloo_and_trains_through_ddp(base_config, one_rank_group):
    settings = {**base_config, **one_rank_group, "adt_loss": "TCE", "num_gradual": 4}
    config, _, (train_data, *_), model, trainer = prepare("GMF", settings)
    assert dist.get_backend() == "gloo" and config["device"].type == "cpu"
    assert config["single_spec"] is False and config["use_gpu"] is False
    assert isinstance(trainer.distributed_model, torch.nn.parallel.DistributedDataParallel)
    assert trainer.distributed_model.device_ids is None  # RecBole's CUDA ids would be refused

    trainer._train_epoch(train_data, 0)
    stats = model.denoising_summary()
    assert trainer.adt_iteration == len(train_data)
    assert stats["positives"] == len(train_data._dataset) and stats["dropped"] > 0

    trainer._save_checkpoint(0, verbose=False)  # rank 0 writes, then every rank meets
    assert [path.name for path in Path(config["checkpoint_dir"]).iterdir()] == [
        Path(trainer.saved_model_file).name
    ]


def test_a_workers_checkpoint_reloads_in_one_process(base_config, one_rank_group):
    settings = {**base_config, **one_rank_group, "epochs": 1}
    result = run_recbole_adt("GMF", config_dict=settings)
    leave_group()
    checkpoint = torch.load(result["model_file"], weights_only=True)
    assert "local_rank" not in checkpoint["external_config"]  # else a reload would join a group
    config, model, *_ = quick_start.load_data_and_model(result["model_file"])
    assert config["single_spec"] and not dist.is_initialized()


# Two processes, spawned. Each rank records its epochs: the test reads what the ranks saw.


def _recording_worker(rank: int, *args) -> None:
    """run_recbole_adts, recording per epoch T and the denoising counters before and after the
    all_reduce (RecBole's _train_epoch is what ADTTrainer's runs before combining), and the
    checkpoints this rank writes."""
    records, writes = [], []
    recbole_epoch, adt_epoch = Trainer._train_epoch, ADTTrainer._train_epoch
    checkpoint_state = WeightsOnlyCheckpointMixin._checkpoint_state

    def local_epoch(self, *epoch_args, **kwargs):
        loss = recbole_epoch(self, *epoch_args, **kwargs)
        local = self.model.denoising_stats.clone()
        records.append({"iteration": self.adt_iteration, "local": local})
        return loss

    def combined_epoch(self, *epoch_args, **kwargs):
        loss = adt_epoch(self, *epoch_args, **kwargs)
        records[-1]["combined"] = self.model.denoising_stats.clone()
        return loss

    def written_state(self, epoch):
        writes.append(epoch)
        return checkpoint_state(self, epoch)

    Trainer._train_epoch, ADTTrainer._train_epoch = local_epoch, combined_epoch
    WeightsOnlyCheckpointMixin._checkpoint_state = written_state
    try:
        run_recbole_adts(rank, *args)
    finally:
        torch.save({"epochs": records, "writes": writes}, f"rank{rank}.pt")


@pytest.mark.slow
def test_two_processes_combine_counters_share_T_and_write_one_checkpoint(base_config, monkeypatch):
    # The spawned workers are the test's recording ones; the run is the user's nproc: 2 run.
    monkeypatch.setattr(quick_start, "run_recbole_adts", _recording_worker)
    settings = {**base_config, "nproc": 2, "port": free_port(), "state": "INFO"}
    settings.update(adt_loss="TCE", num_gradual=20)
    result = run_recbole_adt("GMF", config_dict=settings)

    single = run_recbole_adt("GMF", config_dict={**base_config, "epochs": 1}, saved=False)
    assert result.keys() == single.keys()
    for name, value in {**result["test_result"], **result["best_valid_result"]}.items():
        assert math.isfinite(value) and 0 <= value <= 1, name

    ranks = [torch.load(f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert ranks[0]["writes"] and not ranks[1]["writes"]  # rank 0 writes, rank 1 reads
    ranks = [rank["epochs"] for rank in ranks]
    assert len(ranks[0]) == len(ranks[1]) == base_config["epochs"]
    for epoch, (first, second) in enumerate(zip(*ranks)):
        assert first["iteration"] == second["iteration"] > 0
        assert torch.equal(first["combined"], second["combined"])
        assert torch.equal(first["combined"], first["local"] + second["local"])
        assert not torch.equal(first["local"], second["local"])  # each rank had its own batches
        combined = dict(zip(STAT_NAMES, first["combined"].tolist()))
        assert combined["dropped"] > 0 and combined["dropped_false_positives"] > 0, epoch
    # Each epoch advances T by the same number of batches on both ranks.
    assert ranks[0][1]["iteration"] == 2 * ranks[0][0]["iteration"]

    saved = sorted(Path(base_config["checkpoint_dir"]).iterdir())
    assert [path.name for path in saved] == [Path(result["model_file"]).name]
    logs = [path.read_text() for path in Path("log", "GMF").iterdir()]
    trained = [text for text in logs if "epoch 1 training" in text]
    assert len(trained) == 1 and "dropped positives" in trained[0]  # rank 0 logs, rank 1 not


@pytest.mark.slow
def test_nproc_1_runs_as_before(base_config):
    settings = {**base_config, "adt_loss": "TCE", "num_gradual": 20}
    plain = run_recbole_adt("GMF", config_dict=settings)
    explicit = run_recbole_adt("GMF", config_dict={**settings, "nproc": 1, "world_size": -1})
    assert not dist.is_initialized()
    assert plain.keys() == explicit.keys()
    for key in ("best_valid_score", "best_valid_result", "test_result"):
        assert plain[key] == explicit[key], key  # paths (model_file, ...) differ per run
    weights = [
        torch.load(r["model_file"], weights_only=True)["state_dict"] for r in (plain, explicit)
    ]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
