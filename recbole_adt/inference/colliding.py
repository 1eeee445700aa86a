r"""Colliding inference (Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback",
section 3.4.2, Eq. (8); Eq. (9) is its causal justification).

For every *sparse* user :math:`u` (user ratio :math:`|D^*_u| / |\bar D_u|` below a threshold) the
prediction over all items is mixed with the predictions of the user's nearest neighbours:

.. math::

    \hat{\mathbf y}'_u = \lambda\,\hat{\mathbf y}_u
        + (1-\lambda) \sum_{j \in \mathcal N_u} w_j\,\hat{\mathbf y}_j,
    \qquad w_j = 1/|\mathcal N_u|,

where :math:`\mathcal N_u` holds the :math:`|\mathcal N_u|` users with the largest inner product
:math:`\langle e^*_u, e^*_j\rangle` in the representation space :math:`E^*` learned from the extra
feedback (snapshotted after warm-up), and :math:`\hat{\mathbf y}` are the model's *probability*
scores over all items (what ``full_sort_predict`` returns). Other users keep :math:`\hat{\mathbf
y}_u`.

Conventions:

- Users are RecBole ids: row 0 of ``representations`` and ``user_ratio`` is the padding user. It is
  never sparse and never anyone's neighbour.
- A user with no extra feedback (no :math:`D^*` row) has ratio 0. Warm-up never trains such a
  user, so their :math:`e^*_u` is still the initial (random) embedding and their "nearest
  neighbours" would be random users. ``users_without_extra`` (setting
  ``colliding_users_without_extra``) decides: ``"mix"`` (default) treats them as any sparse user
  (ratio 0 is below every threshold) and keeps them as candidates; ``"skip"`` leaves their scores
  plain and takes them out of everyone's neighbour candidates. ``skip`` follows Eq. (9): the
  colliding effect is the change from :math:`D^*=\varnothing` to :math:`D^*=d_u`, which is zero
  for :math:`d_u=\varnothing`. ``mix`` is the default because it measured better: on ml-100k
  (simulated D*, T-CE after warm-up, the paper's grid on validation, seeds 1-3) it beat ``skip``
  on every seed and group, by 0.0002-0.0011 NDCG@20 overall and 0.002-0.008 in "ratio < 0.1";
  11 of the 12 users without D* are tested, and their plain scores come from mostly noisy clicks,
  so even neighbours found by an untrained :math:`e^*_u` (in effect, a popularity prior) help
  them. It is also what colliding inference did before the setting existed. A NaN ratio (0/0:
  no implicit feedback either) counts as a user without extra feedback.
- Neighbours are ranked by inner product, descending; ties go to the lower user id.

What is the paper's and what is ours:

- Paper: Eq. (8) with :math:`w_j = 1/|\mathcal N_u|`; neighbours by inner product in the user
  space learned from extra feedback; :math:`|\mathcal N_u| \in \{1, 3, 5, 10, 20, 50, 100\}`
  and :math:`\lambda \in \{0, 0.1, \dots, 1\}` tuned on validation (section 5.1); the users
  "with the ratios smaller than the threshold" are mixed, and Table 5 reports one row per
  threshold (ratio < 0.1, 0.2, 0.3), each row mixing the users below its own threshold.
- Ours: a ratio *equal* to a threshold is not below it, so not sparse. Each Table 5 row gets its
  own inference (:meth:`CollidingInference.with_threshold`, reusing the neighbour rows already
  found), while the overall result and the validation choice of (:math:`|\mathcal N_u|`,
  :math:`\lambda`) use ``colliding_ratio_threshold``: the paper does not say whether each row
  has its own pair (its Fig. 11 shows :math:`\lambda` curves per group), so one pair serves
  every row. :math:`E^*` is the warm-up's user space at its selected checkpoint, and what is
  mixed are probabilities (below). Users without extra feedback: mixed by default (above).

Nothing here builds a users x users or users x items matrix: the neighbour search runs in blocks
of query users, and the neighbour scores are requested in chunks of users and summed in place by
a sparse (users x neighbours) weight matrix. :func:`colliding_hook` reads the scores of
neighbours who are in the evaluated batch from the batch itself, so when a batch holds every user
(ml-100k) nobody is scored twice. Mixing user *representations* instead of scores would be one
matrix product, but it equals Eq. (8) only for scores linear in the user vector; the models here
(GMF, NeuMF, NMTR, CDAE) mix probabilities, sigmoids of their logits, so it is not used.
:func:`dense_colliding_scores` is the direct dense formula, kept as a reference for tests.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from recbole.data.interaction import Interaction
from recbole.model.abstract_recommender import AbstractRecommender

Predict = Callable[[torch.Tensor], torch.Tensor]

# colliding_users_without_extra: what Eq. (8) does with users who have no D* row.
USERS_WITHOUT_EXTRA = ("skip", "mix")


def validate_users_without_extra(value) -> str:
    """``colliding_users_without_extra``: ``"skip"`` or ``"mix"`` (see the module docstring)."""
    if value not in USERS_WITHOUT_EXTRA:
        raise ValueError(
            f"colliding_users_without_extra must be 'skip' or 'mix', got {value!r}: users with no "
            "extra feedback have an untrained E* row: 'mix' (default) mixes them like any sparse "
            "user, 'skip' leaves their scores plain and never picks them as neighbours, e.g. "
            "--colliding_users_without_extra=skip."
        )
    return value


def validate_colliding_settings(
    num_neighbours: int, lam: float, ratio_threshold: float
) -> tuple[int, float, float]:
    r"""Check the three settings of Eq. (8) and return them as ``(int, float, float)``.

    - ``colliding_neighbours`` (:math:`|\mathcal N_u|`): an integer >= 1 (paper grid
      {1, 3, 5, 10, 20, 50, 100}). A whole float such as ``10.0`` is accepted.
    - ``colliding_lambda`` (:math:`\lambda`): a number in [0, 1]; 1 leaves every score unchanged.
    - ``colliding_ratio_threshold``: a number > 0; users with
      :math:`|D^*_u|/|\bar D_u|` below it are sparse.
    """
    if isinstance(num_neighbours, float) and num_neighbours.is_integer():
        num_neighbours = int(num_neighbours)
    if (
        isinstance(num_neighbours, bool)
        or not isinstance(num_neighbours, int)
        or num_neighbours < 1
    ):
        raise ValueError(
            f"colliding_neighbours must be an integer >= 1 (the paper uses 1, 3, 5, 10, 20, 50, "
            f"100), got {num_neighbours!r}."
        )
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"colliding_lambda must be a number in [0, 1], got {lam!r}.")
    if (
        isinstance(ratio_threshold, bool)
        or not isinstance(ratio_threshold, (int, float))
        or not math.isfinite(ratio_threshold)
        or ratio_threshold <= 0.0
    ):
        raise ValueError(
            f"colliding_ratio_threshold must be a finite number > 0, got {ratio_threshold!r}."
        )
    return num_neighbours, float(lam), float(ratio_threshold)


@dataclasses.dataclass(frozen=True)
class CollidingSettings:
    r"""The parsed colliding-inference settings: whether Eq. (8) applies, and with what.

    ``colliding_neighbours`` (:math:`|\mathcal N_u|`) and ``colliding_lambda``
    (:math:`\lambda`) may each be a number or a list; ``grid`` holds every (|N_u|, lambda)
    pair, neighbours outer, each checked by :func:`validate_colliding_settings`. With several
    pairs, the one with the best validation ``valid_metric`` is used
    (:func:`recbole_adt.evaluation.select_colliding`). ``ratio_threshold``
    (``colliding_ratio_threshold``) defines the sparse users of that validation choice and of
    the overall test result; each ``ratio_groups`` test group mixes the users below its own
    threshold instead (paper Table 5). ``users_without_extra``
    (``colliding_users_without_extra``): ``"skip"`` or ``"mix"`` the users with no :math:`D^*`
    row (module docstring).
    """

    KEYS: ClassVar[tuple[str, ...]] = (
        "colliding_inference",
        "colliding_neighbours",
        "colliding_lambda",
        "colliding_ratio_threshold",
        "colliding_users_without_extra",
    )

    enabled: bool
    grid: tuple[tuple[int, float], ...]
    ratio_threshold: float
    users_without_extra: str = "mix"

    @classmethod
    def from_config(cls, config) -> CollidingSettings:
        enabled = config["colliding_inference"]
        if not isinstance(enabled, bool):
            raise ValueError(
                f"colliding_inference must be True or False, got {enabled!r}: True applies "
                "Eq. 8 when testing (it needs a warmup phase), e.g. --colliding_inference=True."
            )
        threshold = config["colliding_ratio_threshold"]
        grid = tuple(
            validate_colliding_settings(k, lam, threshold)[:2]
            for k in _as_list(config["colliding_neighbours"])
            for lam in _as_list(config["colliding_lambda"])
        )
        if not grid:
            raise ValueError(
                "colliding_neighbours and colliding_lambda must not be empty lists: give a "
                "number or a list of numbers each, e.g. --colliding_neighbours=[5,10]."
            )
        _, _, threshold = validate_colliding_settings(1, 1.0, threshold)
        without_extra = validate_users_without_extra(config["colliding_users_without_extra"])
        return cls(enabled, grid, threshold, without_extra)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_representations(representations: torch.Tensor) -> None:
    if representations.dim() != 2 or representations.shape[0] < 2:
        raise ValueError(
            "representations must be a (n_users x d) tensor whose row 0 is the padding user, "
            f"got shape {tuple(representations.shape)}."
        )
    if not torch.isfinite(representations).all():
        raise ValueError("representations (E*) hold NaN or infinite values.")


def _check_num_candidates(
    num_neighbours: int, n_users: int, candidates: torch.Tensor | None = None
) -> None:
    if candidates is None:
        available = n_users - 2  # all rows minus the padding user 0 and the user itself
        pool = f"{n_users - 1} real users"
    else:
        available = max(0, int(candidates.sum()) - 1)  # the sparse user is a candidate itself
        pool = f"{int(candidates.sum())} users with extra feedback"
    if num_neighbours > available:
        raise ValueError(
            f"colliding_neighbours={num_neighbours} needs that many other users, but only "
            f"{available} are available ({pool}, not counting the user itself). "
            f"Set colliding_neighbours to at most {available}."
        )


def _sparse_mask(
    user_ratio: torch.Tensor, ratio_threshold: float, users_without_extra: str = "mix"
) -> torch.Tensor:
    # ~(ratio >= t) rather than ratio < t, so that a NaN ratio (no feedback at all) is sparse.
    # A ratio EQUAL to the threshold is not sparse: the paper mixes ratios *smaller* than it.
    sparse = ~(user_ratio >= ratio_threshold)
    if users_without_extra == "skip":
        sparse &= user_ratio > 0  # False for 0 and NaN: no D* row
    sparse[0] = False
    return sparse


def _candidate_mask(user_ratio: torch.Tensor, users_without_extra: str) -> torch.Tensor | None:
    """Users who may be neighbours: None (every real user) with ``"mix"``; with ``"skip"``
    only the users with a :math:`D^*` row, whose :math:`e^*` warm-up trained."""
    if users_without_extra == "mix":
        return None
    candidates = user_ratio > 0
    candidates[0] = False
    return candidates


def _top_k_lowest_id_on_ties(similarity: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries of each row, by value descending, then index ascending.

    ``similarity`` needs at least k + 1 columns. ``topk`` leaves the order among equal values
    unspecified, but its *values* are exact. Where the (k+1)-th value differs from the k-th, the
    set of the k largest is unique: take ``topk``'s indices and only fix their order. Where it
    equals the k-th (a tie across the cut, rare on real-valued data), keep everything above the
    k-th value and fill up with the lowest-index entries equal to it.
    """
    values, index = similarity.topk(k + 1, dim=1)
    kth = values[:, k - 1 : k]
    index = index[:, :k].sort(dim=1).values
    tied = (values[:, k : k + 1] == kth).view(-1)
    if bool(tied.any()):
        rows, threshold = similarity[tied], kth[tied]
        above = rows > threshold
        at_kth = rows == threshold
        missing = k - (values[tied, :k] > threshold).sum(dim=1, keepdim=True)
        chosen = above | (at_kth & (at_kth.cumsum(dim=1) <= missing))
        index[tied] = chosen.nonzero()[:, 1].view(-1, k)  # row-major: ascending within a row
    order = similarity.gather(1, index).argsort(dim=1, descending=True, stable=True)
    return index.gather(1, order)


