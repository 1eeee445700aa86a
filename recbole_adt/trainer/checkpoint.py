"""Checkpoints that ``torch.load`` accepts under its ``weights_only=True`` default (torch >= 2.6).

RecBole 1.2.1 pickles the whole ``Config`` into each checkpoint, which torch >= 2.6 refuses to
load, so ``Trainer.evaluate(load_best_model=True)`` and ``resume_checkpoint`` fail. Here the
checkpoint holds tensors and plain metadata only, so RecBole's own loading code works unchanged.
"""

from __future__ import annotations

import os
import uuid

import torch
from recbole.utils import set_color

_PLAIN_SCALARS = (str, int, float, bool, type(None))


def is_plain(value) -> bool:
    """True for the nested str/number/bool/None/list/dict values a weights-only load accepts."""
    if isinstance(value, _PLAIN_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def plain_config(config) -> dict:
    """The settings of a RecBole ``Config`` that are plain values (enums and devices dropped)."""
    return {k: v for k, v in config.final_config_dict.items() if is_plain(v)}


class WeightsOnlyCheckpointMixin:
    """Mix into a RecBole ``Trainer`` subclass, before it, to save weights-only checkpoints."""

    def __init__(self, config, model):
        super().__init__(config, model)
        # RecBole names files <model>-<time to the second>: runs started together would collide.
        stem, ext = os.path.splitext(self.saved_model_file)
        self.saved_model_file = f"{stem}-{uuid.uuid4().hex[:8]}{ext}"

    def _checkpoint_state(self, epoch: int) -> dict:
        return {
            "config": plain_config(self.config),
            # what the user set (files, dict, command line): enough to rebuild the Config
            "external_config": {
                k: v for k, v in self.config.external_config_dict.items() if is_plain(v)
            },
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }

    def resume_checkpoint(self, resume_file):
        """Continue training from a checkpoint, loaded weights-only, into a new checkpoint file.

        Unlike RecBole's, this never unpickles arbitrary objects, and the resumed file stays as
        it was: the run saves to a fresh name, starting with a copy of the resumed state.
        """
        resume_file = str(resume_file)
        checkpoint = torch.load(resume_file, map_location=self.device, weights_only=True)
        self._restore_checkpoint_state(checkpoint)
        self._save_checkpoint(int(checkpoint["epoch"]), verbose=False)
        self.logger.info(
            f"Resumed {resume_file} at epoch {self.start_epoch}; saving to {self.saved_model_file}"
        )

    def _restore_checkpoint_state(self, checkpoint: dict) -> None:
        """Set the trainer and model from :meth:`_checkpoint_state`'s dict (subclasses add keys)."""
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            raise ValueError(
                f"The checkpoint holds a {checkpoint['config']['model']} model, not "
                f"{self.config['model']}: resume with --model={checkpoint['config']['model']}."
            )
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.cur_step = int(checkpoint["cur_step"])
        self.best_valid_score = float(checkpoint["best_valid_score"])
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        torch.save(self._checkpoint_state(epoch), saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
