"""RecBole's own model classes, found by name across its model families."""

from __future__ import annotations

import functools
import importlib
import inspect

from recbole.model.abstract_recommender import AbstractRecommender

_RECBOLE_FAMILIES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


def recbole_models() -> dict:
    """RecBole's model classes by name, from each family whose dependencies are installed."""
    models = {}
    for family in _RECBOLE_FAMILIES:
        module = _family_module(family)
        for name, value in vars(module).items() if module else ():
            if inspect.isclass(value) and issubclass(value, AbstractRecommender):
                models.setdefault(name, value)
    return models


def recbole_model(name: str) -> type | None:
    """RecBole's class ``name``, importing its model families one at a time."""
    for family in _RECBOLE_FAMILIES:
        value = getattr(_family_module(family), name, None)
        if inspect.isclass(value) and issubclass(value, AbstractRecommender):
            return value
    return None


@functools.cache
def _family_module(family: str):
    try:
        return importlib.import_module(f"recbole.model.{family}")
    except ImportError:  # exlib needs lightgbm and xgboost
        return None
