"""What every ADT model shares: the base loss, routed through the configured denoiser.

A model mixes in :class:`DenoisingLossMixin`, calls :meth:`_init_denoising` at the end of its
``__init__`` and routes its logits through :meth:`pointwise_loss` (one logit per interaction) or
:meth:`matrix_loss` (a user x item reconstruction, as CDAE); a BPR-trained RecBole model routes its
triples through :meth:`_denoise` too (:mod:`recbole_adt.model.generic`). ``adt_loss`` picks the
base loss and the denoiser (:data:`~recbole_adt.losses.ADT_LOSSES`); the denoiser comes from
:data:`recbole_adt.denoisers.DENOISERS`. :class:`~recbole_adt.trainer.ADTTrainer` sets
:attr:`drop_rate` before each batch (the shared schedule) and reads :attr:`denoising_stats` after
each epoch (the shared diagnostics).

NR (the section 5.3 baseline of Wen et al.) trains plain CE on the stratified batches of
:class:`~recbole_adt.data.nr_batches.NRBatchLoader`: satisfied clicks (:math:`D^*`, label 1),
dissatisfied clicks and sampled non-clicks (label 0), each a share of the batch. It needs the
extra feedback :math:`D^*` of the training split and batches of (user, item, label) rows; models
trained on whole user rows (CDAE) do not support it.
"""

from __future__ import annotations

import dataclasses

import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.utils import get_dataloader

from recbole_adt.data.extra_feedback import ExtraFeedback, missing_extra_feedback
from recbole_adt.data.nr_batches import NR_GROUP_FIELD
from recbole_adt.denoisers import Denoiser, build_denoiser
from recbole_adt.denoisers.truncate import TruncateSettings, batch_drop_count, drop_count
from recbole_adt.losses import (
    ADT_LOSSES,
    LossChoice,
    bce,
    check_loss_name,
    either,
    names_on,
)
from recbole_adt.schedule import DropSchedule
from recbole_adt.settings import parsed

# Slots of DenoisingLossMixin.denoising_stats, summed over the batches of an epoch.
STAT_NAMES = (
    "positives",
    "false_positives",
    "dropped",
    "dropped_false_positives",
    "weight_clean",
    "weight_false_positive",
    "relabelled",
    "relabelled_false_positives",
    # base loss of the true and false positives, before the denoiser (with the flag only)
    "loss_clean",
    "loss_false_positive",
)


