"""The extra-feedback baselines of paper section 5.3: the NR loss and the NMTR model."""

import math

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_adt.data.nr_batches import NR_GROUP_FIELD, NRBatchLoader, nr_groups
from recbole_adt.losses import NRWeights, check_loss_name
from recbole_adt.model import NMTR
from recbole_adt.model.nmtr import NMTRSettings, sample_outside
from recbole_adt.quick_start import run_recbole_adt
from tests.pipeline import prepare


def test_nr_is_a_loss_name():
    assert check_loss_name("nr") == "NR"


NR_CONFIG = {"adt_loss": "NR", "train_batch_size": 256}


def nr_loader(base_config, **settings):
    """The NR training loader and the objects around it, as run_recbole_adt builds them."""
    config, _, (train, _, _), model, _ = prepare("GMF", {**base_config, **NR_CONFIG, **settings})
    return config, train, model


def test_nr_groups_by_hand():
    satisfied = torch.tensor([True, False, False, False, True, False])
    ratings = torch.tensor([5.0, 1.0, 4.0, 3.0, 5.0, 2.0])

    def groups(threshold, unlabelled, values=ratings):
        settings = NRWeights(0.4, 0.2, threshold, unlabelled)
        return nr_groups(satisfied, values, settings).tolist()

    # ratings 1-3 known dissatisfied; the 4 is unlabelled: dissatisfied or excluded
    assert groups(4, "dissatisfied") == [0, 1, 1, 1, 0, 1]
    assert groups(4, "excluded") == [0, 1, -1, 1, 0, 1]
    # no threshold (and simulated D*): every click outside D* is unlabelled
    assert groups(None, "dissatisfied") == [0, 1, 1, 1, 0, 1]
    assert groups(None, "excluded", values=None) == [0, -1, -1, -1, 0, -1]
    with pytest.raises(ValueError, match="nr_dissatisfied_threshold needs real extra feedback"):
        groups(4, "excluded", values=None)


@pytest.mark.parametrize(
    ("shares", "batch_size", "counts"),
    [
        ((0.4, 0.2), 256, (102, 51, 103)),  # floor(102.4), floor(51.2), the rest
        ((0.29, 0.0), 100, (29, 0, 71)),  # 100 * 0.29 = 28.999999999999996 in floats
        ((0.0, 1.0), 10, (0, 10, 0)),
        ((1.0, 0.0), 10, (10, 0, 0)),
    ],
)
def test_nr_counts(shares, batch_size, counts):
    assert NRWeights(*shares).counts(batch_size) == counts


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.4", True, None])
def test_bad_nr_shares(bad):
    with pytest.raises(ValueError, match=r"nr_pos_ratio must be a number in \[0, 1\]"):
        NRWeights(bad, 0.2)
    with pytest.raises(ValueError, match=r"nr_neg_ratio must be a number in \[0, 1\]"):
        NRWeights(0.4, bad)


@pytest.mark.parametrize("shares", [(0.0, 0.0), (0.6, 0.6)])
def test_nr_shares_must_sum_to_at_most_one(shares):
    with pytest.raises(ValueError, match=r"nr_pos_ratio \+ nr_neg_ratio must be in \(0, 1\]"):
        NRWeights(*shares)


def test_bad_nr_group_settings():
    with pytest.raises(ValueError, match="nr_unlabelled_clicks must be dissatisfied or excluded"):
        NRWeights(0.4, 0.2, None, "skip")
    with pytest.raises(ValueError, match="nr_dissatisfied_threshold must be a number"):
        NRWeights(0.4, 0.2, "4")
    keys = dict(zip(NRWeights.KEYS, (0.4, 0, 4, "excluded")))
    assert NRWeights.from_config(keys) == NRWeights(0.4, 0.0, 4.0, "excluded")


