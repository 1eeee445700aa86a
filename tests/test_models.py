"""Each model x loss trains, evaluates, and scores every item like predict does."""

import math
from functools import partial

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_adt.losses import bce, reweighted_bce, truncated_bce
from recbole_adt.model import CDAE, GMF, NeuMF
from recbole_adt.quick_start import run_recbole_adt
from tests.pipeline import prepare

MODELS = ["GMF", "NeuMF", "CDAE"]
LOSSES = ["CE", "TCE", "RCE"]


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("loss", LOSSES)
def test_trains_and_evaluates(model_name, loss, base_config):
    config = {**base_config, "adt_loss": loss, "num_gradual": 20}
    result = run_recbole_adt(model_name, config_dict=config)
    assert set(result["test_result"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result["test_result"].values())
    assert result["best_valid_result"]["ndcg@20"] == result["best_valid_score"]


@pytest.mark.parametrize("model_name", MODELS)
def test_ours_are_found_first(model_name):
    from recbole_adt.utils import get_model

    assert get_model(model_name) in (GMF, NeuMF, CDAE)
    assert get_model("BPR").__module__.startswith("recbole.")


@pytest.mark.parametrize("model_name", [*MODELS, "NMTR"])
def test_full_sort_predict_matches_predict(model_name, base_config):
    _, _, (train, _, _), model, _ = prepare(model_name, base_config)
    model.eval()
    # move parameters away from their init so a wrong formula cannot agree by chance
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    users = torch.tensor([1, 5, 17])
    n_items = train._dataset.item_num
    full = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), n_items)
    pairs = Interaction(
        {
            "user_id": users.repeat_interleave(n_items),
            "item_id": torch.arange(n_items).repeat(len(users)),
        }
    )
    assert torch.allclose(full, model.predict(pairs).view(len(users), n_items), atol=1e-5)


def test_loss_switch_changes_nothing_else(base_config):
    """Same seed, same data: the three losses build identical models."""
    states = []
    for loss in LOSSES:
        _, _, _, model, _ = prepare("NeuMF", {**base_config, "adt_loss": loss})
        states.append(model.state_dict())
    for state in states[1:]:
        assert all(torch.equal(state[k], states[0][k]) for k in state)


def test_paper_defaults(base_config):
    config, _, _, model, _ = prepare("GMF", base_config)
    assert model.embedding_size == 32
    assert config["learning_rate"] == 0.001 and config["learner"] == "adam"
    assert config["train_neg_sample_args"]["sample_num"] == 1
    config, _, _, model, _ = prepare("CDAE", base_config)
    assert model.embedding_size == 200
    config, _, _, model, _ = prepare("NeuMF", base_config)
    assert model.mf_embedding_size == 32 and model.mlp_embedding_size == 32


def test_cdae_drops_per_user_positives(base_config):
    config = {**base_config, "adt_loss": "TCE"}
    _, _, (train, _, _), model, _ = prepare("CDAE", config)
    model.drop_rate = 0.25
    model.reset_denoising_stats()
    users = torch.arange(1, 9)
    model.calculate_loss(Interaction({"user_id": users}))
    stats = model.denoising_summary()
    positives = (model.get_rating_matrix(users) > 0).sum(-1)
    assert stats["positives"] == positives.sum().item()
    assert stats["dropped"] == torch.floor(0.25 * positives).sum().item()


def test_neumf_split_first_layer_matches_plain_tower(base_config):
    """Eval mode applies the first MLP layer to users and items apart; train mode does not."""
    _, _, _, model, _ = prepare("NeuMF", base_config)  # dropout_prob 0: both modes are exact
    users = Interaction({"user_id": torch.tensor([2, 3, 4])})
    with torch.no_grad():
        model.eval()
        split = model.full_sort_predict(users)
        model.train()
        plain = model.full_sort_predict(users)
    assert torch.allclose(split, plain, atol=1e-6)


@pytest.mark.parametrize(
    ("loss", "pure"),
    [
        ("CE", bce),
        ("TCE", partial(truncated_bce, drop_rate=0.3)),
        ("RCE", partial(reweighted_bce, beta=0.25)),
    ],
)
def test_model_loss_is_the_pure_function(loss, pure, base_config):
    _, _, _, model, _ = prepare("GMF", {**base_config, "adt_loss": loss})
    model.drop_rate = 0.3
    logits = torch.randn(10, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([1.0] * 5 + [0.0] * 5)
    batch = Interaction({"label": labels, "false_positive": torch.tensor([1.0, 0.0] * 5)})
    assert torch.allclose(model.pointwise_loss(logits, batch), pure(logits, labels))
    stats = model.denoising_summary()
    assert stats["positives"] == 5 and stats["false_positives"] == 3  # negatives not counted
    assert stats["dropped"] == (3 if loss == "TCE" else 0)
