"""Checkpoint rules: the validation losses by hand, on a model of fixed probabilities too, the
fixed validation negatives, and the epoch each rule keeps on a hand-made sequence of validation
results, alone and in every phase."""

import math
from collections import OrderedDict

import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.utils import InputType

from recbole_adt.config import Config
from recbole_adt.quick_start import run_recbole_adt
from recbole_adt.trainer import selection
from recbole_adt.trainer.checkpoint import read_checkpoint
from recbole_adt.trainer.selection import (
    CheckpointRule,
    CheckpointRuleMixin,
    ValidationPairs,
    pair_probabilities,
    sample_validation_negatives,
    truncated_validation_loss,
    validation_loss,
    validation_pairs,
)
from tests.pipeline import prepare

POSITIVE = torch.tensor([0.1, 2.0, 0.3, 0.5, 1.0])
NEGATIVE = torch.tensor([0.2, 0.4])


def test_validation_loss_by_hand():
    assert validation_loss(POSITIVE, NEGATIVE) == pytest.approx((3.9 + 0.6) / 7)


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (0.0, (3.9 + 0.6) / 7),
        (0.2, (0.1 + 0.3 + 0.5 + 1.0 + 0.6) / 6),  # keeps floor(0.8 * 5) = 4: 2.0 goes
        (0.5, (0.1 + 0.3 + 0.6) / 4),  # keeps floor(2.5) = 2
        (0.9, 0.6 / 2),  # keeps none of the positives
    ],
)
def test_truncated_validation_loss_by_hand(ratio, expected):
    got = truncated_validation_loss(POSITIVE, NEGATIVE, truncate_ratio=ratio)
    assert got == pytest.approx(expected)


def rule(name="valid_loss_truncated", ratio=0.25) -> CheckpointRule:
    return CheckpointRule.from_config({"checkpoint_rule": name, "checkpoint_truncate_ratio": ratio})


def test_rule_directions_and_bad_values():
    assert rule("valid_metric").score_bigger(True) is True
    assert rule("valid_metric").score_bigger(False) is False
    assert rule("valid_loss").score_bigger(True) is False
    assert rule("valid_loss_truncated").score_bigger(True) is False
    assert rule("valid_loss", 0.1) == CheckpointRule("valid_loss", 0.1)
    with pytest.raises(ValueError, match="checkpoint_rule must be one of valid_metric, valid_loss"):
        rule("valid_auc")
    for bad in (1.0, -0.1, "0.2", True):
        with pytest.raises(
            ValueError, match=r"checkpoint_truncate_ratio must be a number in \[0, 1\)"
        ):
            rule(ratio=bad)
    with pytest.raises(ValueError, match=r"checkpoint_truncate_ratio must be a number in \[0, 1\)"):
        truncated_validation_loss(POSITIVE, NEGATIVE, truncate_ratio=1.0)


class FixedProbabilities(torch.nn.Module):
    """A pointwise model whose p_ui is read from a table; ``full_sort`` False leaves it without
    full_sort_predict, so pair_probabilities scores by predict, as for RecBole's fallback."""

    USER_ID, ITEM_ID = "user_id", "item_id"
    input_type = InputType.POINTWISE

    def __init__(self, table: torch.Tensor, *, full_sort: bool = True):
        super().__init__()
        self.table, self.n_items, self.full_sort = table, table.shape[1], full_sort
        self.device = torch.device("cpu")

    def predict(self, interaction):
        return self.table[interaction[self.USER_ID], interaction[self.ITEM_ID]]

    def full_sort_predict(self, interaction):
        if not self.full_sort:
            raise NotImplementedError
        return self.table[interaction[self.USER_ID]].flatten()


