"""The denoiser layer, and T-BPR and R-BPR against numbers computed by hand."""

import math

import pytest
import torch
from recbole.model.loss import BPRLoss

import recbole_adt.denoisers as denoisers
from recbole_adt.denoisers import (
    DENOISER_SETTINGS,
    DENOISERS,
    AdtLoss,
    Denoiser,
    build_denoiser,
    check_denoiser_name,
)
from recbole_adt.denoisers.dcf import DCF, DCFSettings
from recbole_adt.denoisers.reweight import Reweight, ReweightSettings
from recbole_adt.denoisers.truncate import Truncate, TruncateSettings
from recbole_adt.denoisers.udt import UDT, UDTSettings
from recbole_adt.experiments.choices import loss_names
from recbole_adt.experiments.compare import _TRUNCATING
from recbole_adt.experiments.grid import DEFAULT_GRIDS, default_grid
from recbole_adt.experiments.results import display_loss
from recbole_adt.losses import (
    ADT_LOSSES,
    bpr,
    check_loss_name,
    reweighted_bpr,
    split_loss_name,
    truncated_bpr,
)

# Five (user, positive, negative) triples with margins y_ui - y_uj = ln 3, -ln 3, 0, ln 9, -ln 9:
# sigma(margin) = 0.75, 0.25, 0.5, 0.9, 0.1, and BPR loss -ln sigma(margin).
POS = torch.tensor([1.0 + math.log(3), 1.0, 0.5, math.log(9), -2.0])
NEG = torch.tensor([1.0, 1.0 + math.log(3), 0.5, 0.0, -2.0 + math.log(9)])
SIGMA = [0.75, 0.25, 0.5, 0.9, 0.1]
BPR_LOSS = [-math.log(p) for p in SIGMA]  # 0.288, 1.386, 0.693, 0.105, 2.303


def test_registry_holds_one_class_per_module():
    assert DENOISERS == {
        "dcf": DCF,
        "none": Denoiser,
        "reweight": Reweight,
        "truncate": Truncate,
        "udt": UDT,
    }
    assert isinstance(build_denoiser("reweight", {"beta": 0.5}), Reweight)
    assert Truncate.settings is TruncateSettings and Denoiser.settings is None
    assert build_denoiser("reweight", {"beta": 0.5}).beta == 0.5
    with pytest.raises(ValueError, match="valid choices are dcf, none, reweight, truncate, udt"):
        check_denoiser_name("coteaching")


def test_every_loss_name_is_a_base_loss_and_a_denoiser():
    for name, (base, denoiser) in ADT_LOSSES.items():
        assert base in ("bce", "bpr", "nr") and denoiser in DENOISERS
        assert split_loss_name(name.lower()) == (base, denoiser)
    assert check_loss_name("t-bpr") == "TBPR"
    with pytest.raises(
        ValueError, match="valid choices are CE, TCE, RCE, DCF, UDT, NR, BPR, TBPR, RBPR"
    ):
        check_loss_name("WBPR")


def test_the_loss_table_comes_from_the_denoisers():
    assert ADT_LOSSES == {
        "CE": ("bce", "none"),
        "TCE": ("bce", "truncate"),
        "RCE": ("bce", "reweight"),
        "DCF": ("bce", "dcf"),
        "UDT": ("bce", "udt"),
        "NR": ("nr", "none"),
        "BPR": ("bpr", "none"),
        "TBPR": ("bpr", "truncate"),
        "RBPR": ("bpr", "reweight"),
    }
    shown = [display_loss(name) for name in ("ce", "tce", "rce", "dcf", "nr", "tbpr", "rbpr")]
    assert shown == ["CE", "T-CE", "R-CE", "DCF", "NR", "T-BPR", "R-BPR"]
    assert set(_TRUNCATING) == {"tce", "tbpr", "dcf"}  # the denoisers that drop
    assert loss_names(["T-CE", "rbpr", "DCF"]) == ["tce", "rbpr", "dcf"]
    assert DENOISER_SETTINGS == (DCFSettings, ReweightSettings, TruncateSettings, UDTSettings)


def test_default_grids_come_from_the_denoisers():
    truncate = {
        "drop_rate": [0.05, 0.1, 0.2],
        "num_gradual": [1000, 5000, 10000, 20000, 30000],
        "num_gradual_unit": ["iterations"],  # the paper's grid counts iterations
    }
    reweight = {"beta": [0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0]}
    assert set(DEFAULT_GRIDS) == {"tce", "tbpr", "dcf", "rce", "rbpr", "nr", "udt"}
    assert default_grid("udt") == {"udt_temp1": [0.1, 0.2]}  # the study's configs' values
    for loss in ("tce", "tbpr", "dcf"):
        assert default_grid(loss) == truncate
    for loss in ("rce", "rbpr"):
        assert default_grid(loss) == reweight
    # NR's shares, its own (no denoiser): 0 included for the dissatisfied share
    assert default_grid("nr") == {"nr_pos_ratio": [0.2, 0.4, 0.6], "nr_neg_ratio": [0.0, 0.2, 0.4]}
    with pytest.raises(ValueError, match="CE has no grid in the paper"):
        default_grid("ce")


