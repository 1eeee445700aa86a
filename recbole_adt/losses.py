r"""Base per-interaction losses and the ``adt_loss`` names (Wang et al., "Learning Robust
Recommender from Noisy Implicit Feedback", section 3.3).

A training loss is two independent choices: the *base loss* of each interaction, here, and the
*denoiser* applied to it (:mod:`recbole_adt.denoisers`: none, truncate, reweight, dcf).
``adt_loss`` names the pair (:data:`ADT_LOSSES`, derived from the names each denoiser declares);
:class:`LossChoice` owns the setting.

All functions are pure: no state, no device moves. Pointwise ones take raw *logits* (before the
sigmoid) and binary labels (1 = observed interaction :math:`\bar y_{ui}=1`, 0 = sampled
negative); pairwise ones take the scores of a (user, positive, negative) triple's two items.

- :func:`bce`, :func:`bpr`: the base losses.
- :func:`truncated_bce`, :func:`reweighted_bce`: T-CE and R-CE, :func:`truncated_bpr`,
  :func:`reweighted_bpr`: T-BPR and R-BPR, each a base loss composed with its denoiser.
- :class:`NRWeights`: the settings of NR, the extra-feedback baseline of section 5.3 (Wen et al.,
  ref. [5]): CE on batches composed by shares (:mod:`recbole_adt.data.nr_batches`).

The denoisers' helpers and checks (:func:`largest_loss_positives`, :func:`drop_count`,
:func:`rce_weight`, :func:`check_beta`) live with their denoiser, :func:`check_drop_rate` with the
schedule (:mod:`recbole_adt.schedule`); they are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from recbole_adt.denoisers import ADT_LOSS_NAMES, AdtLoss, find_loss
from recbole_adt.denoisers.reweight import Reweight, check_beta, rce_weight
from recbole_adt.denoisers.truncate import (
    Truncate,
    batch_drop_count,
    drop_count,
    largest_loss_positives,
)
from recbole_adt.schedule import check_drop_rate

Reduction = Literal["mean", "sum", "none"]

# adt_loss -> (base loss, denoiser), from the names the denoisers declare. TCE and RCE on a model
# trained with BPR (RecBole's BPR, LightGCN, ...) denoise its BPR loss: the same as TBPR and RBPR.
ADT_LOSSES: dict[str, tuple[str, str]] = {
    name: (loss.base, loss.denoiser) for name, loss in ADT_LOSS_NAMES.items()
}
LOSS_NAMES = tuple(ADT_LOSSES)

__all__ = [
    "ADT_LOSSES",
    "BPR_GAMMA",
    "LOSS_NAMES",
    "LossChoice",
    "NRWeights",
    "NR_UNLABELLED_CLICKS",
    "bce",
    "bpr",
    "check_beta",
    "check_drop_rate",
    "check_loss_name",
    "drop_count",
    "either",
    "largest_loss_positives",
    "names_on",
    "rce_weight",
    "reweighted_bce",
    "reweighted_bpr",
    "split_loss_name",
    "truncated_bce",
    "truncated_bpr",
]

# RecBole's BPRLoss adds this inside the log (recbole.model.loss.BPRLoss(gamma=1e-10)).
BPR_GAMMA = 1e-10


@dataclass(frozen=True)
class LossChoice:
    """The owner of ``adt_loss``: the chosen name, its base loss and its denoiser."""

    KEYS: ClassVar[tuple[str, ...]] = ("adt_loss",)

    loss: AdtLoss

    @classmethod
    def from_config(cls, config) -> LossChoice:
        return cls(find_loss(config["adt_loss"]))

    @property
    def name(self) -> str:
        return self.loss.name

    @property
    def base(self) -> str:
        return self.loss.base

    @property
    def denoiser(self) -> str:
        return self.loss.denoiser


def check_loss_name(name: str) -> str:
    """Return ``name`` upper-cased if it is a known loss, else raise ``ValueError``."""
    return find_loss(name).name


def split_loss_name(name: str) -> tuple[str, str]:
    """``adt_loss`` -> (base loss, denoiser name), e.g. ``"TBPR"`` -> ``("bpr", "truncate")``."""
    loss = find_loss(name)
    return loss.base, loss.denoiser


def names_on(*bases: str, denoised: bool = False) -> tuple[str, ...]:
    """The ``adt_loss`` names on these base losses (``"bce"``, ``"nr"``, ``"bpr"``), in listing
    order; with ``denoised``, only those with a denoiser."""
    return tuple(
        name
        for name, loss in ADT_LOSS_NAMES.items()
        if loss.base in bases and not (denoised and loss.denoiser == "none")
    )


def either(names, word: str = "or") -> str:
    """``['CE', 'TCE', 'NR']`` -> ``'CE, TCE or NR'`` (``word="and"``: ``'CE, TCE and NR'``)."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


