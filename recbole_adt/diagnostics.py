r"""Training diagnostics on data with a false-positive flag, as CSV and tensorboard scalars.

Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback": the mean CE loss of
true- and false-positive interactions over training (Fig. 2, 8), T-CE's precision and recall of
the false positives it drops against dropping at random (Fig. 9), R-CE's mean weight of each,
and test metrics of four user groups of equal training interactions, sparsest first (Fig. 7).

Per epoch, ``<diagnostics_dir>/training.csv`` gets one row (:data:`TRAINING_COLUMNS`; a cell is
empty where the value does not apply: drop columns without a dropping denoiser, weights without
a reweighting one, relabel counts without DCF, a mean over no interaction, ``valid_score`` on
epochs without validation), and RecBole's tensorboard writer gets each number as
``diagnostics/<column>`` (``diagnostics/<phase>/<column>`` outside the ``adt`` phase), at the
step of :class:`StepOffsetWriter`: epochs run on across phases. Dropping at random with the
same count has precision = the false-positive share of the positives and recall = dropped /
positives. ``sparsity_groups.csv`` holds the test metrics by group. Only rank 0 writes.

Diagnostics are opt-in (:class:`DiagnosticsSettings`): a single run writes them, and tests the
sparsity groups, only when ``diagnostics_dir`` is set; ``compare`` and ``grid`` set it for each
run (``DIR/runs/<run id>``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import ClassVar

from recbole_adt.output import OutputSettings
from recbole_adt.settings import parsed

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
    "relabelled",
    "relabelled_fp",
    "relabel_precision",
    "valid_score",
)
SPARSITY_COLUMNS = ("group", "users", "interactions", "min_interactions", "max_interactions")
_NOT_SCALARS = ("phase", "epoch", "valid_score")  # RecBole already logs its Vaild_score


@dataclasses.dataclass(frozen=True)
class DiagnosticsSettings:
    """The parsed ``diagnostics_dir`` and ``sparsity_groups``.

    Diagnostics are opt-in: a run writes them only when ``diagnostics_dir`` names a folder
    (``compare`` and ``grid`` give every run its own). ``sparsity_groups`` user groups are then
    tested apart (0: none).
    """

    KEYS: ClassVar[tuple[str, ...]] = ("diagnostics_dir", "sparsity_groups")

    directory: str | None  # None: no diagnostics
    sparsity_groups: int

    @classmethod
    def from_config(cls, config) -> DiagnosticsSettings:
        groups = config["sparsity_groups"]
        if isinstance(groups, float) and groups.is_integer():
            groups = int(groups)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 0:
            raise ValueError(
                f"sparsity_groups must be an integer >= 0, got {groups!r}: the number of user "
                "groups of equal training interactions to test apart when diagnostics are on "
                "(the paper's Fig. 7 uses 4; 0 turns it off), e.g. --sparsity_groups=4."
            )
        directory = config["diagnostics_dir"]
        if directory is not None and not isinstance(directory, str):
            raise ValueError(
                f"diagnostics_dir must be a folder path, or empty (~) for no diagnostics, got "
                f"{directory!r}: e.g. --diagnostics_dir=log_diagnostics/run1."
            )
        return cls(os.path.expanduser(directory) if directory else None, groups)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @property
    def tested_groups(self) -> int:
        """Sparsity groups to test: ``sparsity_groups`` with diagnostics on, else 0."""
        return self.sparsity_groups if self.enabled else 0


def resolve_diagnostics_dir(config) -> str | None:
    """The run's diagnostics folder (made at the first write), or None without diagnostics.

    A relative ``diagnostics_dir`` lies under ``output_dir`` when that is set
    (:class:`~recbole_adt.output.OutputSettings`), else in the working folder.
    """
    return parsed(config, OutputSettings).resolve(parsed(config, DiagnosticsSettings).directory)


def writes_diagnostics(config) -> bool:
    """Whether this process writes diagnostics: they are asked for (``diagnostics_dir``), and
    only the process of rank 0 writes (all ranks hold the same numbers)."""
    on_rank_zero = config["single_spec"] or config["local_rank"] == 0
    return parsed(config, DiagnosticsSettings).enabled and on_rank_zero


def epoch_row(
    stats: dict[str, float], *, drops: bool, weights: bool, relabels: bool = False
) -> dict:
    """The numbers of one training epoch from its summed denoising stats (``STAT_NAMES``).

    ``relabels`` (DCF): the positives trained as negatives, how many of them were false
    positives, and that share (the relabelling's precision)."""
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
    if relabels:
        relabelled, relabelled_fp = stats["relabelled"], stats["relabelled_false_positives"]
        row.update(
            relabelled=int(relabelled),
            relabelled_fp=int(relabelled_fp),
            relabel_precision=_ratio(relabelled_fp, relabelled),
        )
    return row


class StepOffsetWriter:
    """A tensorboard writer whose scalars' steps are moved on by ``offset()``.

    RecBole writes ``Loss/Train`` and ``Vaild_score`` at the epoch of the current ``fit``, which
    restarts at 0 in each phase of a run. :class:`~recbole_adt.trainer.PhasedTrainer` passes the
    epochs of the phases before the current one (their configured lengths, so a resumed run
    lands on the same steps), so every curve, these and ``diagnostics/...``, runs on across the
    phases: step = the epoch within the phase + the epochs of the phases before it. Everything
    else is the wrapped writer's.
    """

    def __init__(self, writer, offset):
        self.writer = writer
        self.offset = offset  # () -> int

    def add_scalar(self, tag, scalar_value, global_step=None, *args, **kwargs):
        if global_step is not None:
            global_step += self.offset()
        self.writer.add_scalar(tag, scalar_value, global_step, *args, **kwargs)

    def __getattr__(self, name):
        if name == "writer":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.writer, name)


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
