r"""Full-sort evaluation near the cost of a bare ``scores = U @ I.T``, history mask and ``topk``.

RecBole 1.2.1's ``Trainer.evaluate`` over a ``FullSortEvalDataLoader`` gives the same metrics as
this module; it spends its time elsewhere (measured by ``bench/bench_evaluation.py``):

- **batches**: ``eval_batch_size`` counts scores, so 262144 scores are 6 users a batch on 40k
  items; every batch pays Python overhead, and ``DataStruct.update_tensor`` re-concatenates all
  results collected so far, which is quadratic in the number of batches;
- **positives**: ``Collector.eval_batch_collect`` builds a dense users x items integer matrix of
  each batch's positives (zeros, scatter, row sums) only to read ``topk`` of its entries, twice
  the memory traffic of the ``topk`` itself;
- **history**: the loader's ``collate_fn`` builds each batch's history index user by user in
  Python (about 20 us a user).

:class:`FullSortEvalMixin` fixes the three for the duration of each ``evaluate`` call, and leaves
everything else to RecBole:

- batches hold ``eval_memory_budget_mb`` of scores: :func:`users_per_batch` users, counting the
  model's ``full_sort_memory_factor`` floats per (user, item) pair (NeuMF's MLP tower holds a
  hidden vector per pair); set on the loader's batch sampler, restored afterwards;
- :class:`TopkCollector` finds the positives among the ``topk`` items by a sorted lookup;
- :class:`HistoryIndex` gathers each batch's history and positives from flat per-user arrays.

Users and their order, each user's history mask and positives, and the stored ``rec.topk`` are
RecBole's, so the metrics are identical (``tests/test_full_sort.py`` compares them with RecBole's
own path). One caveat: a batch's scores come from one matrix product, and BLAS may round a batch
of 1-3 users differently from a larger one (by ~1e-6 on GMF logits); that can only reorder items
whose scores are that close.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator import Collector
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_adt.settings import parsed

# Floats per (user, item) pair alive at the peak of full_sort_predict, for a model that does not
# say (``full_sort_memory_factor``): the scores and one temporary of the same shape.
DEFAULT_MEMORY_FACTOR = 2
BYTES_PER_SCORE = 4  # float32


@dataclasses.dataclass(frozen=True)
class EvalMemoryBudget:
    """The parsed ``eval_memory_budget_mb``: megabytes of scores per full-sort batch, or None to
    batch by RecBole's ``eval_batch_size``."""

    KEYS: ClassVar[tuple[str, ...]] = ("eval_memory_budget_mb",)

    megabytes: float | None

    @classmethod
    def from_config(cls, config) -> EvalMemoryBudget:
        value = config["eval_memory_budget_mb"]
        if value is None:
            return cls(None)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value > 0
            or not math.isfinite(value)
        ):
            raise ValueError(
                "eval_memory_budget_mb must be a finite number of megabytes > 0 (e.g. "
                "--eval_memory_budget_mb=16), or ~ to batch full-sort evaluation by "
                f"eval_batch_size as RecBole does; got {value!r}."
            )
        return cls(float(value))