def test_a_new_denoiser_brings_its_names(monkeypatch):
    try:

        class Clip(Denoiser):  # registered by subclassing; after the others of its base loss
            name = "clip_test"
            adt_losses = (AdtLoss("CCE", "bce", "C-CE"),)
            order = 9

        class Twice(Denoiser):
            name = "twice_test"
            adt_losses = (AdtLoss("TCE", "bce", "T-CE again"),)

    finally:
        denoisers.base.REGISTRY.pop("clip_test", None)
        denoisers.base.REGISTRY.pop("twice_test", None)
    monkeypatch.setattr(denoisers, "DENOISERS", {**DENOISERS, "clip_test": Clip})
    names = denoisers._loss_names()
    assert list(names) == ["CE", "TCE", "RCE", "DCF", "UDT", "CCE", "NR", "BPR", "TBPR", "RBPR"]
    assert names["CCE"] == AdtLoss("CCE", "bce", "C-CE", denoiser="clip_test")
    monkeypatch.setattr(denoisers, "DENOISERS", {**DENOISERS, "twice_test": Twice})
    with pytest.raises(ValueError, match="names must be unique"):
        denoisers._loss_names()


def test_bpr_is_recboles_bpr_loss():
    scores = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bpr(scores[0], scores[1]), BPRLoss()(scores[0], scores[1]))
    assert torch.allclose(bpr(POS, NEG, reduction="none"), torch.tensor(BPR_LOSS), atol=1e-6)


@pytest.mark.parametrize(
    ("drop_rate", "expected_dropped"),
    [
        (0.0, []),
        (0.19, []),  # floor(0.95) = 0
        (0.2, [4]),  # floor(1) = 1: the hardest pair, margin -ln 9 (loss 2.303)
        (0.4, [4, 1]),  # floor(2) = 2: then margin -ln 3 (loss 1.386)
        (0.7, [4, 1, 2]),  # floor(3.5) = 3: then margin 0 (loss 0.693)
    ],
)
def test_truncated_bpr_drops_largest_loss_triples(drop_rate, expected_dropped):
    kept = [k for k in range(5) if k not in expected_dropped]
    expected = sum(BPR_LOSS[k] for k in kept) / len(kept)
    assert truncated_bpr(POS, NEG, drop_rate=drop_rate).item() == pytest.approx(expected)
    loss = bpr(POS, NEG, reduction="none")
    num_drop = math.floor(drop_rate * 5 + 1e-9)
    _, dropped, weight = Truncate()(loss, POS - NEG, torch.ones(5), num_drop=num_drop)
    assert dropped.nonzero().flatten().tolist() == sorted(expected_dropped) and weight is None


def test_truncated_bpr_at_zero_is_bpr():
    assert torch.equal(truncated_bpr(POS, NEG, drop_rate=0.0), bpr(POS, NEG))


def test_reweighted_bpr_by_hand():
    # weight sigma(margin)^beta, beta = 2
    weights = [p**2 for p in SIGMA]  # 0.5625, 0.0625, 0.25, 0.81, 0.01
    expected = sum(w * loss for w, loss in zip(weights, BPR_LOSS)) / 5
    assert reweighted_bpr(POS, NEG, beta=2.0).item() == pytest.approx(expected)
    loss = bpr(POS, NEG, reduction="none")
    _, dropped, weight = Reweight(beta=2.0)(loss, POS - NEG, torch.ones(5))
    assert dropped is None and torch.allclose(weight, torch.tensor(weights))


def test_reweighted_bpr_weights_hard_pairs_down():
    """The harder the pair (negative scored closer to or above the positive), the smaller."""
    margins = torch.tensor([3.0, 1.0, 0.0, -1.0, -3.0])  # easiest to hardest
    for beta in (0.25, 1.0):
        _, _, weight = Reweight(beta=beta)(torch.ones(5), margins, torch.ones(5))
        assert torch.all(weight[1:] < weight[:-1]), weight
        assert weight[-1] < 0.5 < weight[0]


def test_reweighted_bpr_with_beta_zero_is_bpr():
    pos, neg = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(reweighted_bpr(pos, neg, beta=0.0), bpr(pos, neg))


def test_reweighted_bpr_weight_is_not_differentiated():
    pos = POS.clone().requires_grad_()
    reweighted_bpr(pos, NEG, beta=1.0, reduction="sum").backward()
    sigma = torch.tensor(SIGMA)
    # d/dpos of -w ln(sigma(m)) with w = sigma(m) held constant: -w (1 - sigma(m))
    assert torch.allclose(pos.grad, -sigma * (1 - sigma), atol=1e-6)


def test_no_denoiser_returns_the_loss_itself():
    loss = torch.tensor(BPR_LOSS)
    assert Denoiser()(loss, POS - NEG, torch.ones(5), num_drop=3).loss is loss


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "0.5", True, None])
def test_bad_beta_for_reweight(bad):
    with pytest.raises(ValueError, match="beta must be a finite number >= 0, got .*--beta=0.25"):
        Reweight(beta=bad)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        ReweightSettings.from_config({"beta": bad})


@pytest.mark.parametrize("bad", ["rows", "Batch", None])
def test_bad_drop_base(bad):
    with pytest.raises(ValueError, match="drop_base must be one of batch, positives, got"):
        TruncateSettings.from_config({"drop_base": bad})


def test_settings_owners_parse_their_keys():
    assert ReweightSettings.from_config({"beta": 0}) == ReweightSettings(0.0)
    assert TruncateSettings.from_config({"drop_base": "positives"}).drop_base == "positives"
    assert ReweightSettings.KEYS == ("beta",) and TruncateSettings.KEYS == ("drop_base",)
