r"""Every (:math:`|\mathcal N_u|`, :math:`\lambda`) pair of a colliding-inference grid from one
evaluation pass (the validation choice of :func:`recbole_adt.evaluation.select_colliding`).

One pass per pair re-scores each batch's neighbours once per pair: 77 scorings of the same rows
for the paper's 7 x 11 grid. Here one RecBole ``Trainer.evaluate`` pass scores each batch once,
and for each :math:`|\mathcal N_u|` asks for the batch's neighbours once (in the chunks the
per-pair pass uses), then mixes them for every :math:`\lambda` of that :math:`|\mathcal N_u|`
(:meth:`~recbole_adt.inference.CollidingInference.mix_lambdas`); each pair's masked scores go to
its own copy of the trainer's collector, and each copy is evaluated by the trainer's evaluator.
The neighbour tables come from one search at the largest :math:`|\mathcal N_u|`
(:func:`grid_inferences`).

Bitwise equal to one ``evaluate`` per pair under :func:`~recbole_adt.inference.colliding_hook`:
every pair's scores come from the same floating-point operations on the same operands in the
same order. Not a prefix sum over the 100 nearest with :math:`\lambda` re-mixing the sums: Eq.
(8) as computed adds :math:`\tfrac{1-\lambda}{k}\hat{\mathbf y}_j` term by term, a different
rounding for every pair, so sums shared across pairs would change the last bits of the scores
and could reorder near-tied items. What is shared is what is exact: the batch's own scores, the
neighbours' scores for one :math:`|\mathcal N_u|` (``predict`` is called with the same ids in
the same chunks as the per-pair pass, so even a BLAS whose rounding depends on the number of
rows gives the same rows), the neighbour search, and the history mask.

Memory: besides the per-pair pass's, one (sparse users of the batch x items) sum per
:math:`\lambda < 1` of one :math:`|\mathcal N_u|` and the mixed batches they give, at most
about 11 batches' scores for the paper's grid.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from recbole.data.interaction import Interaction

from recbole_adt.inference.colliding import CollidingInference, require_full_sort_predict


def grid_inferences(
    representations: torch.Tensor,
    user_ratio: torch.Tensor,
    grid: Sequence[tuple[int, float]],
    **settings,
) -> list[CollidingInference]:
    r"""One :class:`CollidingInference` per (:math:`|\mathcal N_u|`, :math:`\lambda`) of
    ``grid``, in its order, from a single neighbour search at the largest
    :math:`|\mathcal N_u|`: each other pair takes a prefix of those rows
    (:meth:`~CollidingInference.with_neighbours`) and its :math:`\lambda`
    (:meth:`~CollidingInference.with_lambda`). ``settings``: the other keyword arguments of
    :class:`CollidingInference` (``ratio_threshold``, ``users_without_extra``,
    ``max_scores_per_block``)."""
    if not grid:
        raise ValueError("grid must hold at least one (neighbours, lambda) pair.")
    largest = max(k for k, _ in grid)
    base = CollidingInference(
        representations, user_ratio, num_neighbours=largest, lam=grid[0][1], **settings
    )
    by_k = {k: base.with_neighbours(k) for k in sorted({k for k, _ in grid})}
    return [by_k[k].with_lambda(lam) for k, lam in grid]


@contextmanager
def _instance_attribute(owner, name: str, value) -> Iterator[None]:
    """``owner.name = value`` while active; afterwards the attribute is removed, or a previous
    instance attribute put back."""
    missing = object()
    previous = vars(owner).get(name, missing)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if previous is missing:
            delattr(owner, name)
        else:
            setattr(owner, name, previous)


class _Group(NamedTuple):
    """The pairs of one neighbour table: they share its ``predict`` calls."""

    inference: CollidingInference
    members: tuple[int, ...]  # indices into the grid
    lams: tuple[float, ...]


def _groups(inferences: Sequence[CollidingInference]) -> list[_Group]:
    tables: dict[int, list[int]] = {}
    for index, colliding in enumerate(inferences):
        tables.setdefault(id(colliding._neighbours), []).append(index)
    return [
        _Group(
            inferences[members[0]],
            tuple(members),
            tuple(inferences[i].lam for i in members),
        )
        for members in tables.values()
    ]


def evaluate_grid(
    trainer, eval_data, inferences: Sequence[CollidingInference], user_field: str
) -> list[dict]:
    """RecBole's result of ``trainer.evaluate(eval_data, load_best_model=False)`` under
    :func:`~recbole_adt.inference.colliding_hook` for each of ``inferences``, in their order,
    from one pass (module docstring). The trainer's own collector gets the plain scores; its
    result is not returned."""
    model = trainer.model
    require_full_sort_predict(model)
    original_predict = model.full_sort_predict
    original_batch_eval = trainer._full_sort_batch_eval
    groups = _groups(inferences)
    # Copies made before the pass: they hold what fit's data_collect gave the trainer's collector.
    collectors = [copy.deepcopy(trainer.eval_collector) for _ in inferences]
    plain: list[tuple[torch.Tensor, torch.Tensor]] = []  # (users, unmasked scores) of the batch

    def predict_users(ids: torch.Tensor) -> torch.Tensor:
        return original_predict(Interaction({user_field: ids})).view(len(ids), -1)

    def full_sort_predict(interaction):
        with torch.no_grad():
            flat = original_predict(interaction)
            users = interaction[user_field]
            plain.append((users, flat.view(len(users), -1).clone()))  # RecBole masks flat
            return flat

    def batch_eval(batched_data):
        history_index = batched_data[1]
        interaction, masked, positive_u, positive_i = original_batch_eval(batched_data)
        ((users, scores),) = plain
        plain.clear()
        with torch.no_grad():
            for group in groups:
                mixed = group.inference.mix_lambdas(
                    users, scores, predict_users, group.lams, reuse_batch=True
                )
                for index, pair_scores in zip(group.members, mixed):
                    if pair_scores is scores:  # lambda = 1 or no sparse user: the plain scores
                        pair_scores = masked
                    else:  # as RecBole's _full_sort_batch_eval masks what the hook returns
                        pair_scores[:, 0] = -math.inf
                        if history_index is not None:
                            pair_scores[history_index] = -math.inf
                    collectors[index].eval_batch_collect(
                        pair_scores, interaction, positive_u, positive_i
                    )
        return interaction, masked, positive_u, positive_i

    with _instance_attribute(model, "full_sort_predict", full_sort_predict):
        with _instance_attribute(trainer, "_full_sort_batch_eval", batch_eval):
            trainer.evaluate(eval_data, load_best_model=False)
    results = []
    for collector in collectors:
        collector.model_collect(model)
        results.append(trainer.evaluator.evaluate(collector.get_data_struct()))
    return results
