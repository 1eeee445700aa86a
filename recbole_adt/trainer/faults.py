r"""Faults during training: numbers that break, and signals that ask a run to stop.

**Numerical faults.** A run stops with :class:`NumericalFault` (a ``ValueError``: the command
line prints it and exits 2, and no result is reported) when

- a batch's training loss :math:`L_b` is NaN or infinite;
- a batch's loss *diverges*: :math:`|L_b| > 1000 \cdot \max(1, |L_1|)`, :math:`L_1` being the
  first batch loss of this ``fit`` (of this phase). Training losses fall, or stay near where they
  start; the floor of 1 keeps a small first loss (a CE of 0.01 late in a resumed run) from making
  an ordinary one look divergent. A mean BCE or BPR loss of 1000 needs scores of about
  :math:`\pm 1000`, which a model that learns does not reach, while an overflowing optimizer step
  (``learning_rate: 1e6``) passes it within a few batches, long before the loss overflows to inf
  or NaN (it had reached ~1e21 unnoticed);
- a parameter is no longer finite after an epoch (the optimizer overflowed on its last batch);
- the validation score is NaN or infinite.

The batch checks live in RecBole's ``Trainer._check_nan``, which its ``_train_epoch`` calls once
per batch, right after its own ``loss.item()``: the one ``.item()`` here replaces RecBole's
``torch.isnan`` test, so the batch loop gains no device synchronisation. The parameter check
costs one reduction per parameter tensor per epoch. A faulty batch stops before its update and a
faulty epoch before its checkpoint, so the last checkpoint stays the last good one.

**Stop signals.** While a single-process run trains, SIGTERM, SIGINT and SIGHUP only ask it to
stop: it stops at the next batch (before that batch's update) or at the end of the phase, with
:class:`TrainingStopped`, whose message names the last complete checkpoint to ``--resume`` from
(the command line exits with 128 + the signal's number: 143, 130, 129). A second signal acts at
once, as it would have without this. Where a signal already has a handler of its own (``compare``
and ``grid`` install theirs), or off the main thread, or under DDP, the handlers are left alone.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterator

import torch

DIVERGENCE_FACTOR = 1000.0  # |L_b| > DIVERGENCE_FACTOR * max(1, |L_1|) is divergence

# The signals that ask a run to stop, with the handler each has when nobody else handles it.
_STOP_SIGNALS = tuple(
    (getattr(signal, name), default)
    for name, default in (
        ("SIGTERM", signal.SIG_DFL),
        ("SIGINT", signal.default_int_handler),
        ("SIGHUP", signal.SIG_DFL),  # absent on Windows
    )
    if hasattr(signal, name)
)


class NumericalFault(ValueError):
    """The loss, the parameters or the validation score stopped being finite, or the loss
    diverged: the run stops without a result."""


class TrainingStopped(BaseException):
    """A stop signal ended training at a safe point. A ``BaseException``, as
    ``KeyboardInterrupt``: code that handles a run's failures must not take it for one."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, the shell's code for a process a signal ended."""
        return 128 + self.signum


def loss_problem(value: float, reference: float | None) -> str | None:
    """What is wrong with a batch loss ``value`` given the first batch's ``reference``, or None.

    >>> loss_problem(0.5, 0.69) is None
    True
    >>> loss_problem(2e3, 0.69)
    "reached 2e+03, over 1000 times the first batch's 0.69 (taken as at least 1)"
    """
    if math.isnan(value):
        return "became NaN"
    if math.isinf(value):
        return f"became {'+' if value > 0 else '-'}inf"
    if reference is not None and abs(value) > DIVERGENCE_FACTOR * max(1.0, abs(reference)):
        return (
            f"reached {value:.3g}, over {DIVERGENCE_FACTOR:g} times the first batch's "
            f"{reference:.4g} (taken as at least 1)"
        )
    return None


def non_finite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the model's parameters that hold a NaN or an infinite value (one sync in all)."""
    named = [(name, p) for name, p in model.named_parameters() if p.numel()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).tolist()
    return [name for (name, _), ok in zip(named, finite) if not ok]


