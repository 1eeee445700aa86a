"""NeuMF with a switchable denoising loss and a vectorised full-sort prediction.

Reference: Xiangnan He et al. "Neural Collaborative Filtering." WWW 2017. Overrides RecBole's
``NeuMF`` (same name, so RecBole's ``NeuMF.yaml`` defaults still load), changing only the loss
(``adt_loss``: CE | TCE | RCE, Wang et al. TKDE section 3.3) and adding ``full_sort_predict``, which
RecBole's NeuMF lacks: without it, evaluation scores every user-item pair through ``predict``.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender.neumf import NeuMF as RecBoleNeuMF

from recbole_adt.model.denoising import DenoisingLossMixin
from recbole_adt.model.extra_feedback import ExtraFeedbackMixin


class NeuMF(ExtraFeedbackMixin, DenoisingLossMixin, RecBoleNeuMF):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        # sparse_embeddings: gradients of the batch's rows only, for SparseOptimizerMixin
        for table in (self.user_mf_embedding, self.item_mf_embedding):
            table.sparse = bool(config["sparse_embeddings"])
        for table in (self.user_mlp_embedding, self.item_mlp_embedding):
            table.sparse = bool(config["sparse_embeddings"])
        self._init_denoising(config, dataset)

    def calculate_loss(self, interaction):
        logits = self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])
        return self.pointwise_loss(logits, interaction)

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        n_items = self.item_mf_embedding.num_embeddings
        weight = self.predict_layer.weight.squeeze(0)
        # The output layer is linear in concat(mf, mlp): score each part, then add.
        logits = self.predict_layer.bias.expand(len(user), n_items)
        offset = 0
        if self.mf_train:
            offset = self.mf_embedding_size
            user_mf = self.user_mf_embedding(user) * weight[:offset]
            logits = logits + user_mf @ self.item_mf_embedding.weight.T
        if self.mlp_train:
            hidden = self._mlp_all_items(self.user_mlp_embedding(user))
            logits = logits + hidden @ weight[offset:]
        return torch.sigmoid(logits).reshape(-1)

    @property
    def full_sort_memory_factor(self) -> int:
        """Floats per (user, item) pair at the peak of ``full_sort_predict``: a tower layer's
        input and output, and the logits' parts (FullSortEvalMixin sizes batches by it)."""
        if not self.mlp_train:
            return 3
        widths = self.mlp_hidden_size
        return max(a + b for a, b in zip(widths, widths[1:] + [0])) + 3

    def user_representations(self) -> torch.Tensor:
        """Both user embeddings side by side: the GMF part and the MLP part (each one in use)."""
        parts = []
        if self.mf_train:
            parts.append(self.user_mf_embedding.weight)
        if self.mlp_train:
            parts.append(self.user_mlp_embedding.weight)
        return torch.cat(parts, dim=1)

    def _mlp_all_items(self, user_mlp: torch.Tensor) -> torch.Tensor:
        """The MLP tower's output for each user in the batch x every item: (users, items, last)."""
        _dropout, first, *rest = self.mlp_layers.mlp_layers
        item_mlp = self.item_mlp_embedding.weight
        if self.training or not isinstance(first, torch.nn.Linear):
            users = user_mlp.unsqueeze(1).expand(-1, len(item_mlp), -1)
            items = item_mlp.unsqueeze(0).expand(len(user_mlp), -1, -1)
            return self.mlp_layers(torch.cat((users, items), -1))
        # The first layer is linear in concat(user, item): W [u; i] + b = W_u u + (W_i i + b).
        # Applying it to users and items apart saves most of the work of the whole tower.
        size = self.mlp_embedding_size
        user_part = user_mlp @ first.weight[:, :size].T
        item_part = torch.nn.functional.linear(item_mlp, first.weight[:, size:], first.bias)
        hidden = user_part.unsqueeze(1) + item_part.unsqueeze(0)
        for layer in rest:  # the rest of the tower, ReLU in place on this users x items block
            if isinstance(layer, torch.nn.ReLU):
                hidden.relu_()
            elif not isinstance(layer, torch.nn.Dropout):  # dropout is the identity here
                hidden = layer(hidden)
        return hidden
