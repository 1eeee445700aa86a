r"""Adaptive Denoising Training losses (Wang et al., "Learning Robust Recommender from Noisy
Implicit Feedback", section 3.3).

All functions take raw *logits* (before the sigmoid) and binary labels (1 = observed interaction
:math:`\bar y_{ui}=1`, 0 = sampled negative) and are pure: no state, no device moves.

- :func:`truncated_bce`: T-CE, Eq. (2)-(3) and Algorithm 1.
- :func:`reweighted_bce`: R-CE, Eq. (4)-(6).
- :func:`largest_loss_positives`: the drop mask used by T-CE, exposed for diagnostics.
- :func:`nr_weighted_bce`: NR, the extra-feedback baseline of section 5.3 (Wen et al., ref. [5]).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum", "none"]
LOSS_NAMES = ("CE", "TCE", "RCE", "NR")


def check_loss_name(name: str) -> str:
    """Return ``name`` upper-cased if it is a known loss, else raise ``ValueError``."""
    normalized = str(name).upper().replace("-", "")
    if normalized not in LOSS_NAMES:
        raise ValueError(f"Unknown adt_loss {name!r}; valid choices are {', '.join(LOSS_NAMES)}.")
    return normalized


def check_drop_rate(drop_rate: float) -> float:
    """Validate :math:`\\epsilon_{max}` (or any drop rate): it must lie in [0, 1)."""
    if not (isinstance(drop_rate, (int, float)) and 0.0 <= drop_rate < 1.0):
        raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}.")
    return float(drop_rate)


def check_beta(beta: float) -> float:
    """Validate the R-CE exponent :math:`\\beta`: it must be a number >= 0."""
    if not (isinstance(beta, (int, float)) and beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}.")
    return float(beta)


def check_nr_weights(click_weight: float, negative_weight: float) -> tuple[float, float]:
    """Validate NR's two weights (``nr_click_weight``, ``nr_negative_weight``): finite, >= 0."""
    for name, value in (("nr_click_weight", click_weight), ("nr_negative_weight", negative_weight)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and value >= 0)
        ):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(click_weight), float(negative_weight)


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


def largest_loss_positives(
    loss: torch.Tensor, labels: torch.Tensor, num_drop: int | torch.Tensor
) -> torch.Tensor:
    r"""Boolean mask of the ``num_drop`` positives with the largest loss, along the last dim.

    Negatives (``labels == 0``) are never selected, and at most the number of positives in a row
    is dropped. ``num_drop`` is an int, or a tensor broadcastable to ``loss.shape[:-1]`` (one
    count per row, as CDAE needs).
    """
    is_positive = labels > 0.5
    num_drop = torch.as_tensor(num_drop, device=loss.device)
    num_drop = torch.minimum(num_drop, is_positive.sum(-1)).expand(loss.shape[:-1])
    dropped = torch.zeros_like(is_positive)
    most = int(num_drop.max()) if num_drop.numel() else 0
    if most == 0:
        return dropped
    ranked = loss.detach().masked_fill(~is_positive, -math.inf)
    top_index = ranked.topk(most, dim=-1, sorted=True).indices
    rank = torch.arange(most, device=loss.device)
    dropped.scatter_(-1, top_index, rank < num_drop.unsqueeze(-1))
    return dropped


def truncated_bce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    drop_rate: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Truncated cross-entropy (T-CE), paper Eq. (2) with the drop-rate form of Algorithm 1.

    .. math::
        \mathcal{L}_{T\text{-}CE}(u,i) =
        \begin{cases} 0, & \mathcal{L}_{CE}(u,i) > \tau(T) \wedge \bar y_{ui} = 1 \\
        \mathcal{L}_{CE}(u,i), & \text{otherwise} \end{cases}

    where :math:`\tau(T)` is set so that exactly :math:`\lfloor \epsilon(T)\cdot|\bar D_T| \rfloor`
    positives are dropped, :math:`|\bar D_T|` being the number of elements (positives and
    negatives). Dropped entries are removed: ``mean`` averages over the kept entries only.
    """
    check_drop_rate(drop_rate)
    loss = bce(logits, labels, reduction="none").flatten()
    dropped = largest_loss_positives(loss, labels.flatten(), drop_count(drop_rate, loss.numel()))
    return _reduce(loss[~dropped], reduction)


def drop_count(drop_rate: float, size: int | torch.Tensor) -> int | torch.Tensor:
    r""":math:`\lfloor \epsilon \cdot n \rfloor`, robust to float error (0.1 * 30 is 3)."""
    if isinstance(size, torch.Tensor):
        return torch.floor(drop_rate * size + 1e-9).long()
    return math.floor(drop_rate * size + 1e-9)


def reweighted_bce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Reweighted cross-entropy (R-CE), paper Eq. (4)-(6).

    .. math::
        \mathcal{L}_{R\text{-}CE}(u,i) = \omega(u,i)\,\mathcal{L}_{CE}(u,i),\qquad
        \omega(u,i) = \begin{cases} \hat y_{ui}^{\beta}, & \bar y_{ui} = 1 \\
        (1-\hat y_{ui})^{\beta}, & \text{otherwise} \end{cases}

    with :math:`\hat y = \sigma(\text{logits})` detached, so the weight is not differentiated.
    :math:`\beta = 0` gives plain CE.
    """
    check_beta(beta)
    return _reduce(
        bce(logits, labels, reduction="none") * rce_weight(logits, labels, beta=beta), reduction
    )


def rce_weight(logits: torch.Tensor, labels: torch.Tensor, *, beta: float) -> torch.Tensor:
    r"""The R-CE weight :math:`\omega(u,i)` of Eq. (6), from detached predictions."""
    prob = torch.sigmoid(logits.detach())
    prob_of_label = torch.where(labels > 0.5, prob, 1.0 - prob)
    return prob_of_label.pow(beta)


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
    click_weight, negative_weight = check_nr_weights(click_weight, negative_weight)
    clicked = labels > 0.5
    target = clicked & reliable.bool()
    weight = torch.full_like(logits, negative_weight)
    weight = weight.masked_fill(clicked, click_weight).masked_fill(target, 1.0)
    return _reduce(bce(logits, target, reduction="none") * weight, reduction)
