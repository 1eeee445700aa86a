"""UDT as the reproducibility study runs it: per-user temperatures and factors by loss rank,
by hand, against the study's dense formula, on planted false positives and on four models."""

import math

import pytest
import torch

from recbole_adt.config import Config
from recbole_adt.denoisers import DENOISERS, build_denoiser
from recbole_adt.denoisers.udt import UDT, UDTSettings, by_rank, positive_weights
from recbole_adt.losses import split_loss_name
from recbole_adt.quick_start import run_recbole_adt
from tests.pipeline import prepare
from tests.test_any_model import prepare as prepare_for_loss

N_ITEMS = 5
# Training positives A = (1, 2), B = (1, 3), C = (2, 2), D = (3, 1); item 4 is every user's
# sampled negative.
PAIRS = {"A": (1, 2), "B": (1, 3), "C": (2, 2), "D": (3, 1)}
NEGATIVE = 4


def tiny_udt(**settings) -> UDT:
    values = {"temp1": 0.5, "temp2": 1.0, "userfact1": 1.0, "userfact2": 0.5, **settings}
    udt = UDT(**values)
    users, items = torch.tensor(list(PAIRS.values())).T
    udt.track(users, items, n_users=4, n_items=N_ITEMS)
    return udt


def batch(entries: dict):
    """``{"A": loss, ..., "-1": loss}``: named positives, and "-u" the negative of user u."""
    pairs = [PAIRS[name] if name in PAIRS else (-int(name), NEGATIVE) for name in entries]
    users, items = torch.tensor(pairs).T
    labels = torch.tensor([float(name in PAIRS) for name in entries])
    loss = torch.tensor(list(entries.values()))
    return loss, labels, users, items


def run(udt: UDT, entries: dict):
    loss, labels, users, items = batch(entries)
    return udt(loss, loss, labels, users=users, items=items)


# Epoch 2's losses: mean loss per user 1.0 (user 1: A, B, negative), 0.2 (user 2), 2.0 (user 3)
EPOCH_2 = {"A": 1.0, "B": 2.0, "-1": 0.0, "C": 0.2, "-2": 0.2, "D": 3.0, "-3": 1.0}


def expected_weights() -> dict:
    """By hand from EPOCH_2: users ranked 2, 1, 3 get tau 0.5, 0.75, 1 and f 1, 0.75, 0.5."""
    e = math.exp(-(2.0 - 1.0) / 0.75)  # B's softmax term over A's, user 1's tau = 0.75
    return {
        "A": 0.75 * 2 * 1 / (1 + e),  # f_1 n_1 softmax: 1.187087
        "B": 0.75 * 2 * e / (1 + e),  # 0.312913
        "-1": 0.75,
        "C": 1.0 * 1 * 1.0,  # user 2: one positive
        "-2": 1.0,
        "D": 0.5 * 1 * 1.0,
        "-3": 0.5,
    }


def test_registered_and_named():
    assert DENOISERS["udt"] is UDT and split_loss_name("udt") == ("bce", "udt")
    study = {"udt_temp1": 0.2, "udt_temp2": 0.5, "udt_userfact1": 0.5, "udt_userfact2": 0.0}
    udt = build_denoiser("udt", study)
    assert udt.values == UDTSettings(0.2, 0.5, 0.5, 0.0) and UDT.settings is UDTSettings
    assert UDTSettings.KEYS == tuple(study) and UDT.weights and UDT.keyed and not UDT.drops


def test_package_defaults_are_the_studys(base_config):
    config = Config("GMF", config_dict={**base_config, "adt_loss": "UDT"})
    assert config.parsed_settings[UDTSettings] == UDTSettings(0.2, 0.5, 0.5, 0.0)


