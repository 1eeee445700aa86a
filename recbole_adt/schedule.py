r"""The T-CE drop-rate schedule, paper Eq. (3), and the authors' released variant.

:math:`\epsilon(T) = \min(\alpha T, \epsilon_{max})`, with
:math:`\alpha = \epsilon_{max}/\epsilon_N`, where :math:`T` is the global training iteration
(batch) count across epochs and
:math:`\epsilon_N` (``num_gradual``) the number of iterations to reach :math:`\epsilon_{max}`
(``drop_rate``).

Two options sit next to the paper's rule, which stays the default:

- ``num_gradual_unit`` (:data:`GRADUAL_UNITS`): ``iterations`` counts :math:`\epsilon_N` in
  batches (Eq. 3); ``epochs`` counts it in epochs of the ADT phase's training data,
  :math:`\epsilon_N^{iter} = \epsilon_N \cdot B` with :math:`B` batches per epoch (the schedule
  then follows :math:`T/B`, the epochs trained), so one setting means the same ramp on any
  dataset size; a fractional :math:`\epsilon_N` (2.5 epochs) is allowed there.
- ``drop_count`` (:data:`SCHEDULES`): ``paper`` is Eq. (3); ``authors`` is the ramp of the
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

import math
from collections.abc import Callable

from recbole_adt.losses import check_drop_rate

GRADUAL_UNITS = ("iterations", "epochs")


def check_gradual_unit(unit: str) -> str:
    """Validate ``num_gradual_unit``: one of :data:`GRADUAL_UNITS`."""
    if unit not in GRADUAL_UNITS:
        raise ValueError(
            f"num_gradual_unit must be one of {', '.join(GRADUAL_UNITS)}, got {unit!r}: "
            "iterations counts num_gradual (epsilon_N) in batches, as the paper does; epochs "
            "counts it in epochs of the training data, so one setting fits any dataset size."
        )
    return unit


def check_num_gradual(num_gradual: float, *, unit: str = "iterations") -> int | float:
    """Validate :math:`\\epsilon_N`: a positive integer of iterations, or a positive number of
    epochs (``unit="epochs"``)."""
    check_gradual_unit(unit)
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
                f"got {num_gradual!r} (e.g. --num_gradual=2.5)."
            )
        return num_gradual
    if isinstance(num_gradual, bool) or not isinstance(num_gradual, int) or num_gradual <= 0:
        raise ValueError(
            f"num_gradual must be a positive integer, got {num_gradual!r}. It counts batches "
            "(iterations); for a number of epochs, fractional ones included, set "
            "num_gradual_unit: epochs."
        )
    return num_gradual


def gradual_iterations(
    num_gradual: float, *, unit: str = "iterations", batches_per_epoch: int | None = None
) -> int | float:
    r""":math:`\epsilon_N` in iterations: ``num_gradual`` itself, or
    :math:`\epsilon_N \cdot B` with ``unit="epochs"`` and :math:`B` = ``batches_per_epoch``."""
    num_gradual = check_num_gradual(num_gradual, unit=unit)
    if unit == "iterations":
        return num_gradual
    if isinstance(batches_per_epoch, bool) or not (
        isinstance(batches_per_epoch, int) and batches_per_epoch > 0
    ):
        raise ValueError(
            "num_gradual_unit: epochs needs the number of batches per epoch of the ADT phase's "
            f"training data, got {batches_per_epoch!r}."
        )
    return num_gradual * batches_per_epoch


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


def drop_rate_schedule(
    iteration: int,
    *,
    drop_rate: float,
    num_gradual: float,
    unit: str = "iterations",
    batches_per_epoch: int | None = None,
    rule: str = "paper",
) -> float:
    r"""Drop rate at global iteration ``iteration``: :math:`\min(\epsilon_{max} T/\epsilon_N,
    \epsilon_{max})` (``rule="paper"``) or the authors' ramp (``rule="authors"``).

    ``iteration`` starts at 0, so the first batch drops nothing (:math:`\epsilon(0)=0`).
    With ``unit="epochs"``, :math:`\epsilon_N` is ``num_gradual * batches_per_epoch``
    iterations: the result equals the ``iterations`` schedule with that ``num_gradual``.
    """
    check_drop_rate(drop_rate)
    if rule not in SCHEDULES:
        raise ValueError(f"Unknown drop_count {rule!r}; valid choices are {', '.join(SCHEDULES)}.")
    iterations = gradual_iterations(num_gradual, unit=unit, batches_per_epoch=batches_per_epoch)
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration!r}.")
    return SCHEDULES[rule](iteration, drop_rate, iterations)
