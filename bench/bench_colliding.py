"""Cost of colliding inference (paper Eq. 8) over plain full-sort evaluation, side by side.

    python -m bench.bench_colliding [--quick] [--model GMF] [--rounds 5]

Figures (:func:`figures`), one thread, each the best of ``rounds`` runs, interleaved:

- ``colliding_over_plain_eval_10``, ``_100``: RecBole's whole ``Trainer.evaluate`` of the test
  split with colliding inference at |N_u| = 10 and 100 and *every* user sparse (the worst case),
  over the same evaluation without it. The model trains one warm-up and one ADT epoch on the
  embedded MovieLens-100K (ml-100k-fp), and E* is its snapshot after warm-up, as in a run.
- full run only, ``colliding_over_plain_eval_scale_10``: the same at |N_u| = 10 on synthetic
  data of 10k users x 10k items (untrained GMF, E* its user factors), where a batch holds about
  200 of the users: most neighbours are outside it and are scored on the batch's behalf, so the
  cost grows with |N_u| (at 100, every batch scores nearly every user: not run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings

import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from bench.bench_evaluation import best_of
from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from recbole_adt.inference import CollidingInference, colliding_hook
from recbole_adt.trainer.full_sort import budget_scores
from recbole_adt.utils import get_model, get_trainer

NEIGHBOURS = (10, 100)
SCALE = (10_000, 10_000, 50_000)  # users, items, interactions of the full run's second case


def colliding_ratios(
    config, trainer, test, representations, rounds: int, prefix: str, neighbour_counts=NEIGHBOURS
) -> dict:
    """Evaluation seconds, plain and colliding at each |N_u| with every user sparse, and ratios."""
    model = trainer.model
    every_user_sparse = torch.zeros(representations.shape[0])
    runs = {"plain": lambda: trainer.evaluate(test, load_best_model=False)}
    for neighbours in neighbour_counts:
        colliding = CollidingInference(
            representations,
            every_user_sparse,
            num_neighbours=neighbours,
            lam=0.8,
            ratio_threshold=0.5,
            max_scores_per_block=budget_scores(config),
        )

        def evaluate(colliding=colliding):
            with colliding_hook(model, colliding, config["USER_ID_FIELD"]):
                trainer.evaluate(test, load_best_model=False)

        runs[neighbours] = evaluate
    seconds = best_of(rounds, runs)
    out = {f"{prefix}plain_eval_s": seconds["plain"]}
    for neighbours in neighbour_counts:
        out[f"{prefix}colliding_{neighbours}_eval_s"] = seconds[neighbours]
        out[f"colliding_over_plain_eval_{prefix}{neighbours}"] = (
            seconds[neighbours] / seconds["plain"]
        )
    return out


def ml100k_figures(data_path: str, model_name: str, rounds: int) -> dict:
    settings = {
        "data_path": data_path,
        "phases": ["warmup:1", "adt:1"],
        "colliding_inference": True,
        "state": "WARNING",
        "show_progress": False,
        "num_threads": 1,
        "checkpoint_dir": os.path.join(data_path, "saved"),
    }
    config = Config(model_name, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, ADTDataset(config))
    model = get_model(model_name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer.fit(train, valid, saved=False, verbose=False)
    out = colliding_ratios(config, trainer, test, trainer.representations, rounds, "")
    out["size"] = {
        "dataset": config["dataset"],
        "model": model_name,
        "test_users": len(test.uid_list),
        "items": test._dataset.item_num - 1,
        "users_per_batch": trainer.eval_users_per_batch(test._dataset.item_num),
    }
    return out


def scale_figures(data_path: str, rounds: int) -> dict:
    from bench.synthetic import SyntheticSpec, generate_dataset

    users, items, interactions = SCALE
    generate_dataset(data_path, "scale", SyntheticSpec(users, items, interactions, seed=2))
    settings = {
        "data_path": data_path,
        "dataset": "scale",
        "state": "WARNING",
        "show_progress": False,
        "num_threads": 1,
        "checkpoint_dir": os.path.join(data_path, "saved"),
    }
    config = Config("GMF", config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    _, _, test = data_preparation(config, ADTDataset(config))
    model = get_model("GMF")(config, test._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "GMF")(config, model)
    with torch.no_grad():
        representations = model.user_representations().detach().clone()
    out = colliding_ratios(config, trainer, test, representations, rounds, "scale_", (10,))
    out["scale_size"] = {
        "users": users,
        "items": test._dataset.item_num - 1,
        "test_users": len(test.uid_list),
        "users_per_batch": trainer.eval_users_per_batch(test._dataset.item_num),
    }
    return out


def figures(quick: bool, *, model_name: str = "GMF", rounds: int | None = None) -> dict:
    """The figures of this module's docstring; ``quick`` leaves out the synthetic scale case."""
    smoke = os.environ.get("BENCH_SMOKE") == "1"  # the test suite's run: one round
    rounds = rounds or (1 if smoke else 3 if quick else 5)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=FutureWarning)
    out = {"rounds": rounds, "threads": torch.get_num_threads(), "torch": torch.__version__}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as data_path:
        os.chdir(data_path)  # RecBole writes log_tensorboard/ into the working directory
        try:
            out.update(ml100k_figures(data_path, model_name, rounds))
            if not quick:
                out.update(scale_figures(data_path, rounds))
        finally:
            os.chdir(here)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ml-100k only")
    parser.add_argument("--model", default="GMF")
    parser.add_argument("--rounds", type=int, help="timed runs of each (default 5, quick 3)")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads the command line
    print(json.dumps(figures(args.quick, model_name=args.model, rounds=args.rounds), indent=1))


if __name__ == "__main__":
    main()
