"""Denoisers: rules applied to the per-interaction base loss (BCE or BPR) of a training batch.

One module per denoiser, each with its paper's formula in the docstring:

- ``none`` (:mod:`.base`): the base loss unchanged;
- ``truncate`` (:mod:`.truncate`): T-CE and T-BPR, Eq. (2)-(3) and Algorithm 1;
- ``reweight`` (:mod:`.reweight`): R-CE and R-BPR, Eq. (4)-(6);
- ``dcf`` (:mod:`.dcf`): DCF (He et al., KDD 2024), drop by a bound on a per-interaction loss
  memory, relabel the surest false positives.

:data:`DENOISERS` maps each name to its class. Every module of this package is imported here and
every :class:`Denoiser` subclass with a ``name`` registers itself, so adding a denoiser is adding
a file. The base loss is a separate choice (:mod:`recbole_adt.losses`); ``adt_loss`` names both
(``TCE`` is BCE + truncate, ``RBPR`` is BPR + reweight, see ``ADT_LOSSES`` there).
"""

from __future__ import annotations

import importlib
import pkgutil

from recbole_adt.denoisers.base import REGISTRY, Denoised, Denoiser

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

DENOISERS: dict[str, type[Denoiser]] = dict(sorted(REGISTRY.items()))


def check_denoiser_name(name: str) -> str:
    """Return ``name`` if it is a registered denoiser, else raise ``ValueError`` listing them."""
    if name not in DENOISERS:
        raise ValueError(f"Unknown denoiser {name!r}; valid choices are {', '.join(DENOISERS)}.")
    return name


def build_denoiser(name: str, config) -> Denoiser:
    """The denoiser ``name`` with its settings (e.g. ``beta``) from ``config``."""
    return DENOISERS[check_denoiser_name(name)].from_config(config)


__all__ = ["DENOISERS", "Denoised", "Denoiser", "build_denoiser", "check_denoiser_name"]
