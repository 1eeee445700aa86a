r"""The T-CE drop-rate schedule, paper Eq. (3).

:math:`\epsilon(T) = \min(\alpha T, \epsilon_{max})`, with
:math:`\alpha = \epsilon_{max}/\epsilon_N`, where :math:`T` is the global training iteration
(batch) count across epochs and
:math:`\epsilon_N` (``num_gradual``) the number of iterations to reach :math:`\epsilon_{max}`
(``drop_rate``).
"""

from __future__ import annotations

from recbole_adt.losses import check_drop_rate


def check_num_gradual(num_gradual: int) -> int:
    """Validate :math:`\\epsilon_N`: a positive integer number of iterations."""
    # 1e4 on a command line arrives as a float: accept it when it is a whole number.
    if isinstance(num_gradual, float) and num_gradual.is_integer():
        num_gradual = int(num_gradual)
    if isinstance(num_gradual, bool) or not isinstance(num_gradual, int) or num_gradual <= 0:
        raise ValueError(f"num_gradual must be a positive integer, got {num_gradual!r}.")
    return num_gradual


def drop_rate_schedule(iteration: int, *, drop_rate: float, num_gradual: int) -> float:
    r"""Drop rate at global iteration ``iteration``: :math:`\min(\epsilon_{max} T/\epsilon_N,
    \epsilon_{max})`.

    ``iteration`` starts at 0, so the first batch drops nothing (:math:`\epsilon(0)=0`).
    """
    check_drop_rate(drop_rate)
    check_num_gradual(num_gradual)
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration!r}.")
    return min(drop_rate * iteration / num_gradual, drop_rate)