@pytest.mark.parametrize("shares", [(0.4, 0.2), (0.6, 0.0), (0.0, 0.5), (1.0, 0.0)])
def test_nr_batches_hold_the_shares(base_config, shares):
    config, train, _ = nr_loader(base_config, nr_pos_ratio=shares[0], nr_neg_ratio=shares[1])
    assert isinstance(train, NRBatchLoader)
    dataset = train._dataset
    inter, extra = dataset.inter_feat, dataset.extra_feedback
    clicks = set(zip(inter["user_id"].tolist(), inter["item_id"].tolist()))
    counts = NRWeights(*shares).counts(256)
    batches = list(train)
    # as many rows as a plain epoch (one sampled negative per click), in batches of 256 exactly
    assert len(batches) == math.ceil(2 * len(dataset) / 256)
    for batch in batches:
        group = batch[NR_GROUP_FIELD]
        assert [int((group == g).sum()) for g in (0, 1, 2)] == list(counts)
        assert torch.equal(batch["label"], (group == 0).float())  # dissatisfied rows are 0
        pairs = list(zip(batch["user_id"].tolist(), batch["item_id"].tolist()))
        in_dstar = extra.contains(batch["user_id"], batch["item_id"])
        assert torch.equal(in_dstar, group == 0)  # satisfied = D*, dissatisfied = other clicks
        for pair, g in zip(pairs, group.tolist()):
            assert (pair in clicks) == (g != 2)  # a non-click is never one of the user's clicks
        assert int(batch["user_id"].min()) >= 1 and int(batch["item_id"].min()) >= 1


def test_nr_dissatisfied_threshold_needs_real_extra_feedback(base_config):
    with pytest.raises(ValueError, match="nr_dissatisfied_threshold needs real extra feedback"):
        nr_loader(base_config, nr_dissatisfied_threshold=4)


def test_nr_excluded_reading(base_config):
    # Simulated D*: no click is known dissatisfied; excluded leaves the dissatisfied group empty.
    with pytest.raises(ValueError, match="nr_neg_ratio asks for 51 dissatisfied clicks"):
        nr_loader(base_config, nr_unlabelled_clicks="excluded")
    # With nr_neg_ratio 0 both readings draw the same batches.
    first = [b.interaction for b in nr_loader(base_config, nr_neg_ratio=0)[1]]
    second = nr_loader(base_config, nr_neg_ratio=0, nr_unlabelled_clicks="excluded")[1]
    for a, b in zip(first, second):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_gmf_nr_is_ce_on_the_batch(base_config):
    _, train, model = nr_loader(base_config)
    batch = next(iter(train))
    logits = torch.randn(len(batch), generator=torch.Generator().manual_seed(1))
    prob = torch.sigmoid(logits).tolist()
    expected = [
        -math.log(p) if y == 1 else -math.log(1 - p) for p, y in zip(prob, batch["label"].tolist())
    ]
    loss = model.pointwise_loss(logits, batch)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert model.denoising_summary()["positives"] == 102
    del batch.interaction[NR_GROUP_FIELD]
    with pytest.raises(ValueError, match="NR's stratified batches"):
        model.pointwise_loss(logits, batch)


def _batch(dataset, n_per_group=3):
    """Rows from D*, clicks outside D* and never-interacted items, with their group names."""
    inter, extra = dataset.inter_feat, dataset.extra_feedback
    users, items = inter["user_id"], inter["item_id"]
    in_extra = extra.row_mask.nonzero().flatten()[:n_per_group]
    outside = (~extra.row_mask).nonzero().flatten()[:n_per_group]
    rows = torch.cat([in_extra, outside])
    neg_users = users[rows[:n_per_group]]
    seen = set(zip(users.tolist(), items.tolist()))
    neg_items = torch.tensor(
        [
            next(i for i in range(1, dataset.item_num) if (u, i) not in seen)
            for u in neg_users.tolist()
        ]
    )
    batch = Interaction(
        {
            "user_id": torch.cat([users[rows], neg_users]),
            "item_id": torch.cat([items[rows], neg_items]),
            "label": torch.tensor([1.0] * (2 * n_per_group) + [0.0] * n_per_group),
        }
    )
    groups = ["extra"] * n_per_group + ["click"] * n_per_group + ["sampled"] * n_per_group
    return batch, groups


def _no_extra_feedback(base_config):
    # Neither a real D* field nor a false-positive flag to simulate one from.
    return {**base_config, "clean_test": False, "fp_field": "no_such_field"}


@pytest.mark.parametrize("model_name", ["GMF", "NMTR"])
def test_needs_extra_feedback(base_config, model_name):
    config = _no_extra_feedback(base_config)
    if model_name == "GMF":
        config["adt_loss"] = "NR"
    with pytest.raises(ValueError, match="fp_field .*extra_feedback_field"):
        prepare(model_name, config)


def test_nr_rejects_models_trained_on_rows(base_config):
    with pytest.raises(ValueError, match="CDAE"):
        prepare("CDAE", {**base_config, "adt_loss": "NR"})


def test_nmtr_rejects_nr(base_config):
    with pytest.raises(ValueError, match="CE, TCE or RCE"):
        prepare("NMTR", {**base_config, "adt_loss": "NR"})


