"""Full-sort evaluation batched by memory (trainer/full_sort.py) gives RecBole's own results."""

from __future__ import annotations

import pytest
import torch
from recbole.data import data_preparation
from recbole.data.interaction import Interaction
from recbole.evaluator import Collector
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_adt.config import Config
from recbole_adt.quick_start import build_dataset
from recbole_adt.trainer.full_sort import (
    EvalMemoryBudget,
    HistoryIndex,
    TopkCollector,
    users_per_batch,
)
from recbole_adt.utils import get_model, get_trainer

METRICS = ["Recall", "NDCG", "MRR", "Hit", "Precision"]
TOPK = [1, 5, 10, 20]


def build(model_name: str, settings: dict, adt_loss: str = "CE"):
    config = Config(model_name, config_dict={**settings, "adt_loss": adt_loss})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, build_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name, adt_loss=adt_loss)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name, adt_loss=adt_loss)(config, model)
    return config, (train, valid, test), model, trainer


def evaluate_both(trainer, config, model, data) -> tuple[dict, dict]:
    ours = dict(trainer.evaluate(data, load_best_model=False))
    stock = dict(Trainer(config, model).evaluate(data, load_best_model=False))
    return ours, stock


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_name, adt_loss", [("GMF", "TCE"), ("NeuMF", "CE"), ("CDAE", "RCE"), ("BPR", "TBPR")]
)
def test_metrics_and_results_equal_recbole(model_name, adt_loss, base_config):
    """A seeded 2-epoch run; valid and test results through our batches, collector and history
    index equal RecBole's Trainer.evaluate, which takes 10 users a batch here."""
    settings = {
        **base_config,
        "metrics": METRICS,
        "topk": TOPK,
        "eval_batch_size": 1210,  # 10 users of 121 items a batch for RecBole's path
        "eval_memory_budget_mb": 0.1,  # 2 (NeuMF) to 108 (GMF, BPR) users a batch for ours
        "num_gradual": 10,
    }
    config, (train, valid, test), model, trainer = build(model_name, settings, adt_loss)
    users = trainer.eval_users_per_batch(test._dataset.item_num)
    assert users is not None and 1 < users < len(test.uid_list)
    best_score, best_result = trainer.fit(train, valid, saved=False)
    assert best_result is not None
    for data in (valid, test):
        ours, stock = evaluate_both(trainer, config, model, data)
        assert len(ours) == len(METRICS) * len(TOPK)
        assert ours == stock
        assert 0 < ours["ndcg@20"] < 1  # a trained model, not a degenerate tie
    # The loader is left as RecBole built it.
    assert test.batch_sampler.batch_size == 10
    assert vars(test)["collate_fn"].__func__ is type(test).collate_fn


@pytest.mark.slow
def test_budget_and_recbole_batches_give_the_same_metrics(base_config):
    """Every budget, and none (RecBole's eval_batch_size), gives the same result."""
    settings = {**base_config, "metrics": METRICS, "topk": TOPK, "epochs": 1}
    config, (train, valid, test), model, trainer = build("GMF", settings, "CE")
    trainer.fit(train, valid, saved=False)
    results = []
    for budget in (None, 0.001, 0.05, 1000.0):
        trainer.eval_memory_budget_mb = budget
        results.append(dict(trainer.evaluate(test, load_best_model=False)))
    assert all(result == results[0] for result in results)


def test_history_index_collates_as_the_loader(base_config):
    _, (_, _, test), _, _ = build("GMF", base_config)
    index = HistoryIndex(test)
    n = len(test.uid_list)
    for rows in ([0], list(range(n)), list(range(3, 17)), [5, 2, 9], [4, 4, 0], [n - 1]):
        theirs = test.collate_fn(rows)
        ours = index.collate(rows)
        assert torch.equal(ours[0][test.uid_field], theirs[0][test.uid_field])
        for got, expected in zip((*ours[1], ours[2], ours[3]), (*theirs[1], theirs[2], theirs[3])):
            assert got.dtype == expected.dtype
            assert torch.equal(got, expected)


