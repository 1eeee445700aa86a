"""Recommenders trained with Adaptive Denoising Training: GMF (new), NeuMF and CDAE (overrides)."""

from recbole_adt.model.cdae import CDAE
from recbole_adt.model.denoising import DenoisingLossMixin
from recbole_adt.model.gmf import GMF
from recbole_adt.model.neumf import NeuMF

MODELS = {model.__name__: model for model in (GMF, NeuMF, CDAE)}

__all__ = ["CDAE", "GMF", "MODELS", "DenoisingLossMixin", "NeuMF"]
