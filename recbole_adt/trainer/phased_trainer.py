r"""Training phases: warm-up and finetuning on extra feedback around ADT (paper section 3.4.1).

``phases: [warmup, adt, finetune]`` trains, in that order,

- ``warmup``: CE on :math:`D^*` (Eq. 7) from the initial weights, so ADT starts from a model that
  has seen only reliable positives;
- ``adt``: the configured ``adt_loss`` on every training interaction (Algorithm 1);
- ``finetune``: CE on :math:`D^*` (Eq. 7) from the ADT result.

:math:`D^*` phases sample their negatives from the items the user has *no implicit interaction*
with: they reuse the training split's sampler, whose history is the whole training split.

Each phase is one call of RecBole's ``fit`` with the phase's train dataloader, a fresh optimizer,
fresh early stopping and a checkpoint of its own (``...-<phase>.pth``). A phase starts from the
validation-selected checkpoint of the one before, and the run's result is the last phase's. The
drop-rate schedule counts ADT iterations only, and resuming a checkpoint continues its phase,
with the shuffling state of every phase's loader. Tensorboard steps run on across the phases: a
phase's epoch e is step e + the configured epochs of the phases before it.

With colliding inference, :attr:`PhasedTrainer.representations` holds :math:`E^*`, the user
representations of the selected warm-up model (Eq. 8); it is saved in the later checkpoints.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from recbole.data.utils import get_dataloader
from recbole.utils import set_color

from recbole_adt.data.extra_feedback import extra_feedback_dataset
from recbole_adt.inference.colliding import CollidingSettings
from recbole_adt.phases import Phase, PhaseSettings
from recbole_adt.settings import parsed
from recbole_adt.trainer.adt_trainer import ADTTrainer
from recbole_adt.trainer.checkpoint import read_checkpoint


class PhasedTrainer(ADTTrainer):
    """ADTTrainer that runs the configured phases, each through RecBole's own ``fit``."""

    # E*: the user representations after warm-up (colliding inference), or None.
    representations: torch.Tensor | None

    def __init__(self, config, model):
        super().__init__(config, model)
        self.phase_settings = parsed(config, PhaseSettings)
        self.phases = self.phase_settings.phases
        self.phase_index = 0
        self._resumed_phase = None  # the phase index restored by resume_checkpoint
        self.representations = None
        self.phase_loaders: dict = {}  # phase name -> its training loader, set by fit
        self._base_model_file = self.saved_model_file
        self._set_phase(0)

    @property
    def phase(self) -> Phase:
        return self.phases[self.phase_index]

    @property
    def phase_model_files(self) -> list[str]:
        """Each phase's checkpoint file, in phase order (one file for a single phase)."""
        if len(self.phases) == 1:
            return [self._base_model_file]
        stem, ext = os.path.splitext(self._base_model_file)
        return [f"{stem}-{phase.name}{ext}" for phase in self.phases]

    def _set_phase(self, index: int) -> None:
        self.phase_index = index
        self.epochs = self.phase.epochs
        self.eval_step = min(self.config["eval_step"], self.epochs)
        if len(self.phases) > 1:
            self.saved_model_file = self.phase_model_files[index]

    def _reset_for_phase(self) -> None:
        """A phase starts like a new RecBole fit: epoch 0, no best score, a new optimizer."""
        self.start_epoch = 0
        self.cur_step = 0
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.best_valid_result = None
        self.optimizer = self._build_optimizer()

    def fit(
        self,
        train_data,
        valid_data=None,
        verbose=True,
        saved=True,
        show_progress=False,
        callback_fn=None,
    ):
        with self.stop_signals_caught():  # between phases too
            result = self._fit_phases(
                train_data, valid_data, verbose, saved, show_progress, callback_fn
            )
            self._stop_if_asked(f"the end of phase {self.phase.name}")
        # Popularity-based metrics read the training data: the full split, not D*.
        self.eval_collector.data_collect(train_data)
        return result

    def _fit_phases(self, train_data, valid_data, verbose, saved, show_progress, callback_fn):
        self.phase_loaders = phase_loaders = self._phase_loaders(train_data)
        first = self._resumed_phase or 0
        result = (self.best_valid_score, self.best_valid_result)
        for index in range(first, len(self.phases)):
            self._set_phase(index)
            if index != self._resumed_phase:
                self._reset_for_phase()
            if verbose and len(self.phases) > 1:
                self.logger.info(
                    set_color("phase", "pink") + f" {index + 1}/{len(self.phases)}: "
                    f"{self.phase.name}, up to {self.phase.epochs} epochs"
                )
            self._set_model_phase(self.phase.name)
            try:
                result = super().fit(
                    phase_loaders[self.phase.name],
                    valid_data,
                    verbose=verbose,
                    saved=saved,
                    show_progress=show_progress,
                    callback_fn=callback_fn,
                )
            finally:
                self._set_model_phase("adt")
            if saved and index < len(self.phases) - 1:
                self._load_best()  # the next phase starts from this phase's selected weights
            if self.phase.name == "warmup" and parsed(self.config, CollidingSettings).enabled:
                self.representations = self._snapshot_representations(saved)
        self._resumed_phase = None
        return result

    def _loaders_to_save(self, train_data) -> tuple:
        """Every phase's loader, once each, in phase-name order: warm-up and finetune share
        one, and a checkpoint of any phase holds the shuffling state of all."""
        loaders = {id(loader): loader for _, loader in sorted(self.phase_loaders.items())}
        return tuple(loaders.values()) or (train_data,)

    def epoch_offset(self) -> int:
        return sum(phase.epochs for phase in self.phases[: self.phase_index])

    def _phase_name(self) -> str:
        return self.phase.name

    def _phase_note(self) -> str:
        return f" of phase {self.phase.name}" if len(self.phases) > 1 else ""

    def _set_model_phase(self, name: str) -> None:
        # Config admits warmup and finetune only for models that train on D*
        # (model.extra_feedback.trains_on_extra_feedback); a run of adt alone sets nothing.
        if self.phase_settings.on_extra_feedback:
            self.model.set_training_phase(name)

    def _phase_loaders(self, train_data) -> dict:
        loaders = {"adt": train_data}
        if not self.phase_settings.on_extra_feedback:
            return loaders
        # ADTDataset.build made D* for these phases (or refused a dataset without it).
        train_dataset = train_data._dataset
        # The training sampler's history is the whole training split: D* negatives are never
        # items the user has an implicit interaction with.
        loader = get_dataloader(self.config, "train")(
            self.config,
            extra_feedback_dataset(train_dataset, train_dataset.extra_feedback),
            train_data._sampler,
            shuffle=self.config["shuffle"],
        )
        return {**loaders, "warmup": loader, "finetune": loader}

    def _load_best(self) -> None:
        checkpoint = read_checkpoint(self.saved_model_file, map_location=self.device)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))

    def _snapshot_representations(self, saved: bool) -> torch.Tensor:
        """E*: the user representations right after warm-up (its selected checkpoint)."""
        if not saved:
            self.logger.warning("saved=False: E* is taken from the last warm-up epoch.")
        self.model.eval()
        with torch.no_grad():
            return self.model.user_representations().detach().clone()

    def current_drop_rate(self) -> float:
        return super().current_drop_rate() if self.phase.name == "adt" else 0.0

    def _counts_adt_iterations(self) -> bool:
        return self.phase.name == "adt"

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        output = super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        if len(self.phases) == 1:
            return output
        return set_color(f"[{self.phase.name}] ", "pink") + output

    def _checkpoint_state(self, epoch: int) -> dict:
        state = {**super()._checkpoint_state(epoch), "phase_index": self.phase_index}
        if self.representations is not None:
            state["representations"] = self.representations
        return state

    def _restore_checkpoint_state(self, checkpoint: dict) -> None:
        super()._restore_checkpoint_state(checkpoint)
        index = int(checkpoint.get("phase_index", 0))
        if not 0 <= index < len(self.phases):
            raise ValueError(
                f"The checkpoint was saved in phase {index + 1}, but phases has only "
                f"{len(self.phases)} entries ({[p.name for p in self.phases]}): resume with the "
                "phases setting of the interrupted run."
            )
        saved_file = self.saved_model_file
        self._set_phase(index)
        self.saved_model_file = saved_file  # keep what resume_checkpoint chose for this phase
        self._resumed_phase = index
        # Checkpoints written before E* was a declared field keep it under its old name.
        self.representations = checkpoint.get(
            "representations", checkpoint.get("representations_after_warmup")
        )
        self.logger.info(f"Resuming phase {index + 1}/{len(self.phases)}: {self.phase.name}")
