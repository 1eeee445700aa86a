r"""GMF: generalized matrix factorization, the linear half of NCF.

Reference: Xiangnan He et al. "Neural Collaborative Filtering." WWW 2017, Eq. (9):
:math:`\hat y_{ui} = \sigma(\mathbf h^\top (\mathbf p_u \odot \mathbf q_i) + b)`.
Used as a testing recommender in Wang et al., "Learning Robust Recommender from Noisy Implicit
Feedback" (TKDE), trained here with CE, T-CE or R-CE (``adt_loss``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_adt.model.denoising import DenoisingLossMixin
from recbole_adt.model.extra_feedback import ExtraFeedbackMixin


class GMF(ExtraFeedbackMixin, DenoisingLossMixin, GeneralRecommender):
    """Element-wise product of user and item factors, weighted by a learned vector ``h``."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        # sparse_embeddings: gradients of the batch's rows only, for SparseOptimizerMixin
        sparse = bool(config["sparse_embeddings"])
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size, sparse=sparse)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, sparse=sparse)
        self.predict_layer = nn.Linear(self.embedding_size, 1)
        # NCF's initialisation: small normal factors, a Kaiming-uniform output vector.
        nn.init.normal_(self.user_embedding.weight, std=0.01)
        nn.init.normal_(self.item_embedding.weight, std=0.01)
        nn.init.kaiming_uniform_(self.predict_layer.weight, a=1, nonlinearity="sigmoid")
        nn.init.zeros_(self.predict_layer.bias)
        self._init_denoising(config, dataset)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Logits for aligned (user, item) pairs."""
        product = self.user_embedding(user) * self.item_embedding(item)
        return self.predict_layer(product).squeeze(-1)

    def calculate_loss(self, interaction):
        logits = self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])
        return self.pointwise_loss(logits, interaction)

    def predict(self, interaction):
        return torch.sigmoid(self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID]))

    def full_sort_predict(self, interaction):
        # h^T (p_u * q_i) = (p_u * h)^T q_i: one matrix product scores every item.
        user = self.user_embedding(interaction[self.USER_ID])
        weighted = user * self.predict_layer.weight
        # In place: evaluation holds one users x items block (see FullSortEvalMixin).
        logits = torch.addmm(self.predict_layer.bias, weighted, self.item_embedding.weight.T)
        return logits.sigmoid_().view(-1)

    def user_representations(self) -> torch.Tensor:
        """The user factors p_u: GMF's user space."""
        return self.user_embedding.weight
