"""Recommenders trained with Adaptive Denoising Training: GMF (new), NeuMF and CDAE (overrides),
and NMTR (new), the multi-task baseline that uses extra feedback."""

from recbole_adt.model.cdae import CDAE
from recbole_adt.model.denoising import DenoisingLossMixin
from recbole_adt.model.gmf import GMF
from recbole_adt.model.neumf import NeuMF
from recbole_adt.model.nmtr import NMTR

MODELS = {model.__name__: model for model in (GMF, NeuMF, CDAE, NMTR)}

__all__ = ["CDAE", "GMF", "MODELS", "DenoisingLossMixin", "NMTR", "NeuMF"]
