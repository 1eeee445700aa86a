"""Find models and trainers in recbole_adt first, then in RecBole (as RecBole-GNN does)."""

from __future__ import annotations

from recbole.trainer import Trainer
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_adt import model as adt_models
from recbole_adt import trainer as adt_trainers


def get_model(model_name: str) -> type:
    """Our GMF, NeuMF or CDAE by name; any other name is looked up in RecBole."""
    if model_name in adt_models.MODELS:
        return adt_models.MODELS[model_name]
    return recbole_get_model(model_name)


def get_trainer(model_type, model_name: str) -> type:
    """PhasedTrainer for our models; else RecBole's trainer, saving loadable checkpoints."""
    model_class = get_model(model_name)
    if issubclass(model_class, adt_models.DenoisingLossMixin):
        return getattr(adt_trainers, f"{model_name}Trainer", adt_trainers.PhasedTrainer)
    base = recbole_get_trainer(model_type, model_name)
    if not issubclass(base, Trainer):
        return base
    return type(base.__name__, (adt_trainers.WeightsOnlyCheckpointMixin, base), {})
