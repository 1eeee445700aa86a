"""Trainers: ADT's drop-rate schedule, and weights-only checkpoints for every RecBole trainer."""

from recbole_adt.trainer.adt_trainer import ADTTrainer
from recbole_adt.trainer.checkpoint import WeightsOnlyCheckpointMixin

__all__ = ["ADTTrainer", "WeightsOnlyCheckpointMixin"]
