r"""Denoising for RecBole's general recommenders trained with BPR or BCE: T-*, R-* and DCF, no
subclass written by hand.

Wang et al. ("Learning Robust Recommender from Noisy Implicit Feedback", section 3.3) note that
truncation and reweighting apply to any differentiable model and to other losses, BPR among them.
:func:`denoised_model` builds, at lookup time, a subclass of a RecBole model with the *same name*
(so RecBole's ``<Model>.yaml`` defaults and dataloaders still apply) whose base loss goes through
the configured denoiser (:mod:`recbole_adt.denoisers`).

The hook is the model's loss module: after RecBole's ``__init__`` each loss child is replaced by
a subclass of the same loss that computes the same per-entry loss and hands it to the denoiser
before averaging. The rest of ``calculate_loss`` is the model's own, so its other terms
(embedding regularisers, DGCF's correlation term, FISM's and NAIS's ``reg_loss``) are unchanged.

**Pairwise models** (``BPRLoss``; :func:`bpr_trained_models`: BPR, DGCF, LightGCN, NGCF,
SpectralCF in RecBole 1.2.1), each ``BPRLoss`` swapped for a :class:`DenoisedBPRLoss` with the
same ``gamma``:

- T-BPR (``adt_loss: TBPR``, or ``TCE``): drop the :math:`\lfloor \epsilon(T)\cdot|\text{batch}|
  \rfloor` (user, positive, negative) triples with the largest BPR loss, with the drop-rate
  schedule and iteration counter of T-CE (:class:`~recbole_adt.trainer.PhasedTrainer`), its
  ``num_gradual_unit`` and ``drop_count``; ``drop_base`` does not matter, as every triple
  stands for its positive;
- R-BPR (``adt_loss: RBPR``, or ``RCE``): weight each triple by
  :math:`\sigma(\hat y_{ui} - \hat y_{uj})^{\beta}` from detached scores, which weights hard pairs
  *down*; :math:`\beta = 0` is BPR;
- DCF (``adt_loss: DCF``): the loss memory is keyed by each triple's (user, positive item), and
  holds the damped BPR loss of its triples (a new negative each epoch); each batch drops the
  triples whose positive has the largest lower bound, as DCF drops pointwise positives. BPR is
  the cross-entropy of the pair label "u prefers i to j" = 1 on the margin
  :math:`\hat y_{ui} - \hat y_{uj}`, so DCF's relabelling flips *that* label, 1 -> 0: a relabelled
  triple is trained as the reversed pair, :math:`-\log\sigma(\hat y_{uj} - \hat y_{ui})` (without
  BPRLoss's :math:`\gamma = 10^{-10}`), exactly what DCF's relabelled pointwise positive gets,
  :math:`-\log(1-\sigma(s_{ui}))`, with the margin in place of the logit. The positive is pushed
  below the triple's sampled item, as a relabelled pointwise positive is pushed towards the
  negatives; ``dcf_relabel_ratio`` keeps its meaning (the share of the dropped entries that are
  relabelled instead).

**Pointwise models** trained with BCE on (user, item, label) rows
(:func:`bce_trained_models`: DMF, FISM, NAIS, NNCF in RecBole 1.2.1, and RecBole's NeuMF, which
this package's NeuMF replaces by name), each ``nn.BCEWithLogitsLoss()`` or ``nn.BCELoss()``
(mean, unweighted) swapped for :class:`DenoisedBCEWithLogitsLoss` or :class:`DenoisedBCELoss`:
T-CE, R-CE and DCF on the model's per-row BCE, the margin being the logit (for ``BCELoss``, the
logit of the model's probability, each log clamped at -100 as ``BCELoss`` does). The denoiser's
labels are the batch's ``label`` field, so a model whose target is a rating (DMF with
``inter_matrix_type: rating``) still drops and relabels positives only. NAIS reads ``beta`` as its
own smoothing exponent: with R-CE, the one setting would be both, so NAIS refuses R-CE.

Not supported, with a ``ValueError``: sequential, context-aware, knowledge-aware and traditional
models, general models with another loss (SGL computes its own BPR, ConvNCF has its own loss,
MultiVAE, ENMF, GCMC and others are neither BPR nor BCE), and models with a trainer of their own
(NCL). ``NR`` needs this package's models (GMF, NeuMF). With ``adt_loss`` CE (or BPR) the lookup
returns RecBole's class itself.
"""

