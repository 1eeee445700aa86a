"""Find models and trainers in recbole_adt first, then in RecBole (as RecBole-GNN does)."""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

import recbole
from recbole.trainer import Trainer
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_adt import model as adt_models
from recbole_adt import trainer as adt_trainers
from recbole_adt.model.catalogue import recbole_model, recbole_models
from recbole_adt.model.generic import denoised_model


def get_model(model_name: str, *, adt_loss: str = "CE") -> type:
    """Our model by name, else RecBole's; a case-insensitive match counts if it is unique.

    With an ``adt_loss`` that denoises (TCE, RCE, TBPR, RBPR), a RecBole model comes wrapped:
    a subclass of the same name whose BPR term goes through the denoiser
    (:func:`~recbole_adt.model.generic.denoised_model`); with CE it is RecBole's class itself.
    An unknown name, or a model the loss does not apply to, raises ``ValueError`` listing the
    valid choices.
    """
    return model_for_loss(_find_model(model_name), adt_loss)


def model_for_loss(model_class: type, adt_loss: str) -> type:
    """The class that trains ``model_class`` with ``adt_loss``, or ``ValueError``."""
    if issubclass(model_class, adt_models.DenoisingLossMixin):
        model_class.check_adt_loss(adt_loss)
        return model_class
    return denoised_model(model_class, adt_loss)


def _find_model(model_name: str) -> type:
    if not isinstance(model_name, str):
        raise ValueError(unknown_model_message(model_name))
    exact = adt_models.MODELS.get(model_name) or recbole_model(model_name)
    if exact is not None:
        return exact
    for models in (adt_models.MODELS, recbole_models()):
        folded = [name for name in models if name.lower() == model_name.lower()]
        if len(folded) == 1:
            return models[folded[0]]
    _check_optional_dependency(model_name)
    raise ValueError(unknown_model_message(model_name))


def unknown_model_message(model_name) -> str:
    ours = list(adt_models.MODELS)
    general = sorted(
        name
        for name, model in recbole_models().items()
        if model.__module__.startswith("recbole.model.general_recommender.") and name not in ours
    )
    by_lower = {name.lower(): name for name in [*recbole_models(), *ours]}
    close = difflib.get_close_matches(str(model_name).lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(by_lower[name] for name in close)}?" if close else ""
    return (
        f"Unknown model {model_name!r}.{hint} Give --model=NAME with a model of this package "
        f"({', '.join(ours)}) or one of RecBole's general models ({', '.join(general)}); "
        "RecBole's context-aware, sequential and knowledge-aware models are found by name too."
    )


def _check_optional_dependency(model_name: str) -> None:
    """RecBole's LightGBM and XGBoost need packages that RecBole does not install."""
    module = Path(recbole.__file__).parent / "model" / "exlib_recommender"
    if not (module / f"{model_name.lower()}.py").is_file():
        return
    try:
        importlib.import_module("recbole.model.exlib_recommender")
    except ImportError as err:
        raise ValueError(
            f"RecBole's {model_name} needs the {err.name} package, which is not installed: "
            f"pip install {err.name}"
        ) from err


def get_trainer(model_type, model_name: str, *, adt_loss: str = "CE") -> type:
    """PhasedTrainer for our models and denoised RecBole models; else RecBole's trainer, saving
    loadable checkpoints and keeping the epoch ``checkpoint_rule`` picks."""
    model_class = get_model(model_name, adt_loss=adt_loss)
    if issubclass(model_class, adt_models.DenoisingLossMixin):
        return getattr(adt_trainers, f"{model_name}Trainer", adt_trainers.PhasedTrainer)
    base = recbole_get_trainer(model_type, model_name)
    if not issubclass(base, Trainer):
        return base
    mixins = (
        adt_trainers.WeightsOnlyCheckpointMixin,
        adt_trainers.FaultGuardMixin,
        adt_trainers.CheckpointRuleMixin,
        adt_trainers.FullSortEvalMixin,
    )
    return type(base.__name__, (*mixins, base), {})
