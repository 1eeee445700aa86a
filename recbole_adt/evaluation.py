r"""Evaluation by user-ratio group (paper Table 5), with or without colliding inference (Eq. 8).

A group holds the evaluated users whose ratio :math:`|D^*_u| / |D_u|` lies below a threshold
(``ratio_groups``, default 0.1, 0.2, 0.3). Each group is scored by RecBole's own evaluator on a
copy of the evaluation split that keeps only those users; the copy shares the split's sampler,
so every user's history mask is exactly the one of the overall evaluation.

The same copies give test metrics by user sparsity (paper Fig. 7): users sorted by their number
of training interactions, cut into ``sparsity_groups`` groups that hold about equal numbers of
training interactions (:func:`sparsity_group_of_users`), sparsest first.

:func:`evaluate_test` tests a trained run: one evaluation of the test split for a plain run;
the ratio groups and colliding inference only when the run uses :math:`D^*`
(:func:`~recbole_adt.data.extra_feedback.uses_extra_feedback`), the sparsity groups only when
diagnostics are on (:class:`~recbole_adt.diagnostics.DiagnosticsSettings`).

With colliding inference, each group's mixed result mixes exactly the users below *that
group's* threshold (paper Table 5: the "ratio < 0.3" row mixes every user below 0.3), one
evaluation per group as for the plain scores; the overall mixed result, and the validation
choice of (|N_u|, lambda), mix the users below ``colliding_ratio_threshold``. The paper tunes the
hyper-parameters on validation without saying whether per group; our reading is one pair for
every group, chosen at ``colliding_ratio_threshold``.
"""

from __future__ import annotations

import contextlib
import os
from logging import getLogger

import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import dict2str, set_color

from recbole_adt.data.dataset import ADTDataset
from recbole_adt.data.extra_feedback import ExtraFeedback, ExtraFeedbackSettings
from recbole_adt.diagnostics import (
    DiagnosticsSettings,
    DiagnosticsWriter,
    resolve_diagnostics_dir,
    writes_diagnostics,
)
from recbole_adt.inference import (
    CollidingInference,
    CollidingSettings,
    colliding_hook,
    evaluate_grid,
    grid_inferences,
)
from recbole_adt.settings import parsed
from recbole_adt.trainer.full_sort import budget_scores

OVERALL = "overall"


def group_name(threshold: float) -> str:
    return f"ratio < {threshold:g}"


def ratio_group_loaders(config, eval_data, extra: ExtraFeedback, thresholds) -> dict:
    """Group name -> a full-sort loader over the users of ``eval_data`` below that ratio."""
    if not isinstance(eval_data, FullSortEvalDataLoader):
        return {}
    dataset = eval_data._dataset
    ratio = extra.user_ratio.to(dataset.inter_feat[dataset.uid_field].device)
    user_ratio = ratio[dataset.inter_feat[dataset.uid_field]]
    loaders = {}
    for threshold in thresholds:
        keep = user_ratio < threshold
        if not keep.any():
            continue
        subset = dataset.copy(dataset.inter_feat[keep])
        loader = FullSortEvalDataLoader(config, subset, eval_data._sampler, shuffle=False)
        loaders[group_name(threshold)] = loader
        getLogger().info(
            f"{group_name(threshold)}: {len(loader.uid_list)} of {len(eval_data.uid_list)} users"
        )
    return loaders


