import pytest

from recbole_adt.schedule import drop_rate_schedule


@pytest.mark.parametrize(
    ("iteration", "expected"),
    [(0, 0.0), (1, 0.0002), (250, 0.05), (500, 0.1), (1000, 0.2), (1001, 0.2), (10**6, 0.2)],
)
def test_linear_ramp_then_flat(iteration, expected):
    rate = drop_rate_schedule(iteration, drop_rate=0.2, num_gradual=1000)
    assert rate == pytest.approx(expected)


def test_zero_max_never_drops():
    assert drop_rate_schedule(5000, drop_rate=0.0, num_gradual=10) == 0.0


@pytest.mark.parametrize("num_gradual", [0, -5, 2.5, True])
def test_bad_num_gradual(num_gradual):
    with pytest.raises(ValueError, match="num_gradual"):
        drop_rate_schedule(1, drop_rate=0.1, num_gradual=num_gradual)


def test_negative_iteration():
    with pytest.raises(ValueError, match="iteration"):
        drop_rate_schedule(-1, drop_rate=0.1, num_gradual=10)


def test_whole_float_num_gradual_is_accepted():
    assert drop_rate_schedule(5000, drop_rate=0.2, num_gradual=1e4) == pytest.approx(0.1)
