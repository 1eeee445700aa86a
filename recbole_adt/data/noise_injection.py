r"""Noise injection: add seeded false-positive interactions to the training split.

Robustness studies of denoising methods add noisy interactions to the training data at rising
rates and watch how each method degrades. With ``noise_rate`` :math:`r > 0`,
:class:`~recbole_adt.data.dataset.ADTDataset` adds

.. math:: N = \mathrm{round}(r \cdot |D_{train}|)

(user, item) pairs to the training split, :math:`D_{train}` being the training interactions
before injection, each flagged ``fp_field = 1``, so that the diagnostics (true- vs false-positive
losses, the drop precision of T-CE) see them. Validation and test are never touched: the pairs
go into the training split after RecBole's split, so the clean test and its masks are those of
the run without injection (the injected items join the user's training history, and so are
masked in full-sort evaluation like any training item).

Each injected pair is drawn from

.. math:: P(u, i) \propto w_u \, q_i \quad\text{over pairs } (u, i) \notin D,

without replacement, where :math:`D` is every observed pair of the dataset (all splits): an
injected pair never repeats an observed one, nor another injected one. The mechanisms
(``noise_mechanism``) choose the weights:

- ``uniform``: :math:`w_u = n_u` (each training interaction equally likely to bring a false
  positive along) and :math:`q_i = 1`: a random unobserved item.
- ``popularity``: :math:`q_i = (c_i + 1)^{\alpha}` with :math:`c_i` the item's training count and
  :math:`\alpha` = ``noise_popularity_exponent``: false positives follow exposure.
- ``user``: :math:`w_u = n_u \theta_u` with a per-user propensity
  :math:`\theta_u \sim \mathrm{Beta}(a, b)` (``noise_user_beta: [a, b]``), so that some users
  skim (many false positives) and others read (few or none).

``noise_mechanism: [popularity, user]`` combines the two. Every other column of an injected row
(timestamp, rating, ...) is copied from a training interaction of the same user drawn at random,
so it lies in that user's range; a real extra-feedback field (``extra_feedback_field``) is
copied too, so an injected click can look satisfied, as real false positives can.

The draw uses a generator of its own, seeded by ``noise_seed`` (default: the run's ``seed``), so
the global random state, and with it the split, is the run's without injection.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

UNIFORM, POPULARITY, USER = "uniform", "popularity", "user"
MECHANISMS = (UNIFORM, POPULARITY, USER)
_MAX_ROUNDS = 200  # rejection rounds before giving up on a too-dense request


@dataclasses.dataclass(frozen=True)
class NoiseInjection:
    """The parsed noise-injection settings (off with ``noise_rate: 0``, the default).

    ``rate`` (``noise_rate``): injected false positives per training interaction, >= 0.
    ``mechanisms`` (``noise_mechanism``): ``(uniform,)``, or ``popularity`` and/or ``user``.
    ``popularity_exponent`` (``noise_popularity_exponent``): :math:`\\alpha` of
    :math:`q_i = (c_i + 1)^\\alpha`. ``user_beta`` (``noise_user_beta``): ``(a, b)`` of the
    per-user propensity. ``seed`` (``noise_seed``, or the run's ``seed`` when empty).
    """

    KEYS: ClassVar[tuple[str, ...]] = (
        "noise_rate",
        "noise_mechanism",
        "noise_popularity_exponent",
        "noise_user_beta",
        "noise_seed",
    )

    rate: float = 0.0
    mechanisms: tuple[str, ...] = (UNIFORM,)
    popularity_exponent: float = 1.0
    user_beta: tuple[float, float] = (0.5, 1.0)
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    @property
    def mechanism(self) -> str:
        """The mechanisms as written in the log and the sweep: ``popularity+user``."""
        return "+".join(self.mechanisms)

    @classmethod
    def from_config(cls, config) -> NoiseInjection:
        rate = _get(config, "noise_rate", 0.0)
        if not _is_number(rate) or not math.isfinite(rate) or rate < 0:
            raise ValueError(
                f"noise_rate must be a number >= 0, the false positives injected into the "
                f"training split per training interaction (0: none); got {rate!r}. E.g. "
                "--noise_rate=0.2."
            )
        exponent = _get(config, "noise_popularity_exponent", 1.0)
        if not _is_number(exponent) or not math.isfinite(exponent):
            raise ValueError(
                f"noise_popularity_exponent must be a number (alpha of q_i = (c_i + 1)^alpha; "
                f"0: uniform, 1: by exposure), got {exponent!r}."
            )
        seed = _get(config, "noise_seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(
                f"noise_seed must be an integer or empty (~: the run's seed), got {seed!r}."
            )
        run_seed = _get(config, "seed", 0)
        return cls(
            rate=float(rate),
            mechanisms=mechanism_names(_get(config, "noise_mechanism", UNIFORM)),
            popularity_exponent=float(exponent),
            user_beta=_beta(_get(config, "noise_user_beta", [0.5, 1.0])),
            seed=int(run_seed if seed is None else seed),
        )


def mechanism_names(value) -> tuple[str, ...]:
    """``noise_mechanism`` checked: ``'uniform'``, ``'popularity'``, ``'user'``, a list of
    popularity and user, or ``'popularity+user'``; returned in ``MECHANISMS`` order."""
    names = value.split("+") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        names = [value]
    found = [str(name).strip().lower() for name in names]
    unknown = [name for name in found if name not in MECHANISMS]
    if unknown or (UNIFORM in found and len(set(found)) > 1):
        raise ValueError(
            f"noise_mechanism must be uniform, popularity, user or both of popularity and user "
            f"(a list, or popularity+user), got {value!r}. uniform: a random unobserved item; "
            "popularity: items by exposure (noise_popularity_exponent); user: a Beta "
            "per-user propensity (noise_user_beta)."
        )
    return tuple(name for name in MECHANISMS if name in found)


def injection_count(rate: float, n_train: int) -> int:
    """:math:`N = \\mathrm{round}(r \\cdot |D_{train}|)` (half to even, as Python rounds)."""
    return int(round(rate * n_train))


def item_weights(item_counts: np.ndarray, exponent: float) -> np.ndarray:
    """:math:`q_i = (c_i + 1)^{\\alpha}` for item ids :math:`i \\ge 1`, normalised to sum 1;
    :math:`q_0 = 0` (RecBole's padding id). :math:`\\alpha = 0` is uniform."""
    counts = np.asarray(item_counts, dtype=np.float64)
    weights = (counts + 1.0) ** float(exponent)
    weights[0] = 0.0
    return weights / weights.sum()


def user_weights(user_counts: np.ndarray, propensity: np.ndarray | None = None) -> np.ndarray:
    """:math:`w_u = n_u \\theta_u` (:math:`\\theta_u = 1` without a propensity), normalised to
    sum 1: users without training interactions get none."""
    weights = np.asarray(user_counts, dtype=np.float64).copy()
    if propensity is not None:
        weights *= np.asarray(propensity, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        raise ValueError(
            "Noise injection found no user to give false positives to: no user has training "
            "interactions with a positive propensity. Check noise_user_beta and the dataset."
        )
    return weights / total


def user_propensity(n_users: int, beta: tuple[float, float], rng: np.random.Generator):
    """:math:`\\theta_u \\sim \\mathrm{Beta}(a, b)`, one per user id (id 0 included, unused)."""
    return rng.beta(beta[0], beta[1], size=n_users)


def sample_pairs(
    count: int,
    users_p: np.ndarray,
    items_p: np.ndarray,
    observed_keys: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct (user, item) pairs from :math:`P(u, i) \\propto w_u q_i` over the
    pairs whose key :math:`u \\cdot |I| + i` is not in ``observed_keys``.

    Vectorised rejection: each round draws users and items independently, drops observed
    keys and repeats (keeping the first of each key, in draw order) and keeps what is still
    needed. Equal seeds give equal pairs. ``ValueError`` when fewer than ``count`` pairs have
    a positive probability, or the rounds run out (a request close to that limit).
    """
    n_users, n_items = len(users_p), len(items_p)
    observed = np.unique(np.asarray(observed_keys, dtype=np.int64))
    capacity = _capacity(users_p, items_p, observed, n_items)
    if count > capacity:
        raise ValueError(
            f"Noise injection asks for {count} false positives, but only {capacity} unobserved "
            "(user, item) pairs can be drawn by this mechanism. Lower noise_rate."
        )
    taken = np.empty(0, dtype=np.int64)
    for _ in range(_MAX_ROUNDS):
        need = count - len(taken)
        if need == 0:
            break
        draws = max(2 * need, 64)
        users = rng.choice(n_users, size=draws, p=users_p)
        items = rng.choice(n_items, size=draws, p=items_p)
        keys = users.astype(np.int64) * n_items + items
        keys = keys[~np.isin(keys, observed) & ~np.isin(keys, taken)]
        _, first = np.unique(keys, return_index=True)
        taken = np.concatenate([taken, keys[np.sort(first)][:need]])
    if len(taken) < count:
        raise ValueError(
            f"Noise injection drew only {len(taken)} of {count} false positives: the "
            "mechanism puts almost all its weight on observed pairs. Lower noise_rate or "
            "noise_popularity_exponent."
        )
    return taken // n_items, taken % n_items


def _capacity(users_p, items_p, observed: np.ndarray, n_items: int) -> int:
    """Unobserved pairs with positive probability: Σ_{u: w_u>0} (|{i: q_i>0}| − |D_u ∩ I+|)."""
    users = np.flatnonzero(users_p > 0)
    items_ok = items_p > 0
    seen = observed[np.isin(observed // n_items, users) & items_ok[observed % n_items]]
    return int(len(users) * items_ok.sum() - len(seen))


def donor_rows(train_users: np.ndarray, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each injected user, the index of one of that user's training rows, uniformly:
    row :math:`s_u + \\lfloor U \\cdot n_u \\rfloor` of the rows sorted by user."""
    order = np.argsort(train_users, kind="stable")
    n = np.bincount(train_users, minlength=int(users.max(initial=0)) + 1)
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    pick = starts[users] + np.floor(rng.random(len(users)) * n[users]).astype(np.int64)
    return order[pick]


@dataclasses.dataclass(frozen=True)
class Injected:
    """What :func:`inject` drew: the pairs, the rows whose other columns they copy, and a
    summary for the log."""

    users: np.ndarray
    items: np.ndarray
    donors: np.ndarray  # training-row index per injected pair
    settings: NoiseInjection
    n_train: int
    item_counts: np.ndarray  # training count per item id

    def __len__(self) -> int:
        return len(self.users)

    def describe(self) -> str:
        """Count, mechanism and rate; mean training popularity of the injected items against
        the training interactions'; quantiles of the per-user injected share."""
        s = self.settings
        how = s.mechanism
        if POPULARITY in s.mechanisms:
            how += f" (exponent {s.popularity_exponent:g})"
        if USER in s.mechanisms:
            how += f" (propensity Beta({s.user_beta[0]:g}, {s.user_beta[1]:g}))"
        counts = self.item_counts.astype(np.float64)
        observed_pop = float((counts * counts).sum() / max(counts.sum(), 1.0))
        injected_pop = float(counts[self.items].mean()) if len(self) else math.nan
        return (
            f"added {len(self)} false positives to {self.n_train} training interactions "
            f"(rate {s.rate:g}, {how}, seed {s.seed}); mean item popularity {injected_pop:.1f} "
            f"injected, {observed_pop:.1f} observed"
        )


def inject(
    settings: NoiseInjection,
    train_users: np.ndarray,
    train_items: np.ndarray,
    observed_keys: np.ndarray,
    n_users: int,
    n_items: int,
) -> Injected:
    """Draw the false positives of a training split (ids as RecBole remapped them, 0 = pad).

    ``observed_keys`` are :math:`u \\cdot |I| + i` of every observed pair (all splits).
    """
    rng = np.random.default_rng(settings.seed)
    train_users = np.asarray(train_users, dtype=np.int64)
    item_counts = np.bincount(np.asarray(train_items, dtype=np.int64), minlength=n_items)
    user_counts = np.bincount(train_users, minlength=n_users)
    count = injection_count(settings.rate, len(train_users))
    exponent = settings.popularity_exponent if POPULARITY in settings.mechanisms else 0.0
    propensity = (
        user_propensity(n_users, settings.user_beta, rng) if USER in settings.mechanisms else None
    )
    users, items = sample_pairs(
        count,
        user_weights(user_counts, propensity),
        item_weights(item_counts, exponent),
        observed_keys,
        rng,
    )
    return Injected(
        users=users,
        items=items,
        donors=donor_rows(train_users, users, rng),
        settings=settings,
        n_train=len(train_users),
        item_counts=item_counts,
    )


def injected_columns(
    columns: dict[str, torch.Tensor],
    injected: Injected,
    *,
    uid_field: str,
    iid_field: str,
    fp_field: str,
) -> dict[str, torch.Tensor]:
    """The training columns with the injected rows appended: user and item drawn, the flag 1,
    every other column copied from the donor row (same dtype and shape)."""
    donors = torch.as_tensor(injected.donors, dtype=torch.long)
    drawn = {
        uid_field: torch.as_tensor(injected.users),
        iid_field: torch.as_tensor(injected.items),
        fp_field: torch.ones(len(injected)),
    }
    merged = {}
    for name, values in columns.items():
        extra = drawn[name].to(values.dtype) if name in drawn else values[donors]
        merged[name] = torch.cat([values, extra])
    return merged


def observed_pair_keys(users: Sequence[int], items: Sequence[int], n_items: int) -> np.ndarray:
    """:math:`u \\cdot |I| + i` of each pair."""
    return np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64)


def _beta(value) -> tuple[float, float]:
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(_is_number(v) and math.isfinite(v) and v > 0 for v in value)
    )
    if not ok:
        raise ValueError(
            f"noise_user_beta must be two numbers > 0, [a, b] of the per-user propensity "
            f"Beta(a, b) of noise_mechanism user, got {value!r}. E.g. [0.5, 1.0]: most users "
            "rarely add false positives, a few (skimmers) often."
        )
    return float(value[0]), float(value[1])


def _get(config, key: str, default):
    try:
        value = config[key]
    except KeyError:
        return default
    return default if value is None and default is not None else value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
