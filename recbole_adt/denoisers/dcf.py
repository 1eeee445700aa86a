r"""DCF: the Double Correction Framework (He et al., "Double Correction Framework for Denoising
Recommendation", KDD 2024, arXiv:2405.11272: its method, "sample dropping correction" and
"progressive label correction"; equation numbers as the authors' code comments cite them).

Follows the authors' code, bruno686/DCF: ``loss.py`` (``PLC_uncertain_discard``, "the core of our
DCF") and ``main.py`` (the training loop that keeps the loss memory and the counts). Two
corrections of T-CE's "drop the largest-loss positives":

**Sample-dropping correction.** Each training positive :math:`(u,i)` keeps, in a
memory, the mean of its *damped* loss over the epochs of the current time window of
:math:`v` epochs (``dcf_time_step``; the memory restarts at each window):

.. math::
    \phi(\ell) = \log\big(1 + \ell + \ell^2/2\big),\qquad
    \mu_{ui} = \frac{1}{k}\sum_{j=1}^{k} \phi\big(\ell^{(j)}_{ui}\big)

(Eq. 2; ``soft_process`` in ``loss.py``; :math:`\phi` is non-decreasing and grows like
:math:`\log \ell` for outliers, like :math:`\ell` for small losses), :math:`k` being the number of
losses of :math:`(u,i)` seen in the window, this one included. Hard positives have a high
*variance* as well as a high mean, so the ranking uses the concentration lower bound of the mean
(Eq. 4, ``confidence_bound`` in ``loss.py``):

.. math::
    \ell^{*}_{ui} = \Big[\mu_{ui} - \frac{\sigma^2\,(s + \sigma^2 \log(2s)/s^2)}
    {n_{ui} + 1 - \sigma^2}\Big]_+

with :math:`s` the current epoch (1-based), :math:`n_{ui}` one plus the number of the window's
epochs in which :math:`(u,i)` was not relabelled (``sn`` in ``main.py``), and
:math:`\sigma^2` = ``dcf_co_lambda``, decayed linearly to 0 over the ADT epochs
(``co_lambda_plan`` in ``main.py``). Each batch drops the
:math:`\lfloor \epsilon(T)\cdot|batch| \rfloor` positives with the largest :math:`\ell^*`
(T-CE's drop-rate schedule and counter; a sampled negative is never dropped).

**Progressive label correction.** The most confidently noisy of those, the top
:math:`\lfloor r\cdot\lfloor \epsilon(T)\cdot|batch|\rfloor\rfloor` by :math:`\ell^*` with
:math:`r` = ``dcf_relabel_ratio``, are not dropped but *relabelled* 1 → 0 and trained as negatives,
:math:`\mathcal L = -\log(1-\sigma(s_{ui}))`; their number grows with :math:`\epsilon(T)`. The
batch loss is the mean over the kept and relabelled entries (``final_ind`` in ``loss.py``).

On BPR triples (RecBole's BPR, LightGCN, ..., :mod:`recbole_adt.model.generic`) each entry is
a triple whose label is 1 and whose margin is :math:`\hat y_{ui} - \hat y_{uj}`: its slot is its
(user, positive item), the memory averages the positive's BPR losses, and a relabelled triple's
loss :math:`-\log(1 - \sigma(\text{margin}))` is BPR on the reversed pair,
:math:`-\log\sigma(\hat y_{uj} - \hat y_{ui})`: the pair label "u prefers i to j" flips 1 → 0.

The memory is keyed by the interaction: the sorted int64 keys ``user * n_items + item`` of the
training split, looked up with ``searchsorted`` (:class:`InteractionMemory`), three numbers per
training interaction; never a dense user x item matrix.

Deviations from the authors' code, each a fix of what the paper describes:

- the code indexes its memory by the entry's *position* in a shuffled loader (``before_loss[
  start_point:stop_point]``), so an interaction reads another one's history; here a pair always
  reads its own slot;
- the code picks the relabelled entries but trains them with their original label 1
  (``t`` is re-read from the unchanged ``train_mat``): nothing is relabelled. Here they are
  trained with label 0, in that batch; the label in the data is not changed, so a later epoch
  decides again from the memory;
- the code's mean divides by the global epoch + 1 (``(before_loss * s + loss) / (s + 1)``), which
  halves the first epoch's loss and, after each window reset, scales the window's first mean by
  1/(epoch + 2), epochs counted from 0; here it is the plain mean of the window's losses, as
  Eq. 2 writes it. Eq. 2 slides over the last :math:`v` losses; the code, and this module,
  restart the memory every :math:`v` epochs instead;
- negatives have no memory (the code keeps a zero one for them): they are never dropped;
- the relabelled count is :math:`\lfloor r\cdot\lfloor\epsilon n\rfloor\rfloor`, the code's
  :math:`n - \lfloor (1 - r\epsilon) n \rfloor` (at most two more);
- the memory and the epoch count are not saved in checkpoints: a resumed run starts a new window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from recbole_adt.denoisers.base import AdtLoss, Denoised, Denoiser
from recbole_adt.denoisers.truncate import Truncate, drop_count
from recbole_adt.phases import PhaseSettings
from recbole_adt.settings import parsed


@dataclass(frozen=True)
class DCFSettings:
    r"""The owner of DCF's three settings (defaults: the authors', ``main.py``).

    ``relabel_ratio`` (``dcf_relabel_ratio``, :math:`r` in [0, 1]), ``co_lambda``
    (``dcf_co_lambda``, :math:`\sigma^2` in [0, 1]) and ``time_step`` (``dcf_time_step``,
    :math:`v`, epochs per memory window, an integer >= 1).
    """

    KEYS: ClassVar[tuple[str, ...]] = ("dcf_relabel_ratio", "dcf_co_lambda", "dcf_time_step")

    relabel_ratio: float
    co_lambda: float
    time_step: int

    def __post_init__(self) -> None:
        for key, value in zip(self.KEYS[:2], (self.relabel_ratio, self.co_lambda)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and 0 <= value <= 1)
            ):
                raise ValueError(
                    f"{key} must be a number in [0, 1], got {value!r}: "
                    + _MEANING[key]
                    + f", e.g. --{key}={_EXAMPLE[key]}."
                )
        time_step = self.time_step
        if isinstance(time_step, bool) or not isinstance(time_step, int) or time_step < 1:
            raise ValueError(
                f"dcf_time_step must be an integer >= 1, got {time_step!r}: "
                + _MEANING["dcf_time_step"]
                + ", e.g. --dcf_time_step=3."
            )
        object.__setattr__(self, "relabel_ratio", float(self.relabel_ratio))
        object.__setattr__(self, "co_lambda", float(self.co_lambda))

    @classmethod
    def from_config(cls, config) -> DCFSettings:
        return cls(
            relabel_ratio=config["dcf_relabel_ratio"],
            co_lambda=config["dcf_co_lambda"],
            time_step=config["dcf_time_step"],
        )


_MEANING = {
    "dcf_relabel_ratio": "the share of each batch's dropped positives relabelled 1 -> 0",
    "dcf_co_lambda": "sigma^2 of the loss lower bound (Eq. 4), decayed to 0 over the epochs",
    "dcf_time_step": "the epochs of one window of the loss memory",
}
_EXAMPLE = {"dcf_relabel_ratio": 0.05, "dcf_co_lambda": 0.0001}


def damp(loss: torch.Tensor) -> torch.Tensor:
    r"""The damping function :math:`\phi(\ell) = \log(1 + \ell + \ell^2/2)` (``soft_process``)."""
    return torch.log1p(loss + loss * loss / 2)


def confidence_bound(epoch: int, kept: torch.Tensor, *, co_lambda: float) -> torch.Tensor:
    r""":math:`\sigma^2 (s + \sigma^2\log(2s)/s^2) / (n + 1 - \sigma^2)`, subtracted in Eq. 4.

    ``epoch`` is :math:`s` (1-based), ``kept`` is :math:`n` per entry, ``co_lambda`` is
    :math:`\sigma^2` of this epoch.
    """
    s = float(epoch)
    return co_lambda * (s + co_lambda * math.log(2 * s) / (s * s)) / (kept + 1 - co_lambda)


class InteractionKeys:
    """A slot per training interaction, keyed by (user, item), not by position in a batch.

    ``keys`` are the sorted unique ``user * n_items + item`` of the training interactions; a
    per-interaction state is a tensor indexed by slot, so it grows with the interactions, never
    with users x items.
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_items: int, device=None):
        self.n_items = int(n_items)
        self.keys = torch.unique(users.long() * self.n_items + items.long()).to(device)

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(slot, found) of each (user, item) pair; ``slot`` is 0 where not found."""
        query = users.long() * self.n_items + items.long()
        if len(self.keys) == 0:
            return torch.zeros_like(query), torch.zeros_like(query, dtype=torch.bool)
        slot = torch.searchsorted(self.keys, query).clamp_(max=len(self.keys) - 1)
        found = self.keys[slot] == query
        return slot.masked_fill_(~found, 0), found


class InteractionMemory(InteractionKeys):
    """DCF's state: slot ``k`` holds the running mean of the damped loss, the number of losses
    seen in the window and :math:`n` (times kept with its label, plus one) of ``keys[k]``."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_items: int, device=None):
        super().__init__(users, items, n_items, device)
        self.mean = torch.zeros(len(self.keys), device=device)
        self.seen = torch.zeros(len(self.keys), dtype=torch.long, device=device)
        self.kept = torch.ones(len(self.keys), device=device)

    def reset(self) -> None:
        """A new time window: no losses seen, :math:`n = 1` (``main.py``'s ``sn``)."""
        self.mean.zero_()
        self.seen.zero_()
        self.kept.fill_(1.0)