@pytest.mark.parametrize("bad", [[1.0], [0.5, -0.1], [0, 0], [0.5, float("nan")], "0.5,0.5"])
def test_bad_nmtr_loss_weights(bad):
    with pytest.raises(ValueError, match="nmtr_loss_weights must list 2 finite numbers >= 0"):
        NMTRSettings.from_config({"nmtr_loss_weights": bad})


def test_nmtr_loss_weights_parsed():
    assert NMTRSettings.from_config({"nmtr_loss_weights": [1, 3]}).loss_weights == (1.0, 3.0)
    assert NMTRSettings.from_config({"nmtr_loss_weights": None}).loss_weights == (0.5, 0.5)


def _hand_built_nmtr(base_config, **settings):
    """embedding_size 2; user 1 = (1, 2), item 3 = (3, -1): p * q = (3, -2)."""
    _, _, (train, _, _), model, _ = prepare(
        "NMTR", {**base_config, "embedding_size": 2, **settings}
    )
    with torch.no_grad():
        model.user_embedding.weight[1] = torch.tensor([1.0, 2.0])
        model.item_embedding.weight[3] = torch.tensor([3.0, -1.0])
        model.predict_layers.weight.copy_(torch.tensor([[0.5, 1.0], [2.0, -1.0]]))
        model.predict_layers.bias.copy_(torch.tensor([0.1, -0.3]))
    return train, model


def test_nmtr_cascade_by_hand(base_config):
    _, model = _hand_built_nmtr(base_config)
    # z1 = 0.5*3 + 1*(-2) + 0.1 = -0.4; z2 = z1 + (2*3 + (-1)*(-2)) - 0.3 = 7.3
    logits = model.forward(torch.tensor([1]), torch.tensor([3]))
    assert torch.allclose(logits, torch.tensor([[-0.4, 7.3]]), atol=1e-6)
    pair = Interaction({"user_id": torch.tensor([1]), "item_id": torch.tensor([3])})
    assert model.predict(pair).item() == pytest.approx(1 / (1 + math.exp(-7.3)), rel=1e-6)
    full = model.full_sort_predict(Interaction({"user_id": torch.tensor([1])}))
    assert full[3].item() == pytest.approx(1 / (1 + math.exp(-7.3)), rel=1e-6)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_sample_outside_by_hand():
    # 6 item ids (0 is padding): user 1 has D* {1, 2, 3}, user 2 has D* {5}.
    keys = torch.tensor(sorted([1 * 6 + 1, 1 * 6 + 2, 1 * 6 + 3, 2 * 6 + 5]))
    users = torch.tensor([1, 2, 3]).repeat_interleave(300)
    items = sample_outside(users, keys, 6, torch.Generator().manual_seed(0))
    drawn = {u: set(items[users == u].tolist()) for u in (1, 2, 3)}
    assert drawn == {1: {4, 5}, 2: {1, 2, 3, 4}, 3: {1, 2, 3, 4, 5}}  # 300 draws reach all
    again = sample_outside(users, keys, 6, torch.Generator().manual_seed(0))
    assert torch.equal(items, again)  # the model's seeded generator decides every draw


def _user_with_both(dataset):
    """A user with a D* interaction, a click outside D*, and an item never interacted with."""
    inter, extra = dataset.inter_feat, dataset.extra_feedback
    users, items = inter["user_id"], inter["item_id"]
    for user in users[extra.row_mask].unique().tolist():
        mine = users == user
        dstar = items[mine & extra.row_mask].tolist()
        others = items[mine & ~extra.row_mask].tolist()
        if others:
            seen = set(items[mine].tolist())
            never = next(i for i in range(1, dataset.item_num) if i not in seen)
            return user, dstar, others, never
    raise AssertionError("the planted data has no such user")


def test_reliable_positives_are_the_batchs_dstar_rows(base_config):
    _, _, (train, _, _), model, _ = prepare("NMTR", base_config)
    batch, groups = _batch(train._dataset)
    users, items, targets = model.reliable_pairs(batch["user_id"], batch["item_id"], batch["label"])
    extra_rows = torch.tensor([g == "extra" for g in groups])
    n = int(extra_rows.sum())  # 3 D* rows; one negative each (sample_num 1)
    assert targets.tolist() == [1] * n + [0] * n
    assert torch.equal(users[:n], batch["user_id"][extra_rows])
    assert torch.equal(items[:n], batch["item_id"][extra_rows])
    assert torch.equal(users[n:], users[:n])  # each D* row's negatives are its user's
    assert not train._dataset.extra_feedback.contains(users[n:], items[n:]).any()