def users_per_batch(budget_mb: float, n_items: int, memory_factor: float) -> int:
    """Users whose ``n_items`` scores, times ``memory_factor`` floats each, fit ``budget_mb``."""
    per_user = n_items * BYTES_PER_SCORE * memory_factor
    return max(1, int(budget_mb * 2**20 // per_user))


def budget_scores(config) -> int:
    """Scores in one block under ``eval_memory_budget_mb`` (``eval_batch_size`` without one): the
    ``max_scores_per_block`` of :class:`~recbole_adt.inference.CollidingInference`."""
    budget = parsed(config, EvalMemoryBudget).megabytes
    if budget is None:
        return int(config["eval_batch_size"])
    return max(1, int(budget * 2**20 // BYTES_PER_SCORE))


def has_full_sort_predict(model: torch.nn.Module) -> bool:
    """Whether the model scores all items itself (RecBole's fallback scores pairs by predict)."""
    return type(model).full_sort_predict is not AbstractRecommender.full_sort_predict


class TopkCollector(Collector):
    """RecBole's ``Collector``; ``rec.topk`` without a dense users x items matrix of positives.

    ``rec.topk`` is, per user, whether each of the ``max(topk)`` best items is a positive, and
    the number of positives. RecBole reads both from a dense 0/1 matrix; here the positives are
    sorted keys ``row * n_items + item`` and the top items are looked up by ``searchsorted``.
    The tensor stored is RecBole's, value and dtype. Metrics that need the scores or the ranks of
    every item (``rec.score``, ``rec.meanrank``: AUC, GAUC and value metrics) go RecBole's way.
    """

    def __init__(self, config):
        super().__init__(config)
        self._own = self.register.need("rec.topk") and not any(
            self.register.need(key) for key in ("rec.meanrank", "rec.score", "data.label")
        )

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if not self._own:
            return super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        _, topk_idx = torch.topk(scores_tensor, max(self.topk), dim=-1)
        if self.register.need("rec.items"):
            self.data_struct.update_tensor("rec.items", topk_idx)
        n_rows, n_items = scores_tensor.shape
        device = scores_tensor.device
        keys = torch.unique(positive_u.to(device) * n_items + positive_i.to(device))  # sorted
        pos_len = torch.bincount(keys // n_items, minlength=n_rows).unsqueeze(1)
        query = torch.arange(n_rows, device=device).unsqueeze(1) * n_items + topk_idx
        if len(keys):
            found = keys[torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)] == query
        else:
            found = torch.zeros_like(query, dtype=torch.bool)
        # RecBole's: an int32 0/1 matrix next to int64 counts, concatenated as int64.
        self.data_struct.update_tensor("rec.topk", torch.cat((found.int(), pos_len), dim=1))


class HistoryIndex:
    """A full-sort loader's per-user history and positives as flat arrays (CSR).

    ``collate(index)`` returns what the loader's own ``collate_fn`` returns, the same tensors in
    the same order, by slicing (a run of consecutive rows, the usual case) or gathering rows of
    the flat arrays instead of concatenating one tensor per user in Python.
    """

    def __init__(self, loader: FullSortEvalDataLoader):
        self.user_df = loader.user_df  # not the loader: a WeakKeyDictionary holds this index
        uids = np.asarray(loader.user_df[loader.uid_field])
        self._history = _Flat(loader.uid2history_item[uids])
        self._positive = _Flat(loader.uid2positive_item[uids])

    def collate(self, index):
        index = np.array(index)
        consecutive = len(index) > 0 and index[-1] - index[0] + 1 == len(index)
        if consecutive and (len(index) == 1 or bool((np.diff(index) == 1).all())):
            rows = slice(int(index[0]), int(index[-1]) + 1)
        else:
            rows = torch.from_numpy(index).long()
        history = self._history.rows(rows)
        positive_u, positive_i = self._positive.rows(rows)
        return self.user_df[index], history, positive_u, positive_i


class _Flat:
    """A sequence of 1-d int64 tensors as (row pointers, values, row of each value)."""

    def __init__(self, per_user) -> None:
        lengths = torch.tensor([t.numel() for t in per_user], dtype=torch.long)
        self.pointers = torch.zeros(len(per_user) + 1, dtype=torch.long)
        torch.cumsum(lengths, 0, out=self.pointers[1:])
        values = list(per_user)
        self.values = torch.cat(values).long() if values else torch.zeros(0, dtype=torch.long)
        self.owner = torch.repeat_interleave(torch.arange(len(per_user)), lengths)

    def rows(self, rows: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch row of each value, values) of ``rows``, in row order: RecBole's (u, i) index."""
        if isinstance(rows, slice):
            lo, hi = int(self.pointers[rows.start]), int(self.pointers[rows.stop])
            return self.owner[lo:hi] - rows.start, self.values[lo:hi]
        starts = self.pointers[rows]
        lengths = self.pointers[rows + 1] - starts
        batch_row = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        first = torch.cumsum(lengths, 0) - lengths  # where each row starts in the output
        offset = torch.arange(len(batch_row)) - first[batch_row] + starts[batch_row]
        return batch_row, self.values[offset]


class FullSortEvalMixin:
    """Trainer mixin: full-sort ``evaluate`` batched by memory, with :class:`TopkCollector`.

    Put it before RecBole's ``Trainer`` in the bases. ``eval_memory_budget_mb: ~`` keeps
    RecBole's ``eval_batch_size`` batches (the collector and history index still apply).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_memory_budget_mb = parsed(config, EvalMemoryBudget).megabytes
        self.eval_collector = TopkCollector(config)
        # loader -> HistoryIndex, built at a loader's first evaluation (after its shared pairs
        # are masked: WeightsOnlyCheckpointMixin.evaluate runs before this class's).
        self._history_indexes = weakref.WeakKeyDictionary()

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        with self._full_sort_batches(eval_data):
            return super().evaluate(
                eval_data,
                load_best_model=load_best_model,
                model_file=model_file,
                show_progress=show_progress,
            )

    def eval_users_per_batch(self, n_items: int) -> int | None:
        """Users per full-sort batch under the memory budget; None keeps the loader's."""
        if self.eval_memory_budget_mb is None or not has_full_sort_predict(self.model):
            return None  # RecBole's predict fallback splits its pairs by eval_batch_size itself
        factor = getattr(self.model, "full_sort_memory_factor", DEFAULT_MEMORY_FACTOR)
        return users_per_batch(self.eval_memory_budget_mb, n_items, factor)

    @contextlib.contextmanager
    def _full_sort_batches(self, eval_data) -> Iterator[None]:
        """Budget-sized batches and the flat history index on ``eval_data``, while evaluating."""
        if (
            not isinstance(eval_data, FullSortEvalDataLoader)
            or eval_data.is_sequential
            or eval_data.num_workers  # workers would need to pickle the index
        ):
            yield
            return
        sampler = eval_data.batch_sampler
        batch_size = sampler.batch_size
        users = self.eval_users_per_batch(eval_data._dataset.item_num)
        own_collate = vars(eval_data).get("collate_fn")
        try:
            if users is not None:
                # torch forbids setting the loader's batch_size; its batch sampler reads its own
                # on every iteration. The loader's uid order, and so every user's row, is kept.
                sampler.batch_size = users
            if eval_data not in self._history_indexes:
                self._history_indexes[eval_data] = HistoryIndex(eval_data)
            eval_data.collate_fn = self._history_indexes[eval_data].collate
            yield
        finally:
            sampler.batch_size = batch_size
            if own_collate is None:
                del eval_data.collate_fn
            else:
                eval_data.collate_fn = own_collate