from __future__ import annotations

import functools
import inspect
import re

import recbole.trainer
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.loss import BPRLoss
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_adt.denoisers.truncate import batch_drop_count
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


class DenoisedBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss()`` (mean, unweighted), averaged after the model's denoiser."""

    def __init__(self, denoised_loss):
        super().__init__()
        self.denoised_loss = denoised_loss  # the model's bound method: not a submodule

    def forward(self, input, target):
        loss = F.binary_cross_entropy_with_logits(input, target, reduction="none")
        return self.denoised_loss(loss, input, target)


class DenoisedBCELoss(nn.BCELoss):
    """``nn.BCELoss()`` on probabilities (mean, unweighted), averaged after the denoiser.

    The denoiser reads the logit :math:`\\log p - \\log(1 - p)` of each probability, each log
    clamped at -100 as ``BCELoss`` clamps it, so :math:`\\sigma(\\text{logit}) = p`.
    """

    def __init__(self, denoised_loss):
        super().__init__()
        self.denoised_loss = denoised_loss  # the model's bound method: not a submodule

    def forward(self, input, target):
        loss = F.binary_cross_entropy(input, target, reduction="none")
        logits = torch.log(input).clamp(min=-100) - torch.log1p(-input).clamp(min=-100)
        return self.denoised_loss(loss, logits, target)


class _RecBoleDenoisingMixin(DenoisingLossMixin):
    """Swaps a RecBole model's loss modules for denoised ones; keeps the batch for their keys."""

    recbole_class: type  # the wrapped RecBole model, set by _wrapped
    loss_kind: str  # the name of the base loss in messages

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_denoising(config, dataset)
        self._batch = None  # the interaction being trained on: keys and false-positive flags
        names = [name for name, child in self.named_children() if self._swappable(child)]
        if not names:
            raise ValueError(
                f"{type(self).__name__} has no {self.loss_kind} module to denoise. "
                + supported_models_message()
            )
        for name in names:
            setattr(self, name, self._denoised_module(getattr(self, name)))

    @staticmethod
    def _swappable(child: nn.Module) -> bool:
        raise NotImplementedError

    def _denoised_module(self, child: nn.Module) -> nn.Module:
        raise NotImplementedError

    def calculate_loss(self, interaction):
        self._batch = interaction
        try:
            return super().calculate_loss(interaction)
        finally:
            self._batch = None

    def _batch_rows(self, loss: torch.Tensor):
        """The batch if ``loss`` has one entry per row of it, else None (a keyed denoiser fails)."""
        batch = self._batch
        if batch is not None and loss.dim() == 1 and len(batch) == len(loss):
            return batch
        if self.denoiser.keyed:
            raise ValueError(
                f"adt_loss {self.adt_loss} keys its memory by each entry's (user, item), but "
                f"{type(self).__name__} computes its {self.loss_kind} on something other than "
                "the rows of its training batch."
            )
        return None


