"""Training diagnostics on planted false positives: the TP/FP loss split, drop precision and recall
by hand, the random-drop reference, the CSV and tensorboard output, sparsity groups, and that all
of it is opt-in."""

import csv
import os

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from recbole_adt.diagnostics import (
    TRAINING_COLUMNS,
    DiagnosticsSettings,
    DiagnosticsWriter,
    epoch_row,
    writes_diagnostics,
)
from recbole_adt.evaluation import sparsity_group_loaders, sparsity_group_of_users
from recbole_adt.quick_start import run_recbole_adt
from recbole_adt.trainer.checkpoint import read_checkpoint
from tests.pipeline import prepare
from tests.synthetic import planted_interactions, write_dataset


@pytest.mark.parametrize("loss", ["CE", "TCE", "RCE"])
def test_tp_fp_loss_split_adds_up(base_config, loss):
    _, _, (train, _, _), model, _ = prepare("GMF", {**base_config, "adt_loss": loss})
    batch = next(iter(train))
    model.drop_rate = 0.3
    model.reset_denoising_stats()
    with torch.no_grad():
        model.calculate_loss(batch)
        logits = model.forward(batch["user_id"], batch["item_id"])
    stats = model.denoising_summary()
    base = F.binary_cross_entropy_with_logits(logits, batch["label"], reduction="none")
    positive = batch["label"] == 1
    false_positive = positive & (batch["false_positive"] == 1)
    assert stats["loss_clean"] == pytest.approx(base[positive & ~false_positive].sum().item())
    assert stats["loss_false_positive"] == pytest.approx(base[false_positive].sum().item())
    total = stats["loss_clean"] + stats["loss_false_positive"]
    assert total == pytest.approx(base[positive].sum().item(), rel=1e-5)


def test_drop_precision_and_recall_by_hand(base_config):
    _, _, _, model, _ = prepare("GMF", {**base_config, "adt_loss": "TCE"})
    # Four positives (two flagged) and four negatives; the largest-loss positives are the
    # two with the lowest logits: one false positive (-3) and one true positive (-2).
    logits = torch.tensor([-3.0, -2.0, 1.0, 2.0, 0.5, -0.5, 0.0, 1.5])
    batch = Interaction(
        {
            "label": torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]),
            "false_positive": torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0]),  # negatives inherit
        }
    )
    model.drop_rate = 0.25  # floor(0.25 * 8) = 2 rows
    model.reset_denoising_stats()
    model.pointwise_loss(logits, batch)
    row = epoch_row(model.denoising_summary(), drops=True, weights=False)
    assert (row["positives"], row["false_positives"]) == (4, 2)
    assert (row["dropped"], row["dropped_fp"]) == (2, 1)
    assert row["drop_precision"] == 0.5 and row["drop_recall"] == 0.5
    assert row["random_precision"] == 0.5 and row["random_recall"] == 0.5
    base = F.binary_cross_entropy_with_logits(logits[:4], torch.ones(4), reduction="none")
    assert row["loss_tp_mean"] == pytest.approx((base[1] + base[3]).item() / 2)
    assert row["loss_fp_mean"] == pytest.approx((base[0] + base[2]).item() / 2)
    assert "weight_tp_mean" not in row


def test_random_drop_reference_is_the_base_rate(base_config):
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "epochs": 1,
        "num_gradual": 5,
        "diagnostics_dir": "diagnostics",
    }
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    trainer.fit(train, valid, saved=False)
    with open("diagnostics/training.csv") as f:
        (row,) = list(csv.DictReader(f))
    flags = train._dataset.inter_feat["false_positive"]
    base_rate = flags.mean().item()  # every training positive is seen once per epoch
    assert int(row["positives"]) == len(flags)
    assert float(row["random_precision"]) == pytest.approx(base_rate)
    assert 0.15 < base_rate < 0.25  # planted: 20% false positives
    # Dropping the same number of positives at random does reach that precision and recall.
    positives, dropped = int(row["positives"]), int(row["dropped"])
    generator = torch.Generator().manual_seed(0)
    precision, recall = [], []
    for _ in range(300):
        picked = flags[torch.randperm(positives, generator=generator)[:dropped]]
        precision.append(picked.mean().item())
        recall.append(picked.sum().item() / flags.sum().item())
    assert sum(precision) / 300 == pytest.approx(base_rate, abs=0.01)
    assert sum(recall) / 300 == pytest.approx(float(row["random_recall"]), abs=0.01)
    assert float(row["random_recall"]) == pytest.approx(dropped / positives)


