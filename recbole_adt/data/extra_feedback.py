r"""Sparse extra feedback :math:`D^*`: training interactions known to be true positives.

Paper section 3.4 and 5.3: extra feedback (a rating, a dwell time) marks a small, reliable part of
the true-positive interactions. It feeds warm-up and finetuning (Eq. 7), colliding inference
(Eq. 8) and the NMTR and NR baselines. :math:`D^*` is drawn from the *training* split only;
validation and test never reach it.

Two sources, chosen by settings:

- *real*: ``extra_feedback_field`` names a float field; a training interaction with
  ``value >= extra_feedback_threshold`` is in :math:`D^*` (a 0/1 flag with the default threshold
  0.5, or ``rating`` with threshold 5 for five-star ratings);
- *simulated* (default): a seeded share ``extra_feedback_ratio`` of the training true positives
  (``fp_field == 0``) is revealed, exactly :math:`\mathrm{round}(\rho\cdot|D_{TP}|)` of them,
  chosen by ``extra_feedback_seed`` (default: ``seed``) with a generator of its own, so that the
  global random state, and so every other part of a run, is unchanged.

The user ratio :math:`|D^*_u| / |D_u|` (``D_u``: the user's training interactions, false positives
included) decides which users colliding inference treats as sparse, and the evaluation groups of
Table 5.

A run builds :math:`D^*` only when something uses it (:func:`uses_extra_feedback`): a warmup or
finetune phase, colliding inference, NMTR or ``adt_loss`` NR. A plain run neither builds, logs
nor tests by it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from recbole_adt.inference.colliding import CollidingSettings
from recbole_adt.losses import LossChoice
from recbole_adt.phases import PhaseSettings
from recbole_adt.settings import parsed


@dataclasses.dataclass(frozen=True)
class ExtraFeedback:
    """:math:`D^*` over a training split, with fast membership tests and per-user counts."""

    row_mask: torch.Tensor  # bool, one per training interaction: in D*
    keys: torch.Tensor  # sorted int64 user * n_items + item of the D* interactions
    n_items: int
    extra_count: torch.Tensor  # |D*_u| per user id (index 0: padding)
    implicit_count: torch.Tensor  # |D_u| per user id
    source: str  # "simulated" or the field name

    def __len__(self) -> int:
        return int(self.row_mask.sum())

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Bool tensor: is each (user, item) pair in :math:`D^*`?"""
        keys = self.keys.to(users.device)
        query = users.long() * self.n_items + items.long()
        if len(keys) == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        position = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
        return keys[position] == query

    @property
    def user_ratio(self) -> torch.Tensor:
        r""":math:`|D^*_u| / |D_u|` per user id; 0 for users without training interactions."""
        return self.extra_count.double() / self.implicit_count.clamp(min=1).double()

    def describe(self) -> str:
        ratio = self.user_ratio[self.implicit_count > 0]
        quantiles = torch.quantile(ratio, torch.tensor([0.1, 0.5, 0.9], dtype=ratio.dtype))
        groups = ", ".join(f"< {t}: {int((ratio < t).sum())}" for t in (0.1, 0.2, 0.3))
        return (
            f"{len(self)} of {len(self.row_mask)} training interactions ({self.source}); "
            f"user ratio |D*_u|/|D_u| 10/50/90%: "
            + "/".join(f"{q:.3f}" for q in quantiles.tolist())
            + f"; users with ratio {groups} of {len(ratio)}"
        )


@dataclasses.dataclass(frozen=True)
class ExtraFeedbackSettings:
    """The parsed extra-feedback settings: where :math:`D^*` comes from, and its test groups.

    ``field`` (``extra_feedback_field``) and ``threshold`` choose real :math:`D^*`; without a
    field, ``ratio`` of the training true positives is revealed by ``seed``
    (``extra_feedback_seed``, or the run's ``seed`` when empty). ``ratio_groups`` are the
    user-ratio thresholds of the Table 5 test groups.
    """

    KEYS: ClassVar[tuple[str, ...]] = (
        "extra_feedback_field",
        "extra_feedback_threshold",
        "extra_feedback_ratio",
        "extra_feedback_seed",
        "ratio_groups",
    )

    field: str | None
    threshold: float
    ratio: float
    seed: int
    ratio_groups: tuple[float, ...]

    @classmethod
    def from_config(cls, config) -> ExtraFeedbackSettings:
        ratio = config["extra_feedback_ratio"]
        if not _is_number(ratio) or not 0 < ratio <= 1:
            raise ValueError(
                "extra_feedback_ratio must be a number in (0, 1], the share of training true "
                f"positives revealed as simulated extra feedback; got {ratio!r}. E.g. "
                "--extra_feedback_ratio=0.2."
            )
        threshold = config["extra_feedback_threshold"]
        if not _is_number(threshold) or not math.isfinite(threshold):
            raise ValueError(
                f"extra_feedback_threshold must be a number, got {threshold!r}: with "
                "extra_feedback_field, a value >= it marks reliable feedback (0.5 for a 0/1 "
                "flag, 5 for five-star ratings)."
            )
        seed = config["extra_feedback_seed"]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(
                f"extra_feedback_seed must be an integer or empty (~: the run's seed), got "
                f"{seed!r}."
            )
        field = config["extra_feedback_field"] or None
        if field is not None and not isinstance(field, str):
            raise ValueError(
                f"extra_feedback_field must be a field name, or empty (~) to simulate extra "
                f"feedback, got {field!r}."
            )
        return cls(
            field=field,
            threshold=float(threshold),
            ratio=float(ratio),
            seed=int(config["seed"] if seed is None else seed),
            ratio_groups=_ratio_groups(config["ratio_groups"]),
        )

    @property
    def source(self) -> str:
        return self.field or f"simulated, ratio {self.ratio:g}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ratio_groups(value) -> tuple[float, ...]:
    values = [] if value is None else value if isinstance(value, (list, tuple)) else [value]
    if not all(_is_number(v) and math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"ratio_groups must be a list of numbers > 0, or empty, got {value!r}: the test "
            "also scores the users whose ratio |D*_u|/|D_u| is below each (paper Table 5), "
            "e.g. --ratio_groups=[0.1,0.2,0.3]."
        )
    return tuple(float(v) for v in values)


