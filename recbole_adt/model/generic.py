r"""Denoising for RecBole's general recommenders trained with BPR: T-BPR and R-BPR, no subclass
written by hand.

Wang et al. ("Learning Robust Recommender from Noisy Implicit Feedback", section 3.3) note that
truncation and reweighting apply to any differentiable model and to other losses, BPR among them.
:func:`denoised_model` builds, at lookup time, a subclass of a RecBole model with the *same name*
(so RecBole's ``<Model>.yaml`` defaults and dataloaders still apply) whose BPR term goes through
the configured denoiser (:mod:`recbole_adt.denoisers`):

- T-BPR (``adt_loss: TBPR``, or ``TCE``): drop the :math:`\lfloor \epsilon(T)\cdot|\text{batch}|
  \rfloor` (user, positive, negative) triples with the largest BPR loss, with the drop-rate
  schedule and iteration counter of T-CE (:class:`~recbole_adt.trainer.PhasedTrainer`);
- R-BPR (``adt_loss: RBPR``, or ``RCE``): weight each triple by
  :math:`\sigma(\hat y_{ui} - \hat y_{uj})^{\beta}` from detached scores, which weights hard pairs
  *down*; :math:`\beta = 0` is BPR.

The hook is the model's ``BPRLoss`` module: after RecBole's ``__init__`` each ``BPRLoss`` child
is replaced by a :class:`DenoisedBPRLoss` with the same ``gamma``, which computes the same
per-triple loss and hands it to the denoiser. The rest of ``calculate_loss`` is the model's own,
so its other terms (embedding regularisers, DGCF's correlation term) are unchanged.

Supported: RecBole's general models that train with ``BPRLoss`` and RecBole's plain ``Trainer``
(:func:`bpr_trained_models`: BPR, DGCF, LightGCN, NGCF, SpectralCF in RecBole 1.2.1). Not
supported, with a ``ValueError``: sequential, context-aware, knowledge-aware and traditional
models, general models with another loss (SGL computes its own BPR, MultiVAE and others are not
BPR), and models with a trainer of their own (NCL). With ``adt_loss`` CE (or BPR) the lookup
returns RecBole's class itself.
"""

from __future__ import annotations

import functools
import inspect
import re

import recbole.trainer
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.loss import BPRLoss
from recbole.utils import InputType, ModelType

from recbole_adt.denoisers.truncate import drop_count
from recbole_adt.losses import ADT_LOSSES, bpr, check_loss_name
from recbole_adt.model.catalogue import recbole_models
from recbole_adt.model.denoising import DenoisingLossMixin

_MODEL_KINDS = {
    ModelType.SEQUENTIAL: "sequential",
    ModelType.CONTEXT: "context-aware",
    ModelType.KNOWLEDGE: "knowledge-aware",
    ModelType.TRADITIONAL: "traditional (not trained by gradient)",
    ModelType.DECISIONTREE: "decision-tree",
}


class DenoisedBPRLoss(BPRLoss):
    """RecBole's ``BPRLoss`` with the same ``gamma``, averaged after the model's denoiser."""

    def __init__(self, gamma: float, denoised_loss):
        super().__init__(gamma)
        self.denoised_loss = denoised_loss  # the model's bound method: not a submodule

    def forward(self, pos_score, neg_score):
        return self.denoised_loss(pos_score, neg_score, gamma=self.gamma)


