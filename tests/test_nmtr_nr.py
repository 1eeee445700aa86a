"""The extra-feedback baselines of paper section 5.3: the NR loss and the NMTR model."""

import math

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_adt.losses import bce, check_loss_name, check_nr_weights, nr_weighted_bce
from recbole_adt.model import NMTR
from recbole_adt.model.nmtr import NMTRSettings
from recbole_adt.quick_start import run_recbole_adt
from tests.pipeline import prepare

# sigmoid(ln 3) = 0.75, sigmoid(-ln 3) = 0.25, sigmoid(0) = 0.5, sigmoid(ln 9) = 0.9
LOGITS = torch.tensor([math.log(3), -math.log(3), 0.0, math.log(9), math.log(3), -math.log(3)])
LABELS = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])  # 4 clicks, 2 sampled items
RELIABLE = torch.tensor([True, False, True, False, False, False])  # clicks 0 and 2 are in D*


def nr_by_hand(click_weight, negative_weight):
    # D* entries: -ln p (weight 1); other clicks and sampled items: -ln(1 - p), weighted.
    terms = [
        -math.log(0.75),  # D*
        click_weight * -math.log(1 - 0.25),  # click outside D*
        -math.log(0.5),  # D*
        click_weight * -math.log(1 - 0.9),  # click outside D*
        negative_weight * -math.log(1 - 0.75),  # sampled
        negative_weight * -math.log(1 - 0.25),  # sampled
    ]
    return terms


@pytest.mark.parametrize(("click_weight", "negative_weight"), [(0.5, 1.0), (2.0, 0.25), (0, 0)])
def test_nr_matches_hand_values(click_weight, negative_weight):
    terms = nr_by_hand(click_weight, negative_weight)
    loss = nr_weighted_bce(
        LOGITS,
        LABELS,
        RELIABLE,
        click_weight=click_weight,
        negative_weight=negative_weight,
        reduction="none",
    )
    assert torch.allclose(loss, torch.tensor(terms), atol=1e-6)
    mean = nr_weighted_bce(
        LOGITS, LABELS, RELIABLE, click_weight=click_weight, negative_weight=negative_weight
    )
    assert mean.item() == pytest.approx(sum(terms) / 6)  # mean over entries, not over weights


def test_nr_with_unit_weights_is_ce_on_relabelled_targets():
    loss = nr_weighted_bce(LOGITS, LABELS, RELIABLE, click_weight=1.0, negative_weight=1.0)
    assert torch.allclose(loss, bce(LOGITS, RELIABLE.float()))


def test_nr_ignores_reliable_flags_on_non_interacted_items():
    flagged = RELIABLE.clone()
    flagged[4] = True  # a sampled item cannot be in D*: still a weighted negative
    kwargs = {"click_weight": 0.5, "negative_weight": 1.0}
    assert torch.equal(
        nr_weighted_bce(LOGITS, LABELS, flagged, **kwargs),
        nr_weighted_bce(LOGITS, LABELS, RELIABLE, **kwargs),
    )


@pytest.mark.parametrize("bad", [-0.5, float("inf"), float("nan"), "0.5", True, None])
def test_bad_nr_weights(bad):
    with pytest.raises(ValueError, match=">= 0"):
        check_nr_weights(bad, 1.0)
    with pytest.raises(ValueError, match="nr_negative_weight"):
        nr_weighted_bce(LOGITS, LABELS, RELIABLE, click_weight=0.5, negative_weight=bad)


def test_nr_is_a_loss_name():
    assert check_loss_name("nr") == "NR"


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


@pytest.mark.parametrize(("click_weight", "negative_weight"), [(0.5, 1.0), (0.1, 3.0)])
def test_gmf_nr_follows_configured_weights(base_config, click_weight, negative_weight):
    config = {
        **base_config,
        "adt_loss": "NR",
        "nr_click_weight": click_weight,
        "nr_negative_weight": negative_weight,
    }
    _, _, (train, _, _), model, _ = prepare("GMF", config)
    batch, groups = _batch(train._dataset)
    logits = torch.randn(len(groups), generator=torch.Generator().manual_seed(1))
    prob = torch.sigmoid(logits).tolist()
    weight = {"extra": 1.0, "click": click_weight, "sampled": negative_weight}
    expected = [
        -math.log(p) if g == "extra" else -weight[g] * math.log(1 - p) for p, g in zip(prob, groups)
    ]
    loss = model.pointwise_loss(logits, batch)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert model.denoising_summary()["positives"] == 6


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


def test_nmtr_tasks_and_weights(base_config):
    train, model = _hand_built_nmtr(base_config, nmtr_loss_weights=[0.3, 0.7])
    batch, groups = _batch(train._dataset)
    logits = model.forward(batch["user_id"], batch["item_id"])
    implicit = batch["label"]  # every interaction is positive for the implicit task
    reliable = torch.tensor([float(g == "extra") for g in groups])  # D* only, for the second
    expected = 0.3 * bce(logits[:, 0], implicit) + 0.7 * bce(logits[:, 1], reliable)
    assert torch.allclose(model.calculate_loss(batch), expected)


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
