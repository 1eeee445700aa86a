"""Sparse extra feedback D*: training true positives only, seeded, never valid or test, and
built only for runs that use it."""

import math

import pytest
import torch

from recbole_adt.config import Config
from recbole_adt.data.extra_feedback import (
    ExtraFeedbackSettings,
    extra_feedback_users,
    select_extra_feedback,
    uses_extra_feedback,
)
from tests.pipeline import prepare
from tests.synthetic import planted_interactions, write_dataset


@pytest.fixture
def with_d_star(base_config):
    """Settings of a run that uses D*: a warm-up phase trains on it."""
    return {**base_config, "phases": ["warmup", "adt"]}


def pairs(dataset, mask=None) -> set[tuple[int, int]]:
    inter = dataset.inter_feat
    users, items = inter[dataset.uid_field], inter[dataset.iid_field]
    if mask is not None:
        users, items = users[mask], items[mask]
    return set(zip(users.tolist(), items.tolist()))


def test_holds_only_training_true_positives(with_d_star):
    _, _, (train, valid, test), _, _ = prepare("GMF", with_d_star)
    extra = train._dataset.extra_feedback
    train_inter = train._dataset.inter_feat
    chosen = pairs(train._dataset, extra.row_mask)
    true_positives = pairs(train._dataset, train_inter["false_positive"] < 0.5)
    assert chosen <= true_positives
    assert len(chosen) == len(extra) == math.floor(0.2 * len(true_positives) + 0.5)
    assert not chosen & (pairs(valid._dataset) | pairs(test._dataset))


def test_is_seeded_and_reproducible(with_d_star):
    def chosen(settings):
        train = prepare("GMF", {**with_d_star, **settings})[2][0]
        return pairs(train._dataset, train._dataset.extra_feedback.row_mask)

    assert chosen({}) == chosen({})
    assert chosen({}) != chosen({"extra_feedback_seed": 8})


def test_default_seed_is_the_run_seed(with_d_star):
    config = Config("GMF", config_dict={**with_d_star, "seed": 11})
    train = prepare("GMF", {**with_d_star, "seed": 11})[2][0]._dataset
    settings = {**config.final_config_dict, "seed": 11}

    def chosen(seed):
        parsed = ExtraFeedbackSettings.from_config({**settings, "extra_feedback_seed": seed})
        return select_extra_feedback(parsed, train, fp_field="false_positive").row_mask

    assert torch.equal(chosen(None), train.extra_feedback.row_mask)
    assert torch.equal(chosen(None), chosen(11))
    assert not torch.equal(chosen(None), chosen(12))


def test_does_not_change_the_rest_of_the_run(base_config, with_d_star):
    """D* draws from its own generator: training batches stay bitwise identical, with D* of
    any size or without it."""

    def first_batch(settings):
        train = prepare("GMF", settings)[2][0]
        return next(iter(train))

    a = first_batch({**with_d_star, "extra_feedback_ratio": 0.2})
    b = first_batch({**with_d_star, "extra_feedback_ratio": 0.7})
    c = first_batch(base_config)
    assert all(torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]) for key in a.columns)


def test_real_field_with_threshold(tmp_path, with_d_star):
    rows = planted_interactions(seed=2)
    write_dataset(tmp_path, "rated", rows)
    settings = {
        **with_d_star,
        "dataset": "rated",
        "data_path": str(tmp_path),
        "extra_feedback_field": "rating",  # loaded automatically
        "extra_feedback_threshold": 5,
    }
    train = prepare("GMF", settings)[2][0]._dataset
    extra = train.extra_feedback
    assert extra.source == "rating"
    assert torch.equal(extra.row_mask, train.inter_feat["rating"] >= 5)
    assert 0 < len(extra) < len(train.inter_feat)


def test_missing_real_field_is_a_clear_error(with_d_star):
    with pytest.raises(ValueError, match="extra_feedback_field 'dwell' is not a loaded field"):
        prepare("GMF", {**with_d_star, "extra_feedback_field": "dwell"})


