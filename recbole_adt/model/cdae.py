"""CDAE with a switchable denoising loss.

Reference: Yao Wu et al. "Collaborative Denoising Auto-Encoders for Top-N Recommender Systems."
WSDM 2016. Overrides RecBole's ``CDAE`` (same name: it keeps RecBole's ``UserDataLoader`` and
``CDAE.yaml`` defaults). With ``loss_type: BCE`` the reconstruction loss follows ``adt_loss``
(CE | TCE | RCE); T-CE drops, in each user's row, the largest-loss share of that user's positive
entries, since the row holds no sampled negatives to count.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender.cdae import CDAE as RecBoleCDAE

from recbole_adt.model.denoising import DenoisingLossMixin


class CDAE(DenoisingLossMixin, RecBoleCDAE):
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

    def calculate_loss(self, interaction):
        if self.loss_type != "BCE":
            return super().calculate_loss(interaction)
        users = interaction[self.USER_ID]
        ratings = self.get_rating_matrix(users)
        logits = self.forward(ratings, users)
        loss = self.matrix_loss(logits, ratings, self._false_positive_matrix(users))
        return loss + self._regularization()

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
        rows = torch.arange(len(users), device=self.device).repeat_interleave(
            self.history_item_id.shape[1]
        )
        matrix = torch.zeros(len(users), self.n_items, device=self.device)
        matrix.index_put_(
            (rows, self.history_item_id[users].flatten()), self.history_fp[users].flatten()
        )
        return matrix
