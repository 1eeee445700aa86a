"""Post-prediction hooks. ``colliding``: colliding inference, paper section 3.4.2, Eq. (8);
``grid``: every (|N_u|, lambda) pair of its validation grid from one evaluation pass."""

from recbole_adt.inference.colliding import (
    CollidingInference,
    CollidingSettings,
    colliding_hook,
    dense_colliding_scores,
    nearest_neighbours,
    validate_colliding_settings,
)
from recbole_adt.inference.grid import evaluate_grid, grid_inferences

__all__ = [
    "CollidingInference",
    "CollidingSettings",
    "colliding_hook",
    "dense_colliding_scores",
    "evaluate_grid",
    "grid_inferences",
    "nearest_neighbours",
    "validate_colliding_settings",
]
