"""DCF (He et al., KDD 2024): the keyed loss memory, the bound and relabelling, by hand and on
planted false positives."""

import math

import pytest
import torch

from recbole_adt.config import Config
from recbole_adt.denoisers import DENOISERS, build_denoiser
from recbole_adt.denoisers.dcf import DCF, DCFSettings, InteractionMemory, confidence_bound, damp
from recbole_adt.denoisers.truncate import Truncate
from recbole_adt.losses import split_loss_name
from recbole_adt.quick_start import run_recbole_adt
from tests.pipeline import prepare
from tests.test_any_model import prepare as prepare_for_loss

N_ITEMS = 5
# Training positives A = (1, 2), B = (1, 3), C = (2, 2), D = (3, 1): keys 7, 8, 12, 16.
PAIRS = {"A": (1, 2), "B": (1, 3), "C": (2, 2), "D": (3, 1)}


def phi(loss):
    return math.log(1 + loss + loss * loss / 2)


def bound(s, n, sigma2):
    return sigma2 * (s + sigma2 * math.log(2 * s) / s**2) / (n + 1 - sigma2)


def tiny_dcf(**settings):
    dcf = DCF(**{"relabel_ratio": 0.5, "co_lambda": 0.5, "time_step": 2, "epochs": 3, **settings})
    users, items = torch.tensor(list(PAIRS.values())).T
    dcf.memory = InteractionMemory(users, items, N_ITEMS)
    return dcf


def batch(names, losses, margins):
    """Entries named A-D are positives; any other name is a sampled negative (user 1, item 4)."""
    pairs = [PAIRS.get(name, (1, 4)) for name in names]
    users, items = torch.tensor(pairs).T
    labels = torch.tensor([float(name in PAIRS) for name in names])
    return torch.tensor(losses), torch.tensor(margins), labels, users, items


def slot(dcf, name):
    user, item = PAIRS[name]
    return dcf.memory.lookup(torch.tensor([user]), torch.tensor([item]))[0].item()


def test_registered_and_named():
    assert DENOISERS["dcf"] is DCF and split_loss_name("dcf") == ("bce", "dcf")
    authors = {"dcf_relabel_ratio": 0.05, "dcf_co_lambda": 1e-4, "dcf_time_step": 3}
    dcf = build_denoiser("dcf", {**authors, "epochs": 10, "phases": ["adt"]})
    assert (dcf.relabel_ratio, dcf.co_lambda, dcf.time_step, dcf.epochs) == (0.05, 1e-4, 3, 10)
    phased = {**authors, "epochs": 10, "phases": ["warmup", "adt:4"]}
    assert build_denoiser("dcf", phased).epochs == 4  # sigma^2 decays over the ADT epochs
    assert DCF.settings is DCFSettings and DCFSettings.KEYS == tuple(authors)


def test_package_defaults_are_the_authors(base_config):
    config = Config("GMF", config_dict={**base_config, "adt_loss": "DCF"})
    assert config.parsed_settings[DCFSettings] == DCFSettings(0.05, 1e-4, 3)


def test_damping_and_bound_by_hand():
    assert damp(torch.tensor([0.0, 2.0])).tolist() == pytest.approx([0.0, math.log(5.0)])
    # s = 1, n = 1, sigma^2 = 0.5: 0.5 (1 + 0.5 ln 2) / 1.5
    assert confidence_bound(1, torch.tensor(1.0), co_lambda=0.5).item() == pytest.approx(
        0.448858, abs=1e-6
    )
    # s = 2, sigma^2 = 0.25: 0.25 (2 + 0.25 ln 4 / 4) / (n + 0.75), n = 1 and 2
    assert confidence_bound(2, torch.tensor([1.0, 2.0]), co_lambda=0.25).tolist() == (
        pytest.approx([0.298092, 0.189695], abs=1e-6)
    )


