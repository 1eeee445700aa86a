"""ADTTrainer: the drop-rate schedule over global iterations, and per-epoch denoising logs.

Paper: Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback", Algorithm 1.
The iteration counter T runs across epochs, is saved in every checkpoint and restored by
``resume_checkpoint``. Everything else (early stopping, evaluation, logging) is RecBole's.
"""

from __future__ import annotations

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_adt.losses import check_drop_rate
from recbole_adt.schedule import check_num_gradual, drop_rate_schedule
from recbole_adt.trainer.checkpoint import WeightsOnlyCheckpointMixin


class ADTTrainer(WeightsOnlyCheckpointMixin, Trainer):
    """Trainer for models with :class:`~recbole_adt.model.DenoisingLossMixin`."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.max_drop_rate = check_drop_rate(config["drop_rate"])
        self.num_gradual = check_num_gradual(config["num_gradual"])
        self.adt_iteration = 0  # T in Eq. (3): batches trained so far, across epochs

    def current_drop_rate(self) -> float:
        """epsilon(T) for the next batch; 0 unless the model's denoiser drops (T-CE, T-BPR)."""
        if not self.model.denoiser.drops:
            return 0.0
        return drop_rate_schedule(
            self.adt_iteration, drop_rate=self.max_drop_rate, num_gradual=self.num_gradual
        )

    def _counts_adt_iterations(self) -> bool:
        """Whether this epoch's batches advance T (phases other than ADT do not)."""
        return True

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = loss_func or self.model.calculate_loss

        counts = self._counts_adt_iterations()

        def scheduled_loss(interaction):
            self.model.drop_rate = self.current_drop_rate()
            self.adt_iteration += counts
            return loss_func(interaction)

        self.model.reset_denoising_stats()
        if counts:
            self.model.denoiser.start_epoch()  # DCF: the epoch s and its memory's time window
        return super()._train_epoch(
            train_data, epoch_idx, loss_func=scheduled_loss, show_progress=show_progress
        )

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
        if not parts:
            return ""
        return " " + set_color("denoising", "blue") + " [" + ", ".join(parts) + "]"

    def _checkpoint_state(self, epoch: int) -> dict:
        return {**super()._checkpoint_state(epoch), "adt_iteration": self.adt_iteration}

    def _restore_checkpoint_state(self, checkpoint: dict) -> None:
        super()._restore_checkpoint_state(checkpoint)
        self.adt_iteration = int(checkpoint.get("adt_iteration", 0))
        self.logger.info(f"Resumed ADT iteration counter at T = {self.adt_iteration}")