# Users 1 and 2 over items 0..4; each user has two validation positives and two negatives.
# Positive losses -ln p: 0.5 -> ln 2, 0.8 -> ln 1.25, 0.25 -> ln 4 (the largest positive),
# 0.9 -> ln(10/9); negative losses -ln(1 - p): 0.2 -> ln 1.25, 0.1 -> ln(10/9),
# 0.5 -> ln 2, 0.9 -> ln 10: the largest loss of all is a negative's.
TABLE = torch.tensor(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.5, 0.8, 0.2, 0.1],
        [0.0, 0.25, 0.9, 0.5, 0.9],
    ]
)
PAIRS = ValidationPairs(
    users=torch.tensor([1, 1, 1, 1, 2, 2, 2, 2]),
    items=torch.tensor([1, 3, 2, 4, 1, 3, 2, 4]),
    labels=torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0]),
)
POSITIVE_LOSSES = [math.log(2), math.log(1.25), math.log(4), math.log(10 / 9)]
NEGATIVE_LOSSES = [math.log(1.25), math.log(10 / 9), math.log(2), math.log(10)]


@pytest.mark.parametrize("full_sort", [True, False])
@pytest.mark.parametrize("scores_per_block", [1, 5, 1000])
def test_rule_losses_on_fixed_probabilities(full_sort, scores_per_block):
    model = FixedProbabilities(TABLE, full_sort=full_sort)
    losses = rule("valid_loss_truncated", 0.25).losses(
        model, PAIRS, scores_per_block=scores_per_block
    )
    everything = sum(POSITIVE_LOSSES) + sum(NEGATIVE_LOSSES)
    assert losses["valid_loss"] == pytest.approx(everything / 8, rel=1e-6)
    # floor(0.75 * 4) = 3 positives kept: ln 4, the largest positive loss, goes; every
    # negative stays, ln 10 (the largest loss of all) included.
    assert losses["valid_loss_truncated"] == pytest.approx((everything - math.log(4)) / 7, rel=1e-6)


def test_truncation_leaves_out_positives_only():
    model = FixedProbabilities(TABLE)
    kept = {
        ratio: rule(ratio=ratio).losses(model, PAIRS, scores_per_block=100)["valid_loss_truncated"]
        for ratio in (0.0, 0.5, 0.99)
    }
    negatives = sum(NEGATIVE_LOSSES)
    assert kept[0.0] == pytest.approx((sum(POSITIVE_LOSSES) + negatives) / 8, rel=1e-6)
    # floor(0.5 * 4) = 2: the two smallest positive losses, ln(10/9) and ln 1.25
    two = math.log(10 / 9) + math.log(1.25)
    assert kept[0.5] == pytest.approx((two + negatives) / 6, rel=1e-6)
    assert kept[0.99] == pytest.approx(negatives / 4, rel=1e-6)  # no positive left


def test_trainer_scores_an_epoch_by_its_rule():
    """CheckpointRuleMixin returns the rule's loss as the epoch's score, both losses beside."""

    class Base:
        def __init__(self, config, model):
            self.config, self.model, self.valid_metric_bigger = config, model, True

        def _valid_epoch(self, valid_data, show_progress=False):
            return 0.3, {"ndcg@20": 0.3}

    class Trainer(CheckpointRuleMixin, Base):
        pass

    config = {
        "checkpoint_rule": "valid_loss_truncated",
        "checkpoint_truncate_ratio": 0.25,
        "eval_memory_budget_mb": None,
        "eval_batch_size": 3,
        "seed": 0,
    }
    trainer = Trainer(config, FixedProbabilities(TABLE))
    trainer._validation_pairs = PAIRS  # drawn from a real split in test_validation_pairs_...
    score, result = trainer._valid_epoch(None)
    everything = sum(POSITIVE_LOSSES) + sum(NEGATIVE_LOSSES)
    assert score == result["valid_loss_truncated"]
    assert score == pytest.approx((everything - math.log(4)) / 7, rel=1e-6)
    assert result["valid_loss"] == pytest.approx(everything / 8, rel=1e-6)
    assert result["ndcg@20"] == 0.3 and trainer.valid_metric_bigger is False


@pytest.mark.parametrize(
    "setting",
    [
        {"checkpoint_rule": "loss"},
        {"checkpoint_truncate_ratio": -0.1},
        {"checkpoint_truncate_ratio": "high"},
    ],
)
def test_config_rejects_bad_settings(base_config, setting):
    with pytest.raises(ValueError, match="checkpoint_"):
        Config("GMF", config_dict={**base_config, **setting})


