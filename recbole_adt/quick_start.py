"""Train and test one model, or one model over several seeds, the way ``run_recbole`` does;
reload a saved run with :func:`load_data_and_model`.

Differences from ``recbole.quick_start.run_recbole``: models and trainers are looked up here first,
the dataset is an :class:`~recbole_adt.data.ADTDataset` (clean test split), and checkpoints load on
torch >= 2.6. ``recbole.quick_start`` itself is not imported (it pulls in ray).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from logging import getLogger

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import EvaluatorType, ModelType, init_seed, set_color

from recbole_adt.config import Config
from recbole_adt.console import Console, init_run_logger, log_file, log_start
from recbole_adt.data import ADTDataset
from recbole_adt.data.checks import check_dataset_files
from recbole_adt.data.nr_batches import nr_train_data
from recbole_adt.distributed import (
    leave_group,
    post_error,
    post_result,
    spawn_workers,
    spawns_workers,
)
from recbole_adt.evaluation import evaluate_test
from recbole_adt.output import OutputSettings, anchor_tensorboard, inside, prepare_output_dir
from recbole_adt.settings import check_topk_fits, parsed
from recbole_adt.trainer import PhasedTrainer
from recbole_adt.trainer.checkpoint import (
    WeightsOnlyCheckpointMixin,
    check_checkpoint_dir,
    model_other_parameter,
    read_checkpoint,
)
from recbole_adt.trainer.selection import CheckpointRule
from recbole_adt.utils import get_model, get_trainer

# Model types whose dataset class is RecBole's plain Dataset, so the clean split applies.
_PLAIN_DATASET_TYPES = {ModelType.GENERAL, ModelType.CONTEXT, ModelType.TRADITIONAL}


def build_dataset(config):
    """An ADTDataset where RecBole would build a plain Dataset; RecBole's own class otherwise."""
    if config["MODEL_TYPE"] in _PLAIN_DATASET_TYPES:
        return ADTDataset(config)
    getLogger().warning(
        f"{config['model']} needs RecBole's own dataset class: the clean test split is not applied."
    )
    return create_dataset(config)


def run_recbole_adt(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    resume_file=None,
    console: Console | None = None,
) -> dict:
    """Train on all interactions, select the checkpoint on validation, test on true positives.

    ``resume_file`` continues an interrupted run from one of its checkpoints: the model, dataset
    and settings of that run apply unless given here, the iteration counter (and phase) carry
    on, and training saves to a new file, leaving the resumed one as it was. ``console``
    narrows RecBole's console output (the command line's :class:`~recbole_adt.console.Console`);
    without it the console is RecBole's.

    Besides the scores, the result holds what a summary needs: ``model``, ``adt_loss``,
    ``dataset``, ``valid_metric``, ``clean_test``, ``log_file`` (RecBole's log file, or None)
    and ``seconds`` (the run's wall time).
    """
    start = time.perf_counter()
    if resume_file is not None:
        checkpoint = read_checkpoint(resume_file)
        model, dataset, config_dict = _resumed_settings(checkpoint, model, dataset, config_dict)
    config = Config(model, dataset, config_file_list, config_dict)
    check_dataset_files(config)  # before any log or checkpoint folder is made
    output = parsed(config, OutputSettings)
    prepare_output_dir(output)
    if spawns_workers(config):  # nproc > 1: as RecBole's run(), rank 0's result comes back
        options = {
            "config_dict": config_dict,
            "saved": saved,
            "resume_file": resume_file,
            "console": console,
        }
        args = (model, dataset, config_file_list)
        return spawn_workers(run_recbole_adts, config["nproc"], args, options)
    if config["num_threads"]:
        torch.set_num_threads(config["num_threads"])
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config, console)
    logger = getLogger()
    log_start(config, log_file())
    logger.info(sys.argv)
    logger.info(config)

    dataset = build_dataset(config)
    logger.info(dataset)
    if config["eval_type"] == EvaluatorType.RANKING:
        check_topk_fits(config["topk"], dataset.item_num - 1, config["dataset"])  # - [PAD]
    train_data, valid_data, test_data = data_preparation(config, dataset)
    train_data = nr_train_data(config, train_data)  # NR's stratified batches, adt_loss NR only

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"], adt_loss=config["adt_loss"])(config, train_data._dataset).to(
        config["device"]
    )
    logger.info(model)

    config["checkpoint_dir"] = output.resolve(config["checkpoint_dir"])
    check_checkpoint_dir(config["checkpoint_dir"])  # made and writable, before training
    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"], adt_loss=config["adt_loss"])
    with inside(output.output_dir):  # RecBole's log_tensorboard/ is fixed in its Trainer
        trainer = trainer_class(config, model)
        anchor_tensorboard(trainer, output.output_dir)
    if resume_file is not None:
        if not isinstance(trainer, WeightsOnlyCheckpointMixin):
            raise ValueError(f"{config['model']} runs cannot be resumed: start a new run.")
        trainer.resume_checkpoint(resume_file)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": trainer.valid_metric_bigger,  # False under a loss checkpoint_rule
        "best_valid_result": best_valid_result,
        "model_file": trainer.saved_model_file if saved else None,
        "checkpoint_rule": parsed(config, CheckpointRule).rule,
        "best_epoch": _kept_epoch(trainer, saved),
        "model": config["model"],
        "adt_loss": config["adt_loss"],
        "dataset": config["dataset"],
        "valid_metric": str(config["valid_metric"]).lower(),
        "clean_test": isinstance(dataset, ADTDataset) and bool(config["clean_test"]),
        "log_file": log_file(),
    }
    result.update(
        evaluate_test(config, trainer, valid_data, test_data, train_data._dataset, saved=saved)
    )
    if saved and not output.keep_checkpoints:
        _remove_earlier_phase_checkpoints(trainer)
    result["seconds"] = time.perf_counter() - start
    return result