class DCF(Denoiser):
    """Drop by the lower bound of the windowed damped mean loss; relabel the surest 1 -> 0."""

    name = "dcf"
    drops = True
    relabels = True
    keyed = True
    adt_losses = (AdtLoss("DCF", "bce", "DCF"),)
    order = 3
    settings = DCFSettings
    default_grid = Truncate.default_grid  # DCF drops on T-CE's schedule

    def __init__(self, *, relabel_ratio: float, co_lambda: float, time_step: int, epochs: int):
        checked = DCFSettings(relabel_ratio, co_lambda, time_step)
        self.relabel_ratio, self.co_lambda = checked.relabel_ratio, checked.co_lambda
        self.time_step = checked.time_step
        self.epochs = max(int(epochs), 1)  # the ADT epochs, over which sigma^2 decays to 0
        self.epoch = 0  # s: ADT epochs started so far
        self.memory: InteractionMemory | None = None
        self.relabelled: torch.Tensor | None = None  # the last batch's relabelled entries

    @classmethod
    def from_config(cls, config) -> DCF:
        settings = parsed(config, DCFSettings)
        return cls(
            relabel_ratio=settings.relabel_ratio,
            co_lambda=settings.co_lambda,
            time_step=settings.time_step,
            epochs=parsed(config, PhaseSettings).adt.epochs,
        )

    def prepare(self, dataset, *, device=None) -> None:
        inter = dataset.inter_feat
        self.memory = InteractionMemory(
            inter[dataset.uid_field], inter[dataset.iid_field], dataset.item_num, device
        )

    def start_epoch(self) -> None:
        self.epoch += 1
        if (self.epoch - 1) % self.time_step == 0:
            self.memory.reset()

    def current_co_lambda(self) -> float:
        r""":math:`\sigma^2` of this epoch: ``co_lambda * linspace(1, 0, epochs)[epoch - 1]``."""
        if self.epochs == 1:
            return self.co_lambda
        return self.co_lambda * max(1.0 - (max(self.epoch, 1) - 1) / (self.epochs - 1), 0.0)

    def __call__(self, loss, margin, labels, *, num_drop=0, users=None, items=None) -> Denoised:
        if self.memory is None or users is None or items is None:
            raise ValueError("DCF needs its memory (prepare) and each entry's user and item.")
        positive = labels > 0.5
        slot, found = self.memory.lookup(users, items)
        tracked = positive & found
        damped = damp(loss.detach()).masked_fill(~positive, 0.0)
        seen = self.memory.seen[slot].masked_fill(~tracked, 0)
        mean = (self.memory.mean[slot] * seen + damped) / (seen + 1)
        kept = torch.where(tracked, self.memory.kept[slot], torch.ones_like(mean))
        bound = confidence_bound(max(self.epoch, 1), kept, co_lambda=self.current_co_lambda())
        lower = torch.relu(mean - bound)

        ranked = lower.masked_fill(~positive, -math.inf)
        num_drop = min(int(num_drop), int(positive.sum()))
        top = ranked.topk(num_drop, sorted=True).indices
        num_relabel = drop_count(self.relabel_ratio, num_drop)
        relabelled = torch.zeros_like(positive)
        relabelled[top[:num_relabel]] = True
        dropped = torch.zeros_like(positive)
        dropped[top[num_relabel:]] = True

        at = slot[tracked]
        self.memory.mean[at] = mean[tracked]
        self.memory.seen[at] += 1
        self.memory.kept[at] += (~relabelled[tracked]).to(self.memory.kept.dtype)

        as_negative = torch.nn.functional.binary_cross_entropy_with_logits(
            margin, torch.zeros_like(margin), reduction="none"
        )
        loss = torch.where(relabelled, as_negative, loss).masked_fill(dropped, 0.0)
        self.relabelled = relabelled
        return Denoised(loss, dropped, None)

    def __repr__(self) -> str:
        return (
            f"DCF(relabel_ratio={self.relabel_ratio}, co_lambda={self.co_lambda}, "
            f"time_step={self.time_step})"
        )
