r"""NMTR: multi-task learning over cascaded behaviours, the extra-feedback baseline of section 5.3.

Reference: Chen Gao et al. "Neural Multi-task Recommendation from Multi-behavior Data", ICDE 2019,
and its long version "Learning to Recommend with Multiple Cascading Behaviors", TKDE 2019 (arXiv
1809.08161); ref. [13] of Wang et al., whose Table 4 reports GMF+NMTR.

**Taken from the paper** (its abstract and published summaries; the full text and code could
not be retrieved here, so the equations below are written from them, not copied):

- shared user and item embeddings, one interaction function :math:`f_r` per behaviour (here
  GMF's, :math:`f_r(u, i) = \mathbf h_r^\top(\mathbf p_u\odot\mathbf q_i) + b_r`);
- cascaded predictions, behaviours ordered from the weakest to the target one (a user must
  click before buying): behaviour :math:`r` builds on the pre-activation of :math:`r-1`,

  .. math::
      z_{ui}^{(1)} = f_1(u, i),\qquad z_{ui}^{(r)} = z_{ui}^{(r-1)} + f_r(u, i),\qquad
      \hat y_{ui}^{(r)} = \sigma(z_{ui}^{(r)});

- one task per behaviour, each on its own positives (the user's interactions *of that
  behaviour*) and negatives sampled from the items the user has no interaction of that
  behaviour with, trained jointly as :math:`\mathcal L = \sum_r \lambda_r\mathcal L^{(r)}`,
  with the weights :math:`\lambda_r` tuned per dataset (``nmtr_loss_weights``);
- the target behaviour ranks at test: :math:`\hat y^{(R)}`.

**Our mapping to denoising** (two behaviours): :math:`r=1` implicit feedback (every training
interaction, false positives included), :math:`r=2` reliable feedback :math:`D^*`.

- Implicit task: RecBole's training batch as it is, positives against its sampled negatives
  (``train_neg_sample_args``: items the user never interacted with); its loss follows
  ``adt_loss`` (CE, T-CE or R-CE, through :meth:`DenoisingLossMixin.pointwise_loss`), so that ADT
  can denoise it.
- Reliable task: the batch's positive rows that are in :math:`D^*` (each exactly once, as the
  batch holds it), each with ``sample_num`` negatives (RecBole's per-positive count, 1 by
  default) drawn uniformly from the items :math:`j \ge 1` with :math:`(u, j)\notin D^*`; its
  loss is CE, the mean over its positives and negatives; a batch without a :math:`D^*` row adds
  nothing to it.
- *Our reading of "without that behaviour"*: only the user's :math:`D^*` items are excluded, so
  the user's *other* clicks can be drawn as reliable negatives, at the rate uniform sampling
  gives them (their share of the catalogue), never all of them at full weight. That is NMTR's
  purchase task, whose negatives are the items the user did not buy, a viewed but unbought
  item included: a click outside :math:`D^*` is an interaction without the reliable behaviour.
  Excluding all clicks instead would make the reliable task "D* against non-clicks", a
  different method. With *simulated* D* most clicks outside it are true positives, so this
  reading costs accuracy there, the more the larger :math:`\lambda_2`; with real D* (five
  stars) a click rated below five is a known non-reliable one, as an unbought view is in the
  paper.
- The weights default to equal, [0.5, 0.5]; the paper tunes them with :math:`\sum_r\lambda_r=1`,
  which is not enforced here. Tune them on validation: ``grid --models NMTR --losses ce``
  searches ``NMTR.default_grid`` (the weights summing to 1, from equal to 0.95/0.05), since
  equal weights cost accuracy with simulated D* (see the second reading above).
- Sampling: a ``torch.Generator`` on the model's device, seeded with the run's ``seed`` (so
  the global random state and every other model are untouched), uniform draws with
  rejection against :math:`D^*`'s sorted keys, vectorised (the rejected rows are redrawn
  together; :math:`D^*` is sparse, so a round or two). The generator is not checkpointed: a
  resumed run draws other negatives.
- Initialisation follows our GMF (NCF's): normal(0, 0.01) embeddings, Kaiming-uniform output
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


def sample_outside(
    users: torch.Tensor,
    keys: torch.Tensor,
    n_items: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """One item per user, uniform over ``1 .. n_items - 1`` minus the user's pairs in ``keys``.

    ``keys`` are sorted ``user * n_items + item`` (:attr:`ExtraFeedback.keys`). Every draw is
    vectorised: the rejected rows are redrawn together until none is left, which ends as long
    as each user leaves an item free (checked by :class:`NMTR`).
    """
    items = torch.empty_like(users)
    todo = torch.arange(len(users), device=users.device)
    while len(todo):
        draws = torch.randint(1, n_items, (len(todo),), generator=generator, device=users.device)
        items[todo] = draws
        taken = _in_sorted(users[todo] * n_items + draws, keys)
        todo = todo[taken]
    return items


def _in_sorted(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Bool tensor: is each query value in the sorted ``keys``?"""
    if len(keys) == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    position = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
    return keys[position] == query


