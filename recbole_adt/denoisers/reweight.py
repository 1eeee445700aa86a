r"""Reweighting: R-CE and R-BPR (Wang et al., "Learning Robust Recommender from Noisy Implicit
Feedback", Eq. 4-6).

Hard interactions (those the model finds unlikely) are likely false positives, so each entry's
loss is weighted by the model's own detached prediction of the entry's label:

.. math::
    \mathcal{L}_{R}(u,i) = \omega(u,i)\,\mathcal{L}(u,i),\qquad
    \omega(u,i) = \begin{cases} \hat y_{ui}^{\beta}, & \bar y_{ui} = 1 \\
    (1-\hat y_{ui})^{\beta}, & \text{otherwise} \end{cases}

with :math:`\hat y = \sigma(\text{margin})` detached, so the weight is not differentiated, and
:math:`\beta \ge 0`; :math:`\beta = 0` gives the unweighted loss.

- R-CE: :math:`\mathcal L` is CE and the margin is the logit :math:`s_{ui}`.
- R-BPR: :math:`\mathcal L` is BPR and each (user, positive, negative) triple counts as a
  positive whose margin is :math:`\hat y_{ui} - \hat y_{uj}`, so
  :math:`\omega(u,i,j) = \sigma(\hat y_{ui} - \hat y_{uj})^{\beta}`. A *hard* pair, one where the
  negative scores close to or above the positive, gets a *smaller* weight: R-BPR weights hard
  pairs **down** (weights fall towards 0 as :math:`\hat y_{ui} - \hat y_{uj} \to -\infty`), as
  R-CE does hard positives, and unlike hard-negative mining, which weights them up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from recbole_adt.denoisers.base import AdtLoss, Denoised, Denoiser
from recbole_adt.settings import parsed


def check_beta(beta: float) -> float:
    r"""Validate the R-CE exponent :math:`\beta`: it must be a number >= 0."""
    if (
        isinstance(beta, bool)
        or not isinstance(beta, (int, float))
        or not (math.isfinite(beta) and beta >= 0)
    ):
        raise ValueError(
            f"beta must be a finite number >= 0, got {beta!r}: it is R-CE's weight exponent, 0 "
            "being plain CE (the paper searches 0.05 to 1.0), e.g. --beta=0.25."
        )
    return float(beta)


@dataclass(frozen=True)
class ReweightSettings:
    """The owner of ``beta``, the exponent of the weights (Eq. 6)."""

    KEYS: ClassVar[tuple[str, ...]] = ("beta",)

    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", check_beta(self.beta))

    @classmethod
    def from_config(cls, config) -> ReweightSettings:
        return cls(beta=config["beta"])


def rce_weight(logits: torch.Tensor, labels: torch.Tensor, *, beta: float) -> torch.Tensor:
    r"""The weight :math:`\omega` of Eq. (6), from detached :math:`\sigma(\text{logits})`.

    For a BPR triple pass the score difference :math:`\hat y_{ui} - \hat y_{uj}` as ``logits``
    and a label of 1.
    """
    prob = torch.sigmoid(logits.detach())
    prob_of_label = torch.where(labels > 0.5, prob, 1.0 - prob)
    return prob_of_label.pow(beta)


class Reweight(Denoiser):
    """Weight each entry by :func:`rce_weight` with exponent ``beta``."""

    name = "reweight"
    weights = True
    adt_losses = (AdtLoss("RCE", "bce", "R-CE"), AdtLoss("RBPR", "bpr", "R-BPR"))
    order = 2
    settings = ReweightSettings
    # The paper's grid (section 5).
    default_grid = {"beta": (0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0)}

    def __init__(self, *, beta: float):
        self.beta = ReweightSettings(beta).beta

    @classmethod
    def from_config(cls, config) -> Reweight:
        return cls(beta=parsed(config, ReweightSettings).beta)

    def __call__(self, loss, margin, labels, *, num_drop=0) -> Denoised:
        weight = rce_weight(margin, labels, beta=self.beta)
        return Denoised(loss * weight, None, weight)

    def __repr__(self) -> str:
        return f"Reweight(beta={self.beta})"