def test_rows_leave_cells_that_do_not_apply_empty(tmp_path):
    stats = {
        "positives": 10,
        "false_positives": 2,
        "dropped": 0,
        "dropped_false_positives": 0,
        "weight_clean": 4.0,
        "weight_false_positive": 0.5,
        "loss_clean": 8.0,
        "loss_false_positive": 3.0,
    }
    ce = epoch_row(stats, drops=False, weights=False)
    assert ce == {"positives": 10, "false_positives": 2, "loss_tp_mean": 1.0, "loss_fp_mean": 1.5}
    rce = epoch_row(stats, drops=False, weights=True)
    assert (rce["weight_tp_mean"], rce["weight_fp_mean"]) == (0.5, 0.25)
    tce = epoch_row(stats, drops=True, weights=False)
    assert tce["drop_precision"] is None and tce["drop_recall"] == 0.0  # nothing dropped yet

    class Board:
        scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    writer = DiagnosticsWriter(str(tmp_path / "d"), Board())
    writer.write_epoch({"phase": "adt", "epoch": 0, **ce, "valid_score": 0.3})
    writer.write_epoch({"phase": "finetune", "epoch": 0, **tce})
    with open(writer.training_file) as f:
        header, *rows = list(csv.reader(f))
    assert tuple(header) == TRAINING_COLUMNS
    first = dict(zip(header, rows[0]))
    assert (
        first["dropped"] == "" and first["weight_tp_mean"] == "" and first["valid_score"] == "0.3"
    )
    assert dict(zip(header, rows[1]))["drop_precision"] == ""
    tags = {tag for tag, _, _ in Board.scalars}
    assert "diagnostics/loss_tp_mean" in tags and "diagnostics/finetune/drop_recall" in tags
    assert not any(tag.endswith(("valid_score", "/epoch", "/phase")) for tag in tags)
    DiagnosticsWriter(str(tmp_path / "d")).write_epoch({"phase": "adt", "epoch": 0, **ce})
    with open(writer.training_file) as f:
        assert len(f.readlines()) == 2  # a new run's writer starts the file again


def test_only_rank_zero_writes():
    asked = {"diagnostics_dir": "d", "sparsity_groups": 4}
    assert writes_diagnostics({**asked, "single_spec": True, "local_rank": 0})
    assert writes_diagnostics({**asked, "single_spec": False, "local_rank": 0})
    assert not writes_diagnostics({**asked, "single_spec": False, "local_rank": 1})
    off = {**asked, "diagnostics_dir": None, "single_spec": True, "local_rank": 0}
    assert not writes_diagnostics(off)


def test_settings_are_opt_in():
    settings = DiagnosticsSettings.from_config({"diagnostics_dir": "~/d", "sparsity_groups": 4.0})
    assert settings == DiagnosticsSettings(os.path.expanduser("~/d"), 4)
    assert settings.enabled and settings.tested_groups == 4
    off = DiagnosticsSettings.from_config({"diagnostics_dir": None, "sparsity_groups": 4})
    assert not off.enabled and off.tested_groups == 0


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"sparsity_groups": -1}, "sparsity_groups must be an integer >= 0"),
        ({"sparsity_groups": 2.5}, "sparsity_groups must be an integer >= 0"),
        ({"sparsity_groups": True}, "sparsity_groups must be an integer >= 0"),
        ({"diagnostics_dir": 3}, "diagnostics_dir must be a folder path"),
    ],
)
def test_bad_settings_name_the_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        DiagnosticsSettings.from_config({"diagnostics_dir": None, "sparsity_groups": 4, **setting})


def test_a_run_without_diagnostics_dir_writes_none(base_config, tmp_path):
    settings = {**base_config, "adt_loss": "TCE", "epochs": 1, "num_gradual": 5}
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    trainer.fit(train, valid, saved=False)
    assert trainer.diagnostics_dir is None
    assert not (tmp_path / "log_diagnostics").exists()


def test_sparsity_groups_by_hand():
    counts = torch.tensor([0, 1, 1, 2, 4, 8, 0])
    # sorted: users 1, 2 (1 each), 3 (2), 4 (4), 5 (8): 16 in all, 4 per group;
    # interactions before each: 0, 1, 2, 4, 8 -> groups 0, 0, 0, 1, 2 (none starts in group 3)
    assert sparsity_group_of_users(counts, 4).tolist() == [-1, 0, 0, 0, 1, 2, -1]
    assert sparsity_group_of_users(torch.tensor([3, 3, 3, 3]), 2).tolist() == [0, 0, 1, 1]
    assert sparsity_group_of_users(torch.zeros(3), 4).tolist() == [-1, -1, -1]


