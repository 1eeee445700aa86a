"""RecBole's BPR- and BCE-trained general models under T-*, R-* and DCF, through the generic
wrapper."""

import math

import pytest
import torch
from recbole.data import data_preparation
from recbole.model.general_recommender import BPR as RecBoleBPR
from recbole.model.general_recommender import DMF as RecBoleDMF
from recbole.model.general_recommender import FISM as RecBoleFISM
from recbole.model.general_recommender import LightGCN as RecBoleLightGCN
from recbole.utils import init_seed
from torch import nn

from recbole_adt.config import Config
from recbole_adt.losses import bpr, truncated_bpr
from recbole_adt.model.generic import (
    DenoisedBCELoss,
    DenoisedBCEWithLogitsLoss,
    DenoisedBPRLoss,
    PairwiseDenoisingMixin,
    PointwiseDenoisingMixin,
)
from recbole_adt.quick_start import build_dataset, run_recbole_adt
from recbole_adt.trainer import PhasedTrainer
from recbole_adt.utils import get_model, get_trainer


def prepare(model_name, config_dict):
    """As tests.pipeline.prepare, with the model and trainer looked up for adt_loss."""
    config = Config(model_name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, build_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name, adt_loss=config["adt_loss"])(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name, adt_loss=config["adt_loss"])
    return train_data, valid_data, model, trainer(config, model)


def test_lookup_wraps_only_when_denoising():
    assert get_model("LightGCN") is RecBoleLightGCN
    assert get_model("LightGCN", adt_loss="BPR") is RecBoleLightGCN
    wrapped = get_model("LightGCN", adt_loss="TCE")
    assert wrapped is get_model("lightgcn", adt_loss="TBPR")  # one class, whatever the spelling
    assert wrapped.__name__ == "LightGCN"  # RecBole's LightGCN.yaml and dataloaders apply
    assert issubclass(wrapped, RecBoleLightGCN) and issubclass(wrapped, PairwiseDenoisingMixin)
    assert get_trainer(None, "LightGCN", adt_loss="RBPR") is PhasedTrainer


@pytest.mark.parametrize(("model_name", "recbole_class"), [("BPR", RecBoleBPR), ("LightGCN", None)])
@pytest.mark.parametrize("loss", ["TBPR", "RBPR"])
def test_no_drop_and_beta_zero_give_the_models_own_loss(
    base_config, model_name, recbole_class, loss
):
    """At epsilon = 0 (and beta = 0) the wrapped loss is the model's own, extra terms included."""
    settings = {**base_config, "adt_loss": loss, "beta": 0.0}
    train, _, model, _ = prepare(model_name, settings)
    _, _, plain, _ = prepare(model_name, {**settings, "adt_loss": "CE"})
    assert type(plain) is get_model(model_name) and type(model) is not type(plain)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items())
    batch = next(iter(train))
    model.drop_rate = 0.0
    assert torch.allclose(model.calculate_loss(batch), plain.calculate_loss(batch), atol=1e-7)


def test_truncation_replaces_only_the_bpr_term(base_config):
    """LightGCN's loss = T-BPR of its triples + its own regulariser, unchanged."""
    settings = {**base_config, "adt_loss": "TBPR"}
    train, _, model, _ = prepare("LightGCN", settings)
    _, _, plain, _ = prepare("LightGCN", {**settings, "adt_loss": "CE"})
    assert isinstance(model.mf_loss, DenoisedBPRLoss)
    batch = next(iter(train))
    model.drop_rate = 0.25
    model.reset_denoising_stats()
    loss = model.calculate_loss(batch)
    stats = model.denoising_summary()
    assert stats["positives"] == len(batch)
    assert stats["dropped"] == math.floor(0.25 * len(batch))
    assert stats["false_positives"] == (batch["false_positive"] > 0.5).sum().item()
    users, items = plain.forward()
    user = users[batch["user_id"]]
    pos = (user * items[batch["item_id"]]).sum(1)
    neg = (user * items[batch["neg_item_id"]]).sum(1)
    expected = plain.calculate_loss(batch) - bpr(pos, neg) + truncated_bpr(pos, neg, drop_rate=0.25)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_truncated_bpr_drops_planted_false_positives(base_config):
    settings = {
        **base_config,
        "adt_loss": "TBPR",
        "drop_rate": 0.2,
        "num_gradual": 10,
        "learning_rate": 0.01,
        "epochs": 6,
    }
    train, valid, model, trainer = prepare("BPR", settings)
    trainer.fit(train, valid, saved=False)
    stats = model.denoising_summary()
    base_rate = stats["false_positives"] / stats["positives"]
    precision = stats["dropped_false_positives"] / stats["dropped"]
    assert 0.15 < base_rate < 0.25
    assert precision > 2 * base_rate, (precision, base_rate)  # random dropping: base_rate


def test_reweighted_bpr_gives_false_positives_smaller_weights(base_config):
    settings = {**base_config, "adt_loss": "RBPR", "beta": 1.0, "learning_rate": 0.01}
    train, valid, model, trainer = prepare("BPR", {**settings, "epochs": 4})
    trainer.fit(train, valid, saved=False)
    stats = model.denoising_summary()
    clean = stats["weight_clean"] / (stats["positives"] - stats["false_positives"])
    noisy = stats["weight_false_positive"] / stats["false_positives"]
    assert noisy < 0.8 * clean, (noisy, clean)


