"""Trainers: ADT's drop-rate schedule, training phases, weights-only checkpoints, and the
guards against numerical faults and stop signals."""

from recbole_adt.trainer.adt_trainer import ADTTrainer
from recbole_adt.trainer.checkpoint import WeightsOnlyCheckpointMixin
from recbole_adt.trainer.faults import FaultGuardMixin, NumericalFault, TrainingStopped
from recbole_adt.trainer.full_sort import FullSortEvalMixin
from recbole_adt.trainer.phased_trainer import PhasedTrainer
from recbole_adt.trainer.selection import CheckpointRuleMixin

__all__ = [
    "ADTTrainer",
    "CheckpointRuleMixin",
    "FaultGuardMixin",
    "FullSortEvalMixin",
    "NumericalFault",
    "PhasedTrainer",
    "TrainingStopped",
    "WeightsOnlyCheckpointMixin",
]
