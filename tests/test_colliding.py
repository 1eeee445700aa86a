"""Colliding inference, paper Eq. (8): hand-computed values, blocked == dense, and the hook."""

from __future__ import annotations

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_adt.inference import (
    CollidingInference,
    CollidingSettings,
    colliding_hook,
    dense_colliding_scores,
    nearest_neighbours,
    validate_colliding_settings,
)

# Hand-built case: 4 real users (1-4) plus the padding row 0, d = 2, 3 items.
# Row 0 is the most similar to everyone, so it must be skipped.
HAND_REPS = torch.tensor([[10.0, 10.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
# Inner products:        user 1   user 2   user 3   user 4
#   user 1                  -      0.90     0.00     0.20     -> N_1 = [2, 4]
#   user 2               0.90        -      0.10     0.26     -> N_2 = [1, 4]
#   user 3               0.00      0.10       -      0.80     -> N_3 = [4, 2]
#   user 4               0.20      0.26     0.80       -      -> N_4 = [3, 2]
HAND_RATIO = torch.tensor([0.0, 0.0, 0.5, 0.1, 0.05])  # threshold 0.2: users 1, 3, 4 are sparse
HAND_SCORES = torch.tensor(
    [
        [0.0, 0.0, 0.0],  # padding
        [0.9, 0.1, 0.5],
        [0.2, 0.6, 0.4],
        [0.3, 0.3, 0.8],
        [0.7, 0.5, 0.1],
    ]
)
# lambda = 0.6, k = 2:
#   user 1: mean(y_2, y_4) = [0.45, 0.55, 0.25]
#           0.6*[0.9, 0.1, 0.5] + 0.4*[0.45, 0.55, 0.25] = [0.54+0.18, 0.06+0.22, 0.30+0.10]
#   user 2: not sparse, unchanged
#   user 3: mean(y_4, y_2) = [0.45, 0.55, 0.25]
#           0.6*[0.3, 0.3, 0.8] + 0.4*[0.45, 0.55, 0.25] = [0.18+0.18, 0.18+0.22, 0.48+0.10]
#   user 4: mean(y_3, y_2) = [0.25, 0.45, 0.60]
#           0.6*[0.7, 0.5, 0.1] + 0.4*[0.25, 0.45, 0.60] = [0.42+0.10, 0.30+0.18, 0.06+0.24]
HAND_EXPECTED = torch.tensor(
    [[0.72, 0.28, 0.40], [0.2, 0.6, 0.4], [0.36, 0.40, 0.58], [0.52, 0.48, 0.30]]
)
# users_without_extra="skip": user 1 (ratio 0, no D* row) keeps its scores and is nobody's
# neighbour (it is in no N_u above anyway); users 3 and 4 mix as before.
HAND_EXPECTED_SKIP = torch.cat((HAND_SCORES[1:2], HAND_EXPECTED[1:]))


def lookup(table: torch.Tensor, calls: list[torch.Tensor] | None = None):
    """A ``predict`` that reads rows of a score table and records its calls."""

    def predict(ids: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(ids.clone())
        return table[ids]

    return predict


def random_case(seed: int, n_users: int = 50, n_items: int = 30, dim: int = 8):
    generator = torch.Generator().manual_seed(seed)
    reps = torch.randn(n_users, dim, generator=generator)
    scores = torch.rand(n_users, n_items, generator=generator)
    ratio = torch.rand(n_users, generator=generator) * 0.5
    ratio[1:5] = 0.0  # users without any extra feedback
    return reps, scores, ratio


@pytest.mark.parametrize(
    ("without_extra", "expected", "user_1_sparse", "user_1_neighbours"),
    [("mix", HAND_EXPECTED, True, [2, 4]), ("skip", HAND_EXPECTED_SKIP, False, [-1, -1])],
)
def test_hand_built_case(without_extra, expected, user_1_sparse, user_1_neighbours):
    colliding = CollidingInference(
        HAND_REPS,
        HAND_RATIO,
        num_neighbours=2,
        lam=0.6,
        ratio_threshold=0.2,
        users_without_extra=without_extra,
        max_scores_per_block=3,  # one user per predict call
    )
    users = torch.tensor([1, 2, 3, 4])
    calls: list[torch.Tensor] = []
    mixed = colliding.mix(users, HAND_SCORES[users], lookup(HAND_SCORES, calls))
    torch.testing.assert_close(mixed, expected, rtol=0, atol=1e-6)
    assert colliding.sparse_users.tolist() == [False, user_1_sparse, False, True, True]
    assert colliding.neighbours_of(users).tolist() == [user_1_neighbours, [-1, -1], [4, 2], [3, 2]]
    # The distinct neighbours 2, 3, 4, each scored once, one per call.
    assert [c.tolist() for c in calls] == [[2], [3], [4]]
    dense = dense_colliding_scores(
        HAND_SCORES,
        HAND_REPS,
        HAND_RATIO,
        num_neighbours=2,
        lam=0.6,
        ratio_threshold=0.2,
        users_without_extra=without_extra,
    )
    torch.testing.assert_close(dense[1:], expected, rtol=0, atol=1e-6)


def test_skip_takes_users_without_extra_feedback_out_of_the_neighbours():
    # User 1 has no D* row but is the one most similar to user 2 (0.90): with "mix", N_2 starts
    # with 1; with "skip", 1 is no candidate and N_2 = [4, 3] (0.26, 0.10).
    ratio = torch.tensor([0.0, 0.0, 0.1, 0.5, 0.05])  # threshold 0.2: users 2 and 4 sparse
    values = {"num_neighbours": 2, "lam": 0.5, "ratio_threshold": 0.2}
    mix = CollidingInference(HAND_REPS, ratio, **values)  # the default
    skip = CollidingInference(HAND_REPS, ratio, **values, users_without_extra="skip")
    users = torch.tensor([1, 2, 4])
    assert mix.users_without_extra == "mix"
    assert mix.neighbours_of(users).tolist() == [[2, 4], [1, 4], [3, 2]]
    assert skip.neighbours_of(users).tolist() == [[-1, -1], [4, 3], [3, 2]]
    # user 2, skip: 0.5 * [0.2, 0.6, 0.4] + 0.25 * ([0.7, 0.5, 0.1] + [0.3, 0.3, 0.8])
    mixed = skip.mix(users, HAND_SCORES[users], lookup(HAND_SCORES))
    torch.testing.assert_close(mixed[1], torch.tensor([0.35, 0.50, 0.425]), rtol=0, atol=1e-6)
    assert torch.equal(mixed[0], HAND_SCORES[1])
    # Only users 2, 3, 4 have D*: two candidates besides the user itself.
    with pytest.raises(ValueError, match=r"colliding_neighbours=3 .* only 2 are available"):
        CollidingInference(
            HAND_REPS,
            ratio,
            num_neighbours=3,
            lam=0.5,
            ratio_threshold=0.2,
            users_without_extra="skip",
        )


@pytest.mark.parametrize("without_extra", ["skip", "mix"])
def test_a_ratio_equal_to_the_threshold_is_not_sparse(without_extra):
    # Ratios exactly at the thresholds 0.1 and 0.3 (3/10, as ExtraFeedback.user_ratio computes
    # it, in double): not sparse. Just below: sparse. The paper mixes ratios *smaller* than it.
    ratio = torch.tensor([0.0, 0.1, 3 / 10, 0.1 - 1e-9, 0.3 - 1e-9], dtype=torch.float64)
    expected = {0.1: [False, False, False, True, False], 0.3: [False, True, False, True, True]}
    for threshold, sparse in expected.items():
        colliding = CollidingInference(
            HAND_REPS,
            ratio,
            num_neighbours=1,
            lam=0.0,
            ratio_threshold=threshold,
            users_without_extra=without_extra,
        )
        assert colliding.sparse_users.tolist() == sparse
    at_threshold = CollidingInference(
        HAND_REPS, ratio, num_neighbours=1, lam=0.0, ratio_threshold=0.3 - 1e-9
    )
    assert at_threshold.sparse_users.tolist() == [False, True, False, True, False]
    users = torch.tensor([1, 2, 3, 4])
    mixed = at_threshold.mix(users, HAND_SCORES[users].clone(), lookup(HAND_SCORES))
    assert torch.equal(mixed[[1, 3]], HAND_SCORES[[2, 4]])  # the ratios at the threshold
    assert torch.equal(mixed[0], HAND_SCORES[2])  # lambda 0: user 1 takes N_1 = [2]
    assert torch.equal(
        at_threshold.with_threshold(0.1).sparse_users, torch.tensor([False] * 3 + [True, False])
    )


def test_lambda_one_returns_the_plain_scores():
    reps, scores, ratio = random_case(0)
    colliding = CollidingInference(
        reps, ratio, num_neighbours=3, lam=1.0, ratio_threshold=0.3, max_scores_per_block=60
    )
    users = torch.arange(1, 50)
    plain = scores[users]
    calls: list[torch.Tensor] = []
    mixed = colliding.mix(users, plain, lookup(scores, calls))
    assert torch.equal(mixed, plain)
    assert calls == []


def test_only_sparse_users_change():
    reps, scores, ratio = random_case(1)
    colliding = CollidingInference(
        reps, ratio, num_neighbours=5, lam=0.3, ratio_threshold=0.25, max_scores_per_block=90
    )
    users = torch.arange(1, 50)
    plain = scores[users].clone()
    mixed = colliding.mix(users, scores[users], lookup(scores))
    sparse = ratio[users] < 0.25
    assert sparse.any() and (~sparse).any()
    assert torch.equal(mixed[~sparse], plain[~sparse])
    assert (mixed[sparse] != plain[sparse]).any(dim=1).all()
    assert torch.equal(colliding.sparse_users[users], sparse)
    assert not colliding.sparse_users[0]


def test_batch_without_sparse_users_makes_no_predict_call():
    colliding = CollidingInference(
        HAND_REPS, HAND_RATIO, num_neighbours=2, lam=0.5, ratio_threshold=0.2
    )
    calls: list[torch.Tensor] = []
    users = torch.tensor([2])
    mixed = colliding.mix(users, HAND_SCORES[users], lookup(HAND_SCORES, calls))
    assert torch.equal(mixed, HAND_SCORES[users])
    assert calls == []


@pytest.mark.parametrize("num_neighbours", [1, 3, 10])
@pytest.mark.parametrize("lam", [0.0, 0.4])
@pytest.mark.parametrize("budget", [1, 70, 10**6])
@pytest.mark.parametrize("without_extra", ["skip", "mix"])
def test_blocked_equals_dense(num_neighbours, lam, budget, without_extra):
    reps, scores, ratio = random_case(2 + num_neighbours)
    n_items = scores.shape[1]
    colliding = CollidingInference(
        reps,
        ratio,
        num_neighbours=num_neighbours,
        lam=lam,
        ratio_threshold=0.3,
        users_without_extra=without_extra,
        max_scores_per_block=budget,  # 1 and 70: one or two users per block and per call
    )
    dense = dense_colliding_scores(
        scores,
        reps,
        ratio,
        num_neighbours=num_neighbours,
        lam=lam,
        ratio_threshold=0.3,
        users_without_extra=without_extra,
    )
    calls: list[torch.Tensor] = []
    # Batches of 7 users, as an evaluator would send them.
    for users in torch.arange(1, 50).split(7):
        mixed = colliding.mix(users, scores[users].clone(), lookup(scores, calls))
        torch.testing.assert_close(mixed, dense[users], rtol=1e-6, atol=1e-7)
    assert max(len(c) for c in calls) <= max(1, budget // n_items)


def test_neighbours_blocked_equal_unblocked():
    reps, _, _ = random_case(3, n_users=40)
    users = torch.arange(1, 40)
    whole = nearest_neighbours(reps, users, num_neighbours=6, block_size=1000)
    for block_size in (1, 4):
        assert torch.equal(
            nearest_neighbours(reps, users, num_neighbours=6, block_size=block_size), whole
        )
    picked = (reps[users] @ reps.T).gather(1, whole)
    assert (picked[:, :-1] >= picked[:, 1:]).all()  # most similar first
    # Exactly the top 6 of the dense ranking (no ties on random data).
    similarity = reps @ reps.T
    similarity[:, 0] = -float("inf")
    similarity.fill_diagonal_(-float("inf"))
    assert torch.equal(whole, similarity[users].argsort(dim=1, descending=True)[:, :6])


def test_neighbours_exclude_self_and_padding():
    reps = HAND_REPS.clone()
    # Every user's own inner product is its largest; row 0 beats them all.
    reps[1:] = torch.tensor([[3.0, 0.0], [0.0, 3.0], [2.0, 2.0], [2.5, 0.1]])
    users = torch.arange(1, 5)
    neighbours = nearest_neighbours(reps, users, num_neighbours=3, block_size=2)
    assert (neighbours != 0).all()
    assert (neighbours != users[:, None]).all()
    assert sorted(neighbours[0].tolist()) == [2, 3, 4]


def test_ties_go_to_the_lower_user_id():
    # Users 1-6 share one vector: every candidate ties.
    reps = torch.ones(7, 2)
    reps[0] = 5.0
    neighbours = nearest_neighbours(reps, torch.tensor([1, 3, 6]), num_neighbours=3, block_size=1)
    assert neighbours.tolist() == [[2, 3, 4], [1, 2, 4], [1, 2, 3]]
    # Partial ties: user 5 is strictly the most similar to user 1, then the tie among 2, 3, 4, 6.
    reps = torch.tensor(
        [[9.0, 9.0], [1.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.5, -1.0], [2.0, 0.0], [0.5, 3.0]]
    )
    first = nearest_neighbours(reps, torch.tensor([1]), num_neighbours=3)
    assert first.tolist() == [[5, 2, 3]]
    for _ in range(3):
        assert torch.equal(nearest_neighbours(reps, torch.tensor([1]), num_neighbours=3), first)
    # A tie inside the top k only (users 3 and 5 at 2.0, then user 2 at 0.5): order by id.
    reps = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.5, 0.0], [2.0, 5.0], [0.1, 0.0], [2.0, -5.0]])
    assert nearest_neighbours(reps, torch.tensor([1]), num_neighbours=2).tolist() == [[3, 5]]
    assert nearest_neighbours(reps, torch.tensor([1]), num_neighbours=3).tolist() == [[3, 5, 2]]


def test_too_many_neighbours_names_the_setting():
    with pytest.raises(ValueError, match=r"colliding_neighbours=4 .* only 3 are available"):
        nearest_neighbours(HAND_REPS, torch.tensor([1]), num_neighbours=4)
    with pytest.raises(ValueError, match="colliding_neighbours"):
        CollidingInference(HAND_REPS, HAND_RATIO, num_neighbours=4, lam=0.5, ratio_threshold=0.2)
    assert nearest_neighbours(HAND_REPS, torch.tensor([1]), num_neighbours=3).shape == (1, 3)


def test_padding_user_cannot_be_queried():
    with pytest.raises(ValueError, match="padding"):
        nearest_neighbours(HAND_REPS, torch.tensor([0, 1]), num_neighbours=1)


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"num_neighbours": 0}, "colliding_neighbours"),
        ({"num_neighbours": 2.5}, "colliding_neighbours"),
        ({"num_neighbours": True}, "colliding_neighbours"),
        ({"lam": -0.1}, "colliding_lambda"),
        ({"lam": 1.5}, "colliding_lambda"),
        ({"lam": "0.5"}, "colliding_lambda"),
        ({"ratio_threshold": 0.0}, "colliding_ratio_threshold"),
        ({"ratio_threshold": float("inf")}, "colliding_ratio_threshold"),
    ],
)
def test_bad_settings_name_the_setting(settings, name):
    values = {"num_neighbours": 3, "lam": 0.5, "ratio_threshold": 0.2, **settings}
    with pytest.raises(ValueError, match=name):
        validate_colliding_settings(**values)
    with pytest.raises(ValueError, match=name):
        CollidingInference(HAND_REPS, HAND_RATIO, **values)