def run_recbole_adts(rank: int, *args) -> None:
    """One process of a distributed run (RecBole's ``run_recboles``), started by run_recbole_adt.

    ``args`` are run_recbole_adt's ``model, dataset, config_file_list`` and a dict of its other
    arguments plus ``outbox``, the folder where local rank 0 leaves its result.
    """
    options = dict(args[-1])
    outbox = options.pop("outbox")
    options["config_dict"] = {**(options.get("config_dict") or {}), "local_rank": rank}
    try:
        result = run_recbole_adt(*args[:-1], **options)
    except ValueError as err:
        post_error(outbox, rank, err)
        raise
    finally:
        leave_group()
    if rank == 0:
        post_result(outbox, result)


def _resumed_settings(checkpoint: dict, model, dataset, config_dict):
    """Model, dataset and settings of a resumed run: the checkpoint's, then the caller's."""
    saved = checkpoint["config"]
    if model is not None and get_model(model).__name__.lower() != str(saved["model"]).lower():
        raise ValueError(
            f"The checkpoint holds a {saved['model']} model, not {model}: resume with "
            f"--model={saved['model']}, or leave --model out."
        )
    kept = Config.saved_settings(checkpoint.get("external_config", {}), "The checkpoint")
    settings = {**kept, **(config_dict or {})}
    return model or saved["model"], dataset or saved["dataset"], settings


def _remove_earlier_phase_checkpoints(trainer) -> None:
    """Keep the selected checkpoint only (``keep_checkpoints: False``): a phased run's earlier
    phases' files go once the run has ended (``--resume`` reads them while it trains)."""
    config = trainer.config
    writes = config["single_spec"] or config["local_rank"] == 0  # as _save_checkpoint
    if not isinstance(trainer, PhasedTrainer) or not writes:
        return
    for path in trainer.phase_model_files:
        if path != trainer.saved_model_file:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _kept_epoch(trainer, saved: bool) -> int | None:
    """The epoch of the checkpoint the run kept (its last phase's), read from the file."""
    if not saved or not isinstance(trainer, WeightsOnlyCheckpointMixin):
        return None
    if not os.path.isfile(trainer.saved_model_file):
        return None
    return int(read_checkpoint(trainer.saved_model_file)["epoch"])


def run_seeds(
    seeds,
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    console: Console | None = None,
) -> dict:
    """Run once per seed; return each run and the mean and sample std of every test metric.

    ``group_summary`` (and ``group_summary_plain`` with colliding inference) hold the same per
    user-ratio group, for the groups every run has.
    """
    runs = []
    for seed in seeds:
        run_config = {**(config_dict or {}), "seed": int(seed)}
        try:
            run = run_recbole_adt(
                model, dataset, config_file_list, run_config, saved, console=console
            )
            runs.append(run)
        except ValueError as err:
            raise ValueError(
                f"The run with seed {seed} (of seeds {list(seeds)}) stopped: {err}"
            ) from err
    outcome = {"runs": runs, "test_summary": summarize([run["test_result"] for run in runs])}
    for groups, key in (
        ("test_groups", "group_summary"),
        ("test_groups_plain", "group_summary_plain"),
    ):
        if all(groups in run for run in runs):
            names = [name for name in runs[0][groups] if all(name in run[groups] for run in runs)]
            outcome[key] = {name: summarize([run[groups][name] for run in runs]) for name in names}
    return outcome


def summarize(results: list[dict]) -> dict[str, tuple[float, float]]:
    """metric -> (mean, sample std) over runs; std is 0.0 for a single run."""
    summary = {}
    for metric in results[0]:
        values = [float(result[metric]) for result in results]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[metric] = (statistics.fmean(values), std)
    return summary


def load_data_and_model(model_file):
    """Rebuild the config, data and trained model of a checkpoint saved by our trainers.

    Like ``recbole.quick_start.load_data_and_model``, which cannot read these weights-only
    checkpoints. Returns ``config, model, dataset, train_data, valid_data, test_data``.
    """
    checkpoint = read_checkpoint(model_file)  # weights-only: tensors and plain values
    saved = checkpoint["config"]
    settings = Config.saved_settings(checkpoint.get("external_config", {}), str(model_file))
    config = Config(saved["model"], saved["dataset"], config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    prepare_output_dir(parsed(config, OutputSettings))
    init_run_logger(config)
    dataset = build_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"], adt_loss=config["adt_loss"])(config, train_data._dataset).to(
        config["device"]
    )
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(model_other_parameter(checkpoint.get("other_parameter")))
    return config, model, dataset, train_data, valid_data, test_data