class PairwiseDenoisingMixin(_RecBoleDenoisingMixin):
    """Routes a RecBole model's BPR term through ``adt_loss``'s denoiser; see the module doc."""

    loss_kind = "BPRLoss"

    @classmethod
    def check_adt_loss(cls, adt_loss: str) -> tuple[str, str]:
        """(base loss, denoiser); TCE and RCE here mean T-BPR and R-BPR, NR does not apply."""
        name = check_loss_name(adt_loss)
        base, denoiser = ADT_LOSSES[name]
        if base == "nr":
            raise ValueError(
                f"adt_loss NR relabels pointwise (user, item, label) rows; {cls.__name__} trains "
                "on BPR triples. Use NR with GMF or NeuMF, or TBPR, RBPR or DCF here."
            )
        return "bpr", denoiser

    @staticmethod
    def _swappable(child):
        return type(child) is BPRLoss

    def _denoised_module(self, child):
        return DenoisedBPRLoss(child.gamma, self.pairwise_loss)

    def pairwise_loss(self, pos_scores, neg_scores, *, gamma: float) -> torch.Tensor:
        """Mean denoised BPR loss over the kept (and, for DCF, reversed) triples of the batch.

        DCF keys each triple by its (user, positive item); a relabelled triple is trained as the
        reversed pair (see the module doc).
        """
        loss = bpr(pos_scores, neg_scores, gamma=gamma, reduction="none")
        labels = torch.ones_like(loss)  # every triple stands for its positive
        batch = self._batch_rows(loss)
        false_positive = None
        if batch is not None and self.FP_FIELD in batch:
            false_positive = batch[self.FP_FIELD]
        # Every triple stands for its positive: drop_base batch and positives agree here.
        num_drop = batch_drop_count(self.drop_rate, labels, rule=self.drop_count_rule)
        loss, dropped = self._denoise(
            loss, pos_scores - neg_scores, labels, false_positive, num_drop, interaction=batch
        )
        return loss.sum() / (loss.numel() - dropped)


class PointwiseDenoisingMixin(_RecBoleDenoisingMixin):
    """Routes a RecBole model's BCE term through ``adt_loss``'s denoiser; see the module doc."""

    loss_kind = "BCE loss"

    @classmethod
    def check_adt_loss(cls, adt_loss: str) -> tuple[str, str]:
        """(base loss, denoiser): TCE, RCE and DCF denoise the model's BCE; BPR's and NR don't."""
        name = check_loss_name(adt_loss)
        base, denoiser = ADT_LOSSES[name]
        if base != "bce":
            raise ValueError(
                f"adt_loss {name} does not apply to RecBole's {cls.__name__}, which trains with "
                "BCE on (user, item, label) rows: use TCE, RCE or DCF (TBPR and RBPR are for "
                "BPR-trained models such as BPR and LightGCN; NR needs GMF or NeuMF)."
            )
        if denoiser == "reweight" and _reads_setting(cls.recbole_class, "beta"):
            raise ValueError(
                f"adt_loss {name} reads beta as R-CE's exponent, but RecBole's {cls.__name__} "
                "reads beta as a setting of its own: use TCE or DCF with it."
            )
        return base, denoiser

    @staticmethod
    def _swappable(child):
        return (
            type(child) in (nn.BCEWithLogitsLoss, nn.BCELoss)
            and child.reduction == "mean"
            and child.weight is None
            and getattr(child, "pos_weight", None) is None
        )

    def _denoised_module(self, child):
        if type(child) is nn.BCELoss:
            return DenoisedBCELoss(self.bce_rows_loss)
        return DenoisedBCEWithLogitsLoss(self.bce_rows_loss)

    def bce_rows_loss(self, loss, logits, target) -> torch.Tensor:
        """Mean denoised BCE over the kept (and relabelled) rows of the batch.

        ``loss`` is the model's per-row BCE against its own ``target``; the denoiser's labels
        are the batch's ``label`` field (1 for an interaction), or ``target`` without one.
        """
        batch = self._batch_rows(loss)
        labels, false_positive = target, None
        if batch is not None:
            labels = batch[self.LABEL] if self.LABEL in batch else target
            false_positive = batch[self.FP_FIELD] if self.FP_FIELD in batch else None
        num_drop = batch_drop_count(
            self.drop_rate, labels, base=self.drop_base, rule=self.drop_count_rule
        )
        loss, dropped = self._denoise(
            loss, logits, labels, false_positive, num_drop, interaction=batch
        )
        return loss.sum() / (loss.numel() - dropped)


