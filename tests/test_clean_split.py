"""The clean test: train and valid keep every interaction, test keeps true positives only."""

from collections import defaultdict

import pytest
import torch
from recbole.data import data_preparation
from recbole.data.dataset import Dataset
from recbole.utils import init_seed

from recbole_adt.config import Config
from recbole_adt.data import ADTDataset


def split(dataset_class, config_dict):
    config = Config("GMF", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = dataset_class(config)
    return dataset, data_preparation(config, dataset)


def pairs(data, with_flag=False):
    feat = data._dataset.inter_feat if hasattr(data, "_dataset") else data.inter_feat
    users, items, flags = (
        feat["user_id"].tolist(),
        feat["item_id"].tolist(),
        feat["false_positive"].tolist(),
    )
    return list(zip(users, items, flags)) if with_flag else list(zip(users, items))


@pytest.fixture
def splits(base_config):
    plain_dataset, plain = split(Dataset, base_config)
    adt_dataset, adt = split(ADTDataset, base_config)
    return plain, adt


def test_no_false_positive_in_test(splits):
    _, (_, _, test) = splits
    flags = test._dataset.inter_feat["false_positive"]
    assert len(flags) > 0 and flags.sum().item() == 0


def test_train_and_valid_keep_every_false_positive(splits):
    plain, adt = splits
    for phase in (0, 1):  # train, valid: identical to RecBole's own split
        assert pairs(adt[phase], True) == pairs(plain[phase], True)
    plain_test = pairs(plain[2], True)
    assert sum(flag for *_, flag in pairs(adt[0], True)) > 0
    assert pairs(adt[2], True) == [row for row in plain_test if row[2] == 0.0]
    # every false positive is somewhere: train, valid, or dropped from test
    total_fp = sum(f for part in plain for *_, f in pairs(part, True))
    kept_fp = sum(f for part in adt[:2] for *_, f in pairs(part, True))
    dropped_fp = sum(f for *_, f in plain_test)
    assert total_fp == kept_fp + dropped_fp and dropped_fp > 0


def test_test_masks_train_and_valid_items_including_false_positives(splits):
    _, (train, valid, test) = splits
    seen = defaultdict(set)
    for user, item in pairs(train) + pairs(valid):
        seen[user].add(item)
    test_items = defaultdict(set)
    for user, item in pairs(test):
        test_items[user].add(item)
    masked_fp = 0
    for user in test_items:
        history = set(test.uid2history_item[user].tolist())
        assert history == seen[user] - test_items[user]
        masked_fp += sum(1 for u, i, f in pairs(train, True) if u == user and f == 1.0)
    assert masked_fp > 0


def test_test_false_positives_are_unmasked_non_hits(splits):
    plain, (_, _, test) = splits
    removed = [(u, i) for u, i, f in pairs(plain[2], True) if f == 1.0]
    evaluated = [(u, i) for u, i in removed if test.uid2history_item[u] is not None]
    assert evaluated  # users with clean test items too, so they are still evaluated
    for user, item in evaluated:
        assert item not in set(test.uid2history_item[user].tolist())
        assert item not in set(test.uid2positive_item[user].tolist())


def test_full_sort_scores_hide_history(base_config):
    from tests.pipeline import prepare

    _, _, (_, _, test), _, trainer = prepare("GMF", base_config)
    trainer.tot_item_num = test._dataset.item_num
    trainer.model.eval()
    batch = next(iter(test))
    interaction, scores, _, _ = trainer._full_sort_batch_eval(batch)
    for row, user in enumerate(interaction["user_id"].tolist()):
        hidden = torch.isinf(scores[row]).nonzero().flatten().tolist()
        expected = {0} | set(test.uid2history_item[user].tolist())
        assert set(hidden) == expected


def test_clean_test_off_keeps_false_positives(base_config):
    _, (_, _, test) = split(ADTDataset, {**base_config, "clean_test": False})
    assert test._dataset.inter_feat["false_positive"].sum().item() > 0
