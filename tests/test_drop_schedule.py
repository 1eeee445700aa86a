"""DropSchedule, the owner of drop_rate, num_gradual, num_gradual_unit and drop_count: its rates
against hand-computed values, its messages, and the rate the trainer hands the model per batch."""

import logging
import math

import pytest

from recbole_adt.config import Config
from recbole_adt.schedule import DropSchedule
from recbole_adt.settings import parsed
from tests.pipeline import prepare


def schedule(**settings) -> DropSchedule:
    keys = {"drop_rate": 0.2, "num_gradual": 10, "num_gradual_unit": "iterations"}
    return DropSchedule.from_config({**keys, "drop_count": "paper", **settings})


# --- the owner's outputs -------------------------------------------------------------------------


def test_paper_ramp_by_hand():
    # Eq. (3) with eps_max 0.2, eps_N 10: 0.2 * t / 10 = 0.02 t, capped at 0.2 from t = 10
    rates = [schedule().rate(t) for t in range(13)]
    expected = [0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.2, 0.2]
    assert rates == pytest.approx(expected, abs=1e-15)
    assert schedule().iterations() == 10


def test_authors_ramp_by_hand():
    # np.linspace(0, 0.2, 5) = 0, 0.05, 0.1, 0.15, 0.2, then 0.2: eps_max one batch sooner
    authors = schedule(num_gradual=5, drop_count="authors")
    rates = [authors.rate(t) for t in range(7)]
    assert rates == pytest.approx([0, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2], abs=1e-15)


def test_epochs_unit_by_hand():
    # 2.5 epochs of 4 batches: eps_N = 10 iterations, so 0.02 t as above
    epochs = schedule(num_gradual=2.5, num_gradual_unit="epochs")
    assert epochs.iterations(4) == 10
    rates = [epochs.rate(t, batches_per_epoch=4) for t in range(12)]
    assert rates == pytest.approx([0.02 * t for t in range(11)] + [0.2], abs=1e-15)
    # the same 2.5 epochs of 158 batches (ml-100k): 395 iterations
    assert epochs.rate(79, batches_per_epoch=158) == pytest.approx(0.2 * 79 / 395)
    with pytest.raises(ValueError, match="batches per epoch"):
        epochs.rate(3)


def test_zero_drop_rate_never_drops():
    assert {schedule(drop_rate=0).rate(t) for t in range(20)} == {0.0}


def test_whole_floats_are_integers():
    # 1e3 on a command line arrives as a float
    parsed_schedule = schedule(num_gradual=1e3)
    assert parsed_schedule.num_gradual == 1000 and isinstance(parsed_schedule.num_gradual, int)
    assert schedule(num_gradual=3.0, num_gradual_unit="epochs").num_gradual == 3


def test_package_default_ramps_over_six_epochs(base_config):
    settings = {k: v for k, v in base_config.items() if k != "num_gradual_unit"}
    config = Config("GMF", config_dict={**settings, "adt_loss": "TCE"})
    assert parsed(config, DropSchedule) == DropSchedule(0.2, 6, "epochs", "paper")
    assert config.parsed_settings[DropSchedule] is parsed(config, DropSchedule)  # parsed once
    assert DropSchedule.KEYS == ("drop_rate", "num_gradual", "num_gradual_unit", "drop_count")


