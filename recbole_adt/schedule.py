r"""The T-CE drop-rate schedule, paper Eq. (3), and the authors' released variant.

:math:`\epsilon(T) = \min(\alpha T, \epsilon_{max})`, with
:math:`\alpha = \epsilon_{max}/\epsilon_N`, where :math:`T` is the global training iteration
(batch) count across the epochs of the ADT phase and :math:`\epsilon_N` (``num_gradual``) the
number of iterations to reach :math:`\epsilon_{max}` (``drop_rate``).

:class:`DropSchedule` owns the four settings of the schedule (``drop_rate``, ``num_gradual``,
``num_gradual_unit``, ``drop_count``): it checks them once, when a config is made, and the
trainer asks it for :math:`\epsilon(T)` before each batch.

- ``num_gradual_unit`` (:data:`GRADUAL_UNITS`): ``epochs`` (the package default) counts
  :math:`\epsilon_N` in epochs of the ADT phase's training data,
  :math:`\epsilon_N^{iter} = \epsilon_N \cdot B` with :math:`B` batches per epoch (the schedule
  then follows :math:`T/B`, the epochs trained), so one setting means the same ramp on any
  dataset size; a fractional :math:`\epsilon_N` (2.5 epochs) is allowed there. ``iterations``
  counts :math:`\epsilon_N` in batches, as Eq. (3) and the paper's grid {1k, 5k, 10k, 20k, 30k}
  do. The default, 6 epochs, is 948 batches on ml-100k (158 per epoch), about the 1000
  iterations the grid chose there, and reaches :math:`\epsilon_{max}` within any run of more
  than 6 epochs.
- ``drop_count`` (:data:`DROP_COUNTS`): ``paper`` is Eq. (3); ``authors`` is the ramp of the
  authors' released code (github.com/WenjieWWJ/DenoisingRec, ``T_CE/main.py``)::

      drop_rate = np.linspace(0, args.drop_rate**args.exponent, args.num_gradual)
      if iteration < args.num_gradual:
          return drop_rate[iteration]
      else:
          return args.drop_rate

  i.e. :math:`\epsilon(T) = \epsilon_{max}\, T/(\epsilon_N - 1)` for :math:`T < \epsilon_N - 1`,
  then :math:`\epsilon_{max}` (``exponent`` defaults to 1 there and is not offered here). It
  reaches :math:`\epsilon_{max}` one batch sooner; the count rule that goes with it, which is
  what makes the two differ early on, is in :func:`recbole_adt.denoisers.truncate.drop_count`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import ClassVar

GRADUAL_UNITS = ("iterations", "epochs")
DROP_COUNTS = ("paper", "authors")


def check_drop_rate(drop_rate: float) -> float:
    """Validate :math:`\\epsilon_{max}` (or any drop rate): a number in [0, 1)."""
    if (
        isinstance(drop_rate, bool)
        or not isinstance(drop_rate, (int, float))
        or not 0.0 <= drop_rate < 1.0
    ):
        raise ValueError(
            f"drop_rate must be a number in [0, 1), got {drop_rate!r}: it is epsilon_max, the "
            "largest share of a batch that T-CE drops (the paper searches 0.05, 0.1, 0.2), e.g. "
            "--drop_rate=0.2."
        )
    return float(drop_rate)


def paper_schedule(iteration: int, drop_rate: float, iterations: float) -> float:
    r"""Paper Eq. (3): :math:`\min(\epsilon_{max} T/\epsilon_N, \epsilon_{max})`."""
    return min(drop_rate * iteration / iterations, drop_rate)


def authors_schedule(iteration: int, drop_rate: float, iterations: float) -> float:
    r"""The authors' ``np.linspace(0, \epsilon_{max}, \epsilon_N)[T]``, then
    :math:`\epsilon_{max}`: :math:`\epsilon_{max}\,T/(\epsilon_N - 1)` for
    :math:`0 < T < \epsilon_N - 1`.

    Computed as numpy does (``T * (eps / (N - 1))``, the last point exactly :math:`\epsilon_{max}`),
    so it equals the authors' array entry for entry; :math:`\epsilon(0) = 0` whatever
    :math:`\epsilon_N`, and a fractional :math:`\epsilon_N` (epochs) uses the same formula.
    """
    if iteration == 0:
        return 0.0
    if iteration >= iterations - 1:
        return drop_rate
    return iteration * (drop_rate / (iterations - 1))


# drop_count -> the ramp that goes with it
SCHEDULES: dict[str, Callable[[int, float, float], float]] = {
    "paper": paper_schedule,
    "authors": authors_schedule,
}


@dataclasses.dataclass(frozen=True)
class DropSchedule:
    r"""The drop-rate schedule :math:`\epsilon(T)`: the owner of its four settings.

    ``drop_rate`` is :math:`\epsilon_{max}` in [0, 1); ``num_gradual`` is :math:`\epsilon_N`, a
    positive integer of iterations or a positive number of epochs (``unit``, the setting
    ``num_gradual_unit``); ``drop_count`` picks the ramp (:data:`SCHEDULES`) and the count rule
    that goes with it. Made from a config (:meth:`from_config`) or directly, it is checked once,
    here, with a ``ValueError`` that names the setting and the fix; :meth:`rate` re-checks no
    setting.
    """

    KEYS: ClassVar[tuple[str, ...]] = ("drop_rate", "num_gradual", "num_gradual_unit", "drop_count")

    drop_rate: float
    num_gradual: int | float
    unit: str
    drop_count: str

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # a frozen dataclass normalises its fields here
        set_field(self, "drop_rate", check_drop_rate(self.drop_rate))
        if self.unit not in GRADUAL_UNITS:
            raise ValueError(
                f"num_gradual_unit must be one of {', '.join(GRADUAL_UNITS)}, got {self.unit!r}: "
                "epochs counts num_gradual (epsilon_N) in epochs of the training data, so one "
                "setting fits any dataset size; iterations counts it in batches, as the paper "
                "does. E.g. --num_gradual_unit=epochs."
            )
        set_field(self, "num_gradual", _num_gradual(self.num_gradual, self.unit))
        if self.drop_count not in DROP_COUNTS:
            raise ValueError(
                f"drop_count must be one of {', '.join(DROP_COUNTS)}, got {self.drop_count!r}: "
                "paper drops floor(eps * n) with the ramp of Eq. 3, authors drops "
                "n - floor((1 - eps) * n) with the linspace ramp of the authors' released code. "
                "E.g. --drop_count=paper."
            )

    @classmethod
    def from_config(cls, config) -> DropSchedule:
        """The schedule of a RecBole ``Config`` (or a mapping holding the four keys)."""
        return cls(
            drop_rate=config["drop_rate"],
            num_gradual=config["num_gradual"],
            unit=config["num_gradual_unit"],
            drop_count=config["drop_count"],
        )

    def iterations(self, batches_per_epoch: int | None = None) -> int | float:
        r""":math:`\epsilon_N` in iterations: ``num_gradual`` itself, or
        :math:`\epsilon_N \cdot B` with unit ``epochs``, :math:`B` = ``batches_per_epoch`` (> 0,
        needed then)."""
        if self.unit == "iterations":
            return self.num_gradual
        if batches_per_epoch is None:
            raise ValueError(
                "num_gradual_unit: epochs needs the batches per epoch of the ADT data."
            )
        return self.num_gradual * batches_per_epoch

    def rate(self, iteration: int, *, batches_per_epoch: int | None = None) -> float:
        r""":math:`\epsilon(T)` at global iteration ``iteration`` (:math:`T \ge 0`).

        ``paper``: :math:`\min(\epsilon_{max} T/\epsilon_N, \epsilon_{max})`; ``authors``: the
        authors' ramp (:func:`authors_schedule`). ``T`` starts at 0, so the first batch drops
        nothing. With unit ``epochs``, :math:`\epsilon_N` is ``num_gradual * batches_per_epoch``
        iterations: the result equals the ``iterations`` schedule with that ``num_gradual``.
        """
        ramp = SCHEDULES[self.drop_count]
        return ramp(iteration, self.drop_rate, self.iterations(batches_per_epoch))

    def describe(self) -> str:
        """``epsilon_max 0.2 over 6 epochs (paper ramp)``, for log lines."""
        return (
            f"epsilon_max {self.drop_rate:g} over {self.num_gradual:g} {self.unit} "
            f"({self.drop_count} ramp)"
        )


def _num_gradual(num_gradual, unit: str) -> int | float:
    """:math:`\\epsilon_N`: a positive integer of iterations, or a positive number of epochs."""
    # 1e4 on a command line arrives as a float: accept it when it is a whole number.
    if isinstance(num_gradual, float) and num_gradual.is_integer():
        num_gradual = int(num_gradual)
    if unit == "epochs":
        if (
            isinstance(num_gradual, bool)
            or not isinstance(num_gradual, (int, float))
            or not (math.isfinite(num_gradual) and num_gradual > 0)
        ):
            raise ValueError(
                f"num_gradual must be a positive number of epochs with num_gradual_unit: epochs, "
                f"got {num_gradual!r}: it is epsilon_N, the epochs over which the drop rate "
                "rises to drop_rate, e.g. --num_gradual=6 (fractions such as 2.5 work too)."
            )
        return num_gradual
    if isinstance(num_gradual, bool) or not isinstance(num_gradual, int) or num_gradual <= 0:
        raise ValueError(
            f"num_gradual must be a positive integer with num_gradual_unit: iterations, got "
            f"{num_gradual!r}: it is epsilon_N in batches (the paper searches 1000 to 30000), "
            "e.g. --num_gradual=1000; for a number of epochs, fractional ones included, set "
            "num_gradual_unit: epochs."
        )
    return num_gradual


def drop_rate_schedule(
    iteration: int,
    *,
    drop_rate: float,
    num_gradual: float,
    unit: str = "iterations",
    batches_per_epoch: int | None = None,
    rule: str = "paper",
) -> float:
    r""":meth:`DropSchedule.rate` of the schedule these arguments make, checked: the drop rate
    at global iteration ``iteration`` >= 0.

    ``unit`` defaults to ``iterations`` here, Eq. (3)'s :math:`\epsilon_N` in batches; the
    package setting ``num_gradual_unit`` defaults to ``epochs``.
    """
    schedule = DropSchedule(drop_rate, num_gradual, unit, rule)
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be an integer >= 0, got {iteration!r}.")
    if unit == "epochs" and (
        isinstance(batches_per_epoch, bool)
        or not isinstance(batches_per_epoch, int)
        or batches_per_epoch <= 0
    ):
        raise ValueError(
            "num_gradual_unit: epochs needs the number of batches per epoch of the ADT phase's "
            f"training data, got {batches_per_epoch!r}."
        )
    return schedule.rate(iteration, batches_per_epoch=batches_per_epoch)
