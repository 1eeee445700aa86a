"""Statistics of a comparison over seeds: mean, sample std, relative improvement, paired test.

Pure functions on plain sequences of floats. The relative improvement (RI) is the paper's
Table 3 column: "the relative improvement of ADT over normal training on average", here the
mean over metrics of each metric's relative improvement of the means. The paired test compares
two losses run on the same seeds (same split, same clean test): a two-sided paired t-test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "PairedTest",
    "mean",
    "mean_relative_improvement",
    "paired_t_test",
    "relative_improvement",
    "sample_std",
]


@dataclass(frozen=True)
class PairedTest:
    """Result of :func:`paired_t_test`: t statistic, two-sided p-value, number of pairs."""

    statistic: float
    pvalue: float
    pairs: int


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean, x̄ = (1/n) Σ_i x_i; ``ValueError`` on an empty sequence."""
    values = _floats(values)
    if not values:
        raise ValueError("The mean of no values is undefined: give at least one value.")
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation, s = sqrt(Σ_i (x_i − x̄)² / (n − 1)); NaN for n < 2."""
    values = _floats(values)
    if len(values) < 2:
        return math.nan
    centre = mean(values)
    return math.sqrt(math.fsum((x - centre) ** 2 for x in values) / (len(values) - 1))


def relative_improvement(value: float, reference: float) -> float:
    """RI = (x − x_ref) / x_ref, as a fraction (0.05 is +5%); NaN when x_ref is 0 or NaN."""
    value, reference = float(value), float(reference)
    if reference == 0 or math.isnan(reference) or math.isnan(value):
        return math.nan
    return (value - reference) / reference


def mean_relative_improvement(
    values: Mapping[str, float], references: Mapping[str, float]
) -> float:
    """The paper's RI column: (1/M) Σ_m (x̄_m − x̄_m^ref) / x̄_m^ref over the M shared metrics.

    Metrics whose RI is undefined (reference 0) are left out; NaN when none is left.
    """
    ratios = [
        relative_improvement(values[metric], references[metric])
        for metric in values
        if metric in references
    ]
    ratios = [ratio for ratio in ratios if not math.isnan(ratio)]
    return math.fsum(ratios) / len(ratios) if ratios else math.nan


def paired_t_test(values: Sequence[float], references: Sequence[float]) -> PairedTest | None:
    """Two-sided paired t-test of ``values`` against ``references`` (pair i = seed i).

    With differences d_i = x_i − y_i over n pairs: t = d̄ / (s_d / √n), where s_d is the
    sample std of the d_i, and p = 2 · P(T_{n−1} ≥ |t|) under Student's t with n − 1 degrees
    of freedom. Computed by ``scipy.stats.ttest_rel``. ``None`` with fewer than 2 pairs (no
    test possible); when every d_i is equal (to 1e-9), t is ±inf (p = 0) or, if all are 0, NaN.
    """
    values, references = _floats(values), _floats(references)
    if len(values) != len(references):
        raise ValueError(
            f"A paired test needs one reference per value: got {len(values)} values and "
            f"{len(references)} references."
        )
    if len(values) < 2:
        return None
    differences = [x - y for x, y in zip(values, references)]
    # s_d = 0 up to rounding (0.3 - 0.2 != 0.2 - 0.1 in floats): scipy would give a huge t or
    # a warning; the test is degenerate, so say so exactly.
    if all(math.isclose(d, differences[0], rel_tol=1e-9, abs_tol=1e-12) for d in differences):
        if math.isclose(differences[0], 0.0, abs_tol=1e-12):
            return PairedTest(math.nan, math.nan, len(values))
        return PairedTest(math.copysign(math.inf, differences[0]), 0.0, len(values))
    from scipy import stats  # a dependency of recbole; imported here to keep imports light

    result = stats.ttest_rel(values, references)
    return PairedTest(float(result.statistic), float(result.pvalue), len(values))


def _floats(values: Sequence[float]) -> list[float]:
    return [float(value) for value in values]