def test_settings_are_normalised():
    assert validate_colliding_settings(10.0, 0, 1) == (10, 0.0, 1.0)


COLLIDING = {
    "colliding_inference": True,
    "colliding_neighbours": [1, 3.0],
    "colliding_lambda": [0, 0.5],
    "colliding_ratio_threshold": 0.2,
    "colliding_users_without_extra": "mix",
}


def test_owner_parses_the_grid_once():
    settings = CollidingSettings.from_config(COLLIDING)
    grid = ((1, 0.0), (1, 0.5), (3, 0.0), (3, 0.5))
    assert settings == CollidingSettings(True, grid, 0.2, "mix")
    single = CollidingSettings.from_config(
        {**COLLIDING, "colliding_neighbours": 5, "colliding_lambda": 1}
    )
    assert single.grid == ((5, 1.0),)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"colliding_inference": "yes"}, "colliding_inference must be True or False"),
        ({"colliding_neighbours": []}, "must not be empty lists"),
        ({"colliding_lambda": [0.5, 2]}, r"colliding_lambda must be a number in \[0, 1\]"),
        ({"colliding_neighbours": [3, 0]}, "colliding_neighbours must be an integer >= 1"),
        ({"colliding_ratio_threshold": -1}, "colliding_ratio_threshold must be a finite number"),
        ({"colliding_users_without_extra": "drop"}, "must be 'skip' or 'mix', got 'drop'"),
    ],
)
def test_owner_names_the_bad_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        CollidingSettings.from_config({**COLLIDING, **setting})