@pytest.fixture
def uneven_data(tmp_path_factory):
    """The planted data with 6 to 30 interactions per user."""
    rows = planted_interactions()
    kept, seen = [], {}
    for row in rows:
        user = int(row[0][1:])
        seen[user] = seen.get(user, 0) + 1
        if seen[user] <= 6 + user % 25:
            kept.append(row)
    data_path = tmp_path_factory.mktemp("uneven")
    write_dataset(data_path, "uneven", kept)
    return data_path


def test_sparsity_group_loaders_split_the_test_users(base_config, uneven_data):
    settings = {**base_config, "dataset": "uneven", "data_path": str(uneven_data)}
    config, _, (train, _, test), _, _ = prepare("GMF", settings)
    dataset = train._dataset
    counts = torch.bincount(dataset.inter_feat["user_id"], minlength=dataset.user_num)
    groups = sparsity_group_loaders(config, test, counts, 4)
    assert [columns["group"] for columns, _ in groups] == [1, 2, 3, 4]
    total = int(counts.sum())
    tested = set()
    for columns, loader in groups:
        assert abs(columns["interactions"] - total / 4) <= int(counts.max())
        users = loader.uid_list.tolist()
        assert all(
            columns["min_interactions"] <= counts[u] <= columns["max_interactions"] for u in users
        )
        assert not tested & set(users)
        tested |= set(users)
    assert tested == set(test.uid_list.tolist())
    maxima = [columns["max_interactions"] for columns, _ in groups]
    minima = [columns["min_interactions"] for columns, _ in groups]
    assert all(high <= low for high, low in zip(maxima, minima[1:]))  # sparsest first
    assert sum(columns["users"] for columns, _ in groups) == int((counts > 0).sum())


@pytest.mark.slow
def test_run_writes_both_files_and_tensorboard(base_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = tmp_path / "diagnostics"
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "num_gradual": 10,
        "phases": ["warmup:1", "adt:2"],
        "diagnostics_dir": str(folder),
    }
    result = run_recbole_adt("GMF", config_dict=settings)
    assert result["diagnostics_dir"] == str(folder)
    with open(folder / "training.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["phase"], row["epoch"]) for row in rows] == [
        ("warmup", "0"),
        ("adt", "0"),
        ("adt", "1"),
    ]
    assert rows[0]["drop_rate"] == "" and rows[0]["drop_precision"] == ""  # warm-up is CE
    assert all(row["valid_score"] and row["loss_tp_mean"] for row in rows)
    # D* holds true positives only: no false-positive loss in warm-up
    assert rows[0]["false_positives"] == "0" and rows[0]["loss_fp_mean"] == ""
    assert rows[1]["loss_fp_mean"] and rows[2]["loss_fp_mean"]
    assert float(rows[2]["drop_rate"]) > 0 and rows[2]["drop_precision"]
    assert int(rows[2]["iteration"]) == 2 * int(rows[1]["iteration"])
    with open(folder / "sparsity_groups.csv") as f:
        groups = list(csv.DictReader(f))
    assert len(groups) == len(result["test_sparsity_groups"]) == 4
    for written, returned in zip(groups, result["test_sparsity_groups"]):
        assert float(written["ndcg@20"]) == returned["ndcg@20"]
        assert int(written["interactions"]) == returned["interactions"]
    board = EventAccumulator(str(next((tmp_path / "log_tensorboard").iterdir())))
    board.Reload()
    tags = board.Tags()["scalars"]
    assert "diagnostics/drop_precision" in tags and "diagnostics/warmup/loss_tp_mean" in tags
    assert len(board.Scalars("diagnostics/loss_tp_mean")) == 2


@pytest.mark.slow
def test_valid_metric_rule_leaves_a_run_unchanged(base_config):
    settings = {**base_config, "adt_loss": "TCE", "num_gradual": 10, "epochs": 3}
    plain = run_recbole_adt("GMF", config_dict=settings)
    keyed = run_recbole_adt("GMF", config_dict={**settings, "checkpoint_rule": "valid_metric"})
    assert keyed["test_result"] == plain["test_result"]
    assert keyed["best_valid_result"] == plain["best_valid_result"]
    assert keyed["best_epoch"] == plain["best_epoch"] and keyed["valid_score_bigger"] is True
    first = read_checkpoint(plain["model_file"])["state_dict"]
    second = read_checkpoint(keyed["model_file"])["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)
