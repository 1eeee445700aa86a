"""The iteration counter T, checkpoints that load on torch >= 2.6, and the per-epoch log."""

import logging

import pytest
import torch
from recbole.trainer import Trainer

from recbole_adt.trainer import ADTTrainer
from tests.pipeline import prepare


@pytest.fixture
def tce_config(base_config):
    return {**base_config, "adt_loss": "TCE", "drop_rate": 0.2, "num_gradual": 30}


def test_counter_runs_across_epochs(tce_config):
    _, _, (train, valid, _), model, trainer = prepare("GMF", {**tce_config, "epochs": 3})
    assert isinstance(trainer, ADTTrainer)
    trainer.fit(train, valid, saved=False)
    assert trainer.adt_iteration == 3 * len(train)
    # the last batch used epsilon(T - 1)
    assert model.drop_rate == pytest.approx(min(0.2 * (trainer.adt_iteration - 1) / 30, 0.2))


def test_counter_survives_checkpoint_reload(tce_config):
    _, _, (train, valid, _), _, trainer = prepare(
        "GMF", {**tce_config, "epochs": 2, "eval_step": 0}
    )
    trainer.fit(train, valid)
    saved = torch.load(trainer.saved_model_file)  # torch's default weights_only=True load
    assert saved["adt_iteration"] == 2 * len(train) and saved["epoch"] == 1

    _, _, (train, valid, _), _, resumed = prepare(
        "GMF", {**tce_config, "epochs": 3, "eval_step": 0}
    )
    resumed.resume_checkpoint(trainer.saved_model_file)
    assert resumed.adt_iteration == 2 * len(train) and resumed.start_epoch == 2
    resumed.fit(train, valid, saved=False)
    assert resumed.adt_iteration == 3 * len(train)


def test_evaluate_loads_best_checkpoint(tce_config):
    _, _, (train, valid, test), model, trainer = prepare("NeuMF", tce_config)
    trainer.fit(train, valid)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    trainer.evaluate(test, load_best_model=True)
    reloaded = torch.load(trainer.saved_model_file)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], reloaded[k]) for k in reloaded)


def test_recbole_baselines_get_loadable_checkpoints(base_config):
    _, _, (train, valid, test), _, trainer = prepare("BPR", base_config)
    assert isinstance(trainer, Trainer) and not isinstance(trainer, ADTTrainer)
    trainer.fit(train, valid)
    result = trainer.evaluate(test, load_best_model=True)
    assert "ndcg@20" in result


def test_checkpoint_names_are_unique(base_config):
    names = {prepare("GMF", base_config)[-1].saved_model_file for _ in range(2)}
    assert len(names) == 2


def test_epoch_log_reports_drop_rate_and_dropped(tce_config, caplog):
    _, _, (train, valid, _), _, trainer = prepare(
        "GMF", {**tce_config, "epochs": 1, "state": "INFO"}
    )
    with caplog.at_level(logging.INFO):
        trainer.fit(train, valid, saved=False)
    line = next(r.getMessage() for r in caplog.records if "training" in r.getMessage())
    assert "drop rate" in line and "dropped positives" in line and "FP precision" in line


def test_rce_log_reports_weights(base_config, caplog):
    _, _, (train, valid, _), _, trainer = prepare(
        "GMF", {**base_config, "adt_loss": "RCE", "epochs": 1}
    )
    with caplog.at_level(logging.INFO):
        trainer.fit(train, valid, saved=False)
    line = next(r.getMessage() for r in caplog.records if "training" in r.getMessage())
    assert "mean weight clean" in line and "mean weight FP" in line


def test_saved_run_reloads_with_same_test_result(base_config):
    from recbole_adt.quick_start import load_data_and_model, run_recbole_adt
    from recbole_adt.utils import get_trainer

    settings = {**base_config, "adt_loss": "RCE", "state": "WARNING"}
    result = run_recbole_adt("NeuMF", config_dict=settings)
    config, model, _, _, _, test = load_data_and_model(result["model_file"])
    assert config["adt_loss"] == "RCE" and config["dataset"] == "planted"
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert trainer.evaluate(test, load_best_model=False) == result["test_result"]