# The model and the base loss that train on D* themselves (model/nmtr.py; data/nr_batches.py).
_MODELS_ON_EXTRA_FEEDBACK = ("NMTR",)
_BASE_LOSSES_ON_EXTRA_FEEDBACK = ("nr",)


def extra_feedback_users(config) -> tuple[str, ...]:
    """What in a run trains or infers on :math:`D^*`: the warmup and finetune phases,
    colliding inference, the NMTR model and ``adt_loss`` NR. Empty for a run without D*."""
    users = [
        f"the {phase.name} phase"
        for phase in parsed(config, PhaseSettings).phases
        if phase.on_extra_feedback
    ]
    if parsed(config, CollidingSettings).enabled:
        users.append("colliding inference")
    if config["model"] in _MODELS_ON_EXTRA_FEEDBACK:
        users.append(f"model {config['model']}")
    loss = parsed(config, LossChoice)
    if loss.base in _BASE_LOSSES_ON_EXTRA_FEEDBACK:
        users.append(f"adt_loss {loss.name}")
    return tuple(dict.fromkeys(users))


def missing_extra_feedback(needed_by: str, dataset_name: str, extra) -> str:
    """The message for a run whose ``needed_by`` (e.g. "the warmup phase") has no or empty D*."""
    return (
        f"{needed_by} need{'' if ' and ' in needed_by else 's'} extra feedback D*, which "
        f"dataset {dataset_name!r} does not have"
        + ("" if extra is None else " (D* is empty)")
        + ": set fp_field for simulated extra feedback (see extra_feedback_ratio) or "
        "extra_feedback_field for real extra feedback, or leave out what uses D*."
    )


def uses_extra_feedback(config) -> bool:
    """Whether a run uses :math:`D^*`; only then is it built, logged and tested by ratio group."""
    return bool(extra_feedback_users(config))


def select_extra_feedback(
    settings: ExtraFeedbackSettings, train_dataset, *, fp_field: str | None
) -> ExtraFeedback | None:
    """:math:`D^*` of a built training split, or None where neither source is available."""
    inter = train_dataset.inter_feat
    if settings.field:
        if settings.field not in inter:
            raise ValueError(
                f"extra_feedback_field {settings.field!r} is not a loaded field of dataset "
                f"{train_dataset.dataset_name!r}; loaded: {sorted(inter.columns)}. Declare it "
                f"'{settings.field}:float' in the .inter header, or leave extra_feedback_field "
                "empty to simulate extra feedback."
            )
        row_mask = inter[settings.field].double() >= settings.threshold
    else:
        if not fp_field or fp_field not in inter:
            return None
        row_mask = _reveal(inter[fp_field] < 0.5, ratio=settings.ratio, seed=settings.seed)
    users = inter[train_dataset.uid_field].long()
    items = inter[train_dataset.iid_field].long()
    n_users, n_items = train_dataset.user_num, train_dataset.item_num
    keys = torch.unique(users[row_mask] * n_items + items[row_mask])  # sorted
    return ExtraFeedback(
        row_mask=row_mask,
        keys=keys,
        n_items=n_items,
        extra_count=torch.bincount(users[row_mask], minlength=n_users),
        implicit_count=torch.bincount(users, minlength=n_users),
        source=settings.source,
    )


def _reveal(candidates: torch.Tensor, *, ratio: float, seed: int) -> torch.Tensor:
    """A seeded choice of exactly round(ratio * #candidates) of the True entries."""
    where = torch.nonzero(candidates).flatten().numpy()
    count = math.floor(ratio * len(where) + 0.5)
    chosen = np.random.default_rng(seed).choice(where, size=count, replace=False)
    mask = torch.zeros_like(candidates)
    mask[torch.from_numpy(chosen)] = True
    return mask


def extra_feedback_dataset(train_dataset, extra: ExtraFeedback):
    """The training split restricted to :math:`D^*` (same fields, ids and item space)."""
    return train_dataset.copy(train_dataset.inter_feat[extra.row_mask])
