r"""What a denoiser is: a rule applied to the per-interaction losses of one training batch.

A denoiser sees the base loss of each entry of a batch (BCE of a (user, item, label) row, BPR of a
(user, positive, negative) triple, or BCE of one cell of a user x item reconstruction), the
*margin* behind it and the entry's label, and returns the loss with some entries dropped or
reweighted:

- the margin is the logit :math:`s_{ui}` of a pointwise entry, so :math:`\hat y_{ui} =
  \sigma(s_{ui})`, or the score difference :math:`\hat y_{ui} - \hat y_{uj}` of a BPR triple,
  whose label is always 1 (the triple's positive);
- ``num_drop`` is :math:`\lfloor \epsilon(T)\cdot n \rfloor` for the current batch, computed by the
  caller from the shared drop-rate schedule (:mod:`recbole_adt.schedule`); a denoiser that does not
  drop ignores it.

Denoisers never reduce: the caller averages, and counts the dropped entries and the weights of
clean and false-positive interactions for the per-epoch log line
(:class:`~recbole_adt.model.DenoisingLossMixin`). Every subclass that sets ``name`` is
registered; :mod:`recbole_adt.denoisers` imports every module of the package, so adding a
denoiser is adding a file.

A denoiser class declares everything the rest of the package knows about it: the ``adt_loss``
names it serves with their base loss and display name (:class:`AdtLoss`), its settings owner
(a frozen class with ``KEYS`` and ``from_config``, :class:`~recbole_adt.settings.SettingsOwner`)
and its default hyper-parameter grid. The loss table (:data:`recbole_adt.losses.ADT_LOSSES`),
the result tables' names, the default grids and ``compare``'s lists are derived from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, NamedTuple

import torch

REGISTRY: dict[str, type[Denoiser]] = {}

# The base losses an adt_loss name can denoise (recbole_adt.losses), in the order names are listed.
BASE_LOSSES = ("bce", "nr", "bpr")

# Default grids of the adt_loss names whose settings are their base loss's, not a denoiser's.
# NR (recbole_adt.losses.NRWeights): the shares Wen et al.'s scripts search over
# {0, 0.2, ..., 1} (wrmf_exp.sh), cut to p + n <= 1 for every pair and to p > 0 (without
# satisfied clicks every label is 0); nr_neg_ratio 0 is their baseline without dissatisfied clicks.
LOSS_GRIDS: dict[str, Mapping[str, tuple]] = {
    "NR": {"nr_pos_ratio": (0.2, 0.4, 0.6), "nr_neg_ratio": (0.0, 0.2, 0.4)},
}


@dataclasses.dataclass(frozen=True)
class AdtLoss:
    """An ``adt_loss`` name: the base loss its denoiser applies to, and its name in tables."""

    name: str  # the setting's value, upper case: TCE
    base: str  # one of BASE_LOSSES
    display: str  # T-CE
    denoiser: str = ""  # the registered denoiser's name, filled in by the registry


class Denoised(NamedTuple):
    """A denoiser's output, entry by entry."""

    loss: torch.Tensor  # the denoised per-entry loss; a dropped entry is exactly 0
    dropped: torch.Tensor | None  # bool mask of the dropped entries; None: drops nothing
    weight: torch.Tensor | None  # the weight of each entry; None: weights nothing


class Denoiser:
    """No denoising: the base loss as it is (``adt_loss`` CE, BPR, and NR's extra-feedback loss).

    Subclasses set ``name`` (the key of :data:`recbole_adt.denoisers.DENOISERS`), ``drops``
    (follows the drop-rate schedule; the log line shows the drop counts), ``weights`` (the log
    line shows the mean weights), ``relabels`` (the log line shows the relabelled counts; the
    last call's bool mask of positives trained as negatives is kept in ``relabelled``) and
    ``keyed`` (:meth:`__call__` also takes each entry's ``users`` and ``items``); they declare
    ``adt_losses`` (the names they serve), ``order`` (their place in lists of names),
    ``settings`` (their settings owner, parsed once per config) and ``default_grid``; and they
    override :meth:`__call__` and, if they take settings, :meth:`from_config`. A denoiser with
    state over the training split overrides :meth:`prepare` and :meth:`start_epoch`.
    """

    name: ClassVar[str] = "none"
    drops: ClassVar[bool] = False
    weights: ClassVar[bool] = False
    relabels: ClassVar[bool] = False
    keyed: ClassVar[bool] = False
    # The adt_loss names this denoiser serves. NR's weights are the base loss's settings
    # (recbole_adt.losses.NRWeights), not a denoiser's.
    adt_losses: ClassVar[tuple[AdtLoss, ...]] = (
        AdtLoss("CE", "bce", "CE"),
        AdtLoss("NR", "nr", "NR"),
        AdtLoss("BPR", "bpr", "BPR"),
    )
    order: ClassVar[int] = 0  # where its names come among those of one base loss
    settings: ClassVar[type | None] = None  # the owner of its settings, if it has any
    default_grid: ClassVar[Mapping[str, tuple]] = {}  # the paper's search, setting -> values

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls

    @classmethod
    def from_config(cls, config) -> Denoiser:
        """The denoiser with its settings read from a RecBole ``Config`` (or a dict)."""
        return cls()

    def prepare(self, dataset, *, device=None) -> None:
        """Called once with the training split (a RecBole ``Dataset``) before training."""

    def start_epoch(self) -> None:
        """Called by the trainer before each epoch of the ADT phase."""

    def __call__(
        self,
        loss: torch.Tensor,
        margin: torch.Tensor,
        labels: torch.Tensor,
        *,
        num_drop: int | torch.Tensor = 0,
    ) -> Denoised:
        return Denoised(loss, None, None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


REGISTRY[Denoiser.name] = Denoiser
