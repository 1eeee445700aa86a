"""Cost of colliding inference (paper Eq. 8) over plain full-sort evaluation, side by side.

    python -m bench.bench_colliding [--quick] [--model GMF] [--rounds 5] [--per_pair]

Figures (:func:`figures`), one thread, each the best of ``rounds`` runs, interleaved:

- ``colliding_over_plain_eval_10``, ``_100``: RecBole's whole ``Trainer.evaluate`` of the test
  split with colliding inference at |N_u| = 10 and 100 and *every* user sparse (the worst case),
  over the same evaluation without it. The model trains one warm-up and one ADT epoch on the
  embedded MovieLens-100K (ml-100k-fp), and E* is its snapshot after warm-up, as in a run.
- ``colliding_grid_over_plain_valid_ml100k``: the validation choice of (|N_u|, lambda) over the
  paper's 7 x 11 grid (``COLLIDING_GRID``; :func:`recbole_adt.inference.evaluate_grid`, one
  pass for all pairs, neighbour search included) over one plain validation pass, every user
  sparse. With ``--per_pair`` also ``..._per_pair_ml100k``: the same grid one evaluation per
  pair, as before the one-pass grid (bitwise the same metrics).
- full run only, on synthetic data of 10k users x 10k items (untrained GMF, E* its user
  factors), where a batch holds about 200 of the users, so most neighbours are outside it and
  are scored on the batch's behalf: ``colliding_over_plain_eval`` (also under its older key
  ``colliding_over_plain_eval_scale_10``), the test pass at |N_u| = 10, and
  ``colliding_grid_over_plain_valid``, the 7 x 11 grid over one plain validation pass (one
  round: it takes minutes). With ``--per_pair``, ``..._per_pair_estimate``: the per-pair grid
  estimated from one pass at each |N_u| (lambda = 0.5; every lambda < 1 costs the same) times
  the 10 lambdas below 1, plus a plain pass for each lambda = 1 pair.
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
from recbole_adt.evaluation import evaluate_groups
from recbole_adt.experiments.grid import COLLIDING_GRID
from recbole_adt.inference import (
    CollidingInference,
    colliding_hook,
    evaluate_grid,
    grid_inferences,
)
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


PAPER_GRID = tuple(
    (k, lam)
    for k in COLLIDING_GRID["colliding_neighbours"]
    for lam in COLLIDING_GRID["colliding_lambda"]
)


def grid_ratios(
    config, trainer, valid, representations, rounds: int, suffix: str, per_pair: str
) -> dict:
    """Seconds of the paper's grid on validation, every user sparse, in one pass (neighbour
    search included) and, with ``per_pair`` ("all" or "estimate"), one pass per pair; each over
    one plain validation pass."""
    every_user_sparse = torch.zeros(representations.shape[0])
    settings = {"ratio_threshold": 0.5, "max_scores_per_block": budget_scores(config)}
    user_field = config["USER_ID_FIELD"]

    def grid() -> None:
        inferences = grid_inferences(representations, every_user_sparse, PAPER_GRID, **settings)
        evaluate_grid(trainer, valid, inferences, user_field)

    def plain() -> None:
        trainer.evaluate(valid, load_best_model=False)

    seconds = best_of(rounds, {"plain": plain, "grid": grid})
    out = {
        f"plain_valid_s{suffix}": seconds["plain"],
        f"colliding_grid_valid_s{suffix}": seconds["grid"],
        f"colliding_grid_over_plain_valid{suffix}": seconds["grid"] / seconds["plain"],
        f"grid_pairs{suffix}": len(PAPER_GRID),
    }
    if per_pair:
        pairs = PAPER_GRID
        if per_pair == "estimate":  # one lambda < 1 per |N_u|: all lambdas < 1 cost the same
            pairs = tuple((k, 0.5) for k in COLLIDING_GRID["colliding_neighbours"])

        def one_pass_per_pair() -> None:
            for k, lam in pairs:
                colliding = CollidingInference(
                    representations, every_user_sparse, num_neighbours=k, lam=lam, **settings
                )
                evaluate_groups(trainer, valid, {}, colliding=colliding, load_best_model=False)

        taken = best_of(1, {"per_pair": one_pass_per_pair})["per_pair"]
        key = "per_pair" if per_pair == "all" else "per_pair_estimate"
        if per_pair == "estimate":
            lams = COLLIDING_GRID["colliding_lambda"]
            below_one = sum(lam < 1 for lam in lams)
            taken = taken * below_one + seconds["plain"] * (
                len(PAPER_GRID) - len(pairs) * below_one
            )
        out[f"colliding_grid_valid_{key}_s{suffix}"] = taken
        out[f"colliding_grid_over_plain_valid_{key}{suffix}"] = taken / seconds["plain"]
    return out


def ml100k_figures(data_path: str, model_name: str, rounds: int, per_pair: bool) -> dict:
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
    out.update(
        grid_ratios(
            config, trainer, valid, trainer.representations, rounds, "_ml100k", per_pair and "all"
        )
    )
    out["size"] = {
        "dataset": config["dataset"],
        "model": model_name,
        "test_users": len(test.uid_list),
        "items": test._dataset.item_num - 1,
        "users_per_batch": trainer.eval_users_per_batch(test._dataset.item_num),
    }
    return out


def scale_figures(data_path: str, rounds: int, per_pair: bool) -> dict:
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
    _, valid, test = data_preparation(config, ADTDataset(config))
    model = get_model("GMF")(config, test._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "GMF")(config, model)
    with torch.no_grad():
        representations = model.user_representations().detach().clone()
    out = colliding_ratios(config, trainer, test, representations, rounds, "scale_", (10,))
    out["colliding_over_plain_eval"] = out["colliding_over_plain_eval_scale_10"]
    per_pair_mode = per_pair and "estimate"
    out.update(grid_ratios(config, trainer, valid, representations, 1, "", per_pair_mode))
    out["scale_size"] = {
        "users": users,
        "items": test._dataset.item_num - 1,
        "test_users": len(test.uid_list),
        "users_per_batch": trainer.eval_users_per_batch(test._dataset.item_num),
    }
    return out


def figures(
    quick: bool, *, model_name: str = "GMF", rounds: int | None = None, per_pair: bool = False
) -> dict:
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
            out.update(ml100k_figures(data_path, model_name, rounds, per_pair))
            if not quick:
                out.update(scale_figures(data_path, rounds, per_pair))
        finally:
            os.chdir(here)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ml-100k only")
    parser.add_argument("--model", default="GMF")
    parser.add_argument("--rounds", type=int, help="timed runs of each (default 5, quick 3)")
    parser.add_argument(
        "--per_pair", action="store_true", help="also time the grid one evaluation per pair"
    )
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads the command line
    out = figures(args.quick, model_name=args.model, rounds=args.rounds, per_pair=args.per_pair)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
