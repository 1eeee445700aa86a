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
- :func:`nr_weighted_bce`: NR, the extra-feedback baseline of section 5.3 (Wen et al., ref. [5]),
  whose two weights :class:`NRWeights` owns.

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
    "bce",
    "bpr",
    "check_beta",
    "check_drop_rate",
    "check_loss_name",
    "check_nr_weights",
    "drop_count",
    "either",
    "largest_loss_positives",
    "names_on",
    "nr_weighted_bce",
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


def check_nr_weights(click_weight: float, negative_weight: float) -> tuple[float, float]:
    """Validate NR's two weights (``nr_click_weight``, ``nr_negative_weight``): finite, >= 0."""
    for name, value in (("nr_click_weight", click_weight), ("nr_negative_weight", negative_weight)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and value >= 0)
        ):
            raise ValueError(
                f"{name} must be a finite number >= 0, got {value!r}: NR weighs "
                + ("clicks outside D*" if name == "nr_click_weight" else "sampled items")
                + f" as negatives by it, e.g. --{name}="
                + ("0.5." if name == "nr_click_weight" else "1.0.")
            )
    return float(click_weight), float(negative_weight)


@dataclass(frozen=True)
class NRWeights:
    """The owner of NR's weights: :math:`w_c` (``nr_click_weight``), :math:`w_n`
    (``nr_negative_weight``), finite and >= 0 (see :func:`nr_weighted_bce`)."""

    KEYS: ClassVar[tuple[str, ...]] = ("nr_click_weight", "nr_negative_weight")

    click_weight: float
    negative_weight: float

    def __post_init__(self) -> None:
        click, negative = check_nr_weights(self.click_weight, self.negative_weight)
        object.__setattr__(self, "click_weight", click)
        object.__setattr__(self, "negative_weight", negative)

    @classmethod
    def from_config(cls, config) -> NRWeights:
        return cls(config["nr_click_weight"], config["nr_negative_weight"])

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        reliable: torch.Tensor,
        *,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        """:func:`nr_weighted_bce` with these weights (checked when they were made)."""
        clicked = labels > 0.5
        target = clicked & reliable.bool()
        weight = torch.full_like(logits, self.negative_weight)
        weight = weight.masked_fill(clicked, self.click_weight).masked_fill(target, 1.0)
        return _reduce(bce(logits, target, reduction="none") * weight, reduction)


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


def nr_weighted_bce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    reliable: torch.Tensor,
    *,
    click_weight: float,
    negative_weight: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""NR: CE with the extra feedback :math:`D^*` as the only positives (Wen et al., RecSys 2019).

    H. Wen, L. Yang, D. Estrin, "Leveraging Post-click Feedback for Content Recommendations",
    RecSys 2019 (ref. [5] of Wang et al.; "Negative feedback Reweighting" in its section 5.3).
    Interactions confirmed by extra feedback are positives; the other clicks (interactions
    outside :math:`D^*`) and the sampled non-interacted items are negatives, each group with its
    own weight:

    .. math::
        \mathcal{L}_{NR} = \frac{1}{N}\Big[\sum_{(u,i)\in D^*} -\log \sigma(s_{ui})
        + w_c \sum_{(u,i)\in \bar D\setminus D^*} -\log(1-\sigma(s_{ui}))
        + w_n \sum_{(u,j)\notin \bar D} -\log(1-\sigma(s_{uj}))\Big]

    with :math:`w_c` = ``click_weight``, :math:`w_n` = ``negative_weight`` and :math:`N` the
    number of entries. Choices the paper leaves open, taken here:

    - ``mean`` divides by the number of entries :math:`N`, not by the sum of the weights, so the
      weights scale each group against the :math:`D^*` positives (weight 1), and NR with
      :math:`w_c = w_n = 1` is exactly CE on the relabelled targets;
    - ``reliable`` marks :math:`D^*`; it counts only where ``labels`` is 1 (a :math:`D^*` entry
      is an interaction by definition), so a reliable flag on a sampled negative is ignored.

    ``labels`` is 1 for an interaction (:math:`\bar y_{ui}=1`) and 0 for a non-interacted item.
    Any shape works: a batch of rows or a user x item matrix.
    """
    weights = NRWeights(click_weight, negative_weight)
    return weights.loss(logits, labels, reliable, reduction=reduction)
