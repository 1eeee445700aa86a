r"""Checkpoint rules: which epoch's weights a run keeps, chosen on validation only.

EvalDenoisingRec (RecSys 2025, a reproducibility study of T-CE and R-CE) found that the rule
moves results as much as the loss does. ``checkpoint_rule`` picks one:

- ``valid_metric``: RecBole's own, the ``valid_metric`` of the validation ranking (bigger is
  better for ranking metrics);
- ``valid_loss``: the mean CE over the validation positives :math:`V^+` and one sampled negative
  per positive :math:`V^-` (smaller is better),

  .. math:: \mathcal L_V = \frac{1}{|V^+| + |V^-|}
            \Big(\sum_{(u,i) \in V^+} -\log p_{ui} + \sum_{(u,j) \in V^-} -\log(1 - p_{uj})\Big);

- ``valid_loss_truncated``: the same without the share ``checkpoint_truncate_ratio`` :math:`r`
  of validation positives with the largest loss: only the :math:`\lfloor (1-r)|V^+| \rfloor`
  smallest positive losses are kept, as EvalDenoisingRec's ERM_RE keeps
  ``int(0.8 * len(positive_losses))``.

:math:`p_{ui}` is the model's ``predict`` (or ``full_sort_predict``) score: RecBole's pointwise
models give a probability (its ``LogLoss`` metric reads them so), a pairwise model's (BPR,
LightGCN) score is read as a logit, :math:`p = \sigma(s)`. Logs are clamped at -100, as
``torch.nn.BCELoss`` does.

The negatives are drawn once per run (:func:`sample_validation_negatives`), uniformly from the
items the user has no interaction with in train or valid, with a generator of their own: every
epoch is scored on the same pairs, and the run's other randomness is untouched.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.utils import InputType

from recbole_adt.settings import parsed
from recbole_adt.trainer.full_sort import budget_scores

CHECKPOINT_RULES = ("valid_metric", "valid_loss", "valid_loss_truncated")
LOSS_RULES = CHECKPOINT_RULES[1:]

# Rejection-sampling rounds before the few negatives left are drawn from each user's complement.
_REJECTION_ROUNDS = 20


@dataclasses.dataclass(frozen=True)
class CheckpointRule:
    """The parsed ``checkpoint_rule`` and ``checkpoint_truncate_ratio``: which epoch a run keeps.

    ``rule`` is one of :data:`CHECKPOINT_RULES`; ``truncate_ratio`` is :math:`r` of
    ``valid_loss_truncated``, in [0, 1).
    """

    KEYS: ClassVar[tuple[str, ...]] = ("checkpoint_rule", "checkpoint_truncate_ratio")

    rule: str
    truncate_ratio: float

    @classmethod
    def from_config(cls, config) -> CheckpointRule:
        rule = config["checkpoint_rule"]
        if rule not in CHECKPOINT_RULES:
            raise ValueError(
                f"checkpoint_rule must be one of {', '.join(CHECKPOINT_RULES)}, got {rule!r}. "
                "valid_metric keeps the epoch with the best valid_metric (RecBole's rule); "
                "valid_loss the one with the smallest mean CE on validation positives and "
                "sampled negatives; valid_loss_truncated the same without the "
                "checkpoint_truncate_ratio share of positives with the largest loss, e.g. "
                "--checkpoint_rule=valid_loss."
            )
        return cls(rule, _truncate_ratio(config["checkpoint_truncate_ratio"]))

    @property
    def on_loss(self) -> bool:
        """Whether the rule scores epochs by a validation loss (smaller is better)."""
        return self.rule in LOSS_RULES

    def score_bigger(self, valid_metric_bigger: bool) -> bool:
        """Whether a bigger checkpoint score is better: the metric's direction, False for a loss."""
        return False if self.on_loss else valid_metric_bigger

    def losses(self, model, pairs: ValidationPairs, *, scores_per_block: int) -> dict[str, float]:
        """``{"valid_loss": ..., "valid_loss_truncated": ...}`` of ``model`` on ``pairs``, the
        truncated one without this rule's ``truncate_ratio`` share of the positives."""
        return validation_losses(
            model, pairs, truncate_ratio=self.truncate_ratio, scores_per_block=scores_per_block
        )