def test_memory_bound_and_relabelling_on_a_hand_made_sequence():
    dcf = tiny_dcf()
    memory = dcf.memory

    # Epoch 1 (s = 1, sigma^2 = 0.5): two drops, of which floor(0.5 * 2) = 1 is relabelled.
    dcf.start_epoch()
    losses = [0.1, 2.0, 0.5, 1.0, 3.0, 3.0]
    loss, margin, labels, users, items = batch("ABCDxx", losses, [0.0, -1.0, 0.5, 0.2, 1.0, 1.0])
    out = dcf(loss, margin, labels, num_drop=2, users=users, items=items)
    # lower bounds: relu(phi - 0.4489) = 0, 1.161, 0.037, 0.467: B then D; negatives never.
    assert dcf.relabelled.tolist() == [False, True, False, False, False, False]
    assert out.dropped.tolist() == [False, False, False, True, False, False]
    # B is trained as a negative: -log(1 - sigmoid(-1)), not its label-1 loss 2.0.
    expected = [0.1, math.log1p(math.exp(-1.0)), 0.5, 0.0, 3.0, 3.0]
    assert out.loss.tolist() == pytest.approx(expected, abs=1e-6)
    assert memory.mean.tolist() == pytest.approx([phi(x) for x in losses[:4]], abs=1e-6)
    assert memory.seen.tolist() == [1, 1, 1, 1]
    assert memory.kept.tolist() == [2, 1, 2, 2]  # B was relabelled: not kept with its label

    # Epoch 2 (s = 2, sigma^2 = 0.5 * (1 - 1/2)), shuffled: one drop, nothing relabelled.
    dcf.start_epoch()
    assert dcf.current_co_lambda() == pytest.approx(0.25)
    names, losses = "DxCAB", [0.74, 3.0, 0.5, 0.1, 0.1]
    loss, margin, labels, users, items = batch(names, losses, [0.0] * 5)
    out = dcf(loss, margin, labels, num_drop=1, users=users, items=items)
    means = {
        "A": (phi(0.1) + phi(0.1)) / 2,
        "B": (phi(2.0) + phi(0.1)) / 2,
        "C": phi(0.5),
        "D": (phi(1.0) + phi(0.74)) / 2,
    }
    for name, mean in means.items():
        assert memory.mean[slot(dcf, name)].item() == pytest.approx(mean, abs=1e-6)
    # B has the largest mean (0.855 > D's 0.808), but was kept once fewer: its bound is wider
    # (0.298 against 0.190), so its lower bound is smaller and D is dropped instead.
    assert means["B"] > means["D"]
    assert means["B"] - bound(2, 1, 0.25) < means["D"] - bound(2, 2, 0.25)
    assert out.dropped.tolist() == [True, False, False, False, False]
    assert not dcf.relabelled.any()
    assert memory.seen.tolist() == [2, 2, 2, 2] and memory.kept.tolist() == [3, 2, 3, 3]

    # Epoch 3 starts a new window of time_step = 2 epochs.
    dcf.start_epoch()
    assert memory.mean.tolist() == [0.0] * 4 and memory.seen.tolist() == [0] * 4
    assert memory.kept.tolist() == [1.0] * 4 and dcf.current_co_lambda() == 0.0


def test_memory_follows_the_interaction_across_shuffled_batches():
    generator = torch.Generator().manual_seed(3)
    n_items = 40
    keys = torch.randperm(30 * n_items, generator=generator)[:200]
    users, items = keys // n_items, keys % n_items
    dcf = DCF(relabel_ratio=0.0, co_lambda=0.0, time_step=10, epochs=10)
    dcf.memory = InteractionMemory(users, items, n_items)
    assert len(dcf.memory) == 200  # one slot per training interaction, never users x items

    def loss_of(epoch):  # a different loss for every pair and epoch
        return (keys.float() % 97) / 50 + epoch

    for epoch in (1, 2):
        dcf.start_epoch()
        order = torch.randperm(200, generator=generator)
        for chunk in order.split(64):  # shuffled batches of positives
            dcf(
                loss_of(epoch)[chunk],
                torch.zeros(len(chunk)),
                torch.ones(len(chunk)),
                users=users[chunk],
                items=items[chunk],
            )
    slots, found = dcf.memory.lookup(users, items)
    assert found.all() and torch.equal(dcf.memory.keys[slots], users * n_items + items)
    expected = (damp(loss_of(1)) + damp(loss_of(2))) / 2
    assert torch.allclose(dcf.memory.mean[slots], expected, atol=1e-6)
    assert dcf.memory.seen.tolist() == [2] * 200


def test_without_bound_relabels_or_window_it_drops_as_truncation():
    generator = torch.Generator().manual_seed(5)
    loss = torch.rand(64, generator=generator) * 3
    labels = (torch.rand(64, generator=generator) > 0.4).float()
    users, items = torch.arange(64), torch.zeros(64, dtype=torch.long)
    dcf = DCF(relabel_ratio=0.0, co_lambda=0.0, time_step=1, epochs=5)
    dcf.memory = InteractionMemory(users, items, 1)
    dcf.start_epoch()
    out = dcf(loss, loss, labels, num_drop=9, users=users, items=items)
    expected = Truncate()(loss, loss, labels, num_drop=9)
    assert torch.equal(out.dropped, expected.dropped) and torch.equal(out.loss, expected.loss)