@pytest.mark.parametrize("adt_loss", ["BPR", "TBPR"])
def test_recbole_baselines_take_the_rule_too(base_config, adt_loss):
    """A RecBole model trains with RecBole's own trainer under BPR, and with ours under TBPR."""
    settings = {**base_config, "adt_loss": adt_loss, "checkpoint_rule": "valid_loss"}
    _, _, _, _, trainer = prepare("BPR", settings)
    assert isinstance(trainer, CheckpointRuleMixin)
    assert trainer.checkpoint_rule.rule == "valid_loss" and trainer.valid_metric_bigger is False


def test_negatives_avoid_used_items_and_keep_global_randomness():
    n_items = 6
    used = {0: [1, 2, 3], 1: [1, 2, 3, 4], 2: []}
    keys = torch.tensor(sorted(u * n_items + i for u, items in used.items() for i in items))
    users = torch.tensor([0, 1, 1, 2] * 50)
    before = torch.get_rng_state()
    items = sample_validation_negatives(users, keys, n_items, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(items, sample_validation_negatives(users, keys, n_items, seed=3))
    for user, item in zip(users.tolist(), items.tolist()):
        assert 1 <= item < n_items and item not in used[user]
    assert set(items[users == 1].tolist()) == {5}  # the only free item
    assert set(items[users == 2].tolist()) == {1, 2, 3, 4, 5}


def test_negatives_of_a_user_with_no_free_item():
    keys = torch.tensor([1, 2, 3])  # user 0 has every item 1..3
    with pytest.raises(ValueError, match="every item"):
        sample_validation_negatives(torch.tensor([0]), keys, 4, seed=0)


def test_validation_pairs_of_a_real_split(base_config):
    _, _, (train, valid, _), _, _ = prepare("GMF", base_config)
    pairs = validation_pairs(valid, seed=7)
    dataset = valid._dataset
    positives = set(
        zip(dataset.inter_feat["user_id"].tolist(), dataset.inter_feat["item_id"].tolist())
    )
    seen = positives | set(
        zip(
            train._dataset.inter_feat["user_id"].tolist(),
            train._dataset.inter_feat["item_id"].tolist(),
        )
    )
    is_positive = pairs.labels == 1
    assert int(is_positive.sum()) == len(dataset) == int((~is_positive).sum())
    got = list(zip(pairs.users.tolist(), pairs.items.tolist()))
    assert {p for p, pos in zip(got, is_positive.tolist()) if pos} == positives
    assert all(p not in seen for p, pos in zip(got, is_positive.tolist()) if not pos)
    assert torch.all(pairs.users[1:] >= pairs.users[:-1])  # sorted by user
    again = validation_pairs(valid, seed=7)
    assert torch.equal(again.items, pairs.items)


@pytest.mark.parametrize("scores_per_block", [1, 250, 10**6])
def test_pair_probabilities_match_predict(base_config, scores_per_block):
    _, _, _, model, _ = prepare("GMF", base_config)
    users, items = torch.tensor([3, 1, 3, 7, 2]), torch.tensor([5, 9, 2, 1, 40])
    got = pair_probabilities(model, users, items, scores_per_block=scores_per_block)
    with torch.no_grad():
        expected = model.predict(Interaction({"user_id": users, "item_id": items}))
    assert torch.allclose(got, expected, atol=1e-6)


def test_pairwise_scores_are_read_as_logits(base_config):
    _, _, _, model, _ = prepare("BPR", {**base_config, "adt_loss": "TBPR"})
    users, items = torch.tensor([3, 1]), torch.tensor([5, 9])
    got = pair_probabilities(model, users, items, scores_per_block=1000)
    with torch.no_grad():
        scores = model.predict(Interaction({"user_id": users, "item_id": items}))
    assert torch.allclose(got, torch.sigmoid(scores))


# Hand-made validation results, one per epoch: each rule has its own best epoch.
METRIC = [0.10, 0.30, 0.20, 0.25, 0.10]  # ndcg@20: best at epoch 1
LOSS = [0.90, 0.80, 0.70, 0.75, 0.72]  # best at epoch 2
TRUNCATED = [0.60, 0.50, 0.55, 0.40, 0.45]  # best at epoch 3
EXPECTED = {"valid_metric": 1, "valid_loss": 2, "valid_loss_truncated": 3}


def script_validation(trainer, monkeypatch):
    """Replace the validation metrics and losses by the hand-made sequences, epoch by epoch."""
    calls = {"metric": 0, "loss": 0}

    def evaluate(eval_data, load_best_model=True, model_file=None, show_progress=False):
        value = METRIC[calls["metric"] % len(METRIC)]
        calls["metric"] += 1
        return OrderedDict([("recall@20", value), ("ndcg@20", value)])

    def losses(model, pairs, *, truncate_ratio, scores_per_block):
        epoch = calls["loss"] % len(LOSS)
        calls["loss"] += 1
        return {"valid_loss": LOSS[epoch], "valid_loss_truncated": TRUNCATED[epoch]}

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    monkeypatch.setattr(selection, "validation_losses", losses)
    return calls


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_each_rule_keeps_its_epoch(base_config, monkeypatch, rule):
    settings = {**base_config, "epochs": 5, "stopping_step": 10, "checkpoint_rule": rule}
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    calls = script_validation(trainer, monkeypatch)
    best_score, best_result = trainer.fit(train, valid)
    assert read_checkpoint(trainer.saved_model_file)["epoch"] == EXPECTED[rule]
    assert best_result["ndcg@20"] == METRIC[EXPECTED[rule]]
    if rule == "valid_metric":
        assert calls["loss"] == 0  # RecBole's rule: no loss computed
        assert best_score == METRIC[1]
    else:
        assert best_result[rule] == best_score
        assert (
            best_score
            == {"valid_loss": LOSS, "valid_loss_truncated": TRUNCATED}[rule][EXPECTED[rule]]
        )


def test_loss_rule_stops_early_on_a_rising_loss(base_config, monkeypatch):
    settings = {**base_config, "epochs": 7, "stopping_step": 1, "checkpoint_rule": "valid_loss"}
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    calls = script_validation(trainer, monkeypatch)
    trainer.fit(train, valid)
    # 0.70 at epoch 2, then 0.75 and 0.72 are worse: the second worse epoch (4) stops the run.
    assert calls["loss"] == 5 and read_checkpoint(trainer.saved_model_file)["epoch"] == 2


def test_each_phase_keeps_its_own_epoch(base_config, monkeypatch):
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "phases": ["warmup:5", "adt:5"],
        "stopping_step": 10,
        "checkpoint_rule": "valid_loss_truncated",
    }
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    script_validation(trainer, monkeypatch)
    kept = []
    load_best = trainer._load_best

    def record():
        kept.append(read_checkpoint(trainer.saved_model_file)["epoch"])
        load_best()

    monkeypatch.setattr(trainer, "_load_best", record)
    trainer.fit(train, valid)
    kept.append(read_checkpoint(trainer.saved_model_file)["epoch"])
    assert kept == [3, 3]  # the sequence restarts in each phase, so does the best score
    assert trainer.valid_metric_bigger is False


@pytest.mark.slow
def test_baseline_run_keeps_the_smallest_validation_loss(base_config):
    result = run_recbole_adt("BPR", config_dict={**base_config, "checkpoint_rule": "valid_loss"})
    assert result["valid_score_bigger"] is False
    assert result["best_valid_score"] == result["best_valid_result"]["valid_loss"]


@pytest.mark.slow
def test_run_reports_rule_and_kept_epoch(base_config):
    result = run_recbole_adt(
        "NeuMF",
        config_dict={**base_config, "adt_loss": "RCE", "checkpoint_rule": "valid_loss"},
    )
    assert result["checkpoint_rule"] == "valid_loss" and result["valid_score_bigger"] is False
    assert result["best_epoch"] == read_checkpoint(result["model_file"])["epoch"]
    assert result["best_valid_score"] == result["best_valid_result"]["valid_loss"]
    assert 0 < result["best_valid_result"]["valid_loss_truncated"] < result["best_valid_score"]