def sparsity_group_of_users(train_counts: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Group (0 = sparsest) of each user; -1 for users without training interactions.

    Users are sorted by their number of training interactions (ties by id); a user falls in
    group ``floor(num_groups * c / total)``, ``c`` being the interactions of the users before
    it, so each group holds about ``total / num_groups`` interactions.
    """
    counts = train_counts.long().cpu()
    order = torch.argsort(counts, stable=True)
    before = torch.cumsum(counts[order], 0) - counts[order]
    total = int(counts.sum())
    groups = torch.full_like(counts, -1)
    if total:
        groups[order] = torch.div(before * num_groups, total, rounding_mode="floor")
    groups[counts == 0] = -1
    return groups


def sparsity_group_loaders(config, eval_data, train_counts: torch.Tensor, num_groups: int):
    """``[(group columns, loader), ...]``: a full-sort loader over the users of ``eval_data``
    in each sparsity group (groups without such users are left out)."""
    if num_groups <= 0 or not isinstance(eval_data, FullSortEvalDataLoader):
        return []
    dataset = eval_data._dataset
    user_group = sparsity_group_of_users(train_counts, num_groups)
    counts = train_counts.long().cpu()
    eval_users = dataset.inter_feat[dataset.uid_field].cpu()
    loaders = []
    for group in range(num_groups):
        members = user_group == group
        keep = members[eval_users]
        if not keep.any():
            continue
        subset = dataset.copy(dataset.inter_feat[keep])
        loader = FullSortEvalDataLoader(config, subset, eval_data._sampler, shuffle=False)
        columns = {
            "group": group + 1,
            "users": int(members.sum()),
            "interactions": int(counts[members].sum()),
            "min_interactions": int(counts[members].min()),
            "max_interactions": int(counts[members].max()),
        }
        loaders.append((columns, loader))
        getLogger().info(
            f"sparsity group {group + 1}/{num_groups}: {columns['users']} users with "
            f"{columns['min_interactions']}-{columns['max_interactions']} training interactions "
            f"({columns['interactions']} in all), {len(loader.uid_list)} of them tested"
        )
    return loaders


def select_colliding(
    config, trainer, extra: ExtraFeedback, valid_data
) -> tuple[CollidingInference | None, list[dict]]:
    """:func:`choose_colliding` without the chosen pair's validation result."""
    colliding, tried, _ = choose_colliding(config, trainer, extra, valid_data)
    return colliding, tried


def choose_colliding(
    config, trainer, extra: ExtraFeedback, valid_data
) -> tuple[CollidingInference | None, list[dict], dict | None]:
    """Colliding inference from the trainer's E* (after warm-up), or None when it is off.

    With several (|N_u|, lambda) pairs, the one with the best validation ``valid_metric`` is
    chosen (the first on ties), as the paper tunes them on validation; every pair is evaluated
    in one validation pass (:func:`~recbole_adt.inference.evaluate_grid`, bitwise the result
    of one ``evaluate_groups`` per pair). Also returns each tried pair with its validation
    score (empty for a single pair): the data of the paper's Fig. 11, and the chosen pair's
    whole validation result (None for a single pair: nothing was evaluated). Config makes sure
    colliding inference comes with a warmup phase, which sets ``trainer.representations`` (a
    :class:`~recbole_adt.trainer.PhasedTrainer`).
    """
    settings = parsed(config, CollidingSettings)
    if not settings.enabled:
        return None, [], None
    _log_users_without_extra(extra, settings.users_without_extra)
    candidates = grid_inferences(
        trainer.representations,
        # double, as ratio_group_loaders compares it: a ratio equal to a threshold is in
        # neither the group nor the sparse users, whatever float32 would round it to.
        extra.user_ratio,
        settings.grid,
        ratio_threshold=settings.ratio_threshold,
        users_without_extra=settings.users_without_extra,
        max_scores_per_block=budget_scores(config),
    )
    if len(candidates) == 1:
        return candidates[0], [], None
    metric, bigger = config["valid_metric"].lower(), config["valid_metric_bigger"]
    results = evaluate_grid(trainer, valid_data, candidates, config["USER_ID_FIELD"])
    best, best_score, best_result, tried = None, None, None, []
    for colliding, result in zip(candidates, results):
        score = result[metric]
        tried.append(
            {"neighbours": colliding.num_neighbours, "lambda": colliding.lam, metric: score}
        )
        getLogger().info(
            f"colliding |N_u| = {colliding.num_neighbours}, lambda = {colliding.lam:g}: "
            f"valid {metric} {score:.4f}"
        )
        if best is None or (score > best_score if bigger else score < best_score):
            best, best_score, best_result = colliding, score, result
    getLogger().info(
        set_color("colliding inference chosen on validation", "yellow")
        + f": |N_u| = {best.num_neighbours}, lambda = {best.lam:g} ({metric} {best_score:.4f})"
    )
    return best, tried, best_result


def _log_users_without_extra(extra: ExtraFeedback, users_without_extra: str) -> None:
    """Logs once how many users have no D* row, and what colliding inference does with them."""
    real = extra.implicit_count[1:] > 0
    count = int((real & (extra.extra_count[1:] == 0)).sum())
    action = (
        "their scores stay plain and they are nobody's neighbour"
        if users_without_extra == "skip"
        else "they are mixed with neighbours found by their untrained E* rows"
    )
    getLogger().info(
        f"colliding inference: {count} of {int(real.sum())} users have no extra feedback; "
        f"colliding_users_without_extra={users_without_extra}: {action}"
    )


def per_threshold(colliding: CollidingInference, group_loaders: dict, thresholds) -> dict:
    """Group name -> ``colliding`` for the users below that group's threshold (Table 5)."""
    return {
        group_name(t): colliding.with_threshold(t)
        for t in thresholds
        if group_name(t) in group_loaders
    }


def _hook(trainer, colliding: CollidingInference | None):
    if colliding is None:
        return contextlib.nullcontext()
    return colliding_hook(trainer.model, colliding, trainer.config["USER_ID_FIELD"])


def evaluate_groups(
    trainer,
    eval_data,
    group_loaders: dict,
    *,
    colliding: CollidingInference | None = None,
    group_colliding: dict[str, CollidingInference] | None = None,
    load_best_model: bool = True,
    show_progress: bool = False,
) -> dict[str, dict]:
    """{"overall": result, "ratio < t": result, ...}; colliding inference applied if given:
    ``colliding`` for the overall result, ``group_colliding[name]`` for a group (by default
    ``colliding`` too)."""
    group_colliding = group_colliding or {}
    results = {}
    with _hook(trainer, colliding):
        results[OVERALL] = trainer.evaluate(
            eval_data, load_best_model=load_best_model, show_progress=show_progress
        )
    for name, loader in group_loaders.items():
        with _hook(trainer, group_colliding.get(name, colliding)):
            results[name] = trainer.evaluate(
                loader, load_best_model=False, show_progress=show_progress
            )
    return results


def log_groups(title: str, results: dict[str, dict]) -> None:
    """The overall result as RecBole's quick start logs it, then one line per group."""
    logger = getLogger()
    for name, result in results.items():
        if name == OVERALL:
            logger.info(set_color(title, "yellow") + f": {result}")
        elif result is not None:
            logger.info(set_color(f"{title} ({name})", "yellow") + ": " + dict2str(result))


def evaluate_test(
    config, trainer, valid_data, test_data, train_dataset, *, saved: bool
) -> dict[str, object]:
    """Test results of a trained run: overall; with D*, per user-ratio group, plain and with
    colliding inference; with diagnostics, per user-sparsity group (plain only).

    ``saved``: the trainer's selected checkpoint is loaded first (``saved=True`` training).
    """
    show = config["show_progress"]
    sparsity = _sparsity_loaders(config, test_data, train_dataset)
    sparsity_loaders = {f"sparsity group {c['group']}": loader for c, loader in sparsity}
    extra = train_dataset.extra_feedback if isinstance(train_dataset, ADTDataset) else None
    groups = {}
    if extra is not None:
        thresholds = parsed(config, ExtraFeedbackSettings).ratio_groups
        groups = ratio_group_loaders(config, test_data, extra, thresholds)
    plain = evaluate_groups(
        trainer,
        test_data,
        {**groups, **sparsity_loaders},
        load_best_model=saved,
        show_progress=show,
    )
    outcome = {"test_result": plain[OVERALL], **_sparsity_outcome(config, sparsity, plain)}
    if extra is None:
        getLogger().info(set_color("test result", "yellow") + f": {plain[OVERALL]}")
        return outcome
    log_groups("test result", plain)
    outcome["test_groups"] = plain
    colliding, tried, valid_result = choose_colliding(config, trainer, extra, valid_data)
    if colliding is None:
        return outcome
    mixed = evaluate_groups(
        trainer,
        test_data,
        groups,
        colliding=colliding,
        group_colliding=per_threshold(colliding, groups, thresholds),
        load_best_model=False,
        show_progress=show,
    )
    log_groups("test result, colliding inference", mixed)
    if valid_result is None:  # a single pair: not evaluated on validation yet
        valid_result = evaluate_groups(
            trainer, valid_data, {}, colliding=colliding, load_best_model=False, show_progress=show
        )[OVERALL]
    log_groups("valid result, colliding inference", {OVERALL: valid_result})
    return {
        **outcome,
        "test_result": mixed[OVERALL],
        "test_groups": mixed,
        "test_result_plain": plain[OVERALL],
        "test_groups_plain": plain,
        "valid_result_colliding": valid_result,
        "colliding": {"neighbours": colliding.num_neighbours, "lambda": colliding.lam},
        "colliding_validation": tried,
    }


def _sparsity_loaders(config, test_data, train_dataset) -> list:
    """The sparsity groups' loaders when diagnostics are on (``sparsity_group_loaders``)."""
    num_groups = parsed(config, DiagnosticsSettings).tested_groups
    if not num_groups:
        return []
    users = train_dataset.inter_feat[train_dataset.uid_field].cpu()
    counts = torch.bincount(users, minlength=train_dataset.user_num)
    return sparsity_group_loaders(config, test_data, counts, num_groups)


def _sparsity_outcome(config, sparsity: list, results: dict) -> dict:
    """Moves the sparsity groups out of ``results`` into rows, written to sparsity_groups.csv."""
    rows = [
        {**columns, **results.pop(f"sparsity group {columns['group']}")} for columns, _ in sparsity
    ]
    directory = resolve_diagnostics_dir(config)  # under output_dir when that is set
    if rows and writes_diagnostics(config):
        path = DiagnosticsWriter(directory).write_sparsity_groups(rows)
        getLogger().info(set_color("test result by user sparsity", "yellow") + f": {path}")
    return {
        "test_sparsity_groups": rows,
        "diagnostics_dir": directory if directory and os.path.isdir(directory) else None,
    }
