"""Pre-split data whose splits share (user, item) pairs, and what evaluation does with them.

RecBole's full-sort evaluation masks every item a user has in any split, *except* the positives
of the split being evaluated. A test pair that the training or validation file also holds is
therefore unmasked, and an easy hit: on one public ml-100k split (1,707 of its 3,594 test pairs
also in its validation file) the same model scores NDCG@20 .153 that way and .084 with those
items masked, as the split's authors evaluate. With ``benchmark_filename``, the pairs of each
split that an earlier split also holds are counted at load and reported, and ``shared_pairs``
chooses what happens to them:

- ``mask`` (default): they stay positives of the later split but are masked like history, so
  they count in Recall's and NDCG's denominators and can never be hit (the authors' protocol);
- ``drop``: they are removed from the later split (masked, and not counted);
- ``unmask``: RecBole's behaviour (unmasked, and can be hit).
"""

from __future__ import annotations

from logging import getLogger

import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import set_color

from recbole_adt.settings import check_shared_pairs


def pair_keys(dataset) -> torch.Tensor:
    """One int64 key per interaction: ``user * n_items + item``."""
    users = dataset.inter_feat[dataset.uid_field].long()
    return users * dataset.item_num + dataset.inter_feat[dataset.iid_field].long()


def count_shared_pairs(datasets, names: list[str]) -> list[tuple[str, str, int, int]]:
    """(later, earlier, rows of later whose pair earlier holds, rows of later) per split pair."""
    keys = [pair_keys(dataset) for dataset in datasets]
    return [
        (names[j], names[i], int(torch.isin(keys[j], keys[i]).sum()), len(keys[j]))
        for j in range(1, len(keys))
        for i in range(j)
    ]


def apply_shared_pairs_policy(datasets, names: list[str], policy: str) -> list:
    """Report shared pairs, then mask or drop them in each later split as ``policy`` says."""
    check_shared_pairs(policy)
    counts = count_shared_pairs(datasets, names)
    if not any(shared for _, _, shared, _ in counts):
        return datasets
    described = "; ".join(
        f"{later} rows also in {earlier}: {shared} of {total}"
        for later, earlier, shared, total in counts
    )
    effect = {
        "mask": "kept as positives and masked like history, so they can never be hit",
        "drop": "dropped from the later split",
        "unmask": "left to RecBole: unmasked, so they are easy hits",
    }[policy]
    getLogger().warning(
        set_color("Shared pairs", "red") + f": the split files repeat (user, item) pairs: "
        f"{described}. shared_pairs: {policy}: {effect} (other choices: mask, drop, unmask)."
    )
    if policy == "unmask":
        return datasets
    result = [datasets[0]]
    keys = [pair_keys(dataset) for dataset in datasets]
    for j in range(1, len(datasets)):
        shared = torch.isin(keys[j], torch.cat(keys[:j]))
        split = datasets[j]
        if policy == "drop":
            split = split.copy(split.inter_feat[~shared])
        elif shared.any():
            split.masked_pairs = _pairs_by_user(split, shared)
        result.append(split)
    return result


def mask_shared_pairs(eval_data) -> None:
    """Add a split's shared pairs (``shared_pairs: mask``) to its loader's history, once."""
    dataset = getattr(eval_data, "_dataset", None)
    pairs = getattr(dataset, "masked_pairs", None)
    if not pairs or getattr(eval_data, "_shared_pairs_masked", False):
        return
    eval_data._shared_pairs_masked = True
    if not isinstance(eval_data, FullSortEvalDataLoader) or eval_data.is_sequential:
        getLogger().warning(
            "shared_pairs: mask works with full-sort evaluation only (eval_args mode: full); "
            "the shared pairs of this split are left unmasked."
        )
        return
    for user, items in pairs.items():
        history = eval_data.uid2history_item[user]
        if history is not None:
            eval_data.uid2history_item[user] = torch.unique(torch.cat([history, items]))


def _pairs_by_user(split, rows: torch.Tensor) -> dict[int, torch.Tensor]:
    users = split.inter_feat[split.uid_field][rows].long()
    order = torch.argsort(users, stable=True)
    items = split.inter_feat[split.iid_field][rows].long()[order]
    user_ids, counts = torch.unique_consecutive(users[order], return_counts=True)
    return dict(zip(user_ids.tolist(), torch.split(items, counts.tolist())))