def test_relabels_planted_false_positives_well_above_their_rate(base_config):
    config = {
        **base_config,
        "adt_loss": "DCF",
        "drop_rate": 0.2,
        "num_gradual": 10,
        "learning_rate": 0.01,
        "epochs": 6,
        "dcf_relabel_ratio": 0.5,
    }
    _, _, (train_data, valid_data, _), model, trainer = prepare("GMF", config)
    memory = model.denoiser.memory
    assert len(memory) == len(train_data._dataset.inter_feat)  # bounded by the interactions
    trainer.fit(train_data, valid_data, saved=False)
    stats = model.denoising_summary()
    base_rate = stats["false_positives"] / stats["positives"]
    assert 0.15 < base_rate < 0.25
    assert stats["relabelled"] > 50 and stats["dropped"] > 50
    precision = stats["relabelled_false_positives"] / stats["relabelled"]
    assert precision > 2 * base_rate, (precision, base_rate)
    assert "relabelled positives" in trainer._denoising_output()


@pytest.mark.parametrize("model_name", ["GMF", "NeuMF", "NMTR"])
def test_trains_two_epochs_and_evaluates(base_config, model_name):
    result = run_recbole_adt(model_name, config_dict={**base_config, "adt_loss": "DCF"})
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result["test_result"].values())


def test_only_adt_epochs_count(base_config):
    config = {**base_config, "adt_loss": "DCF", "phases": ["warmup:1", "adt:2", "finetune:1"]}
    _, _, (train_data, valid_data, _), model, trainer = prepare("GMF", config)
    trainer.fit(train_data, valid_data, saved=False)
    dcf = model._denoisers["dcf"]
    assert dcf.epochs == 2 and dcf.epoch == 2


def test_on_bpr_triples_drops_and_reverses_the_largest_loss_pairs(base_config):
    """Keyed by (user, positive item); a relabelled triple trains as the reversed pair."""
    config = {**base_config, "adt_loss": "DCF", "dcf_relabel_ratio": 0.5}
    train_data, _, model, _ = prepare_for_loss("BPR", config)
    batch = next(iter(train_data))
    model.drop_rate = 0.1
    model.denoiser.start_epoch()
    loss = model.calculate_loss(batch)
    users = model.get_user_embedding(batch["user_id"])
    pos = (users * model.get_item_embedding(batch["item_id"])).sum(1)
    neg = (users * model.get_item_embedding(batch["neg_item_id"])).sum(1)
    per_triple = -torch.log(1e-10 + torch.sigmoid(pos - neg))
    # First epoch: every bound is the same, so the largest BPR losses go first.
    num_drop = math.floor(0.1 * len(batch))
    order = per_triple.argsort(descending=True)
    relabelled, dropped = order[: num_drop // 2], order[num_drop // 2 : num_drop]
    assert model.denoiser.relabelled.nonzero().flatten().sort().values.tolist() == (
        relabelled.sort().values.tolist()
    )
    expected = per_triple.clone()
    expected[relabelled] = torch.nn.functional.softplus(pos - neg)[relabelled]
    expected[dropped] = 0.0
    assert torch.allclose(loss, expected.sum() / (len(batch) - len(dropped)), atol=1e-6)
    memory = model.denoiser.memory
    slots, found = memory.lookup(batch["user_id"], batch["item_id"])
    assert found.all() and memory.seen[slots].tolist() == [1] * len(batch)
    assert memory.seen.sum() == len(batch)  # no slot for the sampled negatives


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"dcf_relabel_ratio": 1.5}, r"dcf_relabel_ratio must be a number in \[0, 1\]"),
        ({"dcf_relabel_ratio": "a lot"}, "dcf_relabel_ratio must be"),
        ({"dcf_co_lambda": -1e-4}, r"dcf_co_lambda must be a number in \[0, 1\]"),
        ({"dcf_time_step": 0}, "dcf_time_step must be an integer >= 1"),
        ({"dcf_time_step": 2.5}, "dcf_time_step must be an integer >= 1"),
        ({"dcf_time_step": True}, "dcf_time_step must be an integer >= 1, got True: .*epochs"),
    ],
)
def test_bad_settings_raise(base_config, setting, message):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, "adt_loss": "DCF", **setting})
    keys = {"dcf_relabel_ratio": 0.05, "dcf_co_lambda": 1e-4, "dcf_time_step": 3, **setting}
    with pytest.raises(ValueError, match=message):
        DCFSettings.from_config(keys)


@pytest.mark.parametrize(
    ("model_name", "message"),
    [("CDAE", "CDAE trains on whole user rows"), ("GCMC", "GCMC: it is not a general model")],
)
def test_unsupported_models_raise(base_config, model_name, message):
    with pytest.raises(ValueError, match=message):
        Config(model_name, config_dict={**base_config, "adt_loss": "DCF"})
