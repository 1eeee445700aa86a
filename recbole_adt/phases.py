"""Training phases as config: ``phases: [warmup, adt, finetune]``, parsed and checked once.

The phases themselves run in :class:`~recbole_adt.trainer.PhasedTrainer`; this module only names
them, so that the config, the models and the trainer agree. :class:`PhaseSettings` owns the
``phases`` setting (:class:`~recbole_adt.settings.SettingsOwner`); which models can train on the
extra feedback :math:`D^*` of the ``warmup`` and ``finetune`` phases is decided in
:mod:`recbole_adt.model.extra_feedback`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

PHASE_NAMES = ("warmup", "adt", "finetune")
EXTRA_FEEDBACK_PHASES = ("warmup", "finetune")


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    epochs: int

    @property
    def on_extra_feedback(self) -> bool:
        return self.name in EXTRA_FEEDBACK_PHASES


@dataclasses.dataclass(frozen=True)
class PhaseSettings:
    """The parsed ``phases``: each phase's name and length, in training order.

    ``name`` runs up to ``epochs`` epochs, ``name:N`` up to N; ``adt`` appears exactly once.
    """

    KEYS: ClassVar[tuple[str, ...]] = ("phases",)

    phases: tuple[Phase, ...]

    @classmethod
    def from_config(cls, config) -> PhaseSettings:
        return cls(parse_phases(config["phases"], config["epochs"]))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(phase.name for phase in self.phases)

    @property
    def on_extra_feedback(self) -> bool:
        """Whether a phase trains on :math:`D^*` (``warmup`` or ``finetune``)."""
        return any(phase.on_extra_feedback for phase in self.phases)

    @property
    def adt(self) -> Phase:
        """The one ``adt`` phase."""
        return next(phase for phase in self.phases if phase.name == "adt")


def parse_phases(value, default_epochs: int) -> tuple[Phase, ...]:
    """``[warmup:20, adt, finetune]`` -> Phases; ``ValueError`` naming the valid forms otherwise."""
    usage = (
        f"phases must be a non-empty list of {', '.join(PHASE_NAMES)}, each optionally with "
        "':EPOCHS' (a positive integer), with adt exactly once, e.g. [warmup:20, adt, finetune]"
    )
    if isinstance(value, str):  # the command line's --phases=[warmup:20,adt] arrives as text
        for char in "[]'\",":
            value = value.replace(char, " ")
        value = value.split()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{usage}; got {value!r}.")
    phases = []
    for entry in value:
        name, _, epochs = str(entry).strip().partition(":")
        name = name.strip().lower().replace("-", "")
        if name not in PHASE_NAMES:
            raise ValueError(f"Unknown phase {entry!r}: {usage}.")
        if epochs.strip():
            try:
                count = int(epochs)
            except ValueError:
                count = 0
            if count <= 0 or str(count) != epochs.strip():
                raise ValueError(f"Bad phase length in {entry!r}: {usage}.")
        else:
            count = int(default_epochs)
        phases.append(Phase(name, count))
    if [phase.name for phase in phases].count("adt") != 1:
        raise ValueError(f"{usage}; got {value!r}.")
    return tuple(phases)