class LinearScorer(torch.nn.Module):
    """sigmoid(p_u . q_i), scored for all items at once like the plugin's GMF."""

    USER_ID = "user_id"

    def __init__(self, n_users: int, n_items: int, dim: int = 4) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(11)
        self.users = torch.nn.Parameter(torch.randn(n_users, dim, generator=generator))
        self.items = torch.nn.Parameter(torch.randn(n_items, dim, generator=generator))

    def full_sort_predict(self, interaction):
        return torch.sigmoid(self.users[interaction[self.USER_ID]] @ self.items.T).view(-1)


def test_hook_mixes_full_sort_predict_and_restores_the_model():
    n_users, n_items = 30, 12
    model = LinearScorer(n_users, n_items)
    reps, _, ratio = random_case(4, n_users=n_users, n_items=n_items)
    with torch.no_grad():
        all_scores = torch.sigmoid(model.users @ model.items.T)
    dense = dense_colliding_scores(
        all_scores, reps, ratio, num_neighbours=3, lam=0.2, ratio_threshold=0.3
    )
    colliding = CollidingInference(
        reps, ratio, num_neighbours=3, lam=0.2, ratio_threshold=0.3, max_scores_per_block=25
    )
    batch = torch.tensor([1, 2, 3, 7, 8, 20, 29])
    with colliding_hook(model, colliding, "user_id"):
        flat = model.full_sort_predict(Interaction({"user_id": batch}))
    assert flat.shape == (len(batch) * n_items,)
    assert not flat.requires_grad
    torch.testing.assert_close(flat.view(-1, n_items), dense[batch], rtol=1e-6, atol=1e-7)
    assert "full_sort_predict" not in vars(model)
    assert model.full_sort_predict.__func__ is LinearScorer.full_sort_predict
    plain = model.full_sort_predict(Interaction({"user_id": batch})).view(-1, n_items)
    torch.testing.assert_close(plain, all_scores[batch], rtol=1e-6, atol=1e-7)


