r"""Training diagnostics on data with a false-positive flag, as CSV and tensorboard scalars.

Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback": the mean CE loss of
true- and false-positive interactions over training (Fig. 2, 8), T-CE's precision and recall of
the false positives it drops against dropping at random (Fig. 9), R-CE's mean weight of each,
and test metrics of four user groups of equal training interactions, sparsest first (Fig. 7).

Per epoch, ``<diagnostics_dir>/training.csv`` gets one row (:data:`TRAINING_COLUMNS`; a cell is
empty where the value does not apply: drop columns without a dropping denoiser, weights without
a reweighting one, ``valid_score`` on epochs without validation), and RecBole's tensorboard
writer gets each number as ``diagnostics/<column>`` (``diagnostics/<phase>/<column>`` outside
the ``adt`` phase). Dropping at random with the same count has precision = the false-positive
share of the positives and recall = dropped / positives. ``sparsity_groups.csv`` holds the test
metrics by group. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import os
from logging import getLogger

from recbole.utils import get_local_time

TRAINING_COLUMNS = (
    "phase",
    "epoch",
    "iteration",
    "drop_rate",
    "positives",
    "false_positives",
    "loss_tp_mean",
    "loss_fp_mean",
    "dropped",
    "dropped_fp",
    "drop_precision",
    "drop_recall",
    "random_precision",
    "random_recall",
    "weight_tp_mean",
    "weight_fp_mean",
    "valid_score",
)
SPARSITY_COLUMNS = ("group", "users", "interactions", "min_interactions", "max_interactions")
_NOT_SCALARS = ("phase", "epoch", "valid_score")  # RecBole already logs its Vaild_score


def check_diagnostics_settings(settings: dict) -> None:
    """``sparsity_groups`` (an integer >= 0) and ``diagnostics_dir`` (empty or a path)."""
    groups = settings.get("sparsity_groups", 4)
    if isinstance(groups, float) and groups.is_integer():
        groups = settings["sparsity_groups"] = int(groups)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 0:
        raise ValueError(
            f"sparsity_groups must be an integer >= 0, got {groups!r}: the number of user "
            "groups of equal training interactions to test apart (the paper's Fig. 7 uses 4; "
            "0 turns it off), e.g. --sparsity_groups=4."
        )
    directory = settings.get("diagnostics_dir")
    if directory is not None and not isinstance(directory, str):
        raise ValueError(
            f"diagnostics_dir must be a folder path, or empty (~) for "
            f"log_diagnostics/<model>-<dataset>-<time>, got {directory!r}."
        )


def resolve_diagnostics_dir(config) -> str:
    """``diagnostics_dir``, or ``log_diagnostics/`` plus the name of the run's log file (as
    RecBole names ``log_tensorboard/``), made unique; the folder is made at the first write."""
    if config["diagnostics_dir"]:
        return os.path.expanduser(config["diagnostics_dir"])
    name = f"{config['model']}-{config['dataset']}-{get_local_time()}"
    for handler in getLogger().handlers:
        # RecBole's log file; not pytest's file handler, which writes to os.devnull
        if str(getattr(handler, "baseFilename", "")).endswith(".log"):
            name = os.path.splitext(os.path.basename(handler.baseFilename))[0]
            break
    path, suffix = os.path.join("log_diagnostics", name), 1
    while os.path.exists(path):
        path, suffix = os.path.join("log_diagnostics", f"{name}-{suffix}"), suffix + 1
    return path


def writes_diagnostics(config) -> bool:
    """Only the process of rank 0 writes (all ranks hold the same numbers)."""
    return config["single_spec"] or config["local_rank"] == 0


def epoch_row(stats: dict[str, float], *, drops: bool, weights: bool) -> dict:
    """The numbers of one training epoch from its summed denoising stats (``STAT_NAMES``)."""
    positives, false_positives = stats["positives"], stats["false_positives"]
    clean = positives - false_positives
    dropped, dropped_fp = stats["dropped"], stats["dropped_false_positives"]
    row = {
        "positives": int(positives),
        "false_positives": int(false_positives),
        "loss_tp_mean": _ratio(stats["loss_clean"], clean),
        "loss_fp_mean": _ratio(stats["loss_false_positive"], false_positives),
    }
    if drops:
        row.update(
            dropped=int(dropped),
            dropped_fp=int(dropped_fp),
            drop_precision=_ratio(dropped_fp, dropped),
            drop_recall=_ratio(dropped_fp, false_positives),
            random_precision=_ratio(false_positives, positives),
            random_recall=_ratio(dropped, positives),
        )
    if weights:
        row.update(
            weight_tp_mean=_ratio(stats["weight_clean"], clean),
            weight_fp_mean=_ratio(stats["weight_false_positive"], false_positives),
        )
    return row


class DiagnosticsWriter:
    """Writes the CSV files of one run into ``directory`` (overwriting those of an earlier run)."""

    def __init__(self, directory: str, tensorboard=None):
        self.directory = directory
        self.tensorboard = tensorboard
        self._training_started = False

    @property
    def training_file(self) -> str:
        return os.path.join(self.directory, "training.csv")

    def write_epoch(self, row: dict) -> None:
        """Append one epoch to ``training.csv`` and its numbers to tensorboard."""
        os.makedirs(self.directory, exist_ok=True)
        with open(self.training_file, "a" if self._training_started else "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=TRAINING_COLUMNS, restval="")
            if not self._training_started:
                writer.writeheader()
            writer.writerow({k: _cell(v) for k, v in row.items()})
        self._training_started = True
        if self.tensorboard is None:
            return
        phase = row.get("phase", "adt")
        prefix = "diagnostics/" if phase == "adt" else f"diagnostics/{phase}/"
        for name, value in row.items():
            if name not in _NOT_SCALARS and value is not None:
                self.tensorboard.add_scalar(prefix + name, value, row["epoch"])

    def write_sparsity_groups(self, rows: list[dict]) -> str:
        """``sparsity_groups.csv``: one row per group, its metrics after the group columns."""
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, "sparsity_groups.csv")
        metrics = [k for k in rows[0] if k not in SPARSITY_COLUMNS] if rows else []
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*SPARSITY_COLUMNS, *metrics], restval="")
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        return path


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _cell(value):
    return "" if value is None else value
