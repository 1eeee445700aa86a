"""Pre-split data whose splits share (user, item) pairs: counted at load, then masked or dropped."""

from __future__ import annotations

import logging

import pytest
import torch

from recbole_adt.data.shared_pairs import mask_shared_pairs
from tests.pipeline import prepare
from tests.synthetic import HEADER, planted_interactions

ROWS = planted_interactions()
TRAIN, VALID, TEST = ROWS[:-800], ROWS[-800:-400], ROWS[-400:]
FROM_VALID = [row for row in VALID if row[4] == 0.0][:50]  # true positives, so the clean test
FROM_TRAIN = [row for row in TRAIN if row[4] == 0.0][:20]  # keeps them


def write_splits(data, name, splits) -> None:
    """DATA/NAME/NAME.PART.inter for each part, as benchmark_filename reads them."""
    (data / name).mkdir(parents=True)
    for part, rows in splits.items():
        lines = [f"{u}\t{i}\t{r}\t{t}\t{fp}\n" for u, i, r, t, fp in rows]
        (data / name / f"{name}.{part}.inter").write_text(HEADER + "".join(lines))


@pytest.fixture(scope="module")
def split_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("presplit")
    write_splits(
        data, "presplit", {"train": TRAIN, "valid": VALID, "test": TEST + FROM_VALID + FROM_TRAIN}
    )
    return data


def build(split_data, base_config, policy):
    settings = {
        **base_config,
        "dataset": "presplit",
        "data_path": str(split_data),
        "benchmark_filename": ["train", "valid", "test"],
        "shared_pairs": policy,
    }
    _, dataset, loaders, _, trainer = prepare("GMF", settings)
    return dataset, loaders, trainer


def shared_pairs(dataset, rows):
    users = dataset.token2id(dataset.uid_field, [row[0] for row in rows])
    items = dataset.token2id(dataset.iid_field, [row[1] for row in rows])
    return list(zip(users.tolist(), items.tolist()))


def test_counts_are_reported_per_split_pair(split_data, base_config, caplog):
    with caplog.at_level(logging.WARNING):
        build(split_data, base_config, "mask")
    message = next(r.getMessage() for r in caplog.records if "Shared pairs" in r.getMessage())
    assert "valid rows also in train: 0 of 400" in message
    assert "test rows also in train: 20 of 470" in message
    assert "test rows also in valid: 50 of 470" in message
    assert "shared_pairs: mask" in message


def test_mask_keeps_them_as_positives_that_cannot_be_hit(split_data, base_config):
    dataset, (_, _, test), trainer = build(split_data, base_config, "mask")
    pairs = shared_pairs(dataset, FROM_VALID + FROM_TRAIN)
    trainer.evaluate(test, load_best_model=False)  # applies the mask, once
    assert test._shared_pairs_masked
    for user, item in pairs:
        assert item in test.uid2positive_item[user].tolist()
        assert item in test.uid2history_item[user].tolist()
    before = [h.clone() for h in test.uid2history_item if h is not None]
    mask_shared_pairs(test)
    after = [h for h in test.uid2history_item if h is not None]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_drop_removes_them_from_the_later_split(split_data, base_config):
    dataset, (_, _, test), _ = build(split_data, base_config, "drop")
    test_pairs = set(shared_pairs(dataset, TEST + FROM_VALID + FROM_TRAIN))
    kept = test._dataset.inter_feat
    kept_pairs = set(zip(kept[dataset.uid_field].tolist(), kept[dataset.iid_field].tolist()))
    assert kept_pairs.isdisjoint(shared_pairs(dataset, FROM_VALID + FROM_TRAIN))
    assert len(kept) == sum(row[4] == 0.0 for row in TEST)  # the clean test of the rest
    assert kept_pairs < test_pairs
    tested = [(u, i) for u, i in shared_pairs(dataset, FROM_VALID) if u in test.uid_list]
    assert tested
    for user, item in tested:  # still masked, as every valid item is
        assert item in test.uid2history_item[user].tolist()


def test_unmask_is_recboles_behaviour(split_data, base_config):
    dataset, (_, _, test), trainer = build(split_data, base_config, "unmask")
    trainer.evaluate(test, load_best_model=False)
    for user, item in shared_pairs(dataset, FROM_VALID):
        assert item in test.uid2positive_item[user].tolist()
        assert item not in test.uid2history_item[user].tolist()


def test_split_files_without_shared_pairs_say_nothing(tmp_path, base_config, caplog):
    write_splits(tmp_path, "clean", {"train": TRAIN, "valid": VALID, "test": TEST})
    settings = {
        **base_config,
        "dataset": "clean",
        "data_path": str(tmp_path),
        "benchmark_filename": ["train", "valid", "test"],
    }
    with caplog.at_level(logging.WARNING):
        prepare("GMF", settings)
    assert not any("Shared pairs" in r.getMessage() for r in caplog.records)