def _truncate_ratio(ratio) -> float:
    """``checkpoint_truncate_ratio``: a number in [0, 1)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(
            f"checkpoint_truncate_ratio must be a number in [0, 1), got {ratio!r}: the share "
            "of validation positives with the largest loss that valid_loss_truncated leaves "
            "out (EvalDenoisingRec uses 0.2), e.g. --checkpoint_truncate_ratio=0.2."
        )
    return float(ratio)


def validation_loss(positive_loss: torch.Tensor, negative_loss: torch.Tensor) -> float:
    """Mean of the per-pair losses of the validation positives and their sampled negatives."""
    count = positive_loss.numel() + negative_loss.numel()
    if count == 0:
        raise ValueError("The validation split has no interactions to compute a loss on.")
    return float((positive_loss.sum() + negative_loss.sum()) / count)


def truncated_validation_loss(
    positive_loss: torch.Tensor, negative_loss: torch.Tensor, *, truncate_ratio: float
) -> float:
    r""":func:`validation_loss` over the :math:`\lfloor (1-r)\,|V^+| \rfloor` smallest positive
    losses and every negative loss (ERM_RE of EvalDenoisingRec with :math:`r` = 0.2)."""
    ratio = _truncate_ratio(truncate_ratio)
    keep = math.floor(positive_loss.numel() * (1.0 - ratio))
    kept = torch.sort(positive_loss.flatten()).values[:keep]
    return validation_loss(kept, negative_loss)


@dataclasses.dataclass(frozen=True)
class ValidationPairs:
    """The validation positives and one sampled negative each, sorted by user."""

    users: torch.Tensor
    items: torch.Tensor
    labels: torch.Tensor  # 1.0 for a validation positive, 0.0 for its sampled negative


def sample_validation_negatives(
    users: torch.Tensor, used: torch.Tensor, n_items: int, *, seed: int
) -> torch.Tensor:
    """One uniform item per entry of ``users`` among items 1..n_items-1 that the user has not
    used; ``used`` holds the sorted keys ``user * n_items + item`` of the used pairs.

    Draws from a ``torch.Generator`` of its own: the global random state is left as it was.
    """
    generator = torch.Generator().manual_seed(int(seed))
    users = users.cpu().long()
    items = torch.zeros_like(users)
    todo = torch.arange(len(users))
    for _ in range(_REJECTION_ROUNDS):
        if len(todo) == 0:
            return items
        draw = torch.randint(1, n_items, (len(todo),), generator=generator)
        free = ~_contains(used, users[todo] * n_items + draw)
        items[todo[free]] = draw[free]
        todo = todo[~free]
    # Users with few free items: draw from the complement itself.
    for index in todo.tolist():
        user = int(users[index])
        taken = used[(used >= user * n_items) & (used < (user + 1) * n_items)] - user * n_items
        free = np.setdiff1d(np.arange(1, n_items), taken.numpy())
        if len(free) == 0:
            raise ValueError(
                f"User {user} has interacted with every item in train and valid: no validation "
                "negative can be drawn; filter such users (user_inter_num_interval)."
            )
        pick = torch.randint(len(free), (1,), generator=generator)
        items[index] = int(free[int(pick)])
    return items


def validation_pairs(valid_data, *, seed: int) -> ValidationPairs:
    """The positives of a RecBole validation loader and one seeded negative per positive.

    A user's used items are those of the loader's sampler, which for the validation phase
    holds the train and valid interactions.
    """
    dataset = valid_data._dataset
    users = dataset.inter_feat[dataset.uid_field].cpu().long()
    items = dataset.inter_feat[dataset.iid_field].cpu().long()
    n_items = dataset.item_num
    used = _used_keys(valid_data._sampler.used_ids, n_items)
    negatives = sample_validation_negatives(users, used, n_items, seed=seed)
    all_users = torch.cat([users, users])
    order = torch.argsort(all_users, stable=True)
    labels = torch.cat([torch.ones(len(users)), torch.zeros(len(users))])
    return ValidationPairs(all_users[order], torch.cat([items, negatives])[order], labels[order])


@torch.no_grad()
def pair_probabilities(
    model, users: torch.Tensor, items: torch.Tensor, *, scores_per_block: int
) -> torch.Tensor:
    """:math:`p_{ui}` of each (user, item) pair, as RecBole scores a full-sort evaluation.

    Users are scored in blocks of ``scores_per_block // n_items`` with ``full_sort_predict``
    (one pass per user, whatever their number of pairs); a model without it falls back to
    ``predict`` on ``scores_per_block`` pairs at a time, as RecBole's evaluation does.
    """
    model.eval()
    device = model.device
    users, items = users.to(device), items.to(device)
    try:
        scores = _full_sort_scores(model, users, items, scores_per_block)
    except NotImplementedError:
        scores = torch.cat(
            [
                model.predict(
                    Interaction(
                        {
                            model.USER_ID: users[start : start + scores_per_block],
                            model.ITEM_ID: items[start : start + scores_per_block],
                        }
                    )
                ).flatten()
                for start in range(0, len(users), scores_per_block)
            ]
        )
    scores = scores.float()
    if model.input_type == InputType.PAIRWISE:
        return torch.sigmoid(scores)
    return scores.clamp(0.0, 1.0)


def validation_losses(
    model, pairs: ValidationPairs, *, truncate_ratio: float, scores_per_block: int
) -> dict[str, float]:
    """``{"valid_loss": ..., "valid_loss_truncated": ...}`` of the model on ``pairs``."""
    probabilities = pair_probabilities(
        model, pairs.users, pairs.items, scores_per_block=scores_per_block
    )
    labels = pairs.labels.to(probabilities.device)
    loss = F.binary_cross_entropy(probabilities, labels, reduction="none")
    positive = labels > 0.5
    return {
        "valid_loss": validation_loss(loss[positive], loss[~positive]),
        "valid_loss_truncated": truncated_validation_loss(
            loss[positive], loss[~positive], truncate_ratio=truncate_ratio
        ),
    }


def _full_sort_scores(model, users, items, scores_per_block: int) -> torch.Tensor:
    n_items = model.n_items
    block = max(scores_per_block // n_items, 1)
    unique, inverse = torch.unique(users, return_inverse=True)
    scores = torch.empty(len(users), device=users.device)
    order = torch.argsort(inverse)
    bounds = torch.searchsorted(
        inverse[order], torch.arange(0, len(unique) + block, block, device=users.device)
    ).tolist()
    for number, start in enumerate(range(0, len(unique), block)):
        rows = model.full_sort_predict(
            Interaction({model.USER_ID: unique[start : start + block]})
        ).view(-1, n_items)
        pick = order[bounds[number] : bounds[number + 1]]
        scores[pick] = rows[inverse[pick] - start, items[pick]].float()
    return scores


def _used_keys(used_ids, n_items: int) -> torch.Tensor:
    """Sorted ``user * n_items + item`` keys of a sampler's ``used_ids`` (one set per user)."""
    keys = [
        np.fromiter(items, dtype=np.int64, count=len(items)) + user * n_items
        for user, items in enumerate(used_ids)
        if items
    ]
    if not keys:
        return torch.zeros(0, dtype=torch.long)
    return torch.sort(torch.from_numpy(np.concatenate(keys))).values