NR_UNLABELLED_CLICKS = ("dissatisfied", "excluded")


def _is_share(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


@dataclass(frozen=True)
class NRWeights:
    r"""The owner of NR's settings (Wen, Yang, Estrin, RecSys 2019; ``adt_loss: NR``).

    NR weighs its three groups of rows by their *shares of each batch*
    (:class:`~recbole_adt.data.nr_batches.NRBatchLoader`):

    - ``pos_ratio`` (``nr_pos_ratio``): satisfied clicks, label 1 (:math:`D^*`);
    - ``neg_ratio`` (``nr_neg_ratio``): dissatisfied clicks, label 0;
    - the rest, :math:`1 - p - n`: sampled non-clicks, label 0.

    Both in [0, 1] with :math:`0 < p + n \le 1`, as the authors' ``wrmf_postclick.py`` checks.
    ``dissatisfied_threshold`` (``nr_dissatisfied_threshold``): with real extra feedback, a click
    whose ``extra_feedback_field`` is below it is dissatisfied; empty: no click is known
    dissatisfied by its value. ``unlabelled_clicks`` (``nr_unlabelled_clicks``): what the clicks
    in neither group are, ``dissatisfied`` (every click labelled, as in Wen et al.'s data and in
    Wang et al.'s NR: "re-weights the false-positive and non-interacted ones") or ``excluded``
    (never a row of a batch; with ``nr_neg_ratio: 0`` both readings give the same batches).
    """

    KEYS: ClassVar[tuple[str, ...]] = (
        "nr_pos_ratio",
        "nr_neg_ratio",
        "nr_dissatisfied_threshold",
        "nr_unlabelled_clicks",
    )

    pos_ratio: float
    neg_ratio: float
    dissatisfied_threshold: float | None = None
    unlabelled_clicks: str = "dissatisfied"

    def __post_init__(self) -> None:
        for name, value in (("nr_pos_ratio", self.pos_ratio), ("nr_neg_ratio", self.neg_ratio)):
            if not _is_share(value):
                raise ValueError(
                    f"{name} must be a number in [0, 1], got {value!r}: it is the share of each "
                    "NR batch taken by "
                    + (
                        "satisfied clicks (label 1)"
                        if name == "nr_pos_ratio"
                        else "dissatisfied clicks (label 0)"
                    )
                    + f", e.g. --{name}="
                    + ("0.4." if name == "nr_pos_ratio" else "0.2.")
                )
        if not 0 < self.pos_ratio + self.neg_ratio <= 1:
            raise ValueError(
                f"nr_pos_ratio + nr_neg_ratio must be in (0, 1], got {self.pos_ratio!r} + "
                f"{self.neg_ratio!r}: the rest of each batch is sampled non-clicks, and a batch "
                "needs some clicks; e.g. --nr_pos_ratio=0.4 --nr_neg_ratio=0.2."
            )
        threshold = self.dissatisfied_threshold
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
        ):
            raise ValueError(
                f"nr_dissatisfied_threshold must be a number or empty (~), got {threshold!r}: "
                "with extra_feedback_field, a click whose value is below it is dissatisfied, "
                "e.g. --nr_dissatisfied_threshold=4 for ratings 1-3."
            )
        if self.unlabelled_clicks not in NR_UNLABELLED_CLICKS:
            raise ValueError(
                f"nr_unlabelled_clicks must be dissatisfied or excluded, got "
                f"{self.unlabelled_clicks!r}: the clicks neither satisfied (D*) nor known "
                "dissatisfied either join the dissatisfied group or never enter a batch."
            )
        object.__setattr__(self, "pos_ratio", float(self.pos_ratio))
        object.__setattr__(self, "neg_ratio", float(self.neg_ratio))
        if threshold is not None:
            object.__setattr__(self, "dissatisfied_threshold", float(threshold))

    @classmethod
    def from_config(cls, config) -> NRWeights:
        return cls(
            config["nr_pos_ratio"],
            config["nr_neg_ratio"],
            config["nr_dissatisfied_threshold"],
            config["nr_unlabelled_clicks"],
        )

    def counts(self, batch_size: int) -> tuple[int, int, int]:
        r"""Rows per batch: (satisfied, dissatisfied, non-clicks), as the authors' sampler:
        :math:`\lfloor Bp \rfloor`, :math:`\lfloor Bn \rfloor` and the rest (a 1e-9 guard
        keeps e.g. 100 * 0.29 at 29)."""
        satisfied = math.floor(batch_size * self.pos_ratio + 1e-9)
        dissatisfied = math.floor(batch_size * self.neg_ratio + 1e-9)
        return satisfied, dissatisfied, batch_size - satisfied - dissatisfied