class FaultGuardMixin:
    """Mix into a RecBole ``Trainer`` subclass, before it: the checks and the safe stop above.

    Messages name the epoch (counted from 0, as RecBole's log does) and batch
    (:meth:`_training_position`; a trainer with phases adds the phase in :meth:`_phase_note`),
    what to change, and the checkpoint to continue from: ``checkpoint_note()``, which
    :class:`~recbole_adt.trainer.checkpoint.WeightsOnlyCheckpointMixin`, mixed in before this
    one, provides. Put this mixin before ``CheckpointRuleMixin``, so that it checks the score
    that selects the epochs.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.stop_signal: int | None = None  # the signal that asked the run to stop
        self._first_loss: float | None = None  # L_1 of this fit
        self._epoch_idx = 0
        self._batch = 0  # the batch being trained: batches of this epoch seen by _check_nan
        self._batches = 0  # batches of this epoch
        self._catching = False  # whether our stop handlers are installed

    # -- what the messages say (checkpoint_note is WeightsOnlyCheckpointMixin's) ------------

    def _phase_note(self) -> str:
        """`` of phase NAME`` in a run with phases (PhasedTrainer), else empty."""
        return ""

    def _training_position(self) -> str:
        return (
            f"epoch {self._epoch_idx}{self._phase_note()}, batch {self._batch} of {self._batches}"
        )

    def _fix(self) -> str:
        learning_rate = self.config["learning_rate"]
        lower = min(learning_rate / 10, 0.001)  # RecBole's default, or a tenth of a smaller one
        return (
            f"No result is reported. Lower learning_rate (now {learning_rate:g}), e.g. "
            f"--learning_rate={lower:g}, or bound the steps with clip_grad_norm "
            "(e.g. --clip_grad_norm=\"{'max_norm': 5}\"), and check the data for extreme values."
        )

    def _fault(self, text: str) -> NumericalFault:
        return NumericalFault(f"Training stopped: {text} {self._fix()} {self.checkpoint_note()}")

    # -- hooks into RecBole's Trainer -------------------------------------------------------

    def fit(self, train_data, *args, **kwargs):
        self._first_loss = None  # each fit (each phase) measures divergence from its start
        with self.stop_signals_caught():
            result = super().fit(train_data, *args, **kwargs)
            self._stop_if_asked(f"the end of epoch {self._epoch_idx}{self._phase_note()}")
        return result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._epoch_idx, self._batch, self._batches = epoch_idx, 0, len(train_data)
        total = super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        broken = non_finite_parameters(self.model)
        if broken:
            more = ", ..." if len(broken) > 3 else ""
            raise self._fault(
                f"after epoch {epoch_idx}{self._phase_note()} the model's parameters are no "
                f"longer finite ({', '.join(broken[:3])}{more}): an optimizer step overflowed."
            )
        return total

    def _check_nan(self, loss):
        """RecBole calls this once per batch, after its ``loss.item()``, before the update."""
        self._batch += 1
        self._stop_if_asked(f"{self._training_position()}, before that batch's update")
        value = loss.item()
        problem = loss_problem(value, self._first_loss)
        if self._first_loss is None:
            self._first_loss = value
        if problem is None:
            return
        cause = ""
        if non_finite_parameters(self.model):
            cause = " The model's parameters are no longer finite: an optimizer step overflowed."
        raise self._fault(
            f"the training loss {problem} at {self._training_position()}, before that batch's "
            f"update.{cause}"
        )

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if not math.isfinite(valid_score):
            raise self._fault(
                f"the validation score that selects the kept epoch is {valid_score} after "
                f"epoch {self._epoch_idx}{self._phase_note()}."
            )
        return valid_score, valid_result

    # -- stop signals ------------------------------------------------------------------------

    @contextlib.contextmanager
    def stop_signals_caught(self) -> Iterator[None]:
        """While the block runs, a stop signal only sets :attr:`stop_signal` (re-entrant)."""
        if self._catching or not self._may_catch_signals():
            yield
            return
        previous = {}

        def ask_to_stop(signum, frame):
            self.stop_signal = signum
            signal.signal(signum, previous[signum])  # a second signal acts at once

        for signum, default in _STOP_SIGNALS:
            if signal.getsignal(signum) is default:  # nobody else handles it
                previous[signum] = signal.signal(signum, ask_to_stop)
        self._catching = True
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._catching = False

    def _may_catch_signals(self) -> bool:
        single = self.config["single_spec"]
        return single and threading.current_thread() is threading.main_thread()

    def _stop_if_asked(self, where: str) -> None:
        if self.stop_signal is None:
            return
        name = signal.Signals(self.stop_signal).name
        message = f"Stopped by {name} at {where}. {self.checkpoint_note()}".rstrip()
        raise TrainingStopped(message, self.stop_signal)
