r"""NR's stratified batches (Wen, Yang, Estrin, "Leveraging Post-click Feedback for Content
Recommendations", RecSys 2019; ref. [5] of Wang et al., section 5.3).

The authors' sampler (``negative_pointwise_sampler.py`` of ``whongyi/post-click-contentRecSys``)
composes every batch of :math:`B` rows from three groups, each by its share:

- :math:`\lfloor B\,p \rfloor` *satisfied* clicks, label 1 (``nr_pos_ratio`` :math:`p`);
- :math:`\lfloor B\,n \rfloor` *dissatisfied* clicks, label 0 (``nr_neg_ratio`` :math:`n`);
- the rest *non-clicks*: a user and an item drawn uniformly, redrawn while the pair is any
  training click, label 0.

Clicks are drawn uniformly with replacement within their group (the authors draw random records
and keep those of a group until it is full). The model trains plain CE on these rows; the shares
*are* NR's weights (``neg_ratio > 0`` is what the authors' script calls "re-weighting implicit
negative feedback"; ``neg_ratio = 0`` their baseline with corrected labels). Both shares are
grid-searched there over {0, 0.2, ..., 1} with :math:`0 < p + n \le 1`.

The groups for our two kinds of :math:`D^*` (:func:`nr_groups`); Wen et al.'s data labels every
click (complete or skip), ours does not:

- satisfied: the clicks in :math:`D^*` (simulated: a revealed share of the true positives;
  real: ``extra_feedback_field >= extra_feedback_threshold``);
- dissatisfied: with real extra feedback and ``nr_dissatisfied_threshold`` set, the clicks whose
  ``extra_feedback_field`` is below it (e.g. ratings 1-3 under threshold 4). Simulated
  :math:`D^*` has no known dissatisfied click (the false-positive flag is the hidden truth);
- every other click is *unlabelled*: ``nr_unlabelled_clicks: dissatisfied`` puts it in the
  dissatisfied group (every click labelled, as in Wen et al.'s data; this is the reading behind
  Wang et al.'s Table 4, whose NR "re-weights the false-positive and non-interacted ones" and
  "will lose extensive positive training interactions"), ``excluded`` keeps it out of every
  batch. Unlabelled clicks are never drawn as non-clicks under either reading.

Our choices: an epoch has as many rows as a plain RecBole epoch (training clicks times
``1 + sample_num`` of ``train_neg_sample_args``), in :math:`\lceil \cdot / B \rceil` batches of
``train_batch_size`` rows; draws come from a generator of the loader's own seeded with ``seed``
(plus ``local_rank`` in a multi-GPU run), so the global random state is untouched. The authors'
sampler writes its non-clicks from row 0 on, over part of the clicks it has just drawn (its last
loop restarts ``ind`` at 0, and the rows after the clicks stay user 0, item 0, label 0); we keep
the shares as stated instead.
"""

from __future__ import annotations

import math

import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction

from recbole_adt.data.extra_feedback import ExtraFeedbackSettings
from recbole_adt.losses import LossChoice, NRWeights
from recbole_adt.settings import parsed

# NR_GROUP_FIELD values of a batch row, and of nr_groups' excluded clicks
SATISFIED, DISSATISFIED, NON_CLICK, EXCLUDED = 0, 1, 2, -1
NR_GROUP_FIELD = "nr_group"


def nr_groups(
    satisfied: torch.Tensor,
    values: torch.Tensor | None,
    settings: NRWeights,
) -> torch.Tensor:
    """The NR group of each training click: SATISFIED, DISSATISFIED or EXCLUDED (int8).

    ``satisfied`` is :math:`D^*`'s row mask; ``values`` the ``extra_feedback_field`` column with
    real extra feedback, None with simulated :math:`D^*`.
    """
    known_low = torch.zeros_like(satisfied)
    if settings.dissatisfied_threshold is not None:
        if values is None:
            raise ValueError(
                "nr_dissatisfied_threshold needs real extra feedback (extra_feedback_field, e.g. "
                "rating), but D* is simulated: leave it empty (~), and choose with "
                "nr_unlabelled_clicks what the clicks outside D* are."
            )
        known_low = ~satisfied & (values.double() < settings.dissatisfied_threshold)
    unlabelled = DISSATISFIED if settings.unlabelled_clicks == "dissatisfied" else EXCLUDED
    groups = torch.full(satisfied.shape, unlabelled, dtype=torch.int8)
    groups[known_low] = DISSATISFIED
    groups[satisfied] = SATISFIED
    return groups