def test_contains_and_user_ratio(with_d_star):
    train = prepare("GMF", with_d_star)[2][0]._dataset
    extra = train.extra_feedback
    inter = train.inter_feat
    users, items = inter[train.uid_field], inter[train.iid_field]
    assert torch.equal(extra.contains(users, items), extra.row_mask)
    user = int(users[extra.row_mask][0])
    of_user = users == user
    expected = float((extra.row_mask & of_user).sum()) / float(of_user.sum())
    assert extra.user_ratio[user].item() == pytest.approx(expected)
    assert extra.user_ratio[0] == 0  # the padding user


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("extra_feedback_ratio", 0, "extra_feedback_ratio must be a number in"),
        ("extra_feedback_ratio", 1.5, "extra_feedback_ratio must be a number in"),
        ("extra_feedback_ratio", "a", "extra_feedback_ratio must be a number in"),
        ("extra_feedback_threshold", "high", "extra_feedback_threshold must be a number"),
        ("extra_feedback_seed", 1.5, "extra_feedback_seed must be an integer"),
        ("extra_feedback_field", 3, "extra_feedback_field must be a field name"),
        ("ratio_groups", [0.1, 0], "ratio_groups must be a list of numbers > 0"),
        ("ratio_groups", "low", "ratio_groups must be a list of numbers > 0"),
    ],
)
def test_bad_settings_raise_before_loading(setting, value, message, base_config):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, setting: value})


def test_settings_parsed_once():
    settings = ExtraFeedbackSettings.from_config(
        {
            "extra_feedback_field": None,
            "extra_feedback_threshold": 5,
            "extra_feedback_ratio": 0.3,
            "extra_feedback_seed": None,
            "seed": 4,
            "ratio_groups": 0.1,
        }
    )
    assert settings == ExtraFeedbackSettings(None, 5.0, 0.3, 4, (0.1,))
    assert settings.source == "simulated, ratio 0.3"


def test_never_holds_a_validation_or_test_pair(with_d_star):
    _, dataset, splits, _, _ = prepare("GMF", with_d_star)
    extra = splits[0]._dataset.extra_feedback
    for split in splits[1:]:
        inter = split._dataset.inter_feat
        assert len(inter) > 0
        assert not extra.contains(inter["user_id"], inter["item_id"]).any()
        assert split._dataset.extra_feedback is None  # declared on every split, set on train
    # Not vacuous: the same share drawn before the split would hold validation and test pairs.
    settings = ExtraFeedbackSettings.from_config(Config("GMF", config_dict=with_d_star))
    drawn_before = select_extra_feedback(settings, dataset, fp_field="false_positive")
    test = splits[2]._dataset.inter_feat
    assert drawn_before.contains(test["user_id"], test["item_id"]).any()


def test_never_holds_an_unseen_validation_or_test_pair_when_pairs_repeat(tmp_path, with_d_star):
    """Disjointness above holds partly because the planted data never repeats a pair. Here a
    fifth of the clicks repeat later, so copies of a pair fall in different splits: D* (drawn
    from training rows) holds no validation or test pair that training lacks, and the pairs it
    does share with them are training history, masked by the evaluator, so never a hit."""
    rows = planted_interactions(seed=3)
    again = [(u, i, r, t + len(rows), fp) for u, i, r, t, fp in rows[::5]]
    write_dataset(tmp_path, "repeated", rows + again)
    settings = {**with_d_star, "dataset": "repeated", "data_path": str(tmp_path)}
    _, _, (train, *evaluated), _, _ = prepare("GMF", settings)
    extra = train._dataset.extra_feedback
    training_pairs = pairs(train._dataset)
    shared_any = False
    for split in evaluated:
        inter = split._dataset.inter_feat
        users, items = inter["user_id"], inter["item_id"]
        in_training = torch.tensor(
            [p in training_pairs for p in zip(users.tolist(), items.tolist())]
        )
        in_d_star = extra.contains(users, items)
        shared_any |= bool((in_d_star & in_training).any())
        assert not (in_d_star & ~in_training).any()
        history = split._sampler.used_ids  # per user: the items the evaluation masks
        for user, item in zip(users[in_d_star].tolist(), items[in_d_star].tolist()):
            assert item in history[user]
    assert shared_any  # the repeats do put D* pairs into validation or test


def _uses(**settings):
    base = {
        "model": "GMF",
        "adt_loss": "CE",
        "epochs": 3,
        "phases": ["adt"],
        "colliding_inference": False,
        "colliding_neighbours": 10,
        "colliding_lambda": 0.8,
        "colliding_ratio_threshold": 0.2,
        "colliding_users_without_extra": "skip",
    }
    return extra_feedback_users({**base, **settings})


def test_only_runs_that_use_it_build_it(base_config):
    assert _uses() == ()
    assert _uses(phases=["warmup", "adt", "finetune"]) == ("the warmup phase", "the finetune phase")
    assert _uses(phases=["warmup", "adt"], colliding_inference=True) == (
        "the warmup phase",
        "colliding inference",
    )
    assert _uses(model="NMTR") == ("model NMTR",)
    assert _uses(adt_loss="NR") == ("adt_loss NR",)
    config = Config("GMF", config_dict=base_config)
    assert not uses_extra_feedback(config)
    assert prepare("GMF", base_config)[2][0]._dataset.extra_feedback is None