def _reduce(loss: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"Unknown reduction {reduction!r}; valid choices are mean, sum, none.")


def bce(logits: torch.Tensor, labels: torch.Tensor, *, reduction: Reduction = "mean"):
    r"""Binary cross-entropy on logits, :math:`-y\log\sigma(s) - (1-y)\log(1-\sigma(s))`."""
    loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    return _reduce(loss, reduction)


def bpr(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    *,
    gamma: float = BPR_GAMMA,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""BPR loss of (user, positive, negative) triples, as RecBole's ``BPRLoss``:
    :math:`-\log(\gamma + \sigma(\hat y_{ui} - \hat y_{uj}))`."""
    return _reduce(-torch.log(gamma + torch.sigmoid(pos_scores - neg_scores)), reduction)


def truncated_bce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    drop_rate: float,
    drop_base: str = "batch",
    drop_count: str = "paper",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""T-CE: CE, then :class:`~recbole_adt.denoisers.truncate.Truncate` (Eq. 2-3, Algorithm 1).

    Drops the :math:`\lfloor \epsilon\cdot n \rfloor` positives with the largest CE, :math:`n`
    counting positives and negatives; a negative is never dropped. Dropped entries are removed:
    ``mean`` averages over the kept entries only. ``drop_base="positives"`` counts the positives
    only, ``drop_count="authors"`` drops :math:`n - \lfloor (1-\epsilon) n \rfloor` (see
    :mod:`recbole_adt.denoisers.truncate`).
    """
    loss = bce(logits, labels, reduction="none")
    return _truncated(loss, labels, drop_rate, reduction, base=drop_base, rule=drop_count)


def reweighted_bce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""R-CE: CE, then :class:`~recbole_adt.denoisers.reweight.Reweight` (Eq. 4-6).

    Weight :math:`\hat y^{\beta}` on positives and :math:`(1-\hat y)^{\beta}` on negatives, from
    detached :math:`\hat y = \sigma(\text{logits})`; :math:`\beta = 0` gives plain CE.
    """
    loss = bce(logits, labels, reduction="none")
    return _reweighted(loss, logits, labels, beta, reduction)


def truncated_bpr(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    *,
    drop_rate: float,
    drop_count: str = "paper",
    gamma: float = BPR_GAMMA,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""T-BPR: BPR, then :class:`~recbole_adt.denoisers.truncate.Truncate`.

    Drops the :math:`\lfloor \epsilon\cdot n \rfloor` of the :math:`n` triples with the largest
    BPR loss (``drop_count="authors"``: :math:`n - \lfloor (1-\epsilon) n \rfloor`); ``mean``
    averages over the kept triples only. Every triple stands for its positive, so the two
    ``drop_base`` choices are the same here.
    """
    loss = bpr(pos_scores, neg_scores, gamma=gamma, reduction="none")
    return _truncated(loss, torch.ones_like(loss), drop_rate, reduction, rule=drop_count)


def reweighted_bpr(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    *,
    beta: float,
    gamma: float = BPR_GAMMA,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""R-BPR: BPR, then :class:`~recbole_adt.denoisers.reweight.Reweight`.

    Each triple's loss is weighted by :math:`\sigma(\hat y_{ui} - \hat y_{uj})^{\beta}` from
    detached scores, so hard pairs (the negative scores near or above the positive) are weighted
    *down*; :math:`\beta = 0` gives plain BPR.
    """
    loss = bpr(pos_scores, neg_scores, gamma=gamma, reduction="none")
    margin = pos_scores - neg_scores
    return _reweighted(loss, margin, torch.ones_like(margin), beta, reduction)


def _truncated(
    loss, labels, drop_rate: float, reduction: Reduction, *, base="batch", rule="paper"
) -> torch.Tensor:
    """The :class:`Truncate` denoiser on a whole batch, dropped entries removed from the mean."""
    check_drop_rate(drop_rate)
    loss, labels = loss.flatten(), labels.flatten()
    num_drop = batch_drop_count(drop_rate, labels, base=base, rule=rule)
    dropped = Truncate()(loss, None, labels, num_drop=num_drop).dropped
    return _reduce(loss[~dropped], reduction)


def _reweighted(loss, margin, labels, beta: float, reduction: Reduction) -> torch.Tensor:
    """The :class:`Reweight` denoiser on a whole batch."""
    return _reduce(Reweight(beta=beta)(loss, margin, labels).loss, reduction)
