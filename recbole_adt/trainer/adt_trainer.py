"""ADTTrainer: the drop-rate schedule over global iterations, and per-epoch denoising logs.

Paper: Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback", Algorithm 1.
The iteration counter T runs across epochs, is saved in every checkpoint and restored by
``resume_checkpoint``. With ``num_gradual_unit: epochs`` the schedule reads T against B, the
batches of one epoch of the ADT phase's training data, taken from its loader at each ADT epoch
(:mod:`recbole_adt.schedule`). Everything else (early stopping, evaluation, logging) is RecBole's.
"""

from __future__ import annotations

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_adt.denoisers.truncate import check_drop_count
from recbole_adt.diagnostics import (
    DiagnosticsWriter,
    epoch_row,
    resolve_diagnostics_dir,
    writes_diagnostics,
)
from recbole_adt.distributed import all_reduce_sum, check_same_on_every_rank, is_distributed
from recbole_adt.losses import check_drop_rate
from recbole_adt.schedule import (
    SCHEDULES,
    check_gradual_unit,
    check_num_gradual,
    gradual_iterations,
)
from recbole_adt.trainer.checkpoint import WeightsOnlyCheckpointMixin
from recbole_adt.trainer.full_sort import FullSortEvalMixin
from recbole_adt.trainer.selection import CheckpointRuleMixin
from recbole_adt.trainer.sparse_optimizer import SparseOptimizerMixin


class ADTTrainer(
    SparseOptimizerMixin,
    CheckpointRuleMixin,
    WeightsOnlyCheckpointMixin,
    FullSortEvalMixin,
    Trainer,
):
    """Trainer for models with :class:`~recbole_adt.model.DenoisingLossMixin`."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.max_drop_rate = check_drop_rate(config["drop_rate"])
        self.num_gradual_unit = check_gradual_unit(config["num_gradual_unit"])
        self.num_gradual = check_num_gradual(config["num_gradual"], unit=self.num_gradual_unit)
        # drop_count picks the ramp that goes with its count (schedule.SCHEDULES).
        self._schedule = SCHEDULES[check_drop_count(config["drop_count"])]
        # B, batches per epoch of the ADT phase's training data (num_gradual_unit: epochs); set
        # at each ADT epoch, so phases with other data and resumed runs get the right one.
        self.adt_batches_per_epoch = None
        self._gradual_iterations = None  # epsilon_N in batches, resolved at each ADT epoch
        self.adt_iteration = 0  # T in Eq. (3): batches trained so far, across epochs
        self.diagnostics_dir = resolve_diagnostics_dir(config)
        self._diagnostics = None  # the writer, made at the first epoch with diagnostics
        self._pending_row = None  # this epoch's diagnostics, waiting for its valid score

    def current_drop_rate(self) -> float:
        """epsilon(T) for the next batch; 0 unless the model's denoiser drops (T-CE, T-BPR)."""
        if not self.model.denoiser.drops:
            return 0.0
        # The settings were checked once, here and at each ADT epoch: no per-batch validation.
        return self._schedule(self.adt_iteration, self.max_drop_rate, self._gradual_iterations)

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
            self._gradual_iterations = gradual_iterations(
                self.num_gradual,
                unit=self.num_gradual_unit,
                batches_per_epoch=self.adt_batches_per_epoch,
            )
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
        parts = []
        if self.model.denoiser.drops:
            parts.append(f"drop rate: {self.model.drop_rate:.4f}")
            parts.append(f"dropped positives: {int(stats['dropped'])}/{int(stats['positives'])}")
            if self.model.FP_FIELD and stats["dropped"]:
                precision = stats["dropped_false_positives"] / stats["dropped"]
                recall = stats["dropped_false_positives"] / max(stats["false_positives"], 1)
                parts.append(f"FP precision: {precision:.4f}, FP recall: {recall:.4f}")
        if self.model.denoiser.relabels:
            parts.append(
                f"relabelled positives: {int(stats['relabelled'])}/{int(stats['positives'])}"
            )
            if self.model.FP_FIELD and stats["relabelled"]:
                precision = stats["relabelled_false_positives"] / stats["relabelled"]
                parts.append(f"relabelled FP precision: {precision:.4f}")
        if self.model.denoiser.weights and self.model.FP_FIELD:
            clean = stats["positives"] - stats["false_positives"]
            parts.append(f"mean weight clean: {stats['weight_clean'] / max(clean, 1):.4f}")
            parts.append(
                "mean weight FP: "
                f"{stats['weight_false_positive'] / max(stats['false_positives'], 1):.4f}"
            )
        if self.model.FP_FIELD:
            clean = stats["positives"] - stats["false_positives"]
            fp_loss = stats["loss_false_positive"] / max(stats["false_positives"], 1)
            parts.append(f"mean loss clean: {stats['loss_clean'] / max(clean, 1):.4f}")
            parts.append(f"mean loss FP: {fp_loss:.4f}")
        if not parts:
            return ""
        return " " + set_color("denoising", "blue") + " [" + ", ".join(parts) + "]"

    def fit(self, *args, **kwargs):
        try:
            return super().fit(*args, **kwargs)
        finally:
            self._write_diagnostics()  # the last epoch's, when it had no validation

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
            phase = getattr(self, "phase", None)
            self._pending_row = {
                "phase": phase.name if phase is not None else "adt",
                "epoch": epoch_idx,
                "iteration": self.adt_iteration,
                "drop_rate": self.model.drop_rate if denoiser.drops else None,
                **epoch_row(
                    self.model.denoising_summary(),
                    drops=denoiser.drops,
                    weights=denoiser.weights,
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