@pytest.mark.parametrize("model_name", ["BPR", "LightGCN"])
@pytest.mark.parametrize("loss", ["TBPR", "RBPR", "TCE"])
def test_trains_and_evaluates(base_config, model_name, loss):
    settings = {**base_config, "adt_loss": loss, "num_gradual": 20}
    result = run_recbole_adt(model_name, config_dict=settings)
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result["test_result"].values())
    assert result["best_valid_result"]["ndcg@20"] == result["best_valid_score"]


def test_saved_run_reloads(base_config):
    from recbole_adt.quick_start import load_data_and_model

    result = run_recbole_adt("LightGCN", config_dict={**base_config, "adt_loss": "TBPR"})
    config, model, *_ = load_data_and_model(result["model_file"])
    assert isinstance(model, PairwiseDenoisingMixin) and config["adt_loss"] == "TBPR"


@pytest.mark.parametrize(
    ("model_name", "loss", "message"),
    [
        ("SASRec", "TCE", "SASRec: it is a sequential model"),  # with loss_type BPR
        ("FM", "RBPR", "FM: it is a context-aware model"),
        ("GCMC", "TCE", "GCMC: it is not a general model trained with BPR loss or BCE"),
        ("DMF", "TBPR", "DMF, which trains with BCE on .* use TCE, RCE or DCF"),
        ("NAIS", "RCE", "NAIS reads beta as a setting of its own: use TCE or DCF"),
        ("MultiVAE", "TBPR", "not a general model trained with BPR loss"),
        ("NCL", "TCE", "NCL: it is trained by a trainer of its own"),
        ("LightGCN", "NR", "NR with GMF or NeuMF"),
        (
            "GMF",
            "TBPR",
            "GMF trains with BCE: use CE, TCE, RCE, DCF, UDT or NR \\(TBPR and RBPR are",
        ),
    ],
)
def test_unsupported_models_raise(base_config, model_name, loss, message):
    settings = {**base_config, "adt_loss": loss, "loss_type": "BPR"}
    with pytest.raises(ValueError, match=message) as error:
        Config(model_name, config_dict=settings)
    if model_name in ("SASRec", "FM", "GCMC", "MultiVAE", "NCL"):
        assert "BPR, DGCF, LightGCN, NGCF, SpectralCF" in str(error.value)
        assert "trained with BCE (DMF, FISM, NAIS, NNCF)" in str(error.value)


@pytest.mark.parametrize("model_name", ["BPR", "LightGCN", "NGCF", "DMF"])
@pytest.mark.parametrize("loss", ["TCE", "RCE", "DCF"])
def test_one_epoch_under_each_denoiser(base_config, model_name, loss):
    settings = {**base_config, "adt_loss": loss, "epochs": 1, "num_gradual": 5, "beta": 0.5}
    result = run_recbole_adt(model_name, config_dict=settings)
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result["test_result"].values())


@pytest.mark.parametrize(
    ("model_name", "recbole_class", "loss"),
    [
        ("DMF", RecBoleDMF, "TCE"),
        ("DMF", RecBoleDMF, "RCE"),
        ("DMF", RecBoleDMF, "DCF"),
        ("FISM", RecBoleFISM, "TCE"),  # BCE plus FISM's own regulariser
    ],
)
def test_pointwise_no_drop_and_beta_zero_give_the_models_own_loss(
    base_config, model_name, recbole_class, loss
):
    """At epsilon = 0 and beta = 0 the wrapped loss is the model's own, extra terms included."""
    settings = {**base_config, "adt_loss": loss, "beta": 0.0}
    train, _, model, _ = prepare(model_name, settings)
    _, _, plain, _ = prepare(model_name, {**settings, "adt_loss": "CE"})
    assert type(plain) is recbole_class and isinstance(model, PointwiseDenoisingMixin)
    assert any(isinstance(child, DenoisedBCEWithLogitsLoss) for child in model.children())
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items())
    batch = next(iter(train))
    model.drop_rate = 0.0
    model.denoiser.start_epoch()
    assert torch.allclose(model.calculate_loss(batch), plain.calculate_loss(batch), atol=1e-7)
    assert model.denoising_summary()["positives"] == (batch["label"] > 0.5).sum().item()


def test_pointwise_truncation_drops_the_largest_bce_positives(base_config):
    train, _, model, _ = prepare("DMF", {**base_config, "adt_loss": "TCE"})
    batch = next(iter(train))
    logits = model.forward(batch["user_id"], batch["item_id"])
    loss = nn.functional.binary_cross_entropy_with_logits(logits, batch["label"], reduction="none")
    model.drop_rate = 0.1
    num_drop = math.floor(0.1 * len(batch))
    ranked = loss.masked_fill(batch["label"] < 0.5, -1).sort(descending=True).indices
    kept = torch.ones_like(loss, dtype=torch.bool)
    kept[ranked[:num_drop]] = False
    assert torch.allclose(model.calculate_loss(batch), loss[kept].mean(), atol=1e-6)
    assert model.denoising_summary()["dropped"] == num_drop


def test_bce_on_probabilities_gives_the_denoiser_logits():
    probs = torch.tensor([0.1, 0.5, 0.9, 1.0])
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    seen = {}

    def denoised(loss, logits, labels):
        seen.update(loss=loss, logits=logits)
        return loss.mean()

    assert torch.allclose(DenoisedBCELoss(denoised)(probs, target), nn.BCELoss()(probs, target))
    assert torch.allclose(torch.sigmoid(seen["logits"]), probs)
    # A relabelled entry's loss, -log(1 - p) from the logit, is BCELoss's, clamped at 100.
    as_negative = nn.functional.softplus(seen["logits"])
    assert torch.allclose(as_negative, nn.BCELoss(reduction="none")(probs, torch.zeros(4)))
