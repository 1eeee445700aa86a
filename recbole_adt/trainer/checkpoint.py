"""Checkpoints that ``torch.load`` accepts under its ``weights_only=True`` default (torch >= 2.6).

RecBole 1.2.1 pickles the whole ``Config`` into each checkpoint, which torch >= 2.6 refuses to
load, so ``Trainer.evaluate(load_best_model=True)`` and ``resume_checkpoint`` fail. Here the
checkpoint holds tensors and plain metadata only.

Every checkpoint we read goes through :func:`read_checkpoint`, which passes ``weights_only=True``
explicitly: RecBole's own loads omit it, and so unpickle anything (running the code a pickle
names) when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set. An explicit argument beats that
variable, and a file that holds anything but tensors and plain values is refused.

Saving is whole or not at all (:func:`write_checkpoint`): the state goes to
``<file>.<pid>.partial`` in the same folder, is flushed to disk (``fsync``) and then renamed over
the file, so a crash or a full disk leaves the previous checkpoint as it was. A write that fails
removes its partial file and raises :class:`CheckpointWriteError` (a ``ValueError``: one paragraph
naming the file, the cause, the previous checkpoint and the fix); after ``kill -9`` mid-save, the
partial file left is removed when the run is resumed. The folder is checked before training
starts (:func:`check_checkpoint_dir`).

A checkpoint holds what a resumed run needs to continue as if it had not stopped: the epoch, T,
the early-stopping state (best score and result, steps without improvement), the optimizer, and
the random states (Python's, NumPy's, torch's and each training loader's shuffling generator,
:func:`random_state`). Resuming from the last checkpoint of a run therefore repeats the epochs
after it exactly, bitwise where the computation is deterministic (CPU; on CUDA only with
``reproducibility: True``), except where state lives outside the checkpoint: DCF's loss memory
and epoch count (a resumed DCF run starts a new memory window), UDT's last-epoch losses and
weights (a resumed UDT run starts with two plain epochs), and the per-rank random states
of a DDP run (each rank keeps its own).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import random
import re
import tempfile
import uuid

import numpy as np
import scipy.sparse
import torch
from recbole.utils import set_color

from recbole_adt.data.shared_pairs import mask_shared_pairs
from recbole_adt.distributed import barrier, broadcast_from_rank0, ddp_on_cpu, is_distributed

_PLAIN_SCALARS = (str, int, float, bool, type(None))
_TRAINING_STATE = ("epoch", "cur_step", "best_valid_score", "optimizer")
_PARTIAL = re.compile(r"\.(\d+)\.partial$")  # <checkpoint file>.<pid>.partial
_FULL_DISK = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file size limit (ulimit -f) is reached",
}


class CheckpointWriteError(ValueError):
    """A checkpoint could not be written; the previous one, if any, is as it was."""


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


def _plain_result(result) -> dict | None:
    """RecBole's best validation result (metric -> number) as a plain dict, or None."""
    if not result:
        return None
    plain = {str(k): float(v) for k, v in result.items() if isinstance(v, (int, float))}
    return plain or None


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


def check_checkpoint_dir(folder: str) -> None:
    """Make ``folder`` (``checkpoint_dir``) and write a probe file in it; ``ValueError`` if either
    fails, so that an unwritable folder stops a run before it trains, not at its first save."""
    fix = (
        "Set checkpoint_dir to a folder you can write to (e.g. --checkpoint_dir=saved), or "
        "output_dir to move every file of the run."
    )
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"checkpoint_dir {folder} is a file, not a folder. {fix}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ValueError(f"checkpoint_dir {folder} cannot be made: {_cause(err)}. {fix}") from None
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
    except OSError as err:
        raise ValueError(f"checkpoint_dir {folder} is not writable: {_cause(err)}. {fix}") from None
    os.close(handle)
    os.unlink(probe)


def write_checkpoint(state: dict, path: str) -> None:
    """``torch.save`` ``state`` to ``path`` whole or not at all (see the module's docstring);
    ``OSError`` (or torch's ``RuntimeError`` around one) if the write fails, nothing left."""
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:  # a full disk, a signal's exception: no partial file stays
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    with contextlib.suppress(OSError):  # the rename itself reaches the disk (POSIX)
        directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def remove_stale_partials(path: str) -> list[str]:
    """Remove the partial files that a killed run left beside its checkpoints; return them.

    Those of ``path``'s run (the files named like it up to its 8-hex-digit run id, e.g. each
    phase's) whose process is no longer running here.
    """
    folder, name = os.path.split(path)
    match = re.match(r"(.*-[0-9a-f]{8})(?:-[a-z]+)?\.pth$", name)
    if match is None:
        return []
    removed = []
    for entry in os.listdir(folder or "."):
        pid = _PARTIAL.search(entry)
        if not (pid and entry.startswith(match.group(1)) and not _running(int(pid.group(1)))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, entry))
            removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _cause(err: BaseException) -> str:
    """The OSError behind ``err`` (torch wraps a failed write in a RuntimeError), in words."""
    seen = err
    while seen is not None and not isinstance(seen, OSError):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    reason = _FULL_DISK.get(seen.errno)
    detail = seen.strerror or str(seen)
    return f"{reason} ({detail})" if reason else detail


def random_state(loaders=()) -> dict:
    """Python's, NumPy's and torch's random states, and the shuffling generators of
    ``loaders`` (RecBole dataloaders), as tensors and plain values."""
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss],
        "torch": torch.get_rng_state(),
        # only a run that used CUDA has CUDA states (asking would start CUDA in a CPU run)
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "loaders": [loader.generator.get_state() for loader in loaders],
    }