class PairwiseDenoisingMixin(DenoisingLossMixin):
    """Routes a RecBole model's BPR term through ``adt_loss``'s denoiser; see the module doc."""

    @classmethod
    def check_adt_loss(cls, adt_loss: str) -> tuple[str, str]:
        """(base loss, denoiser); TCE and RCE here mean T-BPR and R-BPR, NR does not apply."""
        name = check_loss_name(adt_loss)
        base, denoiser = ADT_LOSSES[name]
        if base == "nr":
            raise ValueError(
                f"adt_loss NR relabels pointwise (user, item, label) rows; {cls.__name__} trains "
                "on BPR triples. Use NR with GMF or NeuMF, or TBPR or RBPR here."
            )
        if denoiser == "dcf":
            raise ValueError(
                f"adt_loss DCF relabels pointwise (user, item, label) rows, label 1 -> 0; "
                f"{cls.__name__} trains on BPR triples, which have no label to flip. Use DCF "
                "with GMF, NeuMF or NMTR, or TBPR or RBPR here."
            )
        return "bpr", denoiser

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_denoising(config, dataset)
        self._batch = None  # the interaction being trained on, for the false-positive counts
        names = [name for name, child in self.named_children() if type(child) is BPRLoss]
        if not names:
            raise ValueError(
                f"{type(self).__name__} has no BPRLoss module to denoise. "
                + supported_models_message()
            )
        for name in names:
            setattr(self, name, DenoisedBPRLoss(getattr(self, name).gamma, self.pairwise_loss))

    def calculate_loss(self, interaction):
        self._batch = interaction
        try:
            return super().calculate_loss(interaction)
        finally:
            self._batch = None

    def pairwise_loss(self, pos_scores, neg_scores, *, gamma: float) -> torch.Tensor:
        """Mean denoised BPR loss over the kept triples of the batch."""
        loss = bpr(pos_scores, neg_scores, gamma=gamma, reduction="none")
        labels = torch.ones_like(loss)  # every triple stands for its positive
        batch = self._batch
        false_positive = None
        if batch is not None and self.FP_FIELD in batch and len(batch) == len(loss):
            false_positive = batch[self.FP_FIELD]
        num_drop = drop_count(self.drop_rate, loss.numel())
        loss, dropped = self._denoise(
            loss, pos_scores - neg_scores, labels, false_positive, num_drop
        )
        return loss.sum() / (loss.numel() - dropped)


@functools.cache
def bpr_trained_models() -> tuple[str, ...]:
    """RecBole's general models that T-BPR and R-BPR apply to, by name."""
    return tuple(sorted(name for name, model in recbole_models().items() if _is_bpr_trained(model)))


def _is_bpr_trained(model_class: type) -> bool:
    """A pairwise general model that builds a BPRLoss and uses RecBole's plain Trainer."""
    if not (
        issubclass(model_class, GeneralRecommender)
        and model_class.type == ModelType.GENERAL
        and model_class.input_type == InputType.PAIRWISE
        and model_class.__module__.startswith("recbole.model.general_recommender.")
        and not hasattr(recbole.trainer, f"{model_class.__name__}Trainer")
    ):
        return False
    return re.search(r"(?<![\w.])BPRLoss\(", inspect.getsource(model_class)) is not None


def supported_models_message() -> str:
    from recbole_adt.model import MODELS

    return (
        "Denoising (TCE, RCE, TBPR, RBPR; DCF on pointwise batches) applies to this package's "
        f"models ({', '.join(MODELS)}; BCE) and to RecBole's general models trained with BPR loss "
        f"({', '.join(bpr_trained_models())}); other models train with adt_loss CE."
    )


def denoised_model(model_class: type, adt_loss: str) -> type:
    """The class to build for ``adt_loss``: RecBole's own without a denoiser, else the wrapper.

    Raises ``ValueError`` for a model this does not apply to.
    """
    base, denoiser = ADT_LOSSES[check_loss_name(adt_loss)]
    if denoiser == "none" and base != "nr":
        return model_class
    if not _is_bpr_trained(model_class):
        kind = _MODEL_KINDS.get(model_class.type)
        what = f"a {kind} model" if kind else "not a general model trained with BPR loss"
        if kind is None and hasattr(recbole.trainer, f"{model_class.__name__}Trainer"):
            what = "trained by a trainer of its own"
        raise ValueError(
            f"adt_loss {check_loss_name(adt_loss)} cannot train RecBole's "
            f"{model_class.__name__}: it is {what}. " + supported_models_message()
        )
    wrapped = _wrapped(model_class)
    wrapped.check_adt_loss(adt_loss)  # named after the model in its messages
    return wrapped


@functools.cache
def _wrapped(model_class: type) -> type:
    return type(
        model_class.__name__,
        (PairwiseDenoisingMixin, model_class),
        {
            "__module__": __name__,
            "__qualname__": model_class.__name__,
            "__doc__": f"RecBole's {model_class.__name__}, its BPR term denoised by adt_loss.",
        },
    )
