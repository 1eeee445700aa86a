"""Train and test one model, or one model over several seeds, the way ``run_recbole`` does;
reload a saved run with :func:`load_data_and_model`.

Differences from ``recbole.quick_start.run_recbole``: models and trainers are looked up here first,
the dataset is an :class:`~recbole_adt.data.ADTDataset` (clean test split), and checkpoints load on
torch >= 2.6. ``recbole.quick_start`` itself is not imported (it pulls in ray).
"""

from __future__ import annotations

import os
import statistics
import sys
from logging import getLogger

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import EvaluatorType, ModelType, init_logger, init_seed, set_color

from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from recbole_adt.data.checks import check_dataset_files
from recbole_adt.diagnostics import (
    DiagnosticsWriter,
    resolve_diagnostics_dir,
    writes_diagnostics,
)
from recbole_adt.distributed import (
    leave_group,
    post_error,
    post_result,
    spawn_workers,
    spawns_workers,
)
from recbole_adt.evaluation import (
    OVERALL,
    evaluate_groups,
    log_groups,
    ratio_group_loaders,
    select_colliding,
    sparsity_group_loaders,
)
from recbole_adt.settings import check_topk_fits
from recbole_adt.trainer.checkpoint import (
    WeightsOnlyCheckpointMixin,
    model_other_parameter,
    read_checkpoint,
)
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
) -> dict:
    """Train on all interactions, select the checkpoint on validation, test on true positives.

    ``resume_file`` continues an interrupted run from one of its checkpoints: the model, dataset
    and settings of that run apply unless given here, the iteration counter (and phase) carry
    on, and training saves to a new file, leaving the resumed one as it was.
    """
    if resume_file is not None:
        checkpoint = read_checkpoint(resume_file)
        model, dataset, config_dict = _resumed_settings(checkpoint, model, dataset, config_dict)
    config = Config(model, dataset, config_file_list, config_dict)
    check_dataset_files(config)  # before any log or checkpoint folder is made
    if spawns_workers(config):  # nproc > 1: as RecBole's run(), rank 0's result comes back
        options = {"config_dict": config_dict, "saved": saved, "resume_file": resume_file}
        args = (model, dataset, config_file_list)
        return spawn_workers(run_recbole_adts, config["nproc"], args, options)
    if config["num_threads"]:
        torch.set_num_threads(config["num_threads"])
    init_seed(config["seed"], config["reproducibility"])
    # RecBole creates these (log/ is fixed in init_logger) with a check-then-mkdir that fails
    # when two runs start together.
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset = build_dataset(config)
    logger.info(dataset)
    if config["eval_type"] == EvaluatorType.RANKING:
        check_topk_fits(config["topk"], dataset.item_num - 1, config["dataset"])  # - [PAD]
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"], adt_loss=config["adt_loss"])(config, train_data._dataset).to(
        config["device"]
    )
    logger.info(model)

    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"], adt_loss=config["adt_loss"])
    trainer = trainer_class(config, model)
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
        "checkpoint_rule": config["checkpoint_rule"],
        "best_epoch": _kept_epoch(trainer, saved),
    }
    extra = getattr(train_data._dataset, "extra_feedback", None)
    result.update(_test(config, trainer, extra, valid_data, test_data, saved, train_data._dataset))
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
    settings = {**checkpoint.get("external_config", {}), **(config_dict or {})}
    return model or saved["model"], dataset or saved["dataset"], settings