def test_rank_schedule_by_hand():
    # losses 0.3, 0.1, 0.2: ranks 2, 0, 1 of linspace(0.2, 0.5, 3) = 0.2, 0.35, 0.5
    values = by_rank(torch.tensor([0.3, 0.1, 0.2]), 0.2, 0.5)
    assert values.tolist() == pytest.approx([0.5, 0.2, 0.35])
    assert by_rank(torch.tensor([4.0]), 0.5, 0.0).tolist() == [0.5]  # one user: the first


def test_two_plain_epochs_then_weights_from_the_last_epoch_by_hand():
    udt = tiny_udt()
    for epoch in (1, 2):
        udt.start_epoch()
        losses = EPOCH_2 if epoch == 2 else {name: 9.0 for name in EPOCH_2}
        out = run(udt, losses)
        assert out.dropped is None and out.weight.tolist() == [1.0] * len(losses)
        assert torch.equal(out.loss, batch(losses)[0])
    udt.start_epoch()  # third epoch: weights from the second's losses only
    out = run(udt, {name: 2.0 for name in EPOCH_2})
    expected = expected_weights()
    assert out.weight.tolist() == pytest.approx(list(expected.values()), abs=1e-6)
    assert out.loss.tolist() == pytest.approx([2.0 * w for w in expected.values()], abs=1e-6)
    # user 1's positives share n_1 f_1 = 1.5; the larger-loss one gets less
    assert expected["A"] + expected["B"] == pytest.approx(1.5) and expected["B"] < expected["A"]


def test_state_follows_the_interaction_across_shuffled_batches():
    """The same epoch's losses in another order and other batches give the same weights."""
    one = tiny_udt()
    two = tiny_udt()
    for udt in (one, two):
        udt.start_epoch()
        udt.start_epoch()
    run(one, EPOCH_2)
    names = list(EPOCH_2)[::-1]
    run(two, {name: EPOCH_2[name] for name in names[:3]})
    run(two, {name: EPOCH_2[name] for name in names[3:]})
    for udt in (one, two):
        udt.start_epoch()
        udt.start_epoch()  # the fourth epoch reads the third's losses: none for D
    assert torch.equal(one.weight, two.weight)
    assert len(one.weight) == len(PAIRS)  # one weight per training interaction


def test_a_positive_unseen_last_epoch_weighs_as_a_negative():
    udt = tiny_udt()
    for _ in range(2):
        udt.start_epoch()
    run(udt, {name: loss for name, loss in EPOCH_2.items() if name != "B"})
    udt.start_epoch()
    out = run(udt, {"A": 1.0, "B": 1.0})
    # user 1's mean is now 0.5: still rank 1 of 3, factor 0.75; A has the softmax alone
    assert out.weight.tolist() == pytest.approx([0.75 * 2 * 1.0, 0.75])


def test_bounded_weights_equal_the_studys_dense_formula():
    """main.py: temperature_scaled_softmax(-loss_mat, temp) * train_mat_sum, 0 -> 1, * fact."""
    generator = torch.Generator().manual_seed(3)
    n_users, n_items = 6, 9
    train = torch.rand(n_users, n_items, generator=generator) < 0.4
    train[:, 0] = True  # every user has a positive
    loss = torch.rand(n_users, n_items, generator=generator) * 3
    temperature = torch.rand(n_users, generator=generator) + 0.1
    factor = torch.rand(n_users, generator=generator)
    loss_mat = torch.where(train, loss, torch.full_like(loss, math.inf))
    dense = torch.softmax(-loss_mat / temperature[:, None], dim=1) * train.sum(1, keepdim=True)
    dense[dense == 0] = 1.0
    dense *= factor[:, None]
    users, items = train.nonzero().T
    bounded = positive_weights(loss[users, items], users, temperature, factor)
    assert torch.allclose(bounded, dense[users, items], atol=1e-6)
    assert torch.allclose(dense[~train], factor[:, None].expand_as(dense)[~train])