class NRBatchLoader(TrainDataLoader):
    """Training batches composed by NR's shares (module docstring); one index = one batch."""

    def __init__(self, config, dataset, sampler, shuffle=False):
        self.nr_settings = parsed(config, NRWeights)
        extra = dataset.extra_feedback  # ADTDataset built D* for adt_loss NR
        field = parsed(config, ExtraFeedbackSettings).field
        values = dataset.inter_feat[field] if field else None
        self.groups = nr_groups(extra.row_mask, values, self.nr_settings)
        self.rows = {g: torch.nonzero(self.groups == g).flatten() for g in (0, 1)}
        uid, iid = dataset.uid_field, dataset.iid_field
        self.uid_field, self.iid_field = uid, iid
        self.n_items = dataset.item_num
        users = dataset.inter_feat[uid].long()
        self.click_keys = torch.unique(users * self.n_items + dataset.inter_feat[iid].long())
        # Each process of a multi-GPU run draws its own batches (RecBole hands it 1/nproc of them).
        seed = config["seed"] + (config["local_rank"] or 0)
        self.nr_generator = torch.Generator().manual_seed(seed)
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        self._check_groups()

    def _init_batch_size_and_step(self):
        # A plain epoch's rows in batches of train_batch_size; collate_fn makes a whole batch.
        batch_size = self.config["train_batch_size"]
        self.set_batch_size(batch_size)
        self.step = 1
        self.sample_size = max(1, math.ceil(len(self._dataset) * self.times / batch_size))

    def _check_groups(self) -> None:
        counts = self.nr_settings.counts(self._batch_size)
        for group, name, key in (
            (0, "satisfied", "nr_pos_ratio"),
            (1, "dissatisfied", "nr_neg_ratio"),
        ):
            if counts[group] > 0 and len(self.rows[group]) == 0:
                raise ValueError(
                    f"{key} asks for {counts[group]} {name} clicks per NR batch, but the "
                    f"training split has none (nr_unlabelled_clicks: "
                    f"{self.nr_settings.unlabelled_clicks}, nr_dissatisfied_threshold: "
                    f"{self.nr_settings.dissatisfied_threshold}): set --{key}=0, or "
                    + (
                        "give D* a source (extra_feedback_field or fp_field)."
                        if group == 0
                        else "--nr_unlabelled_clicks=dissatisfied."
                    )
                )

    def collate_fn(self, index):
        satisfied, dissatisfied, non_clicks = self.nr_settings.counts(self._batch_size)
        rows = torch.cat([self._draw(0, satisfied), self._draw(1, dissatisfied)])
        inter = self._dataset.inter_feat
        users, items = self._non_clicks(non_clicks)
        data = {
            self.uid_field: torch.cat([inter[self.uid_field][rows], users]),
            self.iid_field: torch.cat([inter[self.iid_field][rows], items]),
            self.config["LABEL_FIELD"]: torch.tensor(
                [1.0] * satisfied + [0.0] * (dissatisfied + non_clicks)
            ),
            NR_GROUP_FIELD: torch.tensor(
                [SATISFIED] * satisfied + [DISSATISFIED] * dissatisfied + [NON_CLICK] * non_clicks
            ),
        }
        fp_field = self.config["fp_field"]
        if fp_field and fp_field in inter:  # diagnostics only: non-clicks are not positives
            data[fp_field] = torch.cat([inter[fp_field][rows], torch.zeros(non_clicks)])
        return Interaction(data)

    def _draw(self, group: int, count: int) -> torch.Tensor:
        pool = self.rows[group]
        if count == 0:
            return pool[:0]
        return pool[torch.randint(len(pool), (count,), generator=self.nr_generator)]

    def _non_clicks(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` uniform (user, item) pairs outside the training clicks ([PAD] 0 excluded)."""
        users = torch.empty(count, dtype=torch.long)
        items = torch.empty(count, dtype=torch.long)
        todo = torch.arange(count)
        while len(todo):
            users[todo] = torch.randint(
                1, self._dataset.user_num, (len(todo),), generator=self.nr_generator
            )
            items[todo] = torch.randint(1, self.n_items, (len(todo),), generator=self.nr_generator)
            todo = todo[self._is_click(users[todo], items[todo])]
        return users, items

    def _is_click(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        query = users * self.n_items + items
        position = torch.searchsorted(self.click_keys, query).clamp_(max=len(self.click_keys) - 1)
        return self.click_keys[position] == query


def nr_train_data(config, train_data):
    """``train_data`` as NR's stratified batches under ``adt_loss: NR``, else unchanged."""
    if parsed(config, LossChoice).base != "nr":
        return train_data
    return NRBatchLoader(
        config, train_data._dataset, train_data._sampler, shuffle=config["shuffle"]
    )
