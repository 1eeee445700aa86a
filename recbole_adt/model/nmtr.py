r"""NMTR: multi-task learning over cascaded behaviours, the extra-feedback baseline of section 5.3.

Reference: Chen Gao et al. "Learning to Recommend with Multiple Cascading Behaviors." TKDE 2019
(arXiv 1809.08161; ICDE 2019 short version "Neural Multi-task Recommendation from Multi-behavior
Data"), ref. [13] of Wang et al., whose Table 4 reports GMF+NMTR. NMTR shares the user and item
embeddings across behaviours, gives each behaviour :math:`r` an output layer of its own, lets the
prediction of a behaviour build on the one before it (a user must view before buying), and trains
one task per behaviour jointly, as a weighted sum of the tasks' losses.

Here there are two cascaded behaviours: :math:`r=1` implicit feedback (every training interaction,
false positives included) and :math:`r=2` reliable feedback (:math:`D^*`). With GMF as the
interaction function (shared :math:`\mathbf p_u, \mathbf q_i`; an output vector
:math:`\mathbf h_r` and bias :math:`b_r` per behaviour):

.. math::
    z_{ui}^{(1)} = \mathbf h_1^\top(\mathbf p_u\odot\mathbf q_i) + b_1,\qquad
    z_{ui}^{(2)} = z_{ui}^{(1)} + \mathbf h_2^\top(\mathbf p_u\odot\mathbf q_i) + b_2,\qquad
    \hat y_{ui}^{(r)} = \sigma(z_{ui}^{(r)})

.. math::
    \mathcal L = \lambda_1\,\mathcal L^{(1)} + \lambda_2\,\mathcal L^{(2)}

On a training batch of RecBole's (positives | sampled negatives), a positive row is positive for
behaviour 1, and positive for behaviour 2 only if it is in :math:`D^*` (an interaction without
reliable feedback is a negative of the reliable task, as a viewed but unbought item is of NMTR's
purchase task); sampled negatives are negatives of both. :math:`\mathcal L^{(1)}` follows
``adt_loss`` (CE, T-CE or R-CE, through :meth:`DenoisingLossMixin.pointwise_loss`), so that ADT can
denoise the implicit task; :math:`\mathcal L^{(2)}` is CE, averaged over the batch. Ranking uses
the final behaviour, :math:`\hat y^{(2)}`.

The additive cascade in the logits is our reading of NMTR's cascaded predictions; neither the
paper's equations nor its code could be retrieved to check it against. Choices left open, taken
here:

- the weights :math:`\lambda` (``nmtr_loss_weights``) default to equal, [0.5, 0.5]; NMTR tunes
  them per dataset with :math:`\sum_r\lambda_r = 1`, which is not enforced here;
- both tasks share one batch and one sampler (one uniform negative per training interaction,
  RecBole's default) instead of a sampler per behaviour;
- initialisation follows our GMF (NCF's): normal(0, 0.01) embeddings, Kaiming-uniform output
  vectors, zero biases.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
import torch.nn as nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_adt.losses import bce, check_loss_name
from recbole_adt.model.denoising import DenoisingLossMixin
from recbole_adt.model.extra_feedback import ExtraFeedbackMixin
from recbole_adt.settings import parsed

BEHAVIOURS = ("implicit", "reliable")  # in cascade order


@dataclasses.dataclass(frozen=True)
class NMTRSettings:
    r"""The parsed ``nmtr_loss_weights``: :math:`\lambda_r` of each behaviour's task, in cascade
    order; empty (~) gives every task the same weight."""

    KEYS: ClassVar[tuple[str, ...]] = ("nmtr_loss_weights",)

    loss_weights: tuple[float, ...]

    @classmethod
    def from_config(cls, config) -> NMTRSettings:
        weights = config["nmtr_loss_weights"]
        if weights is None:
            return cls((1.0 / len(BEHAVIOURS),) * len(BEHAVIOURS))
        if (
            not isinstance(weights, (list, tuple))
            or len(weights) != len(BEHAVIOURS)
            or any(
                isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w)
                for w in weights
            )
            or min(weights) < 0
            or max(weights) == 0
        ):
            raise ValueError(
                f"nmtr_loss_weights must list {len(BEHAVIOURS)} finite numbers >= 0, not all "
                f"zero (the weights of the {' and '.join(BEHAVIOURS)} tasks, e.g. "
                f"--nmtr_loss_weights=[0.5,0.5]); got {weights!r}."
            )
        return cls(tuple(float(w) for w in weights))


class NMTR(ExtraFeedbackMixin, DenoisingLossMixin, GeneralRecommender):
    """GMF+NMTR: implicit then reliable feedback, cascaded, trained as two weighted tasks."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if check_loss_name(config["adt_loss"]) == "NR":
            raise ValueError(
                "NMTR already uses extra feedback as its reliable task; adt_loss NR is a loss "
                "for single-task models (GMF, NeuMF). For NMTR use adt_loss CE, TCE or RCE "
                "(applied to the implicit task)."
            )
        self.loss_weights = parsed(config, NMTRSettings).loss_weights
        self.embedding_size = config["embedding_size"]
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        # Row r of the weight is h_r, entry r of the bias is b_r: one output layer per behaviour.
        self.predict_layers = nn.Linear(self.embedding_size, len(BEHAVIOURS))
        nn.init.normal_(self.user_embedding.weight, std=0.01)
        nn.init.normal_(self.item_embedding.weight, std=0.01)
        # Each h_r as GMF's h (fan-in = embedding_size for both rows).
        nn.init.kaiming_uniform_(self.predict_layers.weight, a=1, nonlinearity="sigmoid")
        nn.init.zeros_(self.predict_layers.bias)
        self._init_denoising(config, dataset)
        self.extra_feedback = self._require_extra_feedback(dataset, "NMTR")

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Cascaded logits z^(1), z^(2) of aligned (user, item) pairs: shape (..., 2)."""
        product = self.user_embedding(user) * self.item_embedding(item)
        return self.predict_layers(product).cumsum(-1)

    def calculate_loss(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        logits = self.forward(users, items)
        implicit_loss = self.pointwise_loss(logits[..., 0], interaction)
        reliable = (interaction[self.LABEL] > 0.5) & self.extra_feedback.contains(users, items)
        reliable_loss = bce(logits[..., 1], reliable)
        implicit_weight, reliable_weight = self.loss_weights
        return implicit_weight * implicit_loss + reliable_weight * reliable_loss

    def predict(self, interaction):
        logits = self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])
        return torch.sigmoid(logits[..., -1])

    def full_sort_predict(self, interaction):
        # z^(2) = (h_1 + h_2)^T (p_u * q_i) + b_1 + b_2: one matrix product scores every item.
        user = self.user_embedding(interaction[self.USER_ID])
        weighted = user * self.predict_layers.weight.sum(0)
        bias = self.predict_layers.bias.sum()
        # In place: evaluation holds one users x items block (see FullSortEvalMixin).
        logits = torch.addmm(bias, weighted, self.item_embedding.weight.T)
        return logits.sigmoid_().view(-1)

    def user_representations(self) -> torch.Tensor:
        """The shared user factors p_u: NMTR's user space."""
        return self.user_embedding.weight
