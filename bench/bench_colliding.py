"""Cost of colliding inference (paper Eq. 8) over plain full-sort evaluation, side by side.

    python bench/bench_colliding.py [--data_path DIR] [--model GMF] [--threads 1]

Trains the model one warm-up and one ADT epoch on the embedded MovieLens-100K (ml-100k-fp), then
times RecBole's whole ``Trainer.evaluate`` of the test split, plain and with colliding inference
at |N_u| = 10 and 100 with *every* user sparse (the worst case). Best of 3 runs each; prints one
JSON object with the seconds and the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from recbole_adt.inference import CollidingInference, colliding_hook
from recbole_adt.utils import get_model, get_trainer


def best_of(runs: int, evaluate) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        evaluate()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", default="dataset")
    parser.add_argument("--model", default="GMF")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config reads the command line
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    settings = {
        "data_path": args.data_path,
        "phases": ["warmup:1", "adt:1"],
        "colliding_inference": True,
        "state": "WARNING",
        "show_progress": False,
        "num_threads": args.threads,
    }
    config = Config(args.model, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, ADTDataset(config))
    model = get_model(args.model)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], args.model)(config, model)
    trainer.fit(train, valid, saved=False, verbose=False)
    extra = train._dataset.extra_feedback

    plain = best_of(3, lambda: trainer.evaluate(test, load_best_model=False))
    report = {
        "model": args.model,
        "test_users": len(test.uid_list),
        "items": train._dataset.item_num - 1,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "plain_eval_s": round(plain, 4),
    }
    for neighbours in (10, 100):
        colliding = CollidingInference(
            trainer.representations_after_warmup,
            extra.user_ratio.float(),
            num_neighbours=neighbours,
            lam=0.8,
            ratio_threshold=1.01,  # every user is sparse
            max_scores_per_block=config["eval_batch_size"],
        )

        def evaluate(colliding=colliding):
            with colliding_hook(model, colliding, config["USER_ID_FIELD"]):
                trainer.evaluate(test, load_best_model=False)

        seconds = best_of(3, evaluate)
        report[f"colliding_{neighbours}_eval_s"] = round(seconds, 4)
        report[f"colliding_over_plain_eval_{neighbours}"] = round(seconds / plain, 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
