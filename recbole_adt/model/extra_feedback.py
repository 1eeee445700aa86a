r"""What a model needs for the extra-feedback strategies of paper section 3.4.

:class:`ExtraFeedbackMixin` gives a :class:`~recbole_adt.model.DenoisingLossMixin` model

- :meth:`set_training_phase`: in the ``warmup`` and ``finetune`` phases the loss is plain CE
  (Eq. 7) whatever ``adt_loss`` says; ``adt`` restores the configured loss;
- :meth:`user_representations`: the user space in which colliding inference (Eq. 8) looks for
  neighbours, :math:`E^*` when taken right after warm-up. Each model says what it is.

:func:`trains_on_extra_feedback` is the one rule for which models may run the warmup and
finetune phases (and so colliding inference): those with this mixin.
"""

from __future__ import annotations

import torch

from recbole_adt.phases import EXTRA_FEEDBACK_PHASES, PHASE_NAMES


class ExtraFeedbackMixin:
    """Mix in before :class:`DenoisingLossMixin`; call nothing extra in ``__init__``."""

    training_phase = "adt"

    def set_training_phase(self, phase: str) -> None:
        if phase not in PHASE_NAMES:
            raise ValueError(f"Unknown phase {phase!r}; valid: {', '.join(PHASE_NAMES)}.")
        if not hasattr(self, "configured_adt_loss"):
            self.configured_adt_loss = self.adt_loss
        self.training_phase = phase
        self.adt_loss = "CE" if phase in EXTRA_FEEDBACK_PHASES else self.configured_adt_loss

    def user_representations(self) -> torch.Tensor:
        """(n_users, d) user vectors whose inner products measure user similarity."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no user representation, so colliding inference "
            "cannot find neighbours for it."
        )


def trains_on_extra_feedback(model_class: type) -> bool:
    """Whether ``model_class`` can train on :math:`D^*` (the warmup and finetune phases, Eq. 7)
    and give :math:`E^*`: this package's GMF, NeuMF, CDAE and NMTR, not RecBole's models."""
    return isinstance(model_class, type) and issubclass(model_class, ExtraFeedbackMixin)
