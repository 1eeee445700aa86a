"""bench.synthetic's false-positive mechanisms: exposure-driven items and skimmer users."""

import numpy as np
import pytest

from bench.synthetic import SyntheticSpec, _weighted_rows, fp_statistics, generate

SIZE = dict(users=600, items=900, interactions=12_000, fp_rate=0.3, clusters=6, seed=5)


def stats(**extra):
    frame = generate(SyntheticSpec(**SIZE, **extra))
    assert int(frame["false_positive:float"].sum()) == round(0.3 * 12_000)  # exact count
    key = frame["user_id:token"] * 900 + frame["item_id:token"]
    assert key.is_unique  # no (user, item) pair twice
    return fp_statistics(frame)


def test_exposure_power_moves_false_positives_to_popular_items():
    flat, steep = (
        stats(fp_items="exposure", fp_exposure_power=0.5),
        stats(fp_items="exposure", fp_exposure_power=1.5),
    )
    ratio = [s["mean_popularity_fp"] / s["mean_popularity_tp"] for s in (flat, steep)]
    assert ratio[0] < 1 < 2 < ratio[1]


def test_user_propensity_makes_skimmers_and_readers():
    plain = stats()["user_fp_share_quantiles"]
    skimmers = stats(fp_user_beta_a=0.5, fp_user_beta_b=0.5)["user_fp_share_quantiles"]
    # Rows uniformly: every user's share near 0.3. Beta(0.5, 0.5): readers near 0, skimmers far
    # above the rate.
    assert plain[0] > 0.1 and plain[-1] < 0.5
    assert skimmers[0] < 0.02 and skimmers[-1] > 0.5


def test_weighted_rows_never_take_a_zero_weight_row_while_others_remain():
    rng = np.random.default_rng(0)
    weight = np.array([0.0, 1.0, 0.0, 2.0, 3.0, 0.0])
    rows = _weighted_rows(rng, weight, 3)
    assert sorted(rows.tolist()) == [1, 3, 4]
    assert len(_weighted_rows(rng, weight, 0)) == 0


def test_bad_mechanism_settings_raise_value_error():
    for bad, match in (
        ({"fp_items": "clicks"}, "fp_items"),
        ({"fp_user_beta_a": 0.5}, "fp_user_beta"),
        ({"fp_user_beta_a": -1.0, "fp_user_beta_b": 1.0}, "fp_user_beta"),
    ):
        with pytest.raises(ValueError, match=match):
            generate(SyntheticSpec(**SIZE, **bad))
