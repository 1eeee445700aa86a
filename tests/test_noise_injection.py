"""Noise injection: counts, no collisions, reproducible by seed, flags, valid and test untouched,
and what each mechanism prefers."""

import logging

import numpy as np
import pytest
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from recbole_adt.data.noise_injection import (
    NoiseInjection,
    inject,
    injection_count,
    item_weights,
    mechanism_names,
    sample_pairs,
    user_weights,
)


def test_weights_and_count_by_hand():
    # q_i = (c_i + 1)^alpha, padding id 0 excluded: counts 3, 0, 1 -> 4, 1, 2 over 7
    np.testing.assert_allclose(item_weights(np.array([5, 3, 0, 1]), 1.0), [0, 4 / 7, 1 / 7, 2 / 7])
    # alpha = 2: 16, 1, 4 over 21; alpha = 0: uniform
    np.testing.assert_allclose(
        item_weights(np.array([0, 3, 0, 1]), 2.0), [0, 16 / 21, 1 / 21, 4 / 21]
    )
    np.testing.assert_allclose(item_weights(np.array([0, 3, 0, 1]), 0.0), [0, 1 / 3, 1 / 3, 1 / 3])
    # w_u = n_u theta_u: 2 * 0.5, 3 * 1 over 4
    np.testing.assert_allclose(
        user_weights(np.array([0, 2, 3]), np.array([9, 0.5, 1])), [0, 0.25, 0.75]
    )
    np.testing.assert_allclose(user_weights(np.array([0, 1, 3])), [0, 0.25, 0.75])
    assert injection_count(0.2, 3840) == 768 and injection_count(0.0, 100) == 0
    assert injection_count(0.25, 10) == 2  # 2.5 rounds half to even


def test_exactly_the_unobserved_pairs_when_asked_for_all_of_them():
    """Users 1, 2 and items 1, 2 (0 is padding); (1, 1) observed: 3 pairs can be drawn."""
    users_p, items_p = np.array([0, 0.5, 0.5]), np.array([0, 0.5, 0.5])
    observed = np.array([1 * 3 + 1])
    users, items = sample_pairs(3, users_p, items_p, observed, np.random.default_rng(0))
    assert sorted(zip(users.tolist(), items.tolist())) == [(1, 2), (2, 1), (2, 2)]
    with pytest.raises(ValueError, match="only 3 unobserved"):
        sample_pairs(4, users_p, items_p, observed, np.random.default_rng(0))


def test_sampling_is_reproducible_by_seed_and_distinct():
    users_p = user_weights(np.arange(50))
    items_p = item_weights(np.arange(40), 1.0)
    observed = np.arange(0, 50 * 40, 7)
    first = sample_pairs(300, users_p, items_p, observed, np.random.default_rng(3))
    again = sample_pairs(300, users_p, items_p, observed, np.random.default_rng(3))
    other = sample_pairs(300, users_p, items_p, observed, np.random.default_rng(4))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])
    keys = first[0] * 40 + first[1]
    assert len(np.unique(keys)) == 300 and not np.isin(keys, observed).any()
    assert (first[0] > 0).all() and (first[1] > 0).all()  # never the padding ids


def test_settings_are_checked_once():
    assert mechanism_names("popularity+user") == ("popularity", "user")
    assert mechanism_names(["user", "popularity"]) == ("popularity", "user")
    assert NoiseInjection.from_config({"seed": 5}) == NoiseInjection(seed=5)
    parsed = NoiseInjection.from_config({"seed": 5, "noise_rate": 0.1, "noise_seed": 9})
    assert parsed.enabled and parsed.seed == 9
    for bad, match in (
        ({"noise_rate": -0.1}, "noise_rate"),
        ({"noise_rate": "lots"}, "noise_rate"),
        ({"noise_mechanism": "exposure"}, "noise_mechanism"),
        ({"noise_mechanism": ["uniform", "user"]}, "noise_mechanism"),
        ({"noise_user_beta": [0.5]}, "noise_user_beta"),
        ({"noise_user_beta": [0, 1]}, "noise_user_beta"),
        ({"noise_seed": 1.5}, "noise_seed"),
        ({"noise_popularity_exponent": "high"}, "noise_popularity_exponent"),
    ):
        with pytest.raises(ValueError, match=match):
            NoiseInjection.from_config({"seed": 1, **bad})