def test_topk_collector_stores_recboles_tensor(base_config):
    settings = {"metrics": METRICS, "topk": [3, 5], "valid_metric": "NDCG@5"}
    config = Config("GMF", config_dict={**base_config, **settings})
    generator = torch.Generator().manual_seed(0)
    # 6 users x 12 items, with ties (few distinct values) and users whose positives are all
    # outside their top 5; item 0 is the padding column RecBole masks.
    scores = torch.randint(0, 4, (6, 12), generator=generator).float()
    scores[:, 0] = -torch.inf
    positive_u = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    positive_i = torch.tensor([1, 7, 11, 2, 3, 4, 9, 1, 10, 11])
    ours, theirs = TopkCollector(config), Collector(config)
    for collector in (ours, theirs):
        collector.eval_batch_collect(scores, None, positive_u, positive_i)
        collector.eval_batch_collect(scores[:2], None, positive_u[:3], positive_i[:3])
    mine, recbole = ours.get_data_struct()["rec.topk"], theirs.get_data_struct()["rec.topk"]
    assert mine.dtype == recbole.dtype
    assert torch.equal(mine, recbole)


def test_topk_collector_leaves_other_needs_to_recbole(base_config):
    settings = {"metrics": ["GAUC", "Recall"], "topk": [2], "valid_metric": "Recall@2"}
    config = Config("GMF", config_dict={**base_config, **settings})
    collector = TopkCollector(config)
    scores = torch.tensor([[-torch.inf, 0.3, 0.9, 0.1], [-torch.inf, 0.5, 0.2, 0.8]])
    collector.eval_batch_collect(scores, None, torch.tensor([0, 1]), torch.tensor([2, 1]))
    struct = collector.get_data_struct()
    assert "rec.meanrank" in struct and "rec.topk" in struct


def test_users_per_batch_counts_the_models_floats():
    assert users_per_batch(16, 50_000, 2) == 16 * 2**20 // (50_000 * 4 * 2) == 41
    assert users_per_batch(16, 50_000, 99) == 1  # never fewer than one user
    assert users_per_batch(0.5, 100, 1) == 1310


def test_neumf_batches_are_smaller_by_its_tower(base_config):
    _, (_, _, test), _, gmf = build("GMF", base_config)
    _, _, neumf_model, neumf = build("NeuMF", base_config)
    n_items = test._dataset.item_num
    # mlp_hidden_size [64, 32]: 64 + 32 floats in the tower, plus 3 for the logits' parts.
    assert neumf_model.full_sort_memory_factor == 99
    assert neumf.eval_users_per_batch(n_items) == users_per_batch(16, n_items, 99)
    assert gmf.eval_users_per_batch(n_items) == users_per_batch(16, n_items, 2)


@pytest.mark.parametrize("value", [0, -1, True, "16", float("nan"), float("inf")])
def test_bad_budget_names_the_setting(value):
    with pytest.raises(ValueError, match="eval_memory_budget_mb must be a finite number"):
        EvalMemoryBudget.from_config({"eval_memory_budget_mb": value})
    assert EvalMemoryBudget.from_config({"eval_memory_budget_mb": 8}).megabytes == 8.0
    assert EvalMemoryBudget.from_config({"eval_memory_budget_mb": None}).megabytes is None


def test_no_budget_keeps_recboles_batches(base_config):
    _, (_, _, test), _, trainer = build("GMF", {**base_config, "eval_memory_budget_mb": None})
    assert trainer.eval_users_per_batch(test._dataset.item_num) is None


def test_the_loader_is_restored_after_an_error(base_config):
    _, (_, _, test), model, trainer = build("GMF", base_config)
    batch_size, collate = test.batch_sampler.batch_size, vars(test)["collate_fn"]

    def broken(interaction):
        assert test.batch_sampler.batch_size != batch_size  # evaluation runs on our batches
        raise RuntimeError("model failed")

    model.full_sort_predict = broken
    with pytest.raises(RuntimeError, match="model failed"):
        trainer.evaluate(test, load_best_model=False)
    assert test.batch_sampler.batch_size == batch_size
    assert vars(test)["collate_fn"] == collate


def test_recbole_bpr_full_sort_equals_predict(base_config):
    """RecBole's own model, denoised, scores all items as its predict does."""
    _, (train, _, _), model, _ = build("BPR", base_config, "TBPR")
    model.eval()
    users = torch.tensor([1, 5, 17])
    n_items = train._dataset.item_num
    full = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), n_items)
    pairs = Interaction(
        {
            "user_id": users.repeat_interleave(n_items),
            "item_id": torch.arange(n_items).repeat(len(users)),
        }
    )
    torch.testing.assert_close(full, model.predict(pairs).view(len(users), n_items))
