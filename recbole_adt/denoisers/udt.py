r"""UDT: per-user temperatures and weight factors over last epoch's losses, as the
reproducibility study of denoising recommendation runs it.

**Sources.** The study (RecSys 2025, public code ``bachml/EvalDenoisingRec``) compares UDT with
T-CE, R-CE, DCF and DeCA. Its code names the method only ``UDT``, and its reference list was not
reachable from here, so *nothing below is taken from UDT's own paper*: what this module does is
read off the study's code, ``code/main.py`` (the ``UDT`` branches: GMF, NeuMF, LightGCN),
``code/utils.py`` (``temperature_scaled_softmax``) and ``code/CDAE/main.py``, with its defaults
from ``code/experiments_config/*/*-UDT.yaml``. Where that code is ambiguous or does something its
own comments do not describe, the choice below is *our reading*, listed at the end.

**The rule (the study's code).** Each epoch keeps, for each training positive :math:`(u,i)`,
its last loss :math:`\ell_{ui}` of that epoch, and for each user :math:`u` the mean loss
:math:`\bar L_u` of all their entries of that epoch, positives and negatives. At the end of the
epoch the :math:`U` users are ranked by :math:`\bar L_u`, lowest first (rank :math:`r_u = 0`),
and each gets a softmax temperature and a weight factor spread linearly over the ranks
(``torch.linspace`` over the users):

.. math::
    \tau_u = \tau_1 + (\tau_2 - \tau_1)\,\frac{r_u}{U - 1},\qquad
    f_u = f_1 + (f_2 - f_1)\,\frac{r_u}{U - 1}

(``udt_temp1``, ``udt_temp2``, ``udt_userfact1``, ``udt_userfact2``; the study's 0.2, 0.5,
0.5, 0.0: the lowest-loss user gets the sharpest softmax and factor 0.5, the highest-loss user
factor 0, so the users the model fits worst are trained least). In the next epoch an entry
:math:`(u, i)` of a batch is weighted by

.. math::
    w_{ui} = f_u \cdot n_u\,\frac{\exp(-\ell_{ui}/\tau_u)}{\sum_{j \in I_u}
    \exp(-\ell_{uj}/\tau_u)}\ \text{for a training positive},\qquad
    w_{ui} = f_u\ \text{for a negative},

:math:`I_u` being the user's training positives and :math:`n_u = |I_u|`, so that a user's
positives share :math:`n_u f_u` (a mean of :math:`f_u` each) and a large-loss positive gets
less than a small-loss one, the more so the lower :math:`\tau_u`. The loss is the mean of
:math:`w_{ui}\,\mathcal L(u,i)` over the batch; :math:`w` is computed from past losses, so it
is not differentiated. The first two epochs are plain (``if epoch <= 1: mul_factor = 1``), so
weights start in the third, from the second epoch's losses.

**Base losses.** On (user, item, label) rows (GMF, NeuMF, RecBole's pointwise models) entries
are the positives and their sampled negatives. On BPR triples (LightGCN, BPR, ...) each triple
is an entry of its (user, positive item), :math:`\ell` its BPR loss, and every triple is
weighted as a positive. On CDAE's user x item reconstruction every cell of a user's row is an
entry: the row's items are positives, every other cell a negative (weight :math:`f_u`), and
:math:`\bar L_u` is the mean over the whole row.

**State.** Two floats per training interaction (the last loss and the next epoch's weight),
keyed by (user, item) through sorted keys (:class:`~recbole_adt.denoisers.dcf.InteractionKeys`,
as DCF's memory), and a few per user: never the dense users x items matrix the study's code
builds (``train_mat.toarray()``, ``loss_mat``, ``ui_factor``). Like DCF's memory, the state is
not saved in checkpoints (a resumed run starts over with two plain epochs), and under DDP each
rank would see only its share of the epoch, so UDT refuses DDP
(:func:`recbole_adt.distributed.check_distributed_settings`).

**Our reading, where it departs from the study's code:**

- the user loss: the code adds each batch's losses into ``user_loss[user]`` with an indexed
  ``+=``, which for a user with several entries in a batch keeps only one of them, and divides
  by :math:`n_u`; here it is the mean of all the user's entries of the epoch (the code's
  "avg of different number of interactions"; with one negative per positive the same ranking
  as the sum over :math:`n_u`);
- ranks count only the users with entries in the epoch (the code ranks every user id, those
  without training data at loss 0, so they take the lowest ranks and the largest factors); a
  user without entries keeps temperature and factor 1;
- a positive whose softmax term underflows to 0 keeps weight 0; the code turns every 0 of
  ``ui_factor`` into 1 (meant for the cells without a loss, the negatives), which gives a
  positive of huge loss a full weight. A positive without a loss in the last epoch (none in a
  full epoch) is weighted as a negative, :math:`f_u`, as the code does;
- CDAE: the study's CDAE code takes the softmax over the *current* batch's losses of the row's
  positives (scaled by half the row's entries, its positives with one sampled negative each)
  and samples negatives; here CDAE follows the rule above on RecBole's CDAE, whose loss covers
  the whole row;
- BPR triples: the study's LightGCN trains with BCE on sampled negatives; RecBole's LightGCN
  trains with BPR, weighted as above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from recbole_adt.denoisers.base import AdtLoss, Denoised, Denoiser
from recbole_adt.denoisers.dcf import InteractionKeys
from recbole_adt.settings import parsed

# Epochs trained without weights before the first weighted one (the study's ``epoch <= 1``).
PLAIN_EPOCHS = 2

_MEANING = {
    "udt_temp1": "the softmax temperature of the user with the lowest mean loss",
    "udt_temp2": "the softmax temperature of the user with the highest mean loss",
    "udt_userfact1": "the weight factor of the user with the lowest mean loss",
    "udt_userfact2": "the weight factor of the user with the highest mean loss",
}


@dataclass(frozen=True)
class UDTSettings:
    r"""The owner of UDT's four settings (defaults: the study's ``*-UDT.yaml``).

    ``temp1``, ``temp2`` (``udt_temp1``, ``udt_temp2``: :math:`\tau_1, \tau_2 > 0`) and
    ``userfact1``, ``userfact2`` (``udt_userfact1``, ``udt_userfact2``: :math:`f_1, f_2 \ge 0`),
    spread linearly from the lowest-loss user to the highest-loss one.
    """

    KEYS: ClassVar[tuple[str, ...]] = ("udt_temp1", "udt_temp2", "udt_userfact1", "udt_userfact2")

    temp1: float
    temp2: float
    userfact1: float
    userfact2: float

    def __post_init__(self) -> None:
        values = (self.temp1, self.temp2, self.userfact1, self.userfact2)
        for key, value in zip(self.KEYS, values):
            temperature = key.startswith("udt_temp")
            valid = (
                not isinstance(value, bool)
                and isinstance(value, (int, float))
                and math.isfinite(value)
                and (value > 0 if temperature else value >= 0)
            )
            if not valid:
                bound, example = ("> 0", 0.2) if temperature else (">= 0", 0.5)
                raise ValueError(
                    f"{key} must be a number {bound}, got {value!r}: {_MEANING[key]}, "
                    f"e.g. --{key}={example}."
                )
        for field, value in zip(("temp1", "temp2", "userfact1", "userfact2"), values):
            object.__setattr__(self, field, float(value))

    @classmethod
    def from_config(cls, config) -> UDTSettings:
        return cls(*(config[key] for key in cls.KEYS))


def by_rank(mean_loss: torch.Tensor, first: float, last: float) -> torch.Tensor:
    r"""Each user's value of ``linspace(first, last, U)`` at their rank by ``mean_loss``.

    Rank 0 is the lowest loss (ties in index order); one user gets ``first``.
    """
    ranked = torch.linspace(first, last, len(mean_loss), device=mean_loss.device)
    values = torch.empty_like(ranked)
    values[torch.argsort(mean_loss, stable=True)] = ranked
    return values


def positive_weights(
    last_loss: torch.Tensor,
    owner: torch.Tensor,
    temperature: torch.Tensor,
    factor: torch.Tensor,
) -> torch.Tensor:
    r""":math:`f_u\, n_u\, \mathrm{softmax}_{j \in I_u}(-\ell_{uj}/\tau_u)_i` per training positive.

    ``last_loss`` (inf where unseen), ``owner`` (each positive's user) are per interaction;
    ``temperature`` and ``factor`` per user. A softmax over the seen positives of each user,
    stabilised by the user's largest term; an unseen positive gets :math:`f_u`.
    """
    n_users = len(temperature)
    seen = torch.isfinite(last_loss)
    logit = (-last_loss / temperature[owner]).masked_fill(~seen, -math.inf)
    top = torch.full((n_users,), -math.inf, device=logit.device)
    top = top.scatter_reduce(0, owner, logit, reduce="amax")
    term = torch.exp(logit - top[owner]).masked_fill(~seen, 0.0)
    total = torch.zeros(n_users, device=logit.device).index_add_(0, owner, term)
    count = torch.bincount(owner, minlength=n_users).to(term.dtype)
    share = term / total[owner].clamp(min=torch.finfo(term.dtype).tiny)
    return factor[owner] * torch.where(seen, count[owner] * share, torch.ones_like(share))


class UDT(Denoiser):
    """Weight by per-user softmax of last epoch's losses and a per-user factor, by loss rank."""

    name = "udt"
    weights = True
    keyed = True
    adt_losses = (AdtLoss("UDT", "bce", "UDT"),)
    order = 4
    settings = UDTSettings
    # The temperatures of the study's configs: 0.2, and 0.1 for LightGCN on ml-100k.
    default_grid = {"udt_temp1": (0.1, 0.2)}

    def __init__(self, *, temp1: float, temp2: float, userfact1: float, userfact2: float):
        self.values = UDTSettings(temp1, temp2, userfact1, userfact2)
        self.epoch = 0  # ADT epochs started so far
        self.index: InteractionKeys | None = None
        self.last_loss = self.weight = None  # per training interaction
        self.owner = None  # the user of each training interaction
        self.user_sum = self.user_count = self.user_factor = None  # per user

    @classmethod
    def from_config(cls, config) -> UDT:
        settings = parsed(config, UDTSettings)
        return cls(
            temp1=settings.temp1,
            temp2=settings.temp2,
            userfact1=settings.userfact1,
            userfact2=settings.userfact2,
        )

    def prepare(self, dataset, *, device=None) -> None:
        inter = dataset.inter_feat
        self.track(
            inter[dataset.uid_field],
            inter[dataset.iid_field],
            n_users=dataset.user_num,
            n_items=dataset.item_num,
            device=device,
        )

    def track(self, users, items, *, n_users: int, n_items: int, device=None) -> None:
        """Start over with the training interactions ``(users[k], items[k])``."""
        self.index = InteractionKeys(users, items, n_items, device)
        n_users = int(n_users)
        self.epoch = 0
        self.owner = torch.div(self.index.keys, self.index.n_items, rounding_mode="floor")
        self.last_loss = torch.full((len(self.index),), math.inf, device=device)
        self.weight = torch.ones(len(self.index), device=device)
        self.user_sum = torch.zeros(n_users, device=device)
        self.user_count = torch.zeros(n_users, device=device)
        self.user_factor = torch.ones(n_users, device=device)

    @property
    def weighting(self) -> bool:
        """Whether this epoch is weighted (the third ADT epoch on)."""
        return self.epoch > PLAIN_EPOCHS

    def start_epoch(self) -> None:
        if self.epoch > 0:
            self._set_weights()
        self.last_loss.fill_(math.inf)
        self.user_sum.zero_()
        self.user_count.zero_()
        self.epoch += 1

    def _set_weights(self) -> None:
        """The next epoch's weights from the epoch just trained (see the module docstring)."""
        active = self.user_count > 0
        if not active.any():
            return
        mean = self.user_sum[active] / self.user_count[active]
        values = self.values
        temperature = torch.ones_like(self.user_sum)
        temperature[active] = by_rank(mean, values.temp1, values.temp2)
        self.user_factor = torch.ones_like(self.user_sum)
        self.user_factor[active] = by_rank(mean, values.userfact1, values.userfact2)
        self.weight = positive_weights(self.last_loss, self.owner, temperature, self.user_factor)

    def __call__(self, loss, margin, labels, *, num_drop=0, users=None, items=None) -> Denoised:
        if self.index is None or users is None or items is None:
            raise ValueError("UDT needs its state (prepare) and each entry's user and item.")
        users = users.long()
        positive = labels > 0.5
        slot, found = self.index.lookup(users, items)
        tracked = positive & found
        base = loss.detach()
        flat_users = users.flatten()
        self.user_sum.index_add_(0, flat_users, base.flatten().to(self.user_sum.dtype))
        self.user_count.index_add_(0, flat_users, torch.ones_like(self.user_sum[flat_users]))
        self.last_loss[slot[tracked]] = base[tracked].to(self.last_loss.dtype)
        if not self.weighting:
            return Denoised(loss, None, torch.ones_like(base))
        weight = torch.where(tracked, self.weight[slot], self.user_factor[users]).to(loss.dtype)
        return Denoised(weight * loss, None, weight)

    def __repr__(self) -> str:
        c = self.values
        return (
            f"UDT(temp1={c.temp1}, temp2={c.temp2}, userfact1={c.userfact1}, "
            f"userfact2={c.userfact2})"
        )
