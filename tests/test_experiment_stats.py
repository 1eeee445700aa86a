"""The experiments' statistics against values computed by hand."""

import math

import pytest

from recbole_adt.experiments.stats import (
    mean,
    mean_relative_improvement,
    paired_t_test,
    relative_improvement,
    sample_std,
)


def test_mean_and_sample_std():
    # mean (1 + 2 + 3 + 4) / 4 = 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5;
    # sample variance 5 / (4 - 1), std sqrt(5/3).
    assert mean([1, 2, 3, 4]) == 2.5
    assert sample_std([1, 2, 3, 4]) == pytest.approx(math.sqrt(5 / 3))
    assert sample_std([0.2, 0.2]) == 0.0


def test_std_of_one_value_is_undefined_and_mean_of_none_refused():
    assert math.isnan(sample_std([0.3]))
    with pytest.raises(ValueError, match="at least one"):
        mean([])


def test_relative_improvement():
    assert relative_improvement(0.11, 0.10) == pytest.approx(0.1)
    assert relative_improvement(0.09, 0.12) == pytest.approx(-0.25)
    assert math.isnan(relative_improvement(0.1, 0.0))


def test_mean_relative_improvement_averages_over_shared_metrics():
    # recall: (0.22 - 0.20) / 0.20 = +10%; ndcg: (0.09 - 0.10) / 0.10 = -10%; mean 0.
    # hit has no reference and is left out.
    ours = {"recall@20": 0.22, "ndcg@20": 0.09, "hit@20": 0.5}
    reference = {"recall@20": 0.20, "ndcg@20": 0.10}
    assert mean_relative_improvement(ours, reference) == pytest.approx(0.0)
    assert mean_relative_improvement({"r": 0.3, "n": 0.15}, {"r": 0.2, "n": 0.1}) == (
        pytest.approx(0.5)
    )


def test_paired_t_test_by_hand():
    # d = (0.5, 0.5, 1.5): mean 5/6, sample std sqrt(1/3), t = (5/6) / (sqrt(1/3) / sqrt(3))
    # = 2.5 with 2 degrees of freedom, where P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2)).
    result = paired_t_test([1.0, 2.0, 3.0], [0.5, 1.5, 1.5])
    t = 2.5
    p = 2 * (1 - (0.5 + t / (2 * math.sqrt(2 + t * t))))
    assert result.statistic == pytest.approx(t)
    assert result.pvalue == pytest.approx(p)  # 0.1296...
    assert result.pairs == 3
    flipped = paired_t_test([0.5, 1.5, 1.5], [1.0, 2.0, 3.0])
    assert flipped.statistic == pytest.approx(-t) and flipped.pvalue == pytest.approx(p)


def test_paired_t_test_edge_cases():
    assert paired_t_test([0.1], [0.2]) is None  # one pair: no test
    same = paired_t_test([0.1, 0.2], [0.1, 0.2])
    assert math.isnan(same.statistic) and math.isnan(same.pvalue)
    shifted = paired_t_test([0.2, 0.3], [0.1, 0.2])  # every difference exactly 0.1
    assert shifted.pvalue == 0.0 and shifted.statistic == math.inf
    with pytest.raises(ValueError, match="one reference per value"):
        paired_t_test([0.1, 0.2], [0.1])
