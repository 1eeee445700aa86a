"""Seeded implicit feedback at Amazon-book scale, with planted false positives.

    python -m bench.synthetic --output DIR --name NAME [--users 80000 --items 98000
        --interactions 2700000 --fp_rate 0.1 --seed 0]

The paper's Amazon-book (Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback",
section 5.1) has 80k users, 98k items and 2.7M interactions, with ratings < 3 taken as false
positives. This generator draws data of any such size:

- every item belongs to one of ``clusters`` latent tastes and has a power-law popularity
  (weight ``rank ** -popularity_exponent``), and every user has one taste;
- user activity follows a power law too (``rank ** -activity_exponent``), with at least
  ``min_user_interactions`` per user (RecBole's per-user 0.8/0.1/0.1 split needs a few) and at
  most a fifth of a taste's items;
- a true positive is a popularity-weighted item of the user's own taste, a false positive
  (exactly ``round(fp_rate * interactions)`` of them, on random rows) a popularity-weighted item of
  *another* taste: it is less consistent with what the user likes, so a model fits it later;
- or, closer to how false positives arise on real click data (issue 19: on news, false-positive
  clicks sit on more popular items, and users split into skimmers and readers):
  ``fp_items exposure`` draws a false positive from *all* items by exposure, weight
  ``popularity ** fp_exposure_power`` (1: as popular as true positives, > 1: more popular),
  and ``fp_user_beta_a``/``fp_user_beta_b`` > 0 give each user a propensity
  theta_u ~ Beta(a, b): the false-positive rows are drawn without replacement with probability
  proportional to their user's theta_u (Efraimidis-Spirakis keys), so skimmers get many and
  readers few. :func:`fp_statistics` measures the statistics these are calibrated on;
- every item is used at least once, and no (user, item) pair twice.

It writes ``DIR/NAME/NAME.inter``, an ordinary atomic file (``user_id:token item_id:token
timestamp:float false_positive:float``, plus ``rating:float`` with ``--rating``: 4-5 for true
positives, 1-2 for false positives), through a temporary file renamed into place. Everything is
vectorised numpy: 2.7M rows take seconds and a few hundred MB.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

AMAZON_BOOK = {"users": 80_000, "items": 98_000, "interactions": 2_700_000}
FP_ITEMS = ("taste", "exposure")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What to draw; the defaults are Amazon-book's sizes and the paper's 0.1-ish noise."""

    users: int = AMAZON_BOOK["users"]
    items: int = AMAZON_BOOK["items"]
    interactions: int = AMAZON_BOOK["interactions"]
    fp_rate: float = 0.1
    seed: int = 0
    clusters: int = 20
    popularity_exponent: float = 0.8
    activity_exponent: float = 0.8
    min_user_interactions: int = 5
    rating: bool = False
    fp_items: str = "taste"  # taste: another taste's item; exposure: any item by exposure
    fp_exposure_power: float = 1.0  # exposure: item weight popularity ** power
    fp_user_beta_a: float = 0.0  # > 0 (with b): per-user false-positive propensity Beta(a, b)
    fp_user_beta_b: float = 0.0

    def check(self) -> None:
        """``ValueError`` for sizes no data set can meet."""
        if min(self.users, self.items, self.clusters, self.min_user_interactions) < 1:
            raise ValueError(
                "users, items, clusters and min_user_interactions must all be >= 1; got "
                f"{self.users}, {self.items}, {self.clusters}, {self.min_user_interactions}."
            )
        if not 0.0 <= self.fp_rate < 1.0:
            raise ValueError(f"fp_rate must be in [0, 1), got {self.fp_rate}.")
        if self.min_user_interactions > self.items // self.clusters:
            raise ValueError(
                f"clusters ({self.clusters}) must leave each taste at least "
                f"min_user_interactions ({self.min_user_interactions}) of the {self.items} items."
            )
        if self.fp_items not in FP_ITEMS:
            raise ValueError(
                f"fp_items must be one of {', '.join(FP_ITEMS)}, got {self.fp_items!r}."
            )
        if not np.isfinite(self.fp_exposure_power):
            raise ValueError(f"fp_exposure_power must be a number, got {self.fp_exposure_power}.")
        beta = (self.fp_user_beta_a, self.fp_user_beta_b)
        if beta != (0.0, 0.0) and not min(beta) > 0:
            raise ValueError(
                f"fp_user_beta_a and fp_user_beta_b must both be > 0 (a per-user propensity "
                f"Beta(a, b)) or both 0 (none), got {beta}."
            )
        if self.fp_rate > 0 and self.clusters < 2 and self.fp_items == "taste":
            raise ValueError(
                "clusters must be >= 2 when fp_rate > 0 (false positives come from another taste)."
            )
        low = self.users * self.min_user_interactions
        high = self.users * self.user_cap()
        if not max(low, self.items) <= self.interactions <= high:
            raise ValueError(
                f"interactions ({self.interactions}) must lie in [{max(low, self.items)}, {high}]: "
                f"every user needs {self.min_user_interactions} to {self.user_cap()} of them (a "
                "fifth of a taste's items) and every item one. Change interactions, users, items "
                "or clusters."
            )

    def user_cap(self) -> int:
        """Most interactions of one user: a fifth of a taste's items keeps the draws fast."""
        return max(self.min_user_interactions, (self.items // self.clusters) // 5)


def generate(spec: SyntheticSpec) -> pd.DataFrame:
    """The interactions of ``spec`` as a frame, rows shuffled; deterministic for ``spec.seed``."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    item_cluster = rng.permutation(np.arange(spec.items) % spec.clusters)  # balanced tastes
    popularity = _power_law(rng, spec.items, spec.popularity_exponent)
    user_cluster = rng.integers(0, spec.clusters, spec.users)
    degree = _degrees(rng, spec)

    user = np.repeat(np.arange(spec.users), degree)
    false_positive = np.zeros(spec.interactions, dtype=bool)
    n_false = round(spec.fp_rate * spec.interactions)
    if spec.fp_user_beta_a > 0:
        theta = rng.beta(spec.fp_user_beta_a, spec.fp_user_beta_b, spec.users)
        false_positive[_weighted_rows(rng, theta[user], n_false)] = True
    else:
        false_positive[rng.choice(spec.interactions, n_false, replace=False)] = True
    sampler = _TasteSampler(item_cluster, popularity)
    exposure = np.cumsum(popularity**spec.fp_exposure_power)
    item = np.empty(spec.interactions, dtype=np.int64)
    rows = np.arange(spec.interactions)
    while len(rows):  # draw, then redraw the rows that repeat a (user, item) pair
        if spec.fp_items == "taste":
            item[rows] = sampler.draw(rng, user_cluster[user[rows]], false_positive[rows])
        else:
            fp = false_positive[rows]
            item[rows[~fp]] = sampler.draw(rng, user_cluster[user[rows[~fp]]], fp[~fp])
            point = rng.random(int(fp.sum())) * exposure[-1]
            item[rows[fp]] = np.minimum(np.searchsorted(exposure, point, "right"), spec.items - 1)
        rows = _repeated_rows(user, item, spec.items)
    _use_every_item(rng, item, user, false_positive, item_cluster, user_cluster, spec.items)

    order = rng.permutation(spec.interactions)
    frame = {
        "user_id:token": user[order],
        "item_id:token": item[order],
        "timestamp:float": rng.integers(1_000_000_000, 1_600_000_000, spec.interactions),
        "false_positive:float": false_positive[order].astype(np.int8),
    }
    if spec.rating:
        low = np.where(frame["false_positive:float"] == 1, 1, 4)
        frame["rating:float"] = (low + rng.integers(0, 2, spec.interactions)).astype(np.int8)
    return pd.DataFrame(frame)


def write_atomic(frame: pd.DataFrame, output: str | os.PathLike, name: str) -> Path:
    """Write ``output/name/name.inter`` through a temporary file renamed into place."""
    folder = Path(output) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.inter"
    tmp = folder / f".{name}.inter.{uuid.uuid4().hex}.tmp"  # same folder: rename is atomic
    try:
        with open(tmp, "x", newline="") as handle:
            frame.to_csv(handle, sep="\t", index=False, lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def generate_dataset(output: str | os.PathLike, name: str, spec: SyntheticSpec) -> Path:
    """Draw ``spec`` and write it as dataset ``name`` under ``output`` (a RecBole data_path)."""
    return write_atomic(generate(spec), output, name)


def fp_statistics(frame: pd.DataFrame, min_item_interactions: int = 20) -> dict[str, object]:
    """What issue 19 measured on real data, for calibration: the mean item popularity (the
    item's interactions in ``frame``) of false and of true positives, the quantiles
    10/25/50/75/90% of the per-user false-positive share, and the range (10-90%) of the
    false-positive share of items with ``min_item_interactions`` or more."""
    user, item = frame["user_id:token"].to_numpy(), frame["item_id:token"].to_numpy()
    fp = frame["false_positive:float"].to_numpy() > 0.5
    count = np.bincount(item)
    share_u = np.bincount(user, weights=fp) / np.maximum(np.bincount(user), 1)
    share_u = share_u[np.bincount(user) > 0]
    busy = count >= min_item_interactions
    share_i = (np.bincount(item, weights=fp, minlength=len(count)) / np.maximum(count, 1))[busy]
    levels = [0.1, 0.25, 0.5, 0.75, 0.9]
    return {
        "fp_share": float(fp.mean()),
        "mean_popularity_fp": float(count[item[fp]].mean()) if fp.any() else float("nan"),
        "mean_popularity_tp": float(count[item[~fp]].mean()) if (~fp).any() else float("nan"),
        "user_fp_share_quantiles": np.quantile(share_u, levels).round(3).tolist(),
        "item_fp_share_10_90": np.quantile(share_i, [0.1, 0.9]).round(3).tolist()
        if busy.any()
        else [],
    }


def _weighted_rows(rng: np.random.Generator, weight: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows without replacement, row r with probability proportional to
    ``weight[r]`` at each draw (Efraimidis-Spirakis: the ``count`` largest ``log(U_r) / w_r``)."""
    with np.errstate(divide="ignore"):  # weight 0: key -inf, drawn last
        keys = np.log(rng.random(len(weight))) / weight
    return np.argpartition(-keys, count - 1)[:count] if count else np.empty(0, dtype=np.int64)


def _power_law(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Weights ``rank ** -exponent`` over a random order of ``n`` entities."""
    return (rng.permutation(n) + 1.0) ** -exponent


def _degrees(rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    """Interactions per user: the minimum, plus a power-law share of the rest, capped."""
    cap = spec.user_cap()
    degree = np.full(spec.users, spec.min_user_interactions, dtype=np.int64)
    weight = _power_law(rng, spec.users, spec.activity_exponent)
    while (left := spec.interactions - degree.sum()) > 0:  # hand the capped excess on
        room = degree < cap
        share = np.zeros(spec.users)
        share[room] = weight[room] / weight[room].sum()
        degree = np.minimum(degree + rng.multinomial(left, share), cap)
    return degree


class _TasteSampler:
    """Popularity-weighted draws inside one taste (true positives) or outside it (false ones)."""

    def __init__(self, item_cluster: np.ndarray, popularity: np.ndarray):
        self.order = np.argsort(item_cluster, kind="stable")  # items grouped by taste
        self.cumulative = np.cumsum(popularity[self.order])
        ends = np.searchsorted(item_cluster[self.order], np.arange(item_cluster.max() + 1), "right")
        self.mass_end = self.cumulative[ends - 1]
        self.mass_start = np.concatenate(([0.0], self.mass_end[:-1]))
        self.first = np.concatenate(([0], ends[:-1]))
        self.last = ends - 1

    def draw(self, rng, cluster: np.ndarray, other_taste: np.ndarray) -> np.ndarray:
        start, end = self.mass_start[cluster], self.mass_end[cluster]
        # Inside: [start, end). Outside: the whole mass minus the taste's span, shifted past it.
        width = np.where(other_taste, self.cumulative[-1] - (end - start), end - start)
        point = rng.random(len(cluster)) * width
        point = np.where(other_taste, np.where(point < start, point, point + end - start), point)
        point = point + np.where(other_taste, 0.0, start)
        position = np.searchsorted(self.cumulative, point, "right")
        # Rounding at a span's edge must not carry an inside draw into the next taste.
        inside = np.clip(position, self.first[cluster], self.last[cluster])
        return self.order[np.where(other_taste, np.minimum(position, self.last[-1]), inside)]


def _repeated_rows(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """Rows whose (user, item) pair also occurs on an earlier row."""
    key = user * n_items + item
    order = np.argsort(key, kind="stable")
    repeated = np.zeros(len(key), dtype=bool)
    repeated[order[1:]] = key[order[1:]] == key[order[:-1]]
    return np.flatnonzero(repeated)


def _use_every_item(rng, item, user, false_positive, item_cluster, user_cluster, n_items) -> None:
    """Give each unused item a true-positive row of its taste, taken from a repeated item."""
    unused = np.flatnonzero(np.bincount(item, minlength=n_items) == 0)
    if not len(unused):
        return
    # A donor row holds a true positive whose item also occurs on an earlier row.
    order = np.argsort(item, kind="stable")
    later = np.zeros(len(item), dtype=bool)
    later[order[1:]] = item[order[1:]] == item[order[:-1]]
    donors = np.flatnonzero(later & ~false_positive)
    donor_cluster = user_cluster[user[donors]]
    for cluster in np.unique(item_cluster[unused]):
        wanted = unused[item_cluster[unused] == cluster]
        candidates = donors[donor_cluster == cluster]
        if len(candidates) < len(wanted):
            raise ValueError(
                f"Too few interactions to use all {n_items} items: taste {cluster} has "
                f"{len(wanted)} unused items and {len(candidates)} spare rows. Raise "
                "interactions or lower items."
            )
        item[rng.choice(candidates, len(wanted), replace=False)] = wanted


def main(argv: list[str] | None = None) -> None:
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(
        prog="python -m bench.synthetic", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output", required=True, help="RecBole data_path to write into")
    parser.add_argument("--name", required=True, help="dataset name (folder and file stem)")
    for field in dataclasses.fields(SyntheticSpec):
        if field.type == "bool":
            parser.add_argument(f"--{field.name}", action="store_true")
        else:
            kind = {"float": float, "int": int, "str": str}[field.type]
            parser.add_argument(f"--{field.name}", type=kind, default=getattr(defaults, field.name))
    parser.add_argument(
        "--stats", action="store_true", help="also print fp_statistics (calibration)"
    )
    args = vars(parser.parse_args(argv))
    output, name, stats = args.pop("output"), args.pop("name"), args.pop("stats")
    try:
        spec = SyntheticSpec(**args)
        frame = generate(spec)
    except ValueError as err:
        parser.error(str(err))
    print(write_atomic(frame, output, name))
    if stats:
        print(fp_statistics(frame))


if __name__ == "__main__":
    main()
