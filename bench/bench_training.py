"""Speed of ADT training and full-sort evaluation, measured side by side in one process.

    python bench/bench_training.py [--data_path DIR] [--epochs 3] [--threads 1]

On the embedded MovieLens-100K (ml-100k-fp), reports seconds per training epoch for each model
with CE, T-CE and R-CE (ratios to CE), RecBole's own NeuMF/CDAE (ours with CE vs RecBole's path),
and one full-sort evaluation of the validation split: our vectorised NeuMF.full_sort_predict
against RecBole's fallback that scores every user-item pair through ``predict``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings

import torch
from recbole.data import data_preparation
from recbole.model.general_recommender.cdae import CDAE as RecBoleCDAE
from recbole.model.general_recommender.neumf import NeuMF as RecBoleNeuMF
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from recbole_adt.utils import get_model, get_trainer

RECBOLE_MODELS = {"NeuMF": RecBoleNeuMF, "CDAE": RecBoleCDAE}


def build(model_name, settings, model_class=None):
    config = Config(model_name, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, ADTDataset(config))
    model = (model_class or get_model(model_name))(config, train._dataset)
    # RecBole's own models get RecBole's own Trainer.
    trainer_class = Trainer if model_class else get_trainer(config["MODEL_TYPE"], model_name)
    trainer = trainer_class(config, model)
    return trainer, train, valid


def time_epochs(trainer, train, epochs):
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        trainer._train_epoch(train, epoch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_eval(trainer, valid):
    start = time.perf_counter()
    trainer.evaluate(valid, load_best_model=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would read our flags as settings
    warnings.simplefilter("ignore", FutureWarning)  # RecBole 1.2.1 on pandas 2 and torch 2.13
    torch.set_num_threads(args.threads)
    settings = {
        "data_path": args.data_path,
        "checkpoint_dir": tempfile.mkdtemp(),
        "show_progress": False,
        "state": "ERROR",
        "num_threads": args.threads,
    }
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.epochs} epochs")
    print(f"{'model':<8}{'loss':<8}{'s/epoch':>10}{'vs CE':>8}")
    for model_name in ("GMF", "NeuMF", "CDAE"):
        ce = None
        for loss in ("CE", "TCE", "RCE"):
            trainer, train, _ = build(model_name, {**settings, "adt_loss": loss})
            seconds = time_epochs(trainer, train, args.epochs)
            ce = ce or seconds
            print(f"{model_name:<8}{loss:<8}{seconds:>10.3f}{seconds / ce:>8.2f}")
        if model_name in RECBOLE_MODELS:
            trainer, train, _ = build(model_name, settings, RECBOLE_MODELS[model_name])
            seconds = time_epochs(trainer, train, args.epochs)
            print(f"{model_name:<8}{'RecBole':<8}{seconds:>10.3f}{seconds / ce:>8.2f}")

    print("\nfull-sort evaluation of the validation split, NeuMF, same weights")
    print(f"{'eval_batch_size':>16}{'ours s':>10}{'RecBole s':>11}{'speed-up':>10}  same metrics")
    for eval_batch_size in (4096, 262144):
        batch_settings = {**settings, "eval_batch_size": eval_batch_size}
        ours, _, valid = build("NeuMF", batch_settings)
        theirs, _, _ = build("NeuMF", batch_settings, RecBoleNeuMF)
        theirs.model.load_state_dict(ours.model.state_dict())
        ours_s, theirs_s = time_eval(ours, valid), time_eval(theirs, valid)
        same = ours.evaluate(valid, load_best_model=False) == theirs.evaluate(
            valid, load_best_model=False
        )
        print(
            f"{eval_batch_size:>16}{ours_s:>10.3f}{theirs_s:>11.3f}{theirs_s / ours_s:>9.1f}x"
            f"  {same}"
        )


if __name__ == "__main__":
    main()