# --- one message per key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"drop_rate": 1.0}, r"drop_rate must be a number in \[0, 1\), got 1.0: .*--drop_rate=0.2"),
        ({"drop_rate": -0.1}, r"drop_rate must be a number in \[0, 1\), got -0.1"),
        ({"drop_rate": "0.2"}, r"drop_rate must be a number in \[0, 1\), got '0.2'"),
        ({"drop_rate": True}, r"drop_rate must be a number in \[0, 1\), got True"),
        ({"drop_rate": math.nan}, r"drop_rate must be a number in \[0, 1\), got nan"),
        ({"num_gradual": 0}, "num_gradual must be a positive integer with num_gradual_unit: iter"),
        ({"num_gradual": 2.5}, "got 2.5: .*set num_gradual_unit: epochs"),
        ({"num_gradual": True}, "num_gradual must be a positive integer .*, got True"),
        (
            {"num_gradual": 0, "num_gradual_unit": "epochs"},
            "num_gradual must be a positive number of epochs .*got 0: .*--num_gradual=6",
        ),
        (
            {"num_gradual": math.inf, "num_gradual_unit": "epochs"},
            "num_gradual must be a positive number of epochs",
        ),
        (
            {"num_gradual": "6", "num_gradual_unit": "epochs"},
            "num_gradual must be a positive number of epochs .*got '6'",
        ),
        (
            {"num_gradual_unit": "batches"},
            "num_gradual_unit must be one of iterations, epochs, got 'batches'",
        ),
        ({"drop_count": "ceil"}, "drop_count must be one of paper, authors, got 'ceil'"),
    ],
)
def test_bad_values_get_the_owners_message(setting, message):
    with pytest.raises(ValueError, match=message):
        schedule(**setting)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"drop_rate": 1.5}, r"drop_rate must be a number in \[0, 1\)"),
        ({"num_gradual": -3}, "num_gradual must be a positive integer"),
        ({"num_gradual_unit": "epoch"}, "num_gradual_unit must be one of iterations, epochs"),
        ({"drop_count": "floor"}, "drop_count must be one of paper, authors"),
    ],
)
def test_config_parses_the_schedule_before_any_data(setting, message, base_config):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, "adt_loss": "TCE", **setting})


# --- the trainer hands the model epsilon(T) at every batch ---------------------------------------


def record_rates(model) -> list[float]:
    """The drop rate the model holds when each batch's loss is computed."""
    rates = []
    original = model.calculate_loss

    def recorded(interaction):
        rates.append(model.drop_rate)
        return original(interaction)

    model.calculate_loss = recorded
    return rates


def test_trainer_ramps_epsilon_batch_by_batch(base_config, caplog):
    """eps_N beyond the run: every batch's rate is 0.2 t / N for t = 0, 1, 2, ... across epochs,
    which an off-by-one in the iteration counter, or a counter that restarts each epoch, breaks;
    and the run warns once that eps cannot reach eps_max."""
    settings = {**base_config, "adt_loss": "TCE", "num_gradual": 1000, "epochs": 2}
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    rates = record_rates(model)
    with caplog.at_level(logging.WARNING):
        trainer.fit(train, valid, saved=False)
    batches = len(train)
    assert 2 * batches < 1000 and trainer.adt_iteration == 2 * batches
    assert rates == pytest.approx([0.2 * t / 1000 for t in range(2 * batches)], abs=1e-15)
    warnings = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(warnings) == 1
    assert "drop_rate=0.2" in warnings[0] and "num_gradual=1000 iterations" in warnings[0]
    assert f"epsilon stops at {0.2 * (2 * batches - 1) / 1000:.4f}" in warnings[0]


def test_trainer_ramps_in_epochs_and_caps(base_config, caplog):
    """1.5 epochs of B batches: 0.2 t / (1.5 B), then 0.2 in the second epoch; no warning."""
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "num_gradual_unit": "epochs",
        "num_gradual": 1.5,
        "epochs": 2,
    }
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    rates = record_rates(model)
    with caplog.at_level(logging.WARNING):
        trainer.fit(train, valid, saved=False)
    batches = len(train)
    expected = [min(0.2 * t / (1.5 * batches), 0.2) for t in range(2 * batches)]
    assert rates == pytest.approx(expected, abs=1e-15) and rates[-1] == 0.2
    assert not [r for r in caplog.records if "cannot reach" in r.getMessage()]


def test_losses_without_dropping_get_rate_zero(base_config):
    settings = {**base_config, "adt_loss": "RCE", "num_gradual": 3, "epochs": 1}
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    rates = record_rates(model)
    trainer.fit(train, valid, saved=False)
    assert rates == [0.0] * len(train)