def nearest_neighbours(
    representations: torch.Tensor,
    users: torch.Tensor,
    *,
    num_neighbours: int,
    block_size: int = 256,
) -> torch.Tensor:
    r"""The ``num_neighbours`` users most similar to each of ``users`` in :math:`E^*`.

    Similarity is the inner product :math:`s_{uj} = \langle e_u, e_j\rangle`. Candidates are all
    real users (rows 1 ..) except ``u`` itself. Ties go to the lower user id, so the result is
    deterministic. Columns are ordered by similarity, most similar first.

    Parameters
    ----------
    representations
        :math:`E^*`, shape (n_users, d); row 0 is RecBole's padding user.
    users
        Query user ids (1-d, values in 1 .. n_users - 1).
    num_neighbours
        :math:`|\mathcal N_u|`; at most n_users - 2.
    block_size
        Query users per block: memory is about ``block_size * n_users`` similarities (plus
        ~10 bytes per entry for the rare rows with ties across the cut), never n_users x n_users.

    Returns
    -------
    LongTensor of shape (len(users), num_neighbours), on ``representations``' device.
    """
    _check_representations(representations)
    num_neighbours, _, _ = validate_colliding_settings(num_neighbours, 1.0, 1.0)
    n_users = representations.shape[0]
    _check_num_candidates(num_neighbours, n_users)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}.")
    users = torch.as_tensor(users, dtype=torch.long, device=representations.device).view(-1)
    if users.numel() and (users.min() < 1 or users.max() >= n_users):
        raise ValueError(
            f"users must be real user ids in 1 .. {n_users - 1} (0 is the padding user)."
        )
    return _nearest_neighbours(representations.detach(), users, num_neighbours, block_size)