_MIXINS = {"bpr": PairwiseDenoisingMixin, "bce": PointwiseDenoisingMixin}


@functools.cache
def bpr_trained_models() -> tuple[str, ...]:
    """RecBole's general models that T-BPR, R-BPR and DCF apply to, by name."""
    return _models_trained_with("bpr")


@functools.cache
def bce_trained_models() -> tuple[str, ...]:
    """RecBole's pointwise general models that T-CE, R-CE and DCF apply to, by name."""
    return _models_trained_with("bce")


def _models_trained_with(loss: str) -> tuple[str, ...]:
    models = recbole_models()
    return tuple(sorted(name for name, model in models.items() if _loss_of(model) == loss))


def _loss_of(model_class: type) -> str | None:
    """``"bpr"`` or ``"bce"``: the loss module through which a RecBole model can be denoised.

    A general model with RecBole's plain Trainer that builds a ``BPRLoss`` (pairwise input) or
    an ``nn.BCEWithLogitsLoss()`` or ``nn.BCELoss()`` (pointwise input); else None.
    """
    if not (
        issubclass(model_class, GeneralRecommender)
        and model_class.type == ModelType.GENERAL
        and model_class.__module__.startswith("recbole.model.general_recommender.")
        and not hasattr(recbole.trainer, f"{model_class.__name__}Trainer")
    ):
        return None
    source = inspect.getsource(model_class)
    if model_class.input_type == InputType.PAIRWISE:
        found = re.search(r"(?<![\w.])BPRLoss\(", source)
        return "bpr" if found else None
    if model_class.input_type == InputType.POINTWISE:
        found = re.search(r"(?<![\w])nn\.BCE(WithLogits)?Loss\(\)", source)
        return "bce" if found else None
    return None


def _reads_setting(model_class: type, key: str) -> bool:
    """Whether ``model_class``'s source reads ``config[key]``."""
    return re.search(rf"config\[[\"']{key}[\"']\]", inspect.getsource(model_class)) is not None


def supported_models_message() -> str:
    from recbole_adt.model import MODELS

    pointwise = [name for name in bce_trained_models() if name not in MODELS]
    return (
        "Denoising (TCE, RCE, DCF, UDT; TBPR, RBPR for BPR) applies to this package's models "
        f"({', '.join(MODELS)}; BCE), to RecBole's general models trained with BPR loss "
        f"({', '.join(bpr_trained_models())}) and to RecBole's pointwise general models trained "
        f"with BCE ({', '.join(pointwise)}); other models train with adt_loss CE."
    )


def denoised_model(model_class: type, adt_loss: str) -> type:
    """The class to build for ``adt_loss``: RecBole's own without a denoiser, else the wrapper.

    Raises ``ValueError`` for a model this does not apply to.
    """
    base, denoiser = ADT_LOSSES[check_loss_name(adt_loss)]
    if denoiser == "none" and base != "nr":
        return model_class
    loss = _loss_of(model_class)
    if loss is None:
        kind = _MODEL_KINDS.get(model_class.type)
        what = f"a {kind} model" if kind else "not a general model trained with BPR loss or BCE"
        if kind is None and hasattr(recbole.trainer, f"{model_class.__name__}Trainer"):
            what = "trained by a trainer of its own"
        raise ValueError(
            f"adt_loss {check_loss_name(adt_loss)} cannot train RecBole's "
            f"{model_class.__name__}: it is {what}. " + supported_models_message()
        )
    wrapped = _wrapped(model_class, loss)
    wrapped.check_adt_loss(adt_loss)  # named after the model in its messages
    return wrapped


@functools.cache
def _wrapped(model_class: type, loss: str) -> type:
    return type(
        model_class.__name__,
        (_MIXINS[loss], model_class),
        {
            "__module__": __name__,
            "__qualname__": model_class.__name__,
            "__doc__": f"RecBole's {model_class.__name__}, its {loss.upper()} term denoised by "
            "adt_loss.",
            "recbole_class": model_class,
        },
    )