def zipf_data(seed=0, n_users=300, n_items=400, per_user=30):
    """Users with 10..50 interactions on Zipf-popular items (ids from 1)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    users, items = [], []
    for user in range(1, n_users + 1):
        n = int(rng.integers(per_user - 20, per_user + 21))
        users += [user] * n
        items += list(rng.choice(n_items, n, replace=False, p=p) + 1)
    return np.array(users), np.array(items), n_users + 1, n_items + 1


def injected_of(mechanism, data, **settings):
    users, items, n_users, n_items = data
    noise = NoiseInjection(rate=0.2, mechanisms=mechanism_names(mechanism), seed=11, **settings)
    return inject(noise, users, items, users * n_items + items, n_users, n_items)


def expected_popularity(data, exponent):
    """E[c_i] of a drawn pair under P(u, i) ∝ n_u (c_i + 1)^alpha over unobserved pairs."""
    users, items, n_users, n_items = data
    counts = np.bincount(items, minlength=n_items).astype(float)
    unobserved = np.ones((n_users, n_items))
    unobserved[users, items] = 0
    p = np.outer(
        user_weights(np.bincount(users, minlength=n_users)), item_weights(counts, exponent)
    )
    p *= unobserved
    return (p.sum(axis=0) * counts).sum() / p.sum()


def test_popularity_mechanism_prefers_popular_items():
    data = zipf_data()
    counts = np.bincount(data[1], minlength=data[3]).astype(float)
    uniform = counts[injected_of("uniform", data).items].mean()
    popular_run = injected_of("popularity", data)
    popular = counts[popular_run.items].mean()
    # Measured against the exact expectation (16.9 and 44.4 here), within sampling noise.
    assert uniform == pytest.approx(expected_popularity(data, 0.0), rel=0.05)
    assert popular == pytest.approx(expected_popularity(data, 1.0), rel=0.05)
    assert popular > 2.5 * uniform
    steeper = counts[injected_of("popularity", data, popularity_exponent=2.0).items].mean()
    assert steeper > popular
    assert "popularity (exponent 1)" in popular_run.describe()


def test_user_mechanism_gives_skimmers_and_readers():
    data = zipf_data()
    n_u = np.bincount(data[0], minlength=data[2])[1:]

    def shares(injected):
        return np.bincount(injected.users, minlength=data[2])[1:] / n_u

    uniform, user = shares(injected_of("uniform", data)), shares(injected_of("user", data))
    # Uniform: every user near the rate (multinomial noise, std about sqrt(0.2 / 30) = 0.08).
    assert abs(uniform.mean() - 0.2) < 0.01 and uniform.std() < 0.12
    # Beta(0.5, 1) propensity, share_u ~ 0.2 theta_u / E[theta]: CV of theta 0.89, so std
    # about 0.18 and many users near 0, some at two or three times the rate.
    assert user.std() > 2 * uniform.std()
    low, high = np.quantile(user, [0.1, 0.9])
    assert low < 0.05 and high > 0.4


# --- on a dataset, through ADTDataset -------------------------------------------------------


def splits(settings):
    config = Config("GMF", config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = ADTDataset(config)
    train, valid, test = data_preparation(config, dataset)
    return dataset, [part._dataset.inter_feat for part in (train, valid, test)]


def columns(feat):
    return {name: feat[name].tolist() for name in feat.columns}


def test_injection_into_the_training_split_only(base_config, caplog):
    plain_dataset, plain = splits(base_config)
    with caplog.at_level(logging.INFO):
        dataset, noisy = splits({**base_config, "noise_rate": 0.25})
    n = len(plain[0])
    assert len(noisy[0]) == n + round(0.25 * n)
    train = columns(noisy[0])
    # The observed training rows first, unchanged; then the injected rows, flagged.
    assert {k: v[:n] for k, v in train.items()} == columns(plain[0])
    assert set(train["false_positive"][n:]) == {1.0}
    # Valid and test are the run's without injection (the clean test too).
    assert columns(noisy[1]) == columns(plain[1]) and columns(noisy[2]) == columns(plain[2])
    # No injected pair repeats an observed pair (any split) or another injected one.
    every = dataset.inter_feat
    observed = set(zip(every["user_id"].tolist(), every["item_id"].tolist()))
    injected = list(zip(train["user_id"][n:], train["item_id"][n:]))
    assert len(set(injected)) == len(injected) and not set(injected) & observed
    # Each injected row copies its other columns from a training row of the same user.
    first_time = {}
    for user, time in zip(train["user_id"][:n], train["timestamp"][:n]):
        first_time.setdefault(user, set()).add(time)
    assert all(t in first_time[u] for u, t in zip(train["user_id"][n:], train["timestamp"][n:]))
    logged = [r.getMessage() for r in caplog.records if "Noise injection" in r.getMessage()]
    assert len(logged) == 1
    assert f"added {len(injected)} false positives to {n} training" in logged[0]
    assert "rate 0.25, uniform" in logged[0]


def test_injection_is_reproducible_and_seeded(base_config):
    settings = {**base_config, "noise_rate": 0.1, "noise_mechanism": "popularity"}
    _, first = splits(settings)
    _, again = splits(settings)
    _, other = splits({**settings, "noise_seed": 123})
    assert columns(first[0]) == columns(again[0])
    assert columns(first[0])["item_id"] != columns(other[0])["item_id"]
    assert columns(first[2]) == columns(other[2])


def test_data_without_a_flag_gets_one(base_config, tmp_path):
    """Every observed interaction is then a true positive: the clean test keeps them all."""
    folder = tmp_path / "flagless"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"u{u}\ti{(u * 7 + 3 * k) % 30}\t{1000 + k}" for u in range(40) for k in range(10)]
    (folder / "flagless.inter").write_text("\n".join(lines) + "\n")
    settings = {**base_config, "dataset": "flagless", "data_path": str(tmp_path)}
    _, (train, valid, test) = splits({**settings, "noise_rate": 0.1})
    flags = train["false_positive"].tolist()
    clean = len(flags) - int(sum(flags))
    assert sum(flags) == round(0.1 * clean) and flags[-1] == 1.0
    assert set(valid["false_positive"].tolist()) == {0.0}
    assert len(test) == 400 - clean - len(valid)  # nothing left out of the clean test


def test_noise_needs_a_flag_field(base_config):
    with pytest.raises(ValueError, match="noise_rate needs fp_field"):
        Config(
            "GMF",
            config_dict={**base_config, "noise_rate": 0.1, "fp_field": "", "clean_test": False},
        )
