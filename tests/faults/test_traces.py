"""Readable traces of long runs: tensorboard steps run on across phases, DCF's relabel counts join
training.csv and tensorboard, and log columns that do not apply read n/a."""

from __future__ import annotations

import csv
import logging

import pytest

from recbole_adt.diagnostics import StepOffsetWriter, epoch_row
from recbole_adt.quick_start import run_recbole_adt
from tests.pipeline import prepare


class Board:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step=None):
        self.scalars.append((tag, value, step))

    def get_logdir(self):
        return "runs/x"


def test_step_offset_writer_moves_steps_only():
    board, offset = Board(), [0]
    writer = StepOffsetWriter(board, lambda: offset[0])
    writer.add_scalar("Loss/Train", 0.5, 0)
    offset[0] = 3
    writer.add_scalar("Loss/Train", 0.4, 1)
    writer.add_scalar("text", 1.0)  # no step: left to the writer
    assert board.scalars == [("Loss/Train", 0.5, 0), ("Loss/Train", 0.4, 4), ("text", 1.0, None)]
    assert writer.get_logdir() == "runs/x"


def test_relabel_counts_by_hand():
    stats = {
        "positives": 10,
        "false_positives": 4,
        "loss_clean": 3.0,
        "loss_false_positive": 4.0,
        "relabelled": 4,
        "relabelled_false_positives": 3,
        "dropped": 0,
        "dropped_false_positives": 0,
    }
    row = epoch_row(stats, drops=False, weights=False, relabels=True)
    assert (row["relabelled"], row["relabelled_fp"], row["relabel_precision"]) == (4, 3, 0.75)
    none = epoch_row(
        {**stats, "relabelled": 0, "relabelled_false_positives": 0},
        drops=False,
        weights=False,
        relabels=True,
    )
    assert none["relabel_precision"] is None  # empty in training.csv
    assert "relabelled" not in epoch_row(stats, drops=False, weights=False)


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = list((folder / "log_tensorboard").iterdir())
    board = EventAccumulator(str(run))
    board.Reload()
    return board


@pytest.mark.slow
def test_tensorboard_steps_run_on_across_phases(base_config, tmp_path):
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "num_gradual": 10,
        "phases": ["warmup:1", "adt:2", "finetune:2"],
        "stopping_step": 100,
        "diagnostics_dir": str(tmp_path / "diagnostics"),
    }
    run_recbole_adt("GMF", config_dict=settings)
    board = _scalars(tmp_path)
    steps = [event.step for event in board.Scalars("Loss/Train")]
    assert steps == [0, 1, 2, 3, 4]  # warm-up 0, ADT 1-2, finetune 3-4: one curve
    assert [event.step for event in board.Scalars("Vaild_score")] == [0, 1, 2, 3, 4]
    assert [e.step for e in board.Scalars("diagnostics/warmup/loss_tp_mean")] == [0]
    assert [e.step for e in board.Scalars("diagnostics/loss_tp_mean")] == [1, 2]
    assert [e.step for e in board.Scalars("diagnostics/finetune/loss_tp_mean")] == [3, 4]
    with open(tmp_path / "diagnostics" / "training.csv") as f:  # the CSV keeps phase epochs
        rows = [(row["phase"], row["epoch"]) for row in csv.DictReader(f)]
    assert rows == [
        ("warmup", "0"),
        ("adt", "0"),
        ("adt", "1"),
        ("finetune", "0"),
        ("finetune", "1"),
    ]


@pytest.mark.slow
def test_dcf_relabel_counts_join_training_csv_and_tensorboard(base_config, tmp_path):
    settings = {
        **base_config,
        "adt_loss": "DCF",
        "num_gradual": 10,
        "epochs": 2,
        "diagnostics_dir": str(tmp_path / "diagnostics"),
    }
    run_recbole_adt("GMF", config_dict=settings)
    with open(tmp_path / "diagnostics" / "training.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        relabelled, relabelled_fp = int(row["relabelled"]), int(row["relabelled_fp"])
        assert 0 < relabelled_fp <= relabelled < int(row["dropped"])  # 5% of the drops
        assert float(row["relabel_precision"]) == pytest.approx(relabelled_fp / relabelled)
    board = _scalars(tmp_path)
    counts = [event.value for event in board.Scalars("diagnostics/relabelled")]
    assert counts == [float(row["relabelled"]) for row in rows]
    assert "diagnostics/relabel_precision" in board.Tags()["scalars"]


def test_columns_that_do_not_apply_read_n_a(base_config, caplog):
    """Warm-up trains on D*, true positives only: no false-positive mean to show."""
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "num_gradual": 10,
        "phases": ["warmup:1", "adt:1"],
    }
    _, _, (train, valid, _), _, trainer = prepare("GMF", {**settings, "state": "INFO"})
    with caplog.at_level(logging.INFO):
        trainer.fit(train, valid, saved=False)
    warmup, adt = [r.getMessage() for r in caplog.records if "denoising" in r.getMessage()]
    assert "[warmup]" in warmup and "mean loss FP: n/a" in warmup and "0.0000" not in warmup
    assert "mean loss clean: 0." in warmup and "drop rate" not in warmup
    assert "mean loss FP: 0." in adt and "FP recall: 0." in adt