def test_weights_planted_false_positives_below_their_rate(base_config):
    config = {**base_config, "adt_loss": "UDT", "learning_rate": 0.01, "epochs": 4}
    _, _, (train_data, valid_data, _), model, trainer = prepare("GMF", config)
    udt = model.denoiser
    assert len(udt.index) == len(train_data._dataset.inter_feat)  # bounded by the interactions
    trainer.fit(train_data, valid_data, saved=False)
    stats = model.denoising_summary()  # the last (weighted) epoch
    base_rate = stats["false_positives"] / stats["positives"]
    assert 0.15 < base_rate < 0.25
    share = stats["weight_false_positive"] / (
        stats["weight_false_positive"] + stats["weight_clean"]
    )
    assert share < 0.5 * base_rate, (share, base_rate)  # measured: 0.015 against 0.201
    assert "mean weight" in trainer._denoising_output()


@pytest.mark.parametrize("model_name", ["GMF", "NeuMF", "CDAE", "LightGCN"])
def test_trains_weighted_epochs_and_evaluates(base_config, model_name):
    config = {**base_config, "adt_loss": "UDT", "epochs": 3}
    result = run_recbole_adt(model_name, config_dict=config)
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result["test_result"].values())
    train_data, valid_data, model, trainer = prepare_for_loss(model_name, config)
    trainer.fit(train_data, valid_data, saved=False)
    stats = model.denoising_summary()  # the third epoch: weighted
    assert model.denoiser.epoch == 3 and stats["positives"] > 0
    weight = (stats["weight_clean"] + stats["weight_false_positive"]) / stats["positives"]
    assert 0.0 < weight < 0.6, weight  # factors from 0.5 down to 0: a mean near 0.25


def test_cdae_rows_are_keyed_by_user_and_item(base_config):
    """Each cell of a CDAE row is an entry: the row's items are positives, the rest negatives."""
    config = {**base_config, "adt_loss": "UDT"}
    train_data, _, model, _ = prepare_for_loss("CDAE", config)
    udt = model.denoiser
    users = next(iter(train_data))["user_id"]
    for _ in range(3):
        udt.start_epoch()
        model.calculate_loss(next(iter(train_data)))
    rows = model.get_rating_matrix(users)
    assert udt.user_count[users].tolist() == [float(model.n_items)] * len(users)
    seen = torch.isfinite(udt.last_loss)
    assert seen.sum() == rows.sum()  # the batch's positives, nothing else
    weights = udt.weight[seen]
    owner = udt.owner[seen]
    # each user's positives share n_u f_u
    total = torch.zeros_like(udt.user_factor).index_add_(0, owner, weights)
    counts = torch.bincount(owner, minlength=len(total)).float()
    assert torch.allclose(total[users], (counts * udt.user_factor)[users], atol=1e-4)


def test_bpr_triples_are_entries_of_their_positive(base_config):
    config = {**base_config, "adt_loss": "UDT"}
    train_data, _, model, _ = prepare_for_loss("LightGCN", config)
    batch_ = next(iter(train_data))
    udt = model.denoiser
    udt.start_epoch()
    model.calculate_loss(batch_)
    slots, found = udt.index.lookup(batch_["user_id"], batch_["item_id"])
    assert found.all() and torch.isfinite(udt.last_loss[slots]).all()
    assert torch.isfinite(udt.last_loss).sum() == len(batch_)  # no slot for sampled items


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"udt_temp1": 0}, r"udt_temp1 must be a number > 0, got 0"),
        ({"udt_temp2": "hot"}, "udt_temp2 must be a number > 0"),
        ({"udt_userfact1": -0.1}, "udt_userfact1 must be a number >= 0"),
        ({"udt_userfact2": True}, "udt_userfact2 must be a number >= 0, got True: .*highest"),
    ],
)
def test_bad_settings_raise(base_config, setting, message):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, "adt_loss": "UDT", **setting})


def test_refuses_ddp(base_config):
    with pytest.raises(ValueError, match="adt_loss UDT keeps a loss memory"):
        Config("GMF", config_dict={**base_config, "nproc": 2, "adt_loss": "udt"})