def test_reliable_negatives_avoid_dstar_but_not_other_clicks(base_config):
    _, _, (train, _, _), model, _ = prepare("NMTR", base_config)
    user, dstar, others, _ = _user_with_both(train._dataset)
    # 2000 copies of one D* row: 2000 negatives of that user
    batch_users = torch.full((2000,), user)
    batch_items = torch.full((2000,), dstar[0])
    _, items, targets = model.reliable_pairs(batch_users, batch_items, torch.ones(2000))
    negatives = set(items[targets == 0].tolist())
    assert not negatives & set(dstar)
    assert negatives & set(others)  # our reading: clicks outside D* lack the reliable behaviour
    assert 0 not in negatives


def _hand_loss_model(base_config, **settings):
    """User u = (1, 2); item d (in u's D*) = (3, -1); every other item 0: p * q_d = (3, -2)."""
    _, _, (train, _, _), model, _ = prepare(
        "NMTR", {**base_config, "embedding_size": 2, **settings}
    )
    user, dstar, others, never = _user_with_both(train._dataset)
    with torch.no_grad():
        model.user_embedding.weight[user] = torch.tensor([1.0, 2.0])
        model.item_embedding.weight.zero_()
        model.item_embedding.weight[dstar[0]] = torch.tensor([3.0, -1.0])
        model.predict_layers.weight.copy_(torch.tensor([[0.5, 1.0], [2.0, -1.0]]))
        model.predict_layers.bias.copy_(torch.tensor([0.1, -0.3]))
    return model, user, dstar[0], others[0], never


@pytest.mark.parametrize("weights", [[0.3, 0.7], [1.0, 0.0], [0.5, 2.0]])
def test_nmtr_loss_by_hand(base_config, weights):
    model, user, dstar, click, never = _hand_loss_model(base_config, nmtr_loss_weights=weights)
    batch = Interaction(
        {
            "user_id": torch.tensor([user] * 3),
            "item_id": torch.tensor([dstar, click, never]),
            "label": torch.tensor([1.0, 1.0, 0.0]),  # D* row, click outside D*, sampled
        }
    )
    # z1 = 0.5*3 + 1*(-2) + 0.1 = -0.4 on the D* row, b1 = 0.1 on the zero items;
    # z2 = -0.4 + (2*3 - 1*(-2)) - 0.3 = 7.3 on the D* row, b1 + b2 = -0.2 on any negative
    # drawn for it (every item outside u's D* is zero).
    implicit = (
        -math.log(_sigmoid(-0.4)) - math.log(_sigmoid(0.1)) - math.log(1 - _sigmoid(0.1))
    ) / 3
    reliable = (-math.log(_sigmoid(7.3)) - math.log(1 - _sigmoid(-0.2))) / 2
    expected = weights[0] * implicit + weights[1] * reliable
    assert model.calculate_loss(batch).item() == pytest.approx(expected, rel=1e-6)
    without_dstar = batch[torch.tensor([1, 2])]  # no D* row: only the implicit task
    implicit_only = (-math.log(_sigmoid(0.1)) - math.log(1 - _sigmoid(0.1))) / 2
    assert model.calculate_loss(without_dstar).item() == pytest.approx(
        weights[0] * implicit_only, rel=1e-6
    )


def test_nmtr_tce_denoises_the_implicit_task(base_config):
    _, _, (train, _, _), model, _ = prepare("NMTR", {**base_config, "adt_loss": "TCE"})
    batch, _ = _batch(train._dataset)
    model.drop_rate = 0.34  # floor(0.34 * 9) = 3 of the 6 positives
    model.reset_denoising_stats()
    model.calculate_loss(batch)
    assert model.denoising_summary()["dropped"] == 3


def test_nmtr_user_space_is_its_user_factors(base_config):
    _, _, (train, _, _), model, _ = prepare("NMTR", base_config)
    assert isinstance(model, NMTR)
    assert model.user_representations() is model.user_embedding.weight
    assert model.user_representations().shape == (train._dataset.user_num, 32)


@pytest.mark.parametrize(
    ("model_name", "settings"),
    [("NMTR", {}), ("NMTR", {"adt_loss": "TCE", "num_gradual": 20}), ("GMF", {"adt_loss": "NR"})],
)
def test_trains_and_evaluates(base_config, model_name, settings):
    result = run_recbole_adt(model_name, config_dict={**base_config, **settings})
    metrics = {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert metrics <= set(result["test_result"])
    assert all(0.0 <= result["test_result"][m] <= 1.0 for m in metrics)
    assert result["best_valid_result"]["ndcg@20"] == result["best_valid_score"]
