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
"""

from __future__ import annotations

import math

import torch

from recbole_adt.denoisers.base import Denoised, Denoiser


def check_drop_rate(drop_rate: float) -> float:
    """Validate :math:`\\epsilon_{max}` (or any drop rate): it must lie in [0, 1)."""
    if not (isinstance(drop_rate, (int, float)) and 0.0 <= drop_rate < 1.0):
        raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}.")
    return float(drop_rate)


def drop_count(drop_rate: float, size: int | torch.Tensor) -> int | torch.Tensor:
    r""":math:`\lfloor \epsilon \cdot n \rfloor`, robust to float error (0.1 * 30 is 3)."""
    if isinstance(size, torch.Tensor):
        return torch.floor(drop_rate * size + 1e-9).long()
    return math.floor(drop_rate * size + 1e-9)


def largest_loss_positives(
    loss: torch.Tensor, labels: torch.Tensor, num_drop: int | torch.Tensor
) -> torch.Tensor:
    r"""Boolean mask of the ``num_drop`` positives with the largest loss, along the last dim.

    Negatives (``labels == 0``) are never selected, and at most the number of positives in a row
    is dropped. ``num_drop`` is an int, or a tensor broadcastable to ``loss.shape[:-1]`` (one
    count per row, as CDAE needs).
    """
    is_positive = labels > 0.5
    num_drop = torch.as_tensor(num_drop, device=loss.device)
    num_drop = torch.minimum(num_drop, is_positive.sum(-1)).expand(loss.shape[:-1])
    dropped = torch.zeros_like(is_positive)
    most = int(num_drop.max()) if num_drop.numel() else 0
    if most == 0:
        return dropped
    ranked = loss.detach().masked_fill(~is_positive, -math.inf)
    top_index = ranked.topk(most, dim=-1, sorted=True).indices
    rank = torch.arange(most, device=loss.device)
    dropped.scatter_(-1, top_index, rank < num_drop.unsqueeze(-1))
    return dropped


class Truncate(Denoiser):
    """Drop the ``num_drop`` largest-loss positives: the loss of a dropped entry is 0."""

    name = "truncate"
    drops = True

    def __call__(self, loss, margin, labels, *, num_drop=0) -> Denoised:
        dropped = largest_loss_positives(loss, labels, num_drop)
        return Denoised(loss.masked_fill(dropped, 0.0), dropped, None)