def test_hook_restores_the_model_after_an_exception():
    model = LinearScorer(5, 3)
    colliding = CollidingInference(
        HAND_REPS, HAND_RATIO, num_neighbours=2, lam=0.5, ratio_threshold=0.2
    )
    with pytest.raises(RuntimeError, match="boom"):
        with colliding_hook(model, colliding, "user_id"):
            assert "full_sort_predict" in vars(model)
            raise RuntimeError("boom")
    assert "full_sort_predict" not in vars(model)

    # A method already patched on the instance is put back as it was.
    def patched(interaction):
        return torch.zeros(len(interaction["user_id"]) * 3)

    model.full_sort_predict = patched
    with colliding_hook(model, colliding, "user_id"):
        mixed = model.full_sort_predict(Interaction({"user_id": torch.tensor([1, 2])}))
        assert torch.equal(mixed, torch.zeros(6))  # zeros mixed with zeros
    assert vars(model)["full_sort_predict"] is patched


def test_hook_refuses_a_model_without_full_sort_predict():
    from recbole.model.abstract_recommender import GeneralRecommender

    class NoFullSort(GeneralRecommender):
        def __init__(self) -> None:  # skip RecBole's config-driven setup
            torch.nn.Module.__init__(self)

    colliding = CollidingInference(
        HAND_REPS, HAND_RATIO, num_neighbours=2, lam=0.5, ratio_threshold=0.2
    )
    with pytest.raises(ValueError, match="full_sort_predict"):
        with colliding_hook(NoFullSort(), colliding, "user_id"):
            pass