class DenoisingLossMixin:
    """Adds ``adt_loss`` (CE, TCE, RCE, DCF, NR, ...) to a RecBole model, touching nothing else."""

    @classmethod
    def check_adt_loss(cls, adt_loss: str) -> tuple[str, str]:
        """(base loss, denoiser) of ``adt_loss`` for this model, or ``ValueError``.

        These models train with BCE: the BPR names (BPR, TBPR, RBPR) do not apply.
        """
        name = check_loss_name(adt_loss)
        base, denoiser = ADT_LOSSES[name]
        if base == "bpr":
            raise ValueError(
                f"adt_loss {name} denoises a BPR loss, but {cls.__name__} trains with BCE: use "
                f"{either(names_on('bce', 'nr'))} ({either(names_on('bpr', denoised=True), 'and')} "
                "are for BPR-trained models such as BPR and LightGCN)."
            )
        return base, denoiser

    def _init_denoising(self, config, dataset) -> None:
        self.adt_loss = parsed(config, LossChoice).name
        _, denoiser = self.check_adt_loss(self.adt_loss)
        # The configured denoiser, and none for the phases that train with plain CE.
        self._denoisers = {"none": build_denoiser("none", config)}
        self._denoisers[denoiser] = build_denoiser(denoiser, config)
        self._denoisers[denoiser].prepare(dataset, device=self.device)
        self.LABEL = config["LABEL_FIELD"]
        fp_field = config["fp_field"]
        # The flag only feeds diagnostics here; the clean test split is the dataset's job.
        self.FP_FIELD = fp_field if fp_field in dataset.field2type else None
        self.drop_rate = 0.0  # epsilon(T) of the current batch, set by the trainer
        # n of the drop count (rows or positives) and its rule (paper or authors), truncate.py
        self.drop_base = parsed(config, TruncateSettings).drop_base
        self.drop_count_rule = parsed(config, DropSchedule).drop_count
        self.extra_feedback = None  # D*, on the model's device; only the losses that need it
        if self.adt_loss == "NR":  # NR's shares and groups are its loader's (data/nr_batches.py)
            self._check_nr_batches(config)
            self.extra_feedback = self._require_extra_feedback(dataset, "adt_loss NR")
        self.reset_denoising_stats()

    def _check_nr_batches(self, config) -> None:
        """NR weighs sampled negatives: it needs RecBole's TrainDataLoader with a sampler."""
        loader = get_dataloader(config, "train")
        sampling = config["train_neg_sample_args"]["distribution"] != "none"
        if not (issubclass(loader, TrainDataLoader) and sampling):
            raise ValueError(
                f"adt_loss NR trains on (user, item, label) rows with sampled negatives, but "
                f"{config['model']} trains on {loader.__name__} batches"
                + ("" if sampling else " without sampled negatives")
                + ". NR works with pointwise models such as GMF and NeuMF and a "
                "train_neg_sample_args sampler; for CDAE use adt_loss CE, TCE or RCE."
            )

    def _require_extra_feedback(self, dataset, needed_by: str) -> ExtraFeedback:
        """The training split's D*, with its lookup keys on the model's device, or ValueError."""
        extra = getattr(dataset, "extra_feedback", None)
        if extra is None or len(extra) == 0:
            name = getattr(dataset, "dataset_name", "?")
            raise ValueError(missing_extra_feedback(needed_by, name, extra))
        return dataclasses.replace(extra, keys=extra.keys.to(self.device))

    @property
    def denoiser(self) -> Denoiser:
        """The denoiser of the current ``adt_loss`` (a phase may switch it to CE)."""
        return self._denoisers[ADT_LOSSES[self.adt_loss][1]]

    def reset_denoising_stats(self) -> None:
        # Kept as a tensor so that no batch pays for a device sync.
        self.denoising_stats = torch.zeros(len(STAT_NAMES), device=self.device)

    def denoising_summary(self) -> dict[str, float]:
        return dict(zip(STAT_NAMES, self.denoising_stats.tolist()))

    def pointwise_loss(self, logits: torch.Tensor, interaction) -> torch.Tensor:
        """Mean loss over a batch of (user, item, label) rows, positives and sampled negatives."""
        labels = interaction[self.LABEL]
        false_positive = interaction[self.FP_FIELD] if self.FP_FIELD in interaction else None
        if self.adt_loss == "NR":
            return self._nr_loss(logits, labels, false_positive, interaction)
        loss = bce(logits, labels, reduction="none")
        num_drop = batch_drop_count(
            self.drop_rate, labels, base=self.drop_base, rule=self.drop_count_rule
        )
        loss, dropped = self._denoise(
            loss, logits, labels, false_positive, num_drop, interaction=interaction
        )
        # T-CE averages over the kept entries (Algorithm 1 updates on D_T minus the dropped).
        return loss.sum() / (loss.numel() - dropped)

    def matrix_loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        false_positive: torch.Tensor | None,
        *,
        users: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Summed loss over a user x item matrix; T-CE drops a share of each row's positives.

        A keyed denoiser (UDT) reads cell (r, i) as the entry (``users[r]``, item i).
        """
        if self.adt_loss == "NR" or (self.denoiser.keyed and users is None):
            raise ValueError(
                f"adt_loss {self.adt_loss} supports pointwise batches only, not a matrix loss."
            )
        loss = bce(logits, labels, reduction="none")
        # Each row's positives under either drop_base: the row has no sampled negatives.
        num_drop = drop_count(self.drop_rate, (labels > 0.5).sum(-1), rule=self.drop_count_rule)
        cells = None
        if self.denoiser.keyed:
            items = torch.arange(loss.shape[-1], device=loss.device)
            cells = {
                self.USER_ID: users[:, None].expand_as(loss),
                self.ITEM_ID: items.expand(loss.shape),
            }
        loss, _ = self._denoise(loss, logits, labels, false_positive, num_drop, interaction=cells)
        return loss.sum()

    def _nr_loss(self, logits, labels, false_positive, interaction) -> torch.Tensor:
        """NR on one of its stratified batches: mean CE over the rows, labels as composed."""
        if NR_GROUP_FIELD not in interaction:
            raise ValueError(
                "adt_loss NR trains on NR's stratified batches (recbole_adt.data.nr_batches."
                "nr_train_data), but this batch comes from another loader: build the training "
                "loader with nr_train_data(config, train_data), as run_recbole_adt does."
            )
        loss = bce(logits, labels, reduction="none")
        # NR's denoiser is none: _denoise only counts positives and false positives.
        loss, _ = self._denoise(loss, logits, labels, false_positive, 0)
        return loss.mean()

    def _denoise(self, loss, margin, labels, false_positive, num_drop, *, interaction=None):
        """Apply the denoiser to per-entry base losses; dropped entries become exactly 0.

        ``margin`` is what the denoiser reads predictions from: the logits, or the score
        difference of BPR triples (whose labels are 1). A keyed denoiser (DCF, UDT) also reads
        each entry's user and item from ``interaction``. Returns the per-entry loss and the number
        of dropped entries (a 0-d tensor), and adds the batch to :attr:`denoising_stats`.
        """
        positive = labels > 0.5
        if false_positive is None:
            fp_positive = torch.zeros_like(positive)
        else:
            # Sampled negatives inherit their source positive's flag: count positives only.
            fp_positive = positive & (false_positive > 0.5)
        stats = [positive.sum(), fp_positive.sum()]
        keys = {}
        if self.denoiser.keyed:
            keys = {"users": interaction[self.USER_ID], "items": interaction[self.ITEM_ID]}
        base_loss = loss.detach()
        loss, dropped, weight = self.denoiser(loss, margin, labels, num_drop=num_drop, **keys)
        relabelled = self.denoiser.relabelled if self.denoiser.relabels else None
        if dropped is None:
            num_dropped = positive.new_zeros((), dtype=torch.long)
            stats += [num_dropped, num_dropped]
        else:
            num_dropped = dropped.sum()
            stats += [num_dropped, (dropped & fp_positive).sum()]
        if weight is None:
            stats += [loss.new_zeros(())] * 2
        else:
            stats += [weight[positive & ~fp_positive].sum(), weight[fp_positive].sum()]
        if relabelled is None:
            stats += [loss.new_zeros(())] * 2
        else:
            stats += [relabelled.sum(), (relabelled & fp_positive).sum()]
        if false_positive is None:
            stats += [base_loss.new_zeros(())] * 2
        else:  # both masked sums in one product: no indexing, so no host sync
            masks = torch.stack([positive & ~fp_positive, fp_positive]).to(base_loss.dtype)
            stats += list((masks.flatten(1) @ base_loss.flatten()).unbind())
        self.denoising_stats += torch.stack([s.to(self.denoising_stats.dtype) for s in stats])
        return loss, num_dropped
