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
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

EXTRA_FEEDBACK_SETTINGS = (
    "extra_feedback_field",
    "extra_feedback_threshold",
    "extra_feedback_ratio",
    "extra_feedback_seed",
)


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


def check_extra_feedback_settings(settings) -> None:
    """Raise ``ValueError`` on a bad extra-feedback setting (before any data is loaded)."""
    ratio = settings["extra_feedback_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(
            f"extra_feedback_ratio must be a number in (0, 1], the share of training true "
            f"positives revealed as extra feedback; got {ratio!r}."
        )
    threshold = settings["extra_feedback_threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"extra_feedback_threshold must be a number, got {threshold!r}.")
    seed = settings["extra_feedback_seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"extra_feedback_seed must be an integer or empty, got {seed!r}.")
    field = settings["extra_feedback_field"]
    if field is not None and not isinstance(field, str):
        raise ValueError(f"extra_feedback_field must be a field name, got {field!r}.")


def select_extra_feedback(config, train_dataset) -> ExtraFeedback | None:
    """:math:`D^*` of a built training split, or None where neither source is available."""
    inter = train_dataset.inter_feat
    field = config["extra_feedback_field"]
    if field:
        if field not in inter:
            raise ValueError(
                f"extra_feedback_field {field!r} is not a loaded field of dataset "
                f"{train_dataset.dataset_name!r}; loaded: {sorted(inter.columns)}. Declare it "
                f"'{field}:float' in the .inter header, or leave extra_feedback_field empty to "
                "simulate extra feedback."
            )
        row_mask = inter[field].double() >= config["extra_feedback_threshold"]
        source = field
    else:
        fp_field = config["fp_field"]
        if not fp_field or fp_field not in inter:
            return None
        row_mask = _reveal(
            inter[fp_field] < 0.5,
            ratio=config["extra_feedback_ratio"],
            seed=_seed(config),
        )
        source = f"simulated, ratio {config['extra_feedback_ratio']}"
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
        source=source,
    )


def _seed(config) -> int:
    seed = config["extra_feedback_seed"]
    return int(config["seed"] if seed is None else seed)


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