def restore_random_state(state: dict, loaders=()) -> None:
    """Set the states that :func:`random_state` saved (the loaders' in the same order).

    Generator states must be CPU tensors: a checkpoint loaded onto a GPU moved them there.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gauss = state["numpy"]
    keys = keys.cpu().numpy().astype(np.uint32)
    np.random.set_state((name, keys, position, has_gauss, cached_gauss))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        devices = torch.cuda.device_count()
        torch.cuda.set_rng_state_all([cuda_state.cpu() for cuda_state in state["cuda"][:devices]])
    saved = [generator_state.cpu() for generator_state in state["loaders"]]
    if len(saved) != len(loaders):
        raise ValueError(
            f"The checkpoint holds the shuffling state of {len(saved)} training loaders, but "
            f"this run has {len(loaders)}: resume with the phases of the interrupted run."
        )
    for loader, generator_state in zip(loaders, saved):
        loader.generator.set_state(generator_state)


class WeightsOnlyCheckpointMixin:
    """Mix into a RecBole ``Trainer`` subclass, before it, to save weights-only checkpoints."""

    # (file, epoch) of the last checkpoint this trainer wrote whole, or None
    last_checkpoint: tuple[str, int] | None
    # the training loaders whose shuffling generators a checkpoint holds (set by fit)
    train_loaders: tuple

    def __init__(self, config, model):
        check_checkpoint_dir(config["checkpoint_dir"])  # RecBole's __init__ makes it blindly
        with ddp_on_cpu(self, config):
            super().__init__(config, model)
        self.last_checkpoint = None
        self.train_loaders = ()
        self._resumed_random = None  # random_state() of a resumed checkpoint, set by fit
        self._latest_valid = None  # (score, result) of the latest validation
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
            "best_valid_result": _plain_result(self._best_valid_result()),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain_other_parameter(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
            # a resumed run that has not trained yet passes its checkpoint's states on
            "random_state": self._resumed_random or random_state(self.train_loaders),
        }

    def _valid_epoch(self, valid_data, show_progress=False):
        self._latest_valid = super()._valid_epoch(valid_data, show_progress=show_progress)
        return self._latest_valid

    def _best_valid_result(self) -> dict | None:
        """RecBole's ``fit`` saves an improved epoch's checkpoint before it sets
        ``best_valid_result``: then the result is the latest validation's."""
        if self._latest_valid is not None and self._latest_valid[0] == self.best_valid_score:
            return self._latest_valid[1]
        return self.best_valid_result

    def fit(self, train_data, *args, **kwargs):
        """RecBole's; a resumed run first takes the random states of its checkpoint."""
        self.train_loaders = self._loaders_to_save(train_data)
        # Under DDP each rank draws its own negatives: one rank's saved states would make the
        # ranks draw alike, so they keep their own (a resumed DDP run is not the same run).
        if self._resumed_random is not None and not is_distributed(self.config):
            restore_random_state(self._resumed_random, self.train_loaders)
        self._resumed_random = None
        return super().fit(train_data, *args, **kwargs)

    def _loaders_to_save(self, train_data) -> tuple:
        """The training loaders of the run, in a fixed order (PhasedTrainer has one per D*)."""
        return (train_data,)

    def checkpoint_note(self) -> str:
        """The last checkpoint written whole, and how to continue from it."""
        if self.last_checkpoint is None or not os.path.isfile(self.last_checkpoint[0]):
            return "No checkpoint of this run was saved yet: start it again."
        path, epoch = self.last_checkpoint
        return (
            f"The last checkpoint, {path} (epoch {epoch}), is complete: continue with "
            f"--resume={path}."
        )

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
        removed = remove_stale_partials(resume_file)
        if removed:
            self.logger.info(f"Removed the partial files of an interrupted save: {removed}")
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
        self.best_valid_result = checkpoint.get("best_valid_result")
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(model_other_parameter(checkpoint.get("other_parameter")))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self._resumed_random = checkpoint.get("random_state")
        if self._resumed_random is None:
            self.logger.warning(
                "The checkpoint holds no random states (saved by an older version): the resumed "
                "epochs shuffle and sample differently from the interrupted run's."
            )

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """Written by (each machine's) first process only; under DDP the others wait for it."""
        if self.config["single_spec"] or self.config["local_rank"] == 0:
            saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
            # Whole or not at all: a crash mid-write keeps the last checkpoint, and machines
            # sharing a checkpoint_dir replace the file rather than interleave their writes.
            try:
                write_checkpoint(self._checkpoint_state(epoch), saved_model_file)
            except (OSError, RuntimeError) as err:
                raise self._write_error(saved_model_file, epoch, err) from err
            self.last_checkpoint = (saved_model_file, int(epoch))
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
        barrier(self.config)  # the others may load this file next

    def _write_error(self, path: str, epoch: int, err: BaseException) -> CheckpointWriteError:
        folder = os.path.dirname(path) or "."
        if self.last_checkpoint is not None and os.path.isfile(self.last_checkpoint[0]):
            previous, previous_epoch = self.last_checkpoint
            kept = (
                f"The previous checkpoint, {previous} (epoch {previous_epoch}), is intact: "
                f"continue from it with --resume={previous}"
            )
        else:
            kept = "This run had saved no checkpoint before: start it again"
        return CheckpointWriteError(
            f"Training stopped: the checkpoint of epoch {epoch} could not be written to "
            f"{path}: {_cause(err)}. Nothing partial was left. {kept} once {folder} has room "
            "for another checkpoint (free space there, or set checkpoint_dir to a folder on a "
            "disk with room)."
        )
