"""CDAE with a switchable denoising loss.

Reference: Yao Wu et al. "Collaborative Denoising Auto-Encoders for Top-N Recommender Systems."
WSDM 2016. Overrides RecBole's ``CDAE`` (same name: it keeps RecBole's ``UserDataLoader`` and
``CDAE.yaml`` defaults). With ``loss_type: BCE`` the reconstruction loss follows ``adt_loss``
(CE | TCE | RCE); T-CE drops, in each user's row, the largest-loss share of that user's positive
entries, since the row holds no sampled negatives to count.

Extra feedback (paper section 3.4): in the warmup and finetune phases a user's row is their
:math:`D^*` row, as input and as target, and the loss (CE, Eq. 7) skips the user's other
implicit items, so that negatives are only items without any implicit interaction; users without
:math:`D^*` sit those phases out. CDAE has no user embedding of its own that means much (its
``h_user`` is a per-user bias of the hidden layer), so its :math:`E^*` for colliding inference is
the hidden code of the user's :math:`D^*` row, :math:`h(x^*_u)`: the representation CDAE learns
from extra feedback, taken right after warm-up.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender.cdae import CDAE as RecBoleCDAE

from recbole_adt.data.extra_feedback import extra_feedback_dataset
from recbole_adt.losses import bce
from recbole_adt.model.denoising import DenoisingLossMixin
from recbole_adt.model.extra_feedback import ExtraFeedbackMixin
from recbole_adt.phases import EXTRA_FEEDBACK_PHASES

# Users per block when encoding every user's D* row (a users x items dense block).
_ENCODE_BLOCK = 1024


class CDAE(ExtraFeedbackMixin, DenoisingLossMixin, RecBoleCDAE):
    # Floats per (user, item) pair in full_sort_predict: the input row, the output and its
    # sigmoid (FullSortEvalMixin sizes evaluation batches by it).
    full_sort_memory_factor = 3

    @classmethod
    def check_adt_loss(cls, adt_loss: str) -> tuple[str, str]:
        """As the mixin's; DCF keys its memory by (user, item) rows, which CDAE does not have."""
        base, denoiser = super().check_adt_loss(adt_loss)
        if denoiser == "dcf":
            raise ValueError(
                "adt_loss DCF trains on (user, item, label) rows; CDAE trains on whole user rows. "
                "Use DCF with GMF, NeuMF or NMTR, or CE, TCE, RCE or UDT with CDAE."
            )
        return base, denoiser

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_denoising(config, dataset)
        if self.loss_type != "BCE" and self.adt_loss != "CE":
            raise ValueError(
                f"adt_loss {self.adt_loss} needs CDAE's loss_type BCE, got {self.loss_type!r}; "
                "valid combinations are loss_type BCE with CE, TCE or RCE, or MSE with CE."
            )
        self.history_fp = None
        if self.FP_FIELD is not None:
            _, fp_values, _ = dataset.history_item_matrix(value_field=self.FP_FIELD)
            self.history_fp = fp_values.to(self.device)
        self.extra_history = None  # D* rows as (item ids, values), padded like RecBole's
        extra = getattr(dataset, "extra_feedback", None)
        if extra is not None:
            ids, values, _ = extra_feedback_dataset(dataset, extra).history_item_matrix()
            self.extra_history = (ids.to(self.device), values.to(self.device))
            self.has_extra = (extra.extra_count > 0).to(self.device)

    def set_training_phase(self, phase: str) -> None:
        if phase in EXTRA_FEEDBACK_PHASES and self.extra_history is None:
            raise ValueError("CDAE was built on a dataset without extra feedback D*.")
        super().set_training_phase(phase)

    def calculate_loss(self, interaction):
        if self.training_phase in EXTRA_FEEDBACK_PHASES:
            return self._extra_feedback_loss(interaction[self.USER_ID])
        if self.loss_type != "BCE":
            return super().calculate_loss(interaction)
        users = interaction[self.USER_ID]
        ratings = self.get_rating_matrix(users)
        logits = self.forward(ratings, users)
        loss = self.matrix_loss(logits, ratings, self._false_positive_matrix(users), users=users)
        return loss + self._regularization()

    def _extra_feedback_loss(self, users: torch.Tensor) -> torch.Tensor:
        """Eq. 7 on D* rows: CE over D* items and items with no implicit interaction."""
        users = users[self.has_extra[users]]
        extra = self._dense_rows(users, *self.extra_history)
        logits = self.forward(extra, users)
        not_a_negative = (self.get_rating_matrix(users) > 0) & (extra == 0)
        loss = bce(logits, extra, reduction="none").masked_fill(not_a_negative, 0.0)
        return loss.sum() + self._regularization()

    def user_representations(self) -> torch.Tensor:
        """E*: the hidden code h(x*_u) of each user's D* row (see the module docstring)."""
        if self.extra_history is None:
            raise ValueError("CDAE was built on a dataset without extra feedback D*.")
        blocks = []
        for start in range(0, self.n_users, _ENCODE_BLOCK):
            users = torch.arange(
                start, min(start + _ENCODE_BLOCK, self.n_users), device=self.device
            )
            rows = self._dense_rows(users, *self.extra_history)
            blocks.append(self.h_act(self.h_item(rows) + self.h_user(users)))
        return torch.cat(blocks)

    def _dense_rows(self, users, ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The users' rows of a padded history (as ``get_rating_matrix``), users x items."""
        rows = torch.arange(len(users), device=self.device).repeat_interleave(ids.shape[1])
        matrix = torch.zeros(len(users), self.n_items, device=self.device)
        matrix.index_put_((rows, ids[users].flatten()), values[users].flatten())
        return matrix

    def predict(self, interaction):
        # RecBole's version indexes with a list of tensors, which torch deprecates.
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        scores = self.o_act(self.forward(self.get_rating_matrix(users), users))
        return scores[torch.arange(len(items), device=self.device), items]

    def _regularization(self) -> torch.Tensor:
        # RecBole's CDAE penalties, unchanged.
        l1 = self.h_user.weight.norm(p=1) + self.h_item.weight.norm(p=1)
        l2 = self.h_user.weight.norm() + self.h_item.weight.norm()
        return self.reg_weight_1 * l1 + self.reg_weight_2 * l2

    def _false_positive_matrix(self, users: torch.Tensor) -> torch.Tensor | None:
        """The users' flags laid out like ``get_rating_matrix``, or None without a flag field."""
        if self.history_fp is None:
            return None
        return self._dense_rows(users, self.history_item_id, self.history_fp)