def _test(config, trainer, extra, valid_data, test_data, saved: bool, train_dataset) -> dict:
    """Test results, overall, per user-sparsity group and per user-ratio group, plain and with
    colliding inference (sparsity groups: plain only)."""
    show = config["show_progress"]
    train_counts = torch.bincount(
        train_dataset.inter_feat[train_dataset.uid_field].cpu(), minlength=train_dataset.user_num
    )
    sparsity = sparsity_group_loaders(config, test_data, train_counts, config["sparsity_groups"])
    sparsity_loaders = {f"sparsity group {c['group']}": loader for c, loader in sparsity}
    if extra is None:
        plain = evaluate_groups(
            trainer, test_data, sparsity_loaders, load_best_model=saved, show_progress=show
        )
        diagnostics = _sparsity_outcome(config, trainer, sparsity, plain)
        getLogger().info(set_color("test result", "yellow") + f": {plain[OVERALL]}")
        return {"test_result": plain[OVERALL], **diagnostics}
    groups = ratio_group_loaders(config, test_data, extra, config["ratio_groups"] or [])
    all_groups = {**groups, **sparsity_loaders}
    plain = evaluate_groups(
        trainer, test_data, all_groups, load_best_model=saved, show_progress=show
    )
    diagnostics = _sparsity_outcome(config, trainer, sparsity, plain)
    log_groups("test result", plain)
    outcome = {"test_result": plain[OVERALL], "test_groups": plain, **diagnostics}
    colliding, tried = select_colliding(config, trainer, extra, valid_data)
    if colliding is None:
        return outcome
    mixed = evaluate_groups(
        trainer, test_data, groups, colliding=colliding, load_best_model=False, show_progress=show
    )
    log_groups("test result, colliding inference", mixed)
    valid = evaluate_groups(
        trainer, valid_data, {}, colliding=colliding, load_best_model=False, show_progress=show
    )
    log_groups("valid result, colliding inference", valid)
    return {
        **outcome,
        "test_result": mixed[OVERALL],
        "test_groups": mixed,
        "test_result_plain": plain[OVERALL],
        "test_groups_plain": plain,
        "valid_result_colliding": valid[OVERALL],
        "colliding": {"neighbours": colliding.num_neighbours, "lambda": colliding.lam},
        "colliding_validation": tried,
    }


def _kept_epoch(trainer, saved: bool) -> int | None:
    """The epoch of the checkpoint the run kept (its last phase's), read from the file."""
    if not saved or not isinstance(trainer, WeightsOnlyCheckpointMixin):
        return None
    if not os.path.isfile(trainer.saved_model_file):
        return None
    return int(read_checkpoint(trainer.saved_model_file)["epoch"])


def _sparsity_outcome(config, trainer, sparsity: list, results: dict) -> dict:
    """Moves the sparsity groups out of ``results`` into rows (written to sparsity_groups.csv)."""
    rows = [
        {**columns, **results.pop(f"sparsity group {columns['group']}")} for columns, _ in sparsity
    ]
    directory = getattr(trainer, "diagnostics_dir", None) or resolve_diagnostics_dir(config)
    if rows and writes_diagnostics(config):
        path = DiagnosticsWriter(directory).write_sparsity_groups(rows)
        getLogger().info(set_color("test result by user sparsity", "yellow") + f": {path}")
    return {
        "test_sparsity_groups": rows,
        "diagnostics_dir": directory if os.path.isdir(directory) else None,
    }


def run_seeds(
    seeds, model=None, dataset=None, config_file_list=None, config_dict=None, saved=True
) -> dict:
    """Run once per seed; return each run and the mean and sample std of every test metric.

    ``group_summary`` (and ``group_summary_plain`` with colliding inference) hold the same per
    user-ratio group, for the groups every run has.
    """
    runs = []
    for seed in seeds:
        run_config = {**(config_dict or {}), "seed": int(seed)}
        try:
            runs.append(run_recbole_adt(model, dataset, config_file_list, run_config, saved))
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
    settings = checkpoint.get("external_config", {})
    config = Config(saved["model"], saved["dataset"], config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = build_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"], adt_loss=config["adt_loss"])(config, train_data._dataset).to(
        config["device"]
    )
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(model_other_parameter(checkpoint.get("other_parameter")))
    return config, model, dataset, train_data, valid_data, test_data
