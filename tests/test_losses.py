"""Loss values against numbers computed by hand (paper Eq. 2-6)."""

import math

import pytest
import torch

from recbole_adt.losses import (
    LossChoice,
    NRWeights,
    bce,
    check_loss_name,
    drop_count,
    largest_loss_positives,
    rce_weight,
    reweighted_bce,
    truncated_bce,
)

# sigmoid(0) = 0.5, sigmoid(ln 3) = 0.75, sigmoid(-ln 3) = 0.25, sigmoid(ln 9) = 0.9
LOGITS = torch.tensor([math.log(3), -math.log(3), 0.0, math.log(9), math.log(3), -math.log(3)])
LABELS = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
# CE: positives -ln p, negatives -ln(1-p)
CE = [
    -math.log(0.75),
    -math.log(0.25),
    -math.log(0.5),
    -math.log(0.9),
    -math.log(0.25),
    -math.log(0.75),
]


def test_bce_matches_hand_values():
    assert torch.allclose(bce(LOGITS, LABELS, reduction="none"), torch.tensor(CE), atol=1e-6)


@pytest.mark.parametrize(
    ("drop_rate", "expected_dropped"),
    [
        (0.0, []),
        (0.1, []),  # floor(0.6) = 0
        (1 / 6, [1]),  # floor(1.0) = 1: the positive with p = 0.25 (CE 1.386)
        (0.34, [1, 2]),  # floor(2.04) = 2: then p = 0.5 (CE 0.693)
        (0.5, [1, 2, 0]),  # floor(3) = 3: then p = 0.75; negative 4 (CE 1.386) is never dropped
        (0.99, [1, 2, 0, 3]),  # floor(5.94) = 5 > 4 positives: every positive, no negative
    ],
)
def test_truncated_bce_drops_expected_positives(drop_rate, expected_dropped):
    kept = [k for k in range(6) if k not in expected_dropped]
    expected = sum(CE[k] for k in kept) / len(kept)
    assert truncated_bce(LOGITS, LABELS, drop_rate=drop_rate).item() == pytest.approx(expected)
    loss = bce(LOGITS, LABELS, reduction="none")
    mask = largest_loss_positives(loss, LABELS, drop_count(drop_rate, 6))
    assert mask.nonzero().flatten().tolist() == sorted(expected_dropped)


def test_truncated_sum_reduction_excludes_dropped():
    expected = CE[0] + CE[2] + CE[3] + CE[4] + CE[5]
    assert truncated_bce(LOGITS, LABELS, drop_rate=0.2, reduction="sum").item() == pytest.approx(
        expected
    )


def test_drop_count_is_robust_to_float_error():
    assert drop_count(0.1, 30) == 3
    assert drop_count(0.2 * 500 / 1000, 20) == 2
    assert drop_count(0.29, 10) == 2
    assert drop_count(0.1, torch.tensor([30, 9, 0])).tolist() == [3, 0, 0]


def test_per_row_drop_counts():
    loss = torch.tensor([[5.0, 1.0, 3.0, 9.0], [2.0, 8.0, 4.0, 6.0]])
    labels = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]])
    mask = largest_loss_positives(loss, labels, torch.tensor([2, 1]))
    assert mask.tolist() == [[True, False, True, False], [False, False, False, True]]


def test_rce_weights_by_hand():
    # positives: p^beta; negatives: (1 - p)^beta; beta = 2
    expected = [0.75**2, 0.25**2, 0.5**2, 0.9**2, 0.25**2, 0.75**2]
    assert torch.allclose(rce_weight(LOGITS, LABELS, beta=2.0), torch.tensor(expected))
    value = sum(w * c for w, c in zip(expected, CE)) / 6
    assert reweighted_bce(LOGITS, LABELS, beta=2.0).item() == pytest.approx(value)


def test_rce_with_beta_zero_is_ce():
    logits = torch.randn(8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1.0, 0.0] * 4)
    assert torch.equal(reweighted_bce(logits, labels, beta=0.0), bce(logits, labels))


def test_rce_weight_is_not_differentiated():
    logits = LOGITS.clone().requires_grad_()
    reweighted_bce(logits, LABELS, beta=1.0, reduction="sum").backward()
    prob = torch.sigmoid(LOGITS)
    weight = torch.where(LABELS > 0.5, prob, 1 - prob)
    # d/ds of w * CE with w constant: w * (sigmoid(s) - y)
    assert torch.allclose(logits.grad, weight * (prob - LABELS), atol=1e-6)


@pytest.mark.parametrize("bad", ["BCE", "focal", ""])
def test_unknown_loss_name_lists_choices(bad):
    with pytest.raises(ValueError, match="CE, TCE, RCE"):
        check_loss_name(bad)


def test_loss_names_are_normalized():
    assert check_loss_name("t-ce") == "TCE"
    assert check_loss_name("rce") == "RCE"


def test_loss_choice_owns_adt_loss():
    choice = LossChoice.from_config({"adt_loss": "t-bpr"})
    assert (choice.name, choice.base, choice.denoiser, choice.loss.display) == (
        "TBPR",
        "bpr",
        "truncate",
        "T-BPR",
    )
    message = (
        "Unknown adt_loss 'focal'; valid choices are CE, TCE, RCE, DCF, UDT, NR, BPR, TBPR, RBPR"
    )
    with pytest.raises(ValueError, match=message):
        LossChoice.from_config({"adt_loss": "focal"})


def test_nr_weights_own_their_keys():
    assert NRWeights.KEYS == (
        "nr_pos_ratio",
        "nr_neg_ratio",
        "nr_dissatisfied_threshold",
        "nr_unlabelled_clicks",
    )
    config = {"nr_pos_ratio": 0, "nr_neg_ratio": 1, "nr_dissatisfied_threshold": None}
    weights = NRWeights.from_config({**config, "nr_unlabelled_clicks": "excluded"})
    assert weights == NRWeights(0.0, 1.0, None, "excluded")
    for key in NRWeights.KEYS[:2]:
        with pytest.raises(ValueError, match=rf"{key} must be a number in \[0, 1\], got -1: "):
            NRWeights.from_config({**config, "nr_unlabelled_clicks": "excluded", key: -1})


@pytest.mark.parametrize("drop_rate", [-0.1, 1.0, 1.5, "0.2", None])
def test_bad_drop_rate(drop_rate):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        truncated_bce(LOGITS, LABELS, drop_rate=drop_rate)


@pytest.mark.parametrize("beta", [-0.5, float("inf"), "1"])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match=">= 0"):
        reweighted_bce(LOGITS, LABELS, beta=beta)