def _contains(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    if len(sorted_keys) == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    position = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[position] == keys


class CheckpointRuleMixin:
    """Trainer mixin: ``checkpoint_rule`` decides which epoch's weights RecBole's ``fit`` keeps.

    Under a loss rule, :meth:`_valid_epoch` returns that validation loss as the score and
    ``valid_metric_bigger`` is False, so RecBole's own early stopping and checkpointing keep the
    smallest; the ranking metrics are still computed and logged, with both losses beside them.
    Mixed into :class:`~recbole_adt.trainer.ADTTrainer` and into the trainers of RecBole's own
    models (:func:`recbole_adt.utils.get_trainer`), so baselines are selected by the same rule.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.checkpoint_rule = parsed(config, CheckpointRule)
        self.valid_metric_bigger = self.checkpoint_rule.score_bigger(self.valid_metric_bigger)
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self._validation_pairs = None  # drawn at the first validation, kept for the run

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if not self.checkpoint_rule.on_loss:
            return valid_score, valid_result
        if self._validation_pairs is None:
            self._validation_pairs = validation_pairs(valid_data, seed=self.config["seed"])
        losses = self.checkpoint_rule.losses(
            self.model, self._validation_pairs, scores_per_block=budget_scores(self.config)
        )
        return losses[self.checkpoint_rule.rule], {**valid_result, **losses}
