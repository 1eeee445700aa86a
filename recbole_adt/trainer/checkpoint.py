"""Checkpoints that ``torch.load`` accepts under its ``weights_only=True`` default (torch >= 2.6).

RecBole 1.2.1 pickles the whole ``Config`` into each checkpoint, which torch >= 2.6 refuses to
load, so ``Trainer.evaluate(load_best_model=True)`` and ``resume_checkpoint`` fail. Here the
checkpoint holds tensors and plain metadata only.

Every checkpoint we read goes through :func:`read_checkpoint`, which passes ``weights_only=True``
explicitly: RecBole's own loads omit it, and so unpickle anything (running the code a pickle
names) when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set. An explicit argument beats that
variable, and a file that holds anything but tensors and plain values is refused.
"""

from __future__ import annotations

import os
import pickle
import uuid

import numpy as np
import scipy.sparse
import torch
from recbole.utils import set_color

from recbole_adt.data.shared_pairs import mask_shared_pairs
from recbole_adt.distributed import barrier, broadcast_from_rank0, ddp_on_cpu

_PLAIN_SCALARS = (str, int, float, bool, type(None))
_TRAINING_STATE = ("epoch", "cur_step", "best_valid_score", "optimizer")


def is_plain(value) -> bool:
    """True for the nested str/number/bool/None/list/dict values a weights-only load accepts."""
    if isinstance(value, _PLAIN_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def plain_other_parameter(other: dict | None) -> dict | None:
    """A model's ``other_parameter()`` in weights-only form: scipy sparse matrices (ItemKNN's
    similarity) become their COO tensors; :func:`model_other_parameter` turns them back."""
    if other is None:
        return None
    return {name: _plain_value(value) for name, value in other.items()}


def model_other_parameter(saved: dict | None) -> dict | None:
    """The inverse of :func:`plain_other_parameter`, for ``model.load_other_parameter``."""
    if saved is None:
        return None
    return {name: _model_value(value) for name, value in saved.items()}


def _plain_value(value):
    if scipy.sparse.issparse(value):
        coo = value.tocoo()
        return {
            "scipy_sparse_format": value.format,
            "shape": list(coo.shape),
            "row": torch.from_numpy(coo.row.astype(np.int64)),
            "col": torch.from_numpy(coo.col.astype(np.int64)),
            "data": torch.from_numpy(np.asarray(coo.data)),
        }
    if isinstance(value, np.ndarray):
        return {"numpy_array": torch.from_numpy(value)}
    return value


def _model_value(value):
    if isinstance(value, dict) and "scipy_sparse_format" in value:
        coo = scipy.sparse.coo_matrix(
            (value["data"].numpy(), (value["row"].numpy(), value["col"].numpy())),
            shape=tuple(value["shape"]),
        )
        return coo.asformat(value["scipy_sparse_format"])
    if isinstance(value, dict) and "numpy_array" in value:
        return value["numpy_array"].numpy()
    return value


def read_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint saved by our trainers, loaded weights-only; ``ValueError`` for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"No checkpoint file {path!r}. Give the path that a run printed at its end "
            "('checkpoint: saved/...pth'), relative to the folder the run was started in."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).partition("WeightsUnpickler error: ")[2].split(". ")[0]
        if "Unsupported global" in detail or "Unsupported class" in detail:
            raise ValueError(
                f"Refused to load {path}: it holds Python objects, not just tensors and plain "
                f"values ({detail}), and unpickling them could run code. Only checkpoints "
                "saved by recbole-adt can be loaded; RecBole's own pickle its Config."
            ) from err
        raise ValueError(f"{path} is not a readable checkpoint: {detail or err}.") from err
    except Exception as err:  # torch raises many kinds on a file that is not its format
        reason = f"{type(err).__name__}: {str(err).split('. ')[0]}"
        raise ValueError(
            f"{path} is not a readable checkpoint ({reason}): it may be truncated, or not "
            "a file saved by torch."
        ) from err
    missing = [
        key
        for key in ("config", "state_dict")
        if not isinstance(checkpoint, dict) or key not in checkpoint
    ]
    if missing:
        raise ValueError(
            f"{path} is not a checkpoint saved by recbole-adt: it has no {' or '.join(missing)}."
        )
    saved = checkpoint["config"]
    if not isinstance(saved, dict) or not all(
        isinstance(saved.get(key), str) for key in ("model", "dataset")
    ):
        raise ValueError(f"{path} is not a checkpoint saved by recbole-adt: no model and dataset.")
    return checkpoint


