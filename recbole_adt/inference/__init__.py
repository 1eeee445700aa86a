"""Post-prediction hooks. ``colliding``: colliding inference, paper section 3.4.2, Eq. (8)."""

from recbole_adt.inference.colliding import (
    CollidingInference,
    CollidingSettings,
    colliding_hook,
    dense_colliding_scores,
    nearest_neighbours,
    validate_colliding_settings,
)

__all__ = [
    "CollidingInference",
    "CollidingSettings",
    "colliding_hook",
    "dense_colliding_scores",
    "nearest_neighbours",
    "validate_colliding_settings",
]