def _nearest_neighbours(
    representations: torch.Tensor,
    users: torch.Tensor,
    k: int,
    block_size: int,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    result = torch.empty(len(users), k, dtype=torch.long, device=representations.device)
    excluded = None if candidates is None else ~candidates.to(representations.device)
    for start in range(0, len(users), block_size):
        block = users[start : start + block_size]
        similarity = representations[block] @ representations.T  # (block, n_users)
        similarity[:, 0] = -math.inf
        if excluded is not None:
            similarity[:, excluded] = -math.inf
        similarity[torch.arange(len(block), device=block.device), block] = -math.inf
        result[start : start + len(block)] = _top_k_lowest_id_on_ties(similarity, k)
    return result


class CollidingInference:
    r"""Eq. (8) for a fixed :math:`E^*` and user ratios; apply it batch by batch with :meth:`mix`.

    The neighbour table is built once, for the sparse users only (memory
    O(n_sparse x num_neighbours)). :math:`E^*` is kept by reference (no copy) so that
    :meth:`with_threshold` can search the users that another threshold adds.

    Parameters
    ----------
    representations
        :math:`E^*`, shape (n_users, d); row 0 is RecBole's padding user.
    user_ratio
        :math:`|D^*_u| / |\bar D_u|` per user, shape (n_users,).
    num_neighbours, lam, ratio_threshold
        :math:`|\mathcal N_u|`, :math:`\lambda` and the sparsity threshold; see
        :func:`validate_colliding_settings`. A user is sparse when its ratio is *below* the
        threshold; a ratio equal to it is not.
    users_without_extra
        ``"mix"`` (users with ratio 0 or NaN, no :math:`D^*` row, are mixed like any sparse
        user and are candidates) or ``"skip"`` (they keep their scores and are nobody's
        neighbour); see :func:`validate_users_without_extra`.
    max_scores_per_block
        Memory budget, counted in scores: the neighbour search takes
        ``max_scores_per_block // n_users`` query users per block, and :meth:`mix` asks
        ``predict`` for ``max_scores_per_block // n_items`` users at a time (at least one).
    """

    def __init__(
        self,
        representations: torch.Tensor,
        user_ratio: torch.Tensor,
        *,
        num_neighbours: int,
        lam: float,
        ratio_threshold: float,
        users_without_extra: str = "mix",
        max_scores_per_block: int = 2**24,
    ) -> None:
        self.num_neighbours, self.lam, self.ratio_threshold = validate_colliding_settings(
            num_neighbours, lam, ratio_threshold
        )
        self.users_without_extra = validate_users_without_extra(users_without_extra)
        _check_representations(representations)
        n_users = representations.shape[0]
        user_ratio = torch.as_tensor(user_ratio).detach()
        if user_ratio.shape != (n_users,):
            raise ValueError(
                f"user_ratio must have one value per user ({n_users}), "
                f"got shape {tuple(user_ratio.shape)}."
            )
        if (
            isinstance(max_scores_per_block, bool)
            or not isinstance(max_scores_per_block, int)
            or max_scores_per_block < 1
        ):
            raise ValueError(
                f"max_scores_per_block must be an integer >= 1, got {max_scores_per_block!r}."
            )
        device = representations.device
        self._user_ratio = user_ratio.to(device)
        self._candidates = _candidate_mask(self._user_ratio, self.users_without_extra)
        _check_num_candidates(self.num_neighbours, n_users, self._candidates)
        self.n_users = n_users
        self.max_scores_per_block = max_scores_per_block
        self._representations = representations.detach()
        self._set_sparse_users(None)

    def _set_sparse_users(self, known: CollidingInference | None) -> None:
        """Sparse mask and neighbour table for ``self.ratio_threshold``; rows of ``known`` (same
        E*, |N_u| and candidates) are copied, only the other sparse users are searched."""
        device = self._representations.device
        self._sparse = _sparse_mask(
            self._user_ratio.clone(), self.ratio_threshold, self.users_without_extra
        )
        sparse_ids = self._sparse.nonzero().view(-1)
        self._row_of = torch.full((self.n_users,), -1, dtype=torch.long, device=device)
        self._row_of[sparse_ids] = torch.arange(len(sparse_ids), device=device)
        neighbours = torch.empty(
            len(sparse_ids), self.num_neighbours, dtype=torch.long, device=device
        )
        have = torch.zeros(len(sparse_ids), dtype=torch.bool, device=device)
        if known is not None:
            rows = known._row_of[sparse_ids]
            have = rows >= 0
            neighbours[have] = known._neighbours[rows[have]]
        with torch.no_grad():
            neighbours[~have] = _nearest_neighbours(
                self._representations,
                sparse_ids[~have],
                self.num_neighbours,
                max(1, self.max_scores_per_block // self.n_users),
                self._candidates,
            )
        self._neighbours = neighbours

    def with_threshold(self, ratio_threshold: float) -> CollidingInference:
        """The same Eq. (8) (E*, |N_u|, lambda, users without extra) for the users below
        ``ratio_threshold``: one Table 5 row. A user's neighbours do not depend on the
        threshold, so the rows already found are reused and only users that the new threshold
        adds are searched. ``self`` is unchanged."""
        _, _, ratio_threshold = validate_colliding_settings(1, 1.0, ratio_threshold)
        if ratio_threshold == self.ratio_threshold:
            return self
        other = copy.copy(self)
        other.ratio_threshold = ratio_threshold
        other._set_sparse_users(self)
        return other

    @property
    def sparse_users(self) -> torch.Tensor:
        """Bool mask over all user ids (n_users,): True where Eq. (8) changes the scores."""
        return self._sparse

    def neighbours_of(self, users: torch.Tensor) -> torch.Tensor:
        """Neighbour ids of ``users``, shape (len(users), num_neighbours), most similar first.

        Rows of users that are not sparse are filled with -1: their neighbours are never used,
        so they are not computed.
        """
        users = torch.as_tensor(users, dtype=torch.long, device=self._row_of.device).view(-1)
        rows = self._row_of[users]
        out = torch.full(
            (len(users), self.num_neighbours), -1, dtype=torch.long, device=users.device
        )
        known = rows >= 0
        out[known] = self._neighbours[rows[known]]
        return out

    def with_lambda(self, lam: float) -> CollidingInference:
        r"""The same neighbours and sparse users, mixed with another :math:`\lambda`: one pair
        of a validation grid, sharing this one's tables (nothing is searched again)."""
        _, lam, _ = validate_colliding_settings(1, lam, 1.0)
        other = copy.copy(self)
        other.lam = lam
        return other

    def with_neighbours(self, num_neighbours: int) -> CollidingInference:
        r"""The same inference with the first ``num_neighbours`` (at most this one's) columns of
        each neighbour row. They are the ``num_neighbours`` nearest: neighbours are ordered by
        similarity, then id, so the k nearest are a prefix of the k' nearest for k < k'."""
        num_neighbours, _, _ = validate_colliding_settings(num_neighbours, 1.0, 1.0)
        if num_neighbours > self.num_neighbours:
            raise ValueError(
                f"with_neighbours({num_neighbours}) needs an inference with at least that many "
                f"neighbours; this one has {self.num_neighbours}: build it with the largest "
                "|N_u| of the grid."
            )
        other = copy.copy(self)
        other.num_neighbours = num_neighbours
        other._neighbours = self._neighbours[:, :num_neighbours].contiguous()
        return other

    @torch.no_grad()
    def mix(
        self,
        users: torch.Tensor,
        scores: torch.Tensor,
        predict: Predict,
        *,
        reuse_batch: bool = False,
    ) -> torch.Tensor:
        r"""Apply Eq. (8) to one batch.

        Parameters
        ----------
        users
            User ids of the batch, shape (B,).
        scores
            :math:`\hat{\mathbf y}_u` for those users, probabilities, shape (B, n_items).
        predict
            ``predict(ids)`` returns the probability scores of ``ids`` over all items,
            shape (len(ids), n_items). It is called on the distinct neighbours of the batch's
            sparse users, at most ``max(1, max_scores_per_block // n_items)`` ids per call.
        reuse_batch
            Read the scores of neighbours who are themselves in ``users`` from ``scores``
            instead of asking ``predict`` (which must then be the model that gave ``scores``):
            :func:`colliding_hook` does, so that a batch holding every user scores nobody
            twice. Bitwise equal to the default when every neighbour is in the batch, the
            batch's users are in ascending order (RecBole's full-sort loader) and ``predict``
            gives the rows of ``scores`` bitwise; otherwise equal up to the order of the float
            sums.

        Returns
        -------
        Tensor (B, n_items). Rows of non-sparse users are bitwise equal to ``scores``. With
        :math:`\lambda = 1`, or no sparse user in the batch, ``scores`` itself is returned.
        """
        return self.mix_lambdas(users, scores, predict, (self.lam,), reuse_batch=reuse_batch)[0]

    @torch.no_grad()
    def mix_lambdas(
        self,
        users: torch.Tensor,
        scores: torch.Tensor,
        predict: Predict,
        lams: tuple[float, ...],
        *,
        reuse_batch: bool = False,
    ) -> list[torch.Tensor]:
        r""":meth:`mix` for each :math:`\lambda` of ``lams`` (this inference's own is ignored),
        the neighbours scored once for all of them: element ``i`` is bitwise what
        ``self.with_lambda(lams[i]).mix(...)`` returns, since each :math:`\lambda` gets the same
        operations on the same operands in the same order; only ``predict``'s calls are shared.
        Holds one (sparse rows x n_items) sum per :math:`\lambda < 1` at a time."""
        if scores.dim() != 2 or scores.shape[0] != len(users):
            raise ValueError(
                f"scores must have shape (len(users)={len(users)}, n_items), "
                f"got {tuple(scores.shape)}."
            )
        lams = tuple(validate_colliding_settings(1, lam, 1.0)[1] for lam in lams)
        out = [scores] * len(lams)
        mixing = [i for i, lam in enumerate(lams) if lam != 1.0]
        if not mixing:
            return out
        rows = self._row_of[users.to(self._row_of.device)]
        selected = (rows >= 0).to(scores.device)
        if not bool(selected.any()):
            return out
        neighbours = self._neighbours[rows[rows >= 0]].to(scores.device)  # (S, k)
        batch = (users.to(scores.device), scores) if reuse_batch else None
        # Eq. (8): the neighbours' scores weighted (1 - lam) / k and summed, plus lam * y_u.
        weights = tuple((1.0 - lams[i]) / self.num_neighbours for i in mixing)
        sums = self._sum_neighbour_scores(neighbours, scores.shape[1], predict, batch, weights)
        every_row = bool(selected.all())
        own = None if every_row else scores[selected]
        for i, mixed_rows in zip(mixing, sums):
            if every_row:
                out[i] = mixed_rows.add_(scores, alpha=lams[i])
                continue
            mixed_rows.add_(own, alpha=lams[i])
            mixed = scores.clone()
            mixed[selected] = mixed_rows
            out[i] = mixed
        return out

    def _sum_neighbour_scores(
        self,
        neighbours: torch.Tensor,
        n_items: int,
        predict: Predict,
        batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        weights: tuple[float, ...] = (1.0,),
    ) -> list[torch.Tensor]:
        r""":math:`\sum_{j \in \mathcal N_u} w\,\hat{\mathbf y}_j` for each row of ``neighbours``,
        one (rows x n_items) sum for each weight :math:`w` of ``weights``.

        The sum is a sparse (rows x neighbours) matrix of ``weight`` times the neighbours'
        scores, added in place operand after operand, so no (S x k x n_items) tensor and no
        gathered copy of the neighbours' rows exist. The operands: the rows of ``batch``'s
        scores for neighbours among its users (with ``batch``), then the other distinct
        neighbours scored by ``predict``, ``chunk`` ids at a time. Without ``batch``, each row
        adds its neighbours in ascending id order, starting from 0, as a loop of ``index_add_``
        would. Each weight's sum gets the same operations in the same order: the operands are
        fetched once and added to every sum, so several weights cost one ``predict`` pass.
        """
        device = neighbours.device
        n_rows, k = neighbours.shape
        chunk = max(1, self.max_scores_per_block // n_items)
        # Sorted ids in each row make the (row, column) pairs row-major sorted: a coalesced COO.
        unique_ids, column = torch.unique(neighbours.sort(dim=1).values, return_inverse=True)
        pair_row = torch.arange(n_rows, device=device).repeat_interleave(k)
        pair_col = column.reshape(-1)
        totals: list[torch.Tensor] = []

        def add(rows, cols, operand: torch.Tensor, is_sorted: bool = True) -> None:
            if not totals:
                totals.extend(operand.new_zeros(n_rows, n_items) for _ in weights)
            shape = (n_rows, len(operand))
            for total, weight in zip(totals, weights):
                total.addmm_(_pairs(rows, cols, shape, weight, operand.dtype, is_sorted), operand)

        if batch is not None:
            users, scores = batch
            order = torch.argsort(users)
            at = torch.searchsorted(users[order], unique_ids).clamp_(max=len(users) - 1)
            known = users[order][at] == unique_ids  # per distinct neighbour
            in_batch = known[pair_col]
            # Columns are rows of the batch: sorted within each row iff the batch's users are.
            sorted_users = bool((users[1:] > users[:-1]).all())
            add(pair_row[in_batch], order[at][pair_col[in_batch]], scores, sorted_users)
            # The other neighbours, renumbered 0 .. in the order of their ids.
            unique_ids = unique_ids[~known]
            renumber = torch.cumsum(~known, 0) - 1
            pair_row, pair_col = pair_row[~in_batch], renumber[pair_col[~in_batch]]
        for first in range(0, len(unique_ids), chunk):
            ids = unique_ids[first : first + chunk]
            block = predict(ids)
            if block.shape != (len(ids), n_items):
                raise ValueError(
                    f"predict returned shape {tuple(block.shape)} for {len(ids)} users, "
                    f"expected ({len(ids)}, {n_items})."
                )
            if len(ids) == len(unique_ids):
                add(pair_row, pair_col, block)
            else:
                in_chunk = (pair_col >= first) & (pair_col < first + len(ids))
                add(pair_row[in_chunk], pair_col[in_chunk] - first, block)
        assert totals  # neighbours is never empty here
        return totals


def _pairs(rows, cols, shape, weight: float, dtype, is_sorted: bool) -> torch.Tensor:
    """A sparse matrix holding ``weight`` at the distinct (row, col) pairs, as a COO tensor."""
    matrix = torch.sparse_coo_tensor(
        torch.stack((rows, cols)),
        torch.full((len(rows),), weight, dtype=dtype, device=rows.device),
        shape,
        is_coalesced=is_sorted,
        check_invariants=False,  # distinct by construction; sorted where is_sorted says so
    )
    return matrix if is_sorted else matrix.coalesce()


def require_full_sort_predict(model: torch.nn.Module) -> None:
    """``ValueError`` unless the model has a ``full_sort_predict`` of its own: RecBole would
    otherwise fall back to ``predict`` and no mixing would ever run."""
    method = getattr(model.full_sort_predict, "__func__", None)
    if method is AbstractRecommender.full_sort_predict:
        raise ValueError(
            f"Colliding inference needs a model with full_sort_predict; "
            f"{type(model).__name__} has none."
        )


@contextmanager
def colliding_hook(
    model: torch.nn.Module, colliding: CollidingInference, user_field: str
) -> Iterator[CollidingInference]:
    """While active, ``model.full_sort_predict(interaction)`` returns Eq. (8)'s mixed scores.

    RecBole's ``Trainer._full_sort_batch_eval`` calls ``full_sort_predict`` and only then masks
    the history with -inf, so the mixing has to happen inside ``full_sort_predict``. The hook sets
    an instance attribute that shadows the class method; the neighbours are scored by the
    original method on ``Interaction({user_field: ids})``, except those in the batch itself,
    whose rows of the batch's scores are read instead (``mix``'s ``reuse_batch``). All of it
    runs under ``torch.no_grad``. On exit, even on an exception, the model is restored exactly (the
    attribute is removed, or a previous instance attribute is put back).

    Raises ``ValueError`` if the model has no ``full_sort_predict`` of its own: RecBole would
    then fall back to ``predict`` and the mixing would silently never run.
    """
    require_full_sort_predict(model)
    original = model.full_sort_predict
    had_own = "full_sort_predict" in vars(model)
    previous = vars(model).get("full_sort_predict")

    def predict_users(ids: torch.Tensor) -> torch.Tensor:
        return original(Interaction({user_field: ids})).view(len(ids), -1)

    def full_sort_predict(interaction):
        with torch.no_grad():
            flat = original(interaction)
            users = interaction[user_field]
            scores = flat.view(len(users), -1)
            mixed = colliding.mix(users, scores, predict_users, reuse_batch=True)
            return mixed.view(flat.shape)

    model.full_sort_predict = full_sort_predict
    try:
        yield colliding
    finally:
        if had_own:
            model.full_sort_predict = previous
        else:
            del model.full_sort_predict


def dense_colliding_scores(
    all_scores: torch.Tensor,
    representations: torch.Tensor,
    user_ratio: torch.Tensor,
    *,
    num_neighbours: int,
    lam: float,
    ratio_threshold: float,
    users_without_extra: str = "mix",
) -> torch.Tensor:
    r"""Eq. (8) for every user at once, the direct way: a reference for tests only.

    Builds the full (n_users x n_users) similarity matrix, ranks it with a stable sort (ties to
    the lower id) and averages a (n_users x k x n_items) gather of ``all_scores``.

    Parameters
    ----------
    all_scores
        :math:`\hat{\mathbf y}` for every user id (row 0 included), shape (n_users, n_items).
    """
    k, lam, ratio_threshold = validate_colliding_settings(num_neighbours, lam, ratio_threshold)
    users_without_extra = validate_users_without_extra(users_without_extra)
    n_users = representations.shape[0]
    candidates = _candidate_mask(user_ratio.clone(), users_without_extra)
    _check_num_candidates(k, n_users, candidates)
    similarity = representations @ representations.T
    similarity[:, 0] = -math.inf
    if candidates is not None:
        similarity[:, ~candidates] = -math.inf
    similarity.fill_diagonal_(-math.inf)
    neighbours = similarity.argsort(dim=1, descending=True, stable=True)[:, :k]
    neighbour_mean = all_scores[neighbours].mean(dim=1)
    sparse = _sparse_mask(user_ratio.clone(), ratio_threshold, users_without_extra)
    mixed = all_scores.clone()
    mixed[sparse] = lam * all_scores[sparse] + (1.0 - lam) * neighbour_mean[sparse]
    return mixed
