"""Colliding inference's validation grid in one pass (recbole_adt/inference/grid.py) against
the per-pair path it replaces: one RecBole evaluation under ``colliding_hook`` per pair."""

from __future__ import annotations

import pytest
import torch

from recbole_adt.evaluation import OVERALL, evaluate_groups, select_colliding
from recbole_adt.inference import (
    CollidingInference,
    CollidingSettings,
    evaluate_grid,
    grid_inferences,
)
from recbole_adt.trainer.full_sort import TopkCollector
from tests.pipeline import prepare
from tests.test_colliding import LinearScorer, lookup, random_case

GRID = tuple((k, lam) for k in (1, 3, 10) for lam in (0.0, 0.3, 0.7, 1.0))


def fresh(reps, ratio, k, lam, **settings) -> CollidingInference:
    """One pair built the per-pair way: its own neighbour search."""
    return CollidingInference(reps, ratio, num_neighbours=k, lam=lam, **settings)


@pytest.mark.parametrize("without_extra", ["mix", "skip"])
def test_grid_tables_equal_one_search_per_pair(without_extra):
    """The k nearest are a prefix of the 10 nearest, ties included (integer E*: many ties)."""
    reps, _, ratio = random_case(4, n_users=60)
    reps = reps.round()
    settings = {"ratio_threshold": 0.3, "users_without_extra": without_extra}
    for colliding, (k, lam) in zip(grid_inferences(reps, ratio, GRID, **settings), GRID):
        reference = fresh(reps, ratio, k, lam, **settings)
        assert (colliding.num_neighbours, colliding.lam) == (k, lam)
        assert torch.equal(colliding.sparse_users, reference.sparse_users)
        users = torch.arange(1, 60)
        assert torch.equal(colliding.neighbours_of(users), reference.neighbours_of(users))


def test_with_neighbours_refuses_more_than_it_has():
    reps, _, ratio = random_case(0)
    colliding = fresh(reps, ratio, 3, 0.5, ratio_threshold=0.3)
    with pytest.raises(ValueError, match="largest"):
        colliding.with_neighbours(4)


@pytest.mark.parametrize("budget", [30, 300, 2**20])  # 1 id per predict call, 10, all at once
@pytest.mark.parametrize("reuse_batch", [False, True])
def test_mix_lambdas_is_bitwise_one_mix_per_lambda(budget, reuse_batch):
    """Same scores bitwise as each lambda's own mix, with one predict pass for all lambdas."""
    reps, _, ratio = random_case(7, n_users=40, n_items=30)
    scorer = LinearScorer(40, 30)
    with torch.no_grad():
        table = torch.sigmoid(scorer.users @ scorer.items.T)
    users = torch.tensor([3, 5, 8, 13, 21, 22, 30, 34])
    scores = table[users]
    lams = (0.0, 0.3, 1.0, 0.9)
    colliding = fresh(reps, ratio, 5, 0.5, ratio_threshold=0.3, max_scores_per_block=budget)
    calls: list[torch.Tensor] = []
    mixed = colliding.mix_lambdas(
        users, scores, lookup(table, calls), lams, reuse_batch=reuse_batch
    )
    shared_calls = len(calls)
    for lam, got in zip(lams, mixed):
        calls.clear()
        expected = colliding.with_lambda(lam).mix(
            users, scores, lookup(table, calls), reuse_batch=reuse_batch
        )
        assert torch.equal(got, expected)
        assert len(calls) == (shared_calls if lam < 1 else 0)  # one lambda's calls serve all
    assert mixed[2] is scores  # lambda = 1: the plain scores themselves
    assert not torch.equal(mixed[0], scores)


@pytest.fixture(scope="module")
def trained(planted_data, tmp_path_factory):
    """A GMF after warm-up and T-CE on the planted data, batches of ~9 users (so most
    neighbours are outside the batch) and predict chunks of ~20 users."""
    from tests.conftest import planted_settings

    settings = {
        **planted_settings(planted_data, tmp_path_factory.mktemp("saved")),
        "phases": ["warmup:2", "adt:2"],
        "adt_loss": "TCE",
        "num_gradual": 20,
        "colliding_inference": True,
        "colliding_ratio_threshold": 0.2,
        "eval_memory_budget_mb": 0.001,
    }
    config, _, (train, valid, test), _, trainer = prepare("GMF", settings)
    trainer.fit(train, valid, saved=False, show_progress=False)
    return config, trainer, train._dataset.extra_feedback, valid


