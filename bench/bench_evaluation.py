"""Full-sort evaluation against the bare limit, and our NeuMF against RecBole's, side by side.

    python -m bench.bench_evaluation [--quick] [--budgets 4 16 64]

Figures (:func:`figures`), one thread, on synthetic data from :mod:`bench.synthetic` (GMF: 45k
users, 50k items, 240k interactions, the size of the paper's Yelp slice; ``--quick``: 10k x 10k),
each the best of ``rounds`` runs, interleaved, in one process:

- ``gmf_fullsort_over_matmul``: the whole ``trainer.evaluate`` of the test split by our trainer
  (:class:`~recbole_adt.trainer.full_sort.FullSortEvalMixin`: batches by
  ``eval_memory_budget_mb``) over the bare limit: ``scores = U[users] @ I.T``, the same history
  mask, ``topk(max(topk))``, over the same users in blocks of the same size;
- ``gmf_recbole_over_matmul``: the same with RecBole's own ``Trainer.evaluate`` (batches of
  ``eval_batch_size`` scores, its Collector and collate): the *before* figure;
- ``neumf_fullsort_over_recbole``: our NeuMF's evaluation over RecBole's NeuMF with the same
  weights through RecBole's ``Trainer`` (which scores every pair through ``predict``), on smaller
  data (3k users, 4k items; ``--quick`` 1k x 1.5k); ``neumf_ours_over_recbole_trainer``: our NeuMF
  through our trainer over the same model through RecBole's ``Trainer`` (before/after of the
  batching);
- ``budget_sweep`` (``--budgets``): ``gmf_fullsort_over_matmul`` at each budget, each against the
  bare limit at 1024 users a block.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import torch
from recbole.data import data_preparation
from recbole.model.general_recommender.neumf import NeuMF as RecBoleNeuMF
from recbole.trainer import Trainer
from recbole.utils import init_seed

from bench.synthetic import SyntheticSpec, generate_dataset
from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from recbole_adt.trainer.full_sort import HistoryIndex
from recbole_adt.utils import get_model, get_trainer

# (users, items, interactions) of each size.
SIZES = {
    "full": {"gmf": (45_000, 50_000, 240_000), "neumf": (3_000, 4_000, 30_000)},
    "quick": {"gmf": (10_000, 10_000, 50_000), "neumf": (1_000, 1_500, 8_000)},
    "smoke": {"gmf": (1_500, 1_500, 9_000), "neumf": (400, 1_000, 3_000)},
}


def build(model_name: str, data_path: str, dataset: str, **settings):
    """Config, test loader, model and our trainer, as ``run_recbole_adt`` builds them."""
    config = Config(
        model_name,
        config_dict={
            "data_path": data_path,
            "dataset": dataset,
            "state": "WARNING",
            "show_progress": False,
            "num_threads": 1,
            "checkpoint_dir": os.path.join(data_path, "saved"),
            **settings,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    train, _valid, test = data_preparation(config, ADTDataset(config))
    model = get_model(model_name)(config, train._dataset)
    model.eval()
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    return config, test, model, trainer


def best_of(rounds: int, runs: dict) -> dict:
    """Seconds of each callable in ``runs``, the best of ``rounds``, interleaved round by round."""
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bare_gmf(model, test, users_per_block: int, k: int):
    """The bare limit: (weighted) user factors @ item factors, history mask, top-k, per block."""
    index = HistoryIndex(test)
    users = test.user_df[test.uid_field]
    weighted = (model.user_embedding.weight * model.predict_layer.weight).detach()[users]
    items = model.item_embedding.weight.detach().T.contiguous()
    blocks = []
    for start in range(0, len(users), users_per_block):
        rows = slice(start, min(start + users_per_block, len(users)))
        blocks.append((weighted[rows], index._history.rows(rows)))

    def run():
        with torch.no_grad():
            for factors, history in blocks:
                scores = factors @ items
                scores[history] = -torch.inf
                torch.topk(scores, k, dim=-1)

    return run


def gmf_figures(data_path: str, size, rounds: int, budgets=()) -> dict:
    users, items, interactions = size
    generate_dataset(data_path, "gmf", SyntheticSpec(users, items, interactions, seed=0))
    config, test, model, trainer = build("GMF", data_path, "gmf")
    recbole = Trainer(config, model)  # RecBole's evaluate, Collector and batches
    n_items = test._dataset.item_num
    per_block = trainer.eval_users_per_batch(n_items)
    k = max(config["topk"])
    seconds = best_of(
        rounds,
        {
            "ours": lambda: trainer.evaluate(test, load_best_model=False),
            "bare": bare_gmf(model, test, per_block, k),
            "recbole": lambda: recbole.evaluate(test, load_best_model=False),
        },
    )
    out = {
        "gmf_fullsort_over_matmul": seconds["ours"] / seconds["bare"],
        "gmf_recbole_over_matmul": seconds["recbole"] / seconds["bare"],
        "gmf_seconds": seconds,
        "gmf_size": {
            "users": users,
            "items": n_items - 1,
            "interactions": interactions,
            "test_users": len(test.uid_list),
            "users_per_batch": per_block,
            "eval_memory_budget_mb": config["eval_memory_budget_mb"],
            "eval_batch_size": config["eval_batch_size"],
            "topk": k,
        },
    }
    if budgets:
        sweep = {}
        bare = bare_gmf(model, test, 1024, k)
        for budget in budgets:
            trainer.eval_memory_budget_mb = float(budget)
            timed = best_of(
                rounds,
                {"ours": lambda: trainer.evaluate(test, load_best_model=False), "bare": bare},
            )
            sweep[str(budget)] = {
                "users_per_batch": trainer.eval_users_per_batch(n_items),
                "over_matmul_1024": timed["ours"] / timed["bare"],
                "seconds": timed["ours"],
            }
        out["budget_sweep"] = sweep
    return out


def neumf_figures(data_path: str, size, rounds: int) -> dict:
    users, items, interactions = size
    generate_dataset(data_path, "neumf", SyntheticSpec(users, items, interactions, seed=1))
    config, test, model, trainer = build("NeuMF", data_path, "neumf")
    theirs = RecBoleNeuMF(config, test._dataset)
    theirs.load_state_dict(model.state_dict())
    results = {}

    def run(name, evaluator):
        return lambda: results.__setitem__(name, evaluator.evaluate(test, load_best_model=False))

    seconds = best_of(
        rounds,
        {
            "ours": run("ours", trainer),
            "recbole_neumf": run("recbole_neumf", Trainer(config, theirs)),
            "ours_recbole_trainer": run("ours_recbole_trainer", Trainer(config, model)),
        },
    )
    return {
        "neumf_fullsort_over_recbole": seconds["ours"] / seconds["recbole_neumf"],
        "neumf_ours_over_recbole_trainer": seconds["ours"] / seconds["ours_recbole_trainer"],
        "neumf_same_metrics_as_recbole": dict(results["ours"]) == dict(results["recbole_neumf"]),
        "neumf_seconds": seconds,
        "neumf_size": {
            "users": users,
            "items": test._dataset.item_num - 1,
            "interactions": interactions,
            "test_users": len(test.uid_list),
            "users_per_batch": trainer.eval_users_per_batch(test._dataset.item_num),
            "mlp_hidden_size": config["mlp_hidden_size"],
        },
    }


def figures(quick: bool, *, rounds: int | None = None, budgets=()) -> dict:
    """The figures of this module's docstring; ``quick`` on small data."""
    kind = "smoke" if os.environ.get("BENCH_SMOKE") == "1" else "quick" if quick else "full"
    rounds = rounds or (1 if kind == "smoke" else 2 if quick else 3)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    out = {"size": kind, "rounds": rounds, "threads": torch.get_num_threads()}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as data_path:
        os.chdir(data_path)  # RecBole writes log_tensorboard/ into the working directory
        try:
            out.update(gmf_figures(data_path, SIZES[kind]["gmf"], rounds, budgets))
            out.update(neumf_figures(data_path, SIZES[kind]["neumf"], rounds))
        finally:
            os.chdir(here)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, seconds")
    parser.add_argument("--rounds", type=int, help="timed runs of each (default 3, quick 2)")
    parser.add_argument("--budgets", type=float, nargs="*", default=(), help="MB to sweep")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads the command line
    print(json.dumps(figures(args.quick, rounds=args.rounds, budgets=args.budgets), indent=1))


if __name__ == "__main__":
    main()
