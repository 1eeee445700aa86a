r"""Evaluation by user-ratio group (paper Table 5), with or without colliding inference (Eq. 8).

A group holds the evaluated users whose ratio :math:`|D^*_u| / |D_u|` lies below a threshold
(``ratio_groups``, default 0.1, 0.2, 0.3). Each group is scored by RecBole's own evaluator on a
copy of the evaluation split that keeps only those users; the copy shares the split's sampler,
so every user's history mask is exactly the one of the overall evaluation.

The same copies give test metrics by user sparsity (paper Fig. 7): users sorted by their number
of training interactions, cut into ``sparsity_groups`` groups that hold about equal numbers of
training interactions (:func:`sparsity_group_of_users`), sparsest first.
"""

from __future__ import annotations

import contextlib
from logging import getLogger

import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import dict2str, set_color

from recbole_adt.data.extra_feedback import ExtraFeedback
from recbole_adt.inference import (
    CollidingInference,
    colliding_hook,
    validate_colliding_settings,
)
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


def colliding_grid(settings) -> list[tuple[int, float]]:
    """The (|N_u|, lambda) pairs to try: each of colliding_neighbours and colliding_lambda may be
    a number or a list; every pair is checked here, before any data is loaded."""
    grid = [
        validate_colliding_settings(k, lam, settings["colliding_ratio_threshold"])[:2]
        for k in _as_list(settings["colliding_neighbours"])
        for lam in _as_list(settings["colliding_lambda"])
    ]
    if not grid:
        raise ValueError("colliding_neighbours and colliding_lambda must not be empty lists.")
    return grid


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def select_colliding(
    config, trainer, extra: ExtraFeedback | None, valid_data
) -> tuple[CollidingInference | None, list[dict]]:
    """Colliding inference from the trainer's E* (after warm-up), or None when it is off.

    With several (|N_u|, lambda) pairs, the one with the best validation ``valid_metric`` is
    chosen (the first on ties), as the paper tunes them on validation. Also returns each tried
    pair with its validation score (empty for a single pair): the data of the paper's Fig. 11.
    """
    if not config["colliding_inference"]:
        return None, []
    representations = getattr(trainer, "representations_after_warmup", None)
    if extra is None or representations is None:
        raise ValueError(
            "colliding_inference needs E*, the user representations after a warmup phase on "
            "extra feedback D*: add warmup to phases (e.g. phases: [warmup, adt]) and make sure "
            "the dataset has D* (fp_field for simulated, or extra_feedback_field)."
        )
    candidates = [
        CollidingInference(
            representations,
            extra.user_ratio.float(),
            num_neighbours=k,
            lam=lam,
            ratio_threshold=config["colliding_ratio_threshold"],
            max_scores_per_block=budget_scores(config),
        )
        for k, lam in colliding_grid(config)
    ]
    if len(candidates) == 1:
        return candidates[0], []
    metric, bigger = config["valid_metric"].lower(), config["valid_metric_bigger"]
    best, best_score, tried = None, None, []
    for colliding in candidates:
        result = evaluate_groups(
            trainer, valid_data, {}, colliding=colliding, load_best_model=False
        )[OVERALL]
        score = result[metric]
        tried.append(
            {"neighbours": colliding.num_neighbours, "lambda": colliding.lam, metric: score}
        )
        getLogger().info(
            f"colliding |N_u| = {colliding.num_neighbours}, lambda = {colliding.lam:g}: "
            f"valid {metric} {score:.4f}"
        )
        if best is None or (score > best_score if bigger else score < best_score):
            best, best_score = colliding, score
    getLogger().info(
        set_color("colliding inference chosen on validation", "yellow")
        + f": |N_u| = {best.num_neighbours}, lambda = {best.lam:g} ({metric} {best_score:.4f})"
    )
    return best, tried


def evaluate_groups(
    trainer,
    eval_data,
    group_loaders: dict,
    *,
    colliding: CollidingInference | None = None,
    load_best_model: bool = True,
    show_progress: bool = False,
) -> dict[str, dict]:
    """{"overall": result, "ratio < t": result, ...}; colliding inference applied if given."""
    hook = (
        colliding_hook(trainer.model, colliding, trainer.config["USER_ID_FIELD"])
        if colliding is not None
        else contextlib.nullcontext()
    )
    results = {}
    with hook:
        results[OVERALL] = trainer.evaluate(
            eval_data, load_best_model=load_best_model, show_progress=show_progress
        )
        for name, loader in group_loaders.items():
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
