"""Denoisers: rules applied to the per-interaction base loss (BCE or BPR) of a training batch.

One module per denoiser, each with its paper's formula in the docstring:

- ``none`` (:mod:`.base`): the base loss unchanged (``adt_loss`` CE, BPR and NR);
- ``truncate`` (:mod:`.truncate`): T-CE and T-BPR, Eq. (2)-(3) and Algorithm 1;
- ``reweight`` (:mod:`.reweight`): R-CE and R-BPR, Eq. (4)-(6);
- ``dcf`` (:mod:`.dcf`): DCF (He et al., KDD 2024), drop by a bound on a per-interaction loss
  memory, relabel the surest false positives.
- ``udt`` (:mod:`.udt`): UDT as the reproducibility study's code runs it, weight each user's
  positives by a softmax of last epoch's losses and a factor by the user's loss rank.

:data:`DENOISERS` maps each name to its class. Every module of this package is imported here and
every :class:`Denoiser` subclass with a ``name`` registers itself, so adding a denoiser is adding
a file. The base loss is a separate choice (:mod:`recbole_adt.losses`); ``adt_loss`` names both
(``TCE`` is BCE + truncate, ``RBPR`` is BPR + reweight): each denoiser declares the names it
serves (:class:`AdtLoss`), and :data:`ADT_LOSS_NAMES` gathers them, with everything derived from
them (the loss table, display names, default grids, settings owners).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

from recbole_adt.denoisers.base import BASE_LOSSES, REGISTRY, AdtLoss, Denoised, Denoiser

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

DENOISERS: dict[str, type[Denoiser]] = dict(sorted(REGISTRY.items()))


def _loss_names() -> dict[str, AdtLoss]:
    """Every denoiser's ``adt_loss`` names, by base loss and then by the denoisers' ``order``."""
    names: dict[str, AdtLoss] = {}
    for denoiser in sorted(DENOISERS.values(), key=lambda cls: cls.order):
        for loss in denoiser.adt_losses:
            if loss.name in names or loss.base not in BASE_LOSSES:
                raise ValueError(
                    f"{denoiser.__name__} declares adt_loss {loss.name} on base loss "
                    f"{loss.base!r}: names must be unique, base losses among {BASE_LOSSES}."
                )
            names[loss.name] = dataclasses.replace(loss, denoiser=denoiser.name)
    ordered = sorted(names.values(), key=lambda loss: BASE_LOSSES.index(loss.base))
    return {loss.name: loss for loss in ordered}


# adt_loss name (upper case) -> its base loss, denoiser and display name
ADT_LOSS_NAMES: dict[str, AdtLoss] = _loss_names()

# The settings owners of the denoisers (recbole_adt.config parses each once per config).
DENOISER_SETTINGS: tuple[type, ...] = tuple(
    dict.fromkeys(cls.settings for cls in DENOISERS.values() if cls.settings is not None)
)


def check_denoiser_name(name: str) -> str:
    """Return ``name`` if it is a registered denoiser, else raise ``ValueError`` listing them."""
    if name not in DENOISERS:
        raise ValueError(f"Unknown denoiser {name!r}; valid choices are {', '.join(DENOISERS)}.")
    return name


def find_loss(name) -> AdtLoss:
    """The ``adt_loss`` called ``name`` (any case, dashes ignored: ``t-ce`` is TCE), or
    ``ValueError`` listing the valid names."""
    key = str(name).upper().replace("-", "")
    if key not in ADT_LOSS_NAMES:
        raise ValueError(
            f"Unknown adt_loss {name!r}; valid choices are {', '.join(ADT_LOSS_NAMES)}, e.g. "
            "--adt_loss=TCE."
        )
    return ADT_LOSS_NAMES[key]


def build_denoiser(name: str, config) -> Denoiser:
    """The denoiser ``name`` with its settings (e.g. ``beta``) from ``config``."""
    return DENOISERS[check_denoiser_name(name)].from_config(config)


__all__ = [
    "ADT_LOSS_NAMES",
    "DENOISERS",
    "DENOISER_SETTINGS",
    "AdtLoss",
    "Denoised",
    "Denoiser",
    "build_denoiser",
    "check_denoiser_name",
    "find_loss",
]
