r"""Truncation: T-CE and T-BPR (Wang et al., "Learning Robust Recommender from Noisy Implicit
Feedback", Eq. 2-3 and Algorithm 1).

Large-loss positives are likely false positives, so each batch drops the positives with the
largest loss:

.. math::
    \mathcal{L}_{T}(u,i) =
    \begin{cases} 0, & \mathcal{L}(u,i) > \tau(T) \wedge \bar y_{ui} = 1 \\
    \mathcal{L}(u,i), & \text{otherwise} \end{cases}

where :math:`\tau(T)` is set so that exactly :math:`\lfloor \epsilon(T)\cdot|\bar D_T| \rfloor`
entries are dropped, :math:`|\bar D_T|` being the number of entries of the batch and
:math:`\epsilon(T)` the drop rate of the shared schedule (Eq. 3, :mod:`recbole_adt.schedule`).

- T-CE: :math:`\mathcal L` is CE; entries are positives and sampled negatives, and a negative is
  never dropped.
- T-BPR: :math:`\mathcal L` is BPR, :math:`-\log\sigma(\hat y_{ui} - \hat y_{uj})`; entries are
  (user, positive, negative) triples, all of them droppable: the
  :math:`\lfloor \epsilon(T)\cdot|\text{batch}| \rfloor` triples with the largest BPR loss go.

Two options sit next to that count, which stays the default:

- ``drop_base`` (:data:`DROP_BASES`, owned by :class:`TruncateSettings`): ``batch`` takes
  :math:`n` = every entry of the batch, positives and sampled negatives (the paper's
  :math:`|\bar D_T|`); ``positives`` takes :math:`n` = the batch's positives only, so the share
  of *positives* dropped is :math:`\epsilon` whatever the number of sampled negatives (with one
  negative per positive, ``batch`` drops up to :math:`2\epsilon` of them).
- ``drop_count`` (:data:`~recbole_adt.schedule.DROP_COUNTS`, owned with the ramp that goes with
  it by :class:`~recbole_adt.schedule.DropSchedule`): ``paper`` drops
  :math:`\lfloor \epsilon n \rfloor`; ``authors`` drops what the authors' released code drops
  (github.com/WenjieWWJ/DenoisingRec, ``T_CE/loss.py``)::

      loss_mul = loss * t
      ind_sorted = np.argsort(loss_mul.cpu().data).cuda()
      loss_sorted = loss[ind_sorted]
      remember_rate = 1 - drop_rate
      num_remember = int(remember_rate * len(loss_sorted))
      ind_update = ind_sorted[:num_remember]

  it keeps :math:`\lfloor (1-\epsilon) n \rfloor` entries, so drops
  :math:`n - \lfloor (1-\epsilon) n \rfloor = \lceil \epsilon n \rceil`: one more than
  :math:`\lfloor \epsilon n \rfloor` whenever :math:`\epsilon n` is not whole, hence at
  least one per batch from the second batch of the ramp (:math:`T = 1`) on, with its schedule
  (:func:`recbole_adt.schedule.authors_schedule`). Here the count is exact: its ``int()`` of a
  float drops one more still where :math:`(1-\epsilon) n` lands just below a whole number
  (:math:`\epsilon = 0.3`, :math:`n = 90` drops 28, not 27). Sorting by ``loss * label`` puts
  negatives (0) first, so they drop only when the count exceeds the positives; here a negative
  is never dropped.

A matrix loss (CDAE's user x item reconstruction) has no sampled negatives: its negatives are
every item the user did not interact with. Its count is per user row and always relative to that
row's positives, under either ``drop_base`` (a share of the whole row would drop
:math:`\epsilon |I|` entries, most of them beyond the user's positives).

Each batch costs one ``topk``. For pointwise batches and BPR triples its size is known on the
host (:func:`largest_loss_positives`), so training never waits for the device to report a count;
CDAE's per-row counts read their largest value back once per batch to size it (a bound known on
the host, :math:`\epsilon |I|`, would make that ``topk`` nearly a sort of every row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from recbole_adt.denoisers.base import AdtLoss, Denoised, Denoiser

DROP_BASES = ("batch", "positives")


@dataclass(frozen=True)
class TruncateSettings:
    """The owner of ``drop_base``: what :math:`n` of the drop count counts (:data:`DROP_BASES`).

    The schedule's settings (``drop_rate``, ``num_gradual``, its unit and ``drop_count``) are
    :class:`~recbole_adt.schedule.DropSchedule`'s.
    """

    KEYS: ClassVar[tuple[str, ...]] = ("drop_base",)

    drop_base: str

    def __post_init__(self) -> None:
        if self.drop_base not in DROP_BASES:
            raise ValueError(
                f"drop_base must be one of {', '.join(DROP_BASES)}, got {self.drop_base!r}: "
                "batch drops a share of all the batch's rows (positives and sampled negatives, "
                "as the paper), positives a share of its positives only. E.g. --drop_base=batch."
            )

    @classmethod
    def from_config(cls, config) -> TruncateSettings:
        return cls(drop_base=config["drop_base"])


def drop_count(
    drop_rate: float, size: int | torch.Tensor, *, rule: str = "paper"
) -> int | torch.Tensor:
    r"""Entries to drop out of ``size``: :math:`\lfloor \epsilon n \rfloor` (``paper``) or
    :math:`n - \lfloor (1-\epsilon) n \rfloor = \lceil \epsilon n \rceil` (``authors``).

    Robust to float error: 0.1 * 30 is 3 for ``paper``, and (1 - 0.3) * 90 is 63 for
    ``authors``. A tensor ``size`` gives a tensor on its device (no host sync).
    """
    if rule == "paper":
        if isinstance(size, torch.Tensor):
            return torch.floor(drop_rate * size + 1e-9).long()
        return math.floor(drop_rate * size + 1e-9)
    if rule == "authors":
        if isinstance(size, torch.Tensor):
            return size - torch.floor((1.0 - drop_rate) * size + 1e-9).long()
        return size - math.floor((1.0 - drop_rate) * size + 1e-9)
    raise ValueError(f"Unknown drop count rule {rule!r}; valid choices are paper, authors.")


@dataclass(frozen=True)
class BoundedCount:
    """A drop count that lives on the device, with an upper bound known on the host.

    ``count`` (0-d, or one per row) sets how many entries go; ``bound`` (>= every count) sizes
    the ``topk``, so the count is never read back to the host. ``int()`` reads it (a sync), for
    denoisers that need a number.
    """

    count: torch.Tensor
    bound: int

    def __int__(self) -> int:
        return int(self.count.max()) if self.count.numel() else 0


def batch_drop_count(
    drop_rate: float, labels: torch.Tensor, *, base: str = "batch", rule: str = "paper"
) -> int | BoundedCount:
    r"""The drop count of one batch of entries with ``labels`` (1 = positive).

    ``base="batch"``: :func:`drop_count` of every entry, a host int. ``base="positives"``:
    :func:`drop_count` of the positives, a :class:`BoundedCount` bounded by the ``batch`` count
    (the count grows with :math:`n`), so no host sync either way.
    """
    everything = drop_count(drop_rate, labels.numel(), rule=rule)
    if base == "batch":
        return everything
    if base == "positives":
        return BoundedCount(drop_count(drop_rate, (labels > 0.5).sum(), rule=rule), everything)
    raise ValueError(f"Unknown drop_base {base!r}; valid choices are {', '.join(DROP_BASES)}.")


def largest_loss_positives(
    loss: torch.Tensor, labels: torch.Tensor, num_drop: int | torch.Tensor | BoundedCount
) -> torch.Tensor:
    r"""Boolean mask of the ``num_drop`` positives with the largest loss, along the last dim.

    Negatives (``labels == 0``) are never selected, and at most the number of positives in a row
    is dropped. ``num_drop`` is an int (the same count for every row), a
    :class:`BoundedCount`, or a tensor broadcastable to ``loss.shape[:-1]`` (one count per row,
    as CDAE needs).

    One ``topk`` per call. An int or a :class:`BoundedCount` sizes it on the host (no host
    sync); an int needs no sorted order either: the top ``num_drop`` entries, negatives ranked
    last, are kept where positive. A bare tensor count reads its largest value back (one sync)
    to size the ``topk``.
    """
    is_positive = labels > 0.5
    dropped = torch.zeros_like(is_positive)
    ranked = loss.detach().masked_fill(~is_positive, -math.inf)
    if not isinstance(num_drop, (torch.Tensor, BoundedCount)):
        # With k <= positives this is the same topk as before; with more, every positive goes.
        most = min(int(num_drop), loss.shape[-1])
        if most <= 0:
            return dropped
        top_index = ranked.topk(most, dim=-1, sorted=False).indices
        return dropped.scatter_(-1, top_index, is_positive.gather(-1, top_index))
    if isinstance(num_drop, BoundedCount):
        count, most = num_drop.count, min(num_drop.bound, loss.shape[-1])
    else:
        count = torch.as_tensor(num_drop, device=loss.device)
        count = torch.minimum(count, is_positive.sum(-1))
        most = int(count.max()) if count.numel() else 0
    if most <= 0:
        return dropped
    top_index = ranked.topk(most, dim=-1, sorted=True).indices
    rank = torch.arange(most, device=loss.device)
    keep = (rank < count.unsqueeze(-1)) & is_positive.gather(-1, top_index)
    return dropped.scatter_(-1, top_index, keep)


class Truncate(Denoiser):
    """Drop the ``num_drop`` largest-loss positives: the loss of a dropped entry is 0."""

    name = "truncate"
    drops = True
    adt_losses = (AdtLoss("TCE", "bce", "T-CE"), AdtLoss("TBPR", "bpr", "T-BPR"))
    order = 1
    settings = TruncateSettings
    # The paper's grid (section 5): epsilon_max x epsilon_N, counted in iterations.
    default_grid = {
        "drop_rate": (0.05, 0.1, 0.2),
        "num_gradual": (1000, 5000, 10000, 20000, 30000),
        "num_gradual_unit": ("iterations",),
    }

    def __call__(self, loss, margin, labels, *, num_drop=0) -> Denoised:
        dropped = largest_loss_positives(loss, labels, num_drop)
        return Denoised(loss.masked_fill(dropped, 0.0), dropped, None)
