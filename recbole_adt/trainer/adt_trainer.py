r"""ADTTrainer: the drop-rate schedule over global iterations, and per-epoch denoising logs.

Paper: Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback", Algorithm 1.
The trainer holds the run's :class:`~recbole_adt.schedule.DropSchedule` (checked once, by the
config) and hands the model :math:`\epsilon(T)` before each batch. The iteration counter T runs
across epochs, is saved in every checkpoint and restored by ``resume_checkpoint``. With
``num_gradual_unit: epochs`` the schedule reads T against B, the batches of one epoch of the ADT
phase's training data, taken from its loader at each ADT epoch. When the phase's epochs cannot
reach :math:`\epsilon_{max}`, one warning says so at its start. Everything else (early stopping,
evaluation, logging) is RecBole's, guarded against numerical faults and stop signals
(:mod:`recbole_adt.trainer.faults`).

The epoch log line ends with the denoising numbers that apply to the run (drops, relabels,
weights; the losses and precisions of the false positives on data with a flag); a mean or share
over no interaction, such as the false positives of :math:`D^*` in warm-up, reads ``n/a``.
"""

from __future__ import annotations

import math

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_adt.diagnostics import (
    DiagnosticsWriter,
    StepOffsetWriter,
    epoch_row,
    resolve_diagnostics_dir,
    writes_diagnostics,
)
from recbole_adt.distributed import all_reduce_sum, check_same_on_every_rank, is_distributed
from recbole_adt.schedule import DropSchedule
from recbole_adt.settings import parsed
from recbole_adt.trainer.checkpoint import WeightsOnlyCheckpointMixin
from recbole_adt.trainer.faults import FaultGuardMixin
from recbole_adt.trainer.full_sort import FullSortEvalMixin
from recbole_adt.trainer.selection import CheckpointRuleMixin
from recbole_adt.trainer.sparse_optimizer import SparseOptimizerMixin