def plain_config(config) -> dict:
    """The settings of a RecBole ``Config`` that are plain values (enums and devices dropped)."""
    return {k: v for k, v in config.final_config_dict.items() if is_plain(v)}


class WeightsOnlyCheckpointMixin:
    """Mix into a RecBole ``Trainer`` subclass, before it, to save weights-only checkpoints."""

    def __init__(self, config, model):
        with ddp_on_cpu(self, config):
            super().__init__(config, model)
        # RecBole names files <model>-<time to the second>: runs started together would collide.
        folder, name = os.path.split(self.saved_model_file)
        stem, ext = os.path.splitext(name)
        # Under DDP every rank loads what rank 0 saves: one name for all, in each machine's
        # own checkpoint_dir.
        name = broadcast_from_rank0(f"{stem}-{uuid.uuid4().hex[:8]}{ext}", config)
        self.saved_model_file = os.path.join(folder, name)

    def _checkpoint_state(self, epoch: int) -> dict:
        return {
            "config": plain_config(self.config),
            # what the user set (files, dict, command line): enough to rebuild the Config
            "external_config": {
                k: v
                for k, v in self.config.external_config_dict.items()
                if is_plain(v) and k != "local_rank"  # a DDP worker's own: reloads start afresh
            },
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain_other_parameter(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
        }

    def resume_checkpoint(self, resume_file):
        """Continue training from a checkpoint, loaded weights-only, into a new checkpoint file.

        Unlike RecBole's, this never unpickles arbitrary objects, and the resumed file stays as
        it was: the run saves to a fresh name, starting with a copy of the resumed state.
        """
        resume_file = str(resume_file)
        checkpoint = read_checkpoint(resume_file, map_location=self.device)
        missing = [key for key in _TRAINING_STATE if key not in checkpoint]
        if missing:
            raise ValueError(
                f"{resume_file} holds no training state ({', '.join(missing)}), so training "
                "cannot resume from it; load_data_and_model can still evaluate it."
            )
        self._restore_checkpoint_state(checkpoint)
        self._save_checkpoint(int(checkpoint["epoch"]), verbose=False)
        self.logger.info(
            f"Resumed {resume_file} at epoch {self.start_epoch}; saving to {self.saved_model_file}"
        )

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's, but the best checkpoint is loaded here, weights-only, and the shared pairs
        of pre-split data are masked (``shared_pairs: mask``) before the split is scored."""
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = read_checkpoint(checkpoint_file, map_location=self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(
                model_other_parameter(checkpoint.get("other_parameter"))
            )
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        if eval_data:
            mask_shared_pairs(eval_data)
        return super().evaluate(
            eval_data, load_best_model=False, model_file=model_file, show_progress=show_progress
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
        self.model.load_other_parameter(model_other_parameter(checkpoint.get("other_parameter")))
        self.optimizer.load_state_dict(checkpoint["optimizer"])

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """Written by (each machine's) first process only; under DDP the others wait for it."""
        if self.config["single_spec"] or self.config["local_rank"] == 0:
            saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
            # Whole or not at all: a crash mid-write keeps the last checkpoint, and machines
            # sharing a checkpoint_dir replace the file rather than interleave their writes.
            partial = f"{saved_model_file}.{os.getpid()}.partial"
            torch.save(self._checkpoint_state(epoch), partial)
            os.replace(partial, saved_model_file)
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
        barrier(self.config)  # the others may load this file next
