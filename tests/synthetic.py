"""Seeded interaction data with planted false positives, written as RecBole atomic files.

Users and items fall into ``groups``; each user's true positives come from its own group, its
false positives from other groups. A model learns the group structure early, so false positives
are the hard (large-loss) interactions the paper's T-CE is meant to drop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\tfalse_positive:float\n"


def planted_interactions(
    *, groups=4, users_per_group=40, items_per_group=30, clean_per_user=24, fp_per_user=6, seed=0
) -> list[tuple[str, str, float, int, float]]:
    rng = np.random.default_rng(seed)
    rows = []
    for group in range(groups):
        own = np.arange(group * items_per_group, (group + 1) * items_per_group)
        others = np.setdiff1d(np.arange(groups * items_per_group), own)
        for u in range(users_per_group):
            user = f"u{group * users_per_group + u}"
            clean = rng.choice(own, clean_per_user, replace=False)
            noisy = rng.choice(others, fp_per_user, replace=False)
            for item in clean:
                rows.append((user, f"i{item}", float(rng.integers(3, 6)), 0.0))
            for item in noisy:
                rows.append((user, f"i{item}", float(rng.integers(1, 3)), 1.0))
    order = rng.permutation(len(rows))
    return [(*rows[k][:3], 1_000_000 + n, rows[k][3]) for n, k in enumerate(order)]


def write_dataset(data_path: Path, name: str, rows) -> Path:
    folder = data_path / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.inter"
    with path.open("w") as f:
        f.write(HEADER)
        f.writelines(f"{u}\t{i}\t{r}\t{t}\t{fp}\n" for u, i, r, t, fp in rows)
    return path