class NMTR(ExtraFeedbackMixin, DenoisingLossMixin, GeneralRecommender):
    """GMF+NMTR: implicit then reliable feedback, cascaded, trained as two weighted tasks."""

    input_type = InputType.POINTWISE
    # The experiments' default grid (``grid --models NMTR``): λ_implicit + λ_reliable = 1, as
    # the paper constrains them; equal weights first, then the implicit task weighted up.
    default_grid: ClassVar[dict[str, tuple]] = {
        "nmtr_loss_weights": ((0.5, 0.5), (0.7, 0.3), (0.8, 0.2), (0.9, 0.1), (0.95, 0.05))
    }

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
        if int(self.extra_feedback.extra_count.max()) >= self.n_items - 1:
            raise ValueError(
                "NMTR samples the reliable task's negatives from the items outside each user's "
                "extra feedback D*, but a user has every item in D*: lower "
                "extra_feedback_ratio or raise extra_feedback_threshold."
            )
        sampling = config["train_neg_sample_args"] or {}
        self.reliable_negatives = int(sampling.get("sample_num", 1))  # per D* positive
        self.sampler_seed = int(config["seed"])
        self._generator: torch.Generator | None = None  # built on the device of the first batch

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Cascaded logits z^(1), z^(2) of aligned (user, item) pairs: shape (..., 2)."""
        product = self.user_embedding(user) * self.item_embedding(item)
        return self.predict_layers(product).cumsum(-1)

    def generator(self, device: torch.device) -> torch.Generator:
        """The reliable task's sampler: seeded with the run's seed, on the batches' device."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.sampler_seed)
        return self._generator

    def reliable_pairs(
        self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reliable task of a batch: (users, items, targets), its D* rows (target 1) then
        ``reliable_negatives`` sampled items outside the user's D* per D* row (target 0)."""
        extra = self.extra_feedback
        in_extra = (labels > 0.5) & extra.contains(users, items)
        pos_users, pos_items = users[in_extra], items[in_extra]
        neg_users = pos_users.repeat(self.reliable_negatives)
        neg_items = sample_outside(
            neg_users, extra.keys, extra.n_items, self.generator(users.device)
        )
        targets = torch.cat([torch.ones_like(pos_users), torch.zeros_like(neg_users)])
        return torch.cat([pos_users, neg_users]), torch.cat([pos_items, neg_items]), targets

    def calculate_loss(self, interaction):
        r""":math:`\lambda_1\mathcal L^{(1)} + \lambda_2\mathcal L^{(2)}`: the implicit task on the
        batch (``adt_loss``), the reliable task on :meth:`reliable_pairs` (CE, mean)."""
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        implicit_loss = self.pointwise_loss(self.forward(users, items)[..., 0], interaction)
        implicit_weight, reliable_weight = self.loss_weights
        pair_users, pair_items, targets = self.reliable_pairs(users, items, interaction[self.LABEL])
        if len(targets) == 0:  # no D* row in this batch: the reliable task has nothing to fit
            return implicit_weight * implicit_loss
        reliable_loss = bce(self.forward(pair_users, pair_items)[..., 1], targets)
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