class ADTTrainer(
    SparseOptimizerMixin,
    WeightsOnlyCheckpointMixin,  # before the next two: it keeps the score that selects epochs
    FaultGuardMixin,
    CheckpointRuleMixin,
    FullSortEvalMixin,
    Trainer,
):
    """Trainer for models with :class:`~recbole_adt.model.DenoisingLossMixin`."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.drop_schedule = parsed(config, DropSchedule)
        # B, batches per epoch of the ADT phase's training data (num_gradual_unit: epochs); set
        # at each ADT epoch, so phases with other data and resumed runs get the right one.
        self.adt_batches_per_epoch = None
        self.adt_iteration = 0  # T in Eq. (3): batches trained so far, across epochs
        self.diagnostics_dir = resolve_diagnostics_dir(config)
        self._diagnostics = None  # the writer, made at the first epoch with diagnostics
        self._pending_row = None  # this epoch's diagnostics, waiting for its valid score

    def current_drop_rate(self) -> float:
        """epsilon(T) for the next batch; 0 unless the model's denoiser drops (T-CE, T-BPR)."""
        if not self.model.denoiser.drops:
            return 0.0
        return self.drop_schedule.rate(
            self.adt_iteration, batches_per_epoch=self.adt_batches_per_epoch
        )

    def _counts_adt_iterations(self) -> bool:
        """Whether this epoch's batches advance T (phases other than ADT do not)."""
        return True

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._write_diagnostics()  # the last epoch's, when it had no validation
        loss_func = loss_func or self.model.calculate_loss

        counts = self._counts_adt_iterations()

        def scheduled_loss(interaction):
            self.model.drop_rate = self.current_drop_rate()
            self.adt_iteration += counts
            return loss_func(interaction)

        self.model.reset_denoising_stats()
        if counts:
            self.adt_batches_per_epoch = len(train_data)
            self.model.denoiser.start_epoch()  # DCF: the epoch s and its memory's time window
        total_loss = super()._train_epoch(
            train_data, epoch_idx, loss_func=scheduled_loss, show_progress=show_progress
        )
        if is_distributed(self.config):
            # Each rank denoised its own batches: log and keep the whole epoch's counts. T agrees
            # because RecBole's DistributedSampler gives every rank the same number of batches.
            self.model.denoising_stats = all_reduce_sum(self.model.denoising_stats)
            check_same_on_every_rank(self.adt_iteration, "The ADT iteration counter T", self.device)
        return total_loss

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        output = super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        return output + self._denoising_output()

    def _denoising_output(self) -> str:
        stats = self.model.denoising_summary()
        flagged = bool(self.model.FP_FIELD)
        fps = stats["false_positives"]
        clean = stats["positives"] - fps
        parts = []
        if self.model.denoiser.drops:
            parts.append(f"drop rate: {self.model.drop_rate:.4f}")
            parts.append(f"dropped positives: {int(stats['dropped'])}/{int(stats['positives'])}")
            if flagged:
                precision = _share(stats["dropped_false_positives"], stats["dropped"])
                recall = _share(stats["dropped_false_positives"], fps)
                parts.append(f"FP precision: {precision}, FP recall: {recall}")
        if self.model.denoiser.relabels:
            parts.append(
                f"relabelled positives: {int(stats['relabelled'])}/{int(stats['positives'])}"
            )
            if flagged:
                precision = _share(stats["relabelled_false_positives"], stats["relabelled"])
                parts.append(f"relabelled FP precision: {precision}")
        if self.model.denoiser.weights and flagged:
            parts.append(f"mean weight clean: {_share(stats['weight_clean'], clean)}")
            parts.append(f"mean weight FP: {_share(stats['weight_false_positive'], fps)}")
        if flagged:
            parts.append(f"mean loss clean: {_share(stats['loss_clean'], clean)}")
            parts.append(f"mean loss FP: {_share(stats['loss_false_positive'], fps)}")
        if not parts:
            return ""
        return " " + set_color("denoising", "blue") + " [" + ", ".join(parts) + "]"

    def epoch_offset(self) -> int:
        """Epochs before the current fit's, for tensorboard steps (:class:`StepOffsetWriter`)."""
        return 0

    def _phase_name(self) -> str:
        return "adt"

    def fit(self, train_data, *args, **kwargs):
        if not isinstance(self.tensorboard, StepOffsetWriter):
            self.tensorboard = StepOffsetWriter(self.tensorboard, self.epoch_offset)
        if self._counts_adt_iterations():
            self._warn_if_ramp_too_long(len(train_data))
        try:
            return super().fit(train_data, *args, **kwargs)
        finally:
            self._write_diagnostics()  # the last epoch's, when it had no validation

    def _warn_if_ramp_too_long(self, batches_per_epoch: int) -> None:
        """One warning when epsilon cannot reach epsilon_max within this ADT phase's epochs:
        epsilon_N in iterations > T at the start + epochs left x batches per epoch."""
        schedule = self.drop_schedule
        if not (self.model.denoiser.drops and schedule.drop_rate > 0):
            return
        needed = schedule.iterations(batches_per_epoch)
        epochs = self.epochs - self.start_epoch
        available = self.adt_iteration + epochs * batches_per_epoch
        if needed <= available:
            return
        reached = schedule.rate(max(available - 1, 0), batches_per_epoch=batches_per_epoch)
        most_epochs = math.floor(100 * available / batches_per_epoch) / 100
        self.logger.warning(
            f"The drop rate cannot reach drop_rate={schedule.drop_rate:g} in this run: "
            f"num_gradual={schedule.num_gradual:g} {schedule.unit} (epsilon_N) is {needed:.10g} "
            f"iterations of {batches_per_epoch} batches per epoch, but the ADT phase has at most "
            f"{epochs} epochs left, up to iteration {available}, so epsilon stops at "
            f"{reached:.4f}. Set num_gradual to at most {most_epochs:g} epochs (num_gradual_unit: "
            f"epochs) or {available} iterations, or raise epochs."
        )

    def _valid_epoch(self, valid_data, show_progress=False):
        """The checkpoint rule's score (:class:`CheckpointRuleMixin`), kept in the diagnostics."""
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self._pending_row is not None:
            self._pending_row["valid_score"] = valid_score
        self._write_diagnostics()
        return valid_score, valid_result

    def _add_train_loss_to_tensorboard(self, epoch_idx, losses, tag="Loss/Train"):
        """RecBole's; also takes the epoch's diagnostics on data with a false-positive flag."""
        super()._add_train_loss_to_tensorboard(epoch_idx, losses, tag=tag)
        if self.model.FP_FIELD and writes_diagnostics(self.config):
            denoiser = self.model.denoiser
            self._pending_row = {
                "phase": self._phase_name(),
                "epoch": epoch_idx,
                "iteration": self.adt_iteration,
                "drop_rate": self.model.drop_rate if denoiser.drops else None,
                **epoch_row(
                    self.model.denoising_summary(),
                    drops=denoiser.drops,
                    weights=denoiser.weights,
                    relabels=denoiser.relabels,
                ),
            }

    def _write_diagnostics(self) -> None:
        """Write the pending epoch's row to training.csv and tensorboard."""
        if self._pending_row is None:
            return
        if self._diagnostics is None:
            self._diagnostics = DiagnosticsWriter(self.diagnostics_dir, self.tensorboard)
        self._diagnostics.write_epoch(self._pending_row)
        self._pending_row = None

    def _checkpoint_state(self, epoch: int) -> dict:
        return {**super()._checkpoint_state(epoch), "adt_iteration": self.adt_iteration}

    def _restore_checkpoint_state(self, checkpoint: dict) -> None:
        super()._restore_checkpoint_state(checkpoint)
        self.adt_iteration = int(checkpoint.get("adt_iteration", 0))
        self.logger.info(f"Resumed ADT iteration counter at T = {self.adt_iteration}")


def _share(total: float, count: float) -> str:
    """``total / count`` to four places, or ``n/a`` over no interaction."""
    return f"{total / count:.4f}" if count else "n/a"