def record_collected(monkeypatch) -> tuple[dict, list]:
    """Collector -> the masked score batches it was given; and the collectors in the order
    their results were read."""
    batches: dict[int, list[torch.Tensor]] = {}
    order: list[int] = []
    collect, get_struct = TopkCollector.eval_batch_collect, TopkCollector.get_data_struct

    def eval_batch_collect(self, scores, *args):
        batches.setdefault(id(self), []).append(scores.clone())
        return collect(self, scores, *args)

    def get_data_struct(self):
        order.append(id(self))
        return get_struct(self)

    monkeypatch.setattr(TopkCollector, "eval_batch_collect", eval_batch_collect)
    monkeypatch.setattr(TopkCollector, "get_data_struct", get_data_struct)
    return batches, order


@pytest.mark.parametrize("without_extra", ["mix", "skip"])
def test_grid_pass_is_bitwise_one_evaluation_per_pair(trained, monkeypatch, without_extra):
    """Every pair's masked scores, batch by batch, and its metrics are those of the per-pair
    path (one ``evaluate_groups`` under ``colliding_hook``, each pair its own search)."""
    config, trainer, extra, valid = trained
    settings = {
        "ratio_threshold": 0.2,
        "users_without_extra": without_extra,
        "max_scores_per_block": 2000,  # ~20 users per predict call
    }
    batches, order = record_collected(monkeypatch)
    reps, ratio = trainer.representations, extra.user_ratio
    inferences = grid_inferences(reps, ratio, GRID, **settings)
    results = evaluate_grid(trainer, valid, inferences, config["USER_ID_FIELD"])
    grid_batches = [batches[key] for key in order[-len(GRID) :]]
    sparse = inferences[0].sparse_users
    assert 0 < int(sparse.sum()) < len(sparse) - 1  # some users mixed, some not
    for index, (k, lam) in enumerate(GRID):
        batches.clear()
        del order[:]
        reference = evaluate_groups(
            trainer,
            valid,
            {},
            colliding=fresh(reps, ratio, k, lam, **settings),
            load_best_model=False,
        )[OVERALL]
        assert results[index] == reference, (k, lam)
        expected = batches[order[-1]]
        assert len(grid_batches[index]) == len(expected) > 3
        for got, want in zip(grid_batches[index], expected):
            assert torch.equal(got, want), (k, lam)


def test_select_colliding_chooses_the_per_pair_choice(trained, monkeypatch):
    config, trainer, extra, valid = trained
    grid = tuple((k, lam) for k in (1, 3, 10) for lam in (0.0, 0.5, 1.0))
    settings = CollidingSettings(True, grid, 0.2, "mix")
    monkeypatch.setitem(config.parsed_settings, CollidingSettings, settings)
    chosen, tried = select_colliding(config, trainer, extra, valid)
    metric = config["valid_metric"].lower()
    budget = chosen.max_scores_per_block
    reps, ratio = trainer.representations, extra.user_ratio
    scores = [
        evaluate_groups(
            trainer,
            valid,
            {},
            colliding=fresh(reps, ratio, k, lam, ratio_threshold=0.2, max_scores_per_block=budget),
            load_best_model=False,
        )[OVERALL][metric]
        for k, lam in grid
    ]
    assert [row[metric] for row in tried] == scores
    assert len(set(scores)) > 1
    best = grid[scores.index(max(scores))]
    assert (chosen.num_neighbours, chosen.lam) == best


def test_bench_grid_figures(trained):
    """bench/bench_colliding.py's grid figures: the paper's 77 pairs, one pass and per pair."""
    from bench.bench_colliding import PAPER_GRID, grid_ratios

    config, trainer, _, valid = trained
    out = grid_ratios(config, trainer, valid, trainer.representations, 1, "_x", "all")
    assert out["grid_pairs_x"] == len(PAPER_GRID) == 77
    for key in ("colliding_grid_over_plain_valid_x", "colliding_grid_over_plain_valid_per_pair_x"):
        assert 0 < out[key] < float("inf")
    estimate = grid_ratios(config, trainer, valid, trainer.representations, 1, "", "estimate")
    assert estimate["colliding_grid_valid_per_pair_estimate_s"] > estimate["plain_valid_s"]
