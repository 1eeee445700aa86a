"""Sparse extra feedback D*: training true positives only, seeded, never valid or test."""

import math

import pytest
import torch

from recbole_adt.config import Config
from recbole_adt.data.extra_feedback import select_extra_feedback
from tests.pipeline import prepare
from tests.synthetic import planted_interactions, write_dataset


def pairs(dataset, mask=None) -> set[tuple[int, int]]:
    inter = dataset.inter_feat
    users, items = inter[dataset.uid_field], inter[dataset.iid_field]
    if mask is not None:
        users, items = users[mask], items[mask]
    return set(zip(users.tolist(), items.tolist()))


def test_holds_only_training_true_positives(base_config):
    _, _, (train, valid, test), _, _ = prepare("GMF", base_config)
    extra = train._dataset.extra_feedback
    train_inter = train._dataset.inter_feat
    chosen = pairs(train._dataset, extra.row_mask)
    true_positives = pairs(train._dataset, train_inter["false_positive"] < 0.5)
    assert chosen <= true_positives
    assert len(chosen) == len(extra) == math.floor(0.2 * len(true_positives) + 0.5)
    assert not chosen & (pairs(valid._dataset) | pairs(test._dataset))


def test_is_seeded_and_reproducible(base_config):
    def chosen(settings):
        train = prepare("GMF", {**base_config, **settings})[2][0]
        return pairs(train._dataset, train._dataset.extra_feedback.row_mask)

    assert chosen({}) == chosen({})
    assert chosen({}) != chosen({"extra_feedback_seed": 8})


def test_default_seed_is_the_run_seed(base_config):
    config = Config("GMF", config_dict={**base_config, "seed": 11})
    train = prepare("GMF", {**base_config, "seed": 11})[2][0]._dataset
    by_default = select_extra_feedback(config, train).row_mask
    config["extra_feedback_seed"] = 11
    assert torch.equal(by_default, select_extra_feedback(config, train).row_mask)
    config["extra_feedback_seed"] = 12
    assert not torch.equal(by_default, select_extra_feedback(config, train).row_mask)


def test_does_not_change_the_rest_of_the_run(base_config):
    """D* draws from its own generator: training batches stay bitwise identical."""

    def first_batch(ratio):
        train = prepare("GMF", {**base_config, "extra_feedback_ratio": ratio})[2][0]
        return next(iter(train))

    a, b = first_batch(0.2), first_batch(0.7)
    assert all(torch.equal(a[key], b[key]) for key in a.columns)


def test_real_field_with_threshold(tmp_path, base_config):
    rows = planted_interactions(seed=2)
    write_dataset(tmp_path, "rated", rows)
    settings = {
        **base_config,
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


def test_missing_real_field_is_a_clear_error(base_config):
    with pytest.raises(ValueError, match="extra_feedback_field 'dwell' is not a loaded field"):
        prepare("GMF", {**base_config, "extra_feedback_field": "dwell"})


def test_contains_and_user_ratio(base_config):
    train = prepare("GMF", base_config)[2][0]._dataset
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
    ],
)
def test_bad_settings_raise_before_loading(setting, value, message, base_config):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, setting: value})