# The fast path, reuse_batch (what colliding_hook uses), against the general one.


@pytest.mark.parametrize("num_neighbours", [1, 3, 10])
@pytest.mark.parametrize("lam", [0.0, 0.4])
@pytest.mark.parametrize("budget", [1, 70, 10**6])
def test_reusing_the_batch_equals_the_general_path(num_neighbours, lam, budget):
    reps, scores, ratio = random_case(20 + num_neighbours)
    n_items = scores.shape[1]
    colliding = CollidingInference(
        reps,
        ratio,
        num_neighbours=num_neighbours,
        lam=lam,
        ratio_threshold=0.3,
        max_scores_per_block=budget,
    )
    # One batch of every user in id order, as RecBole's loader sends it: bitwise equal, and
    # nobody is scored twice.
    users = torch.arange(1, 50)
    general = colliding.mix(users, scores[users].clone(), lookup(scores))
    calls: list[torch.Tensor] = []
    fast = colliding.mix(users, scores[users].clone(), lookup(scores, calls), reuse_batch=True)
    assert torch.equal(fast, general)
    assert calls == []
    # Batches of 7, and every user shuffled: equal up to the order of the float sums; only
    # neighbours outside the batch are scored, within the budget.
    shuffled = torch.randperm(49, generator=torch.Generator().manual_seed(1)) + 1
    for batch in [*torch.arange(1, 50).split(7), shuffled]:
        calls = []
        fast = colliding.mix(batch, scores[batch].clone(), lookup(scores, calls), reuse_batch=True)
        general = colliding.mix(batch, scores[batch].clone(), lookup(scores))
        torch.testing.assert_close(fast, general, rtol=1e-6, atol=1e-7)
        asked = torch.cat(calls) if calls else torch.zeros(0, dtype=torch.long)
        assert not torch.isin(asked, batch).any()
        assert len(asked) == len(set(asked.tolist()))
        assert all(len(c) <= max(1, budget // n_items) for c in calls)


def test_reusing_the_batch_keeps_plain_rows_and_lambda_one():
    reps, scores, ratio = random_case(5)
    users = torch.arange(1, 50)
    mixed_up = CollidingInference(
        reps, ratio, num_neighbours=4, lam=0.3, ratio_threshold=0.25, max_scores_per_block=90
    )
    fast = mixed_up.mix(users, scores[users].clone(), lookup(scores), reuse_batch=True)
    sparse = ratio[users] < 0.25
    assert torch.equal(fast[~sparse], scores[users][~sparse])
    assert (fast[sparse] != scores[users][sparse]).any(dim=1).all()
    plain = scores[users].clone()
    unchanged = CollidingInference(
        reps, ratio, num_neighbours=4, lam=1.0, ratio_threshold=0.25, max_scores_per_block=90
    )
    assert unchanged.mix(users, plain, lookup(scores), reuse_batch=True) is plain


# One Table 5 row per threshold: with_threshold.


@pytest.mark.parametrize("without_extra", ["skip", "mix"])
def test_with_threshold_equals_a_fresh_inference_at_that_threshold(without_extra):
    reps, scores, ratio = random_case(7)
    values = {"num_neighbours": 4, "lam": 0.3, "users_without_extra": without_extra}
    low = CollidingInference(reps, ratio, ratio_threshold=0.2, **values)
    sparse_before = low.sparse_users.clone()
    users = torch.arange(1, 50)
    for threshold in (0.1, 0.3, 0.45):
        derived = low.with_threshold(threshold)
        fresh = CollidingInference(reps, ratio, ratio_threshold=threshold, **values)
        assert derived.ratio_threshold == threshold
        assert torch.equal(derived.sparse_users, fresh.sparse_users)
        assert torch.equal(derived.neighbours_of(users), fresh.neighbours_of(users))
        plain = scores[users]
        assert torch.equal(
            derived.mix(users, plain, lookup(scores)), fresh.mix(users, plain, lookup(scores))
        )
    assert torch.equal(low.sparse_users, sparse_before) and low.ratio_threshold == 0.2
    assert low.with_threshold(0.2) is low


def test_each_threshold_mixes_the_users_below_it():
    """The "< 0.3" row mixes the users in [0.2, 0.3) too, not only those below 0.2."""
    reps, scores, ratio = random_case(8)
    users = torch.arange(1, 50)
    between = (ratio[users] >= 0.2) & (ratio[users] < 0.3)
    below = (ratio[users] > 0) & (ratio[users] < 0.2)
    assert between.any() and below.any()
    overall = CollidingInference(reps, ratio, num_neighbours=3, lam=0.0, ratio_threshold=0.2)
    row_03 = overall.with_threshold(0.3).mix(users, scores[users], lookup(scores))
    only_02 = overall.mix(users, scores[users], lookup(scores))
    dense_03 = dense_colliding_scores(
        scores, reps, ratio, num_neighbours=3, lam=0.0, ratio_threshold=0.3
    )
    torch.testing.assert_close(row_03, dense_03[users], rtol=1e-6, atol=1e-7)
    assert torch.equal(row_03[below], only_02[below])
    assert (row_03[between] != only_02[between]).any(dim=1).all()
    assert torch.equal(only_02[between], scores[users][between])
