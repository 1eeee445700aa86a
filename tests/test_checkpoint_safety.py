"""A checkpoint whose pickle would run code is refused by every loader we expose.

The payload creates a marker file when unpickled. Each loader (``resume_checkpoint``,
``evaluate(load_best_model=True)``, ``load_data_and_model``, ``run_recbole_adt(resume_file=)``
and the command line's ``--resume``) must refuse it with a ``ValueError`` (exit code 2 on the
command line), with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` unset and set, and the marker must
never appear. Two controls show the payload is live: torch's own unsafe load, and RecBole's
``Trainer.evaluate``, which under that variable runs it.
"""

from __future__ import annotations

import sys

import pytest
import torch
from recbole.trainer import Trainer

from recbole_adt import cli
from recbole_adt.quick_start import load_data_and_model, run_recbole_adt
from tests.conftest import planted_settings
from tests.pipeline import prepare

FORCE_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture(scope="module")
def trained(planted_data, tmp_path_factory):
    """A GMF trained for one epoch, and a real checkpoint of it."""
    folder = tmp_path_factory.mktemp("trained")
    settings = {**planted_settings(planted_data, folder), "epochs": 1}
    with pytest.MonkeyPatch.context() as patch:  # RecBole reads sys.argv and writes to ./
        patch.chdir(folder)
        patch.setattr(sys, "argv", ["pytest"])
        _, _, (train, valid, test), _, trainer = prepare("GMF", settings)
        trainer.fit(train, valid)
    return settings, trainer, test, torch.load(trainer.saved_model_file, weights_only=True)


@pytest.fixture
def hostile(trained, tmp_path):
    """A complete checkpoint with one extra entry that runs code when unpickled."""
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pth"
    torch.save({**trained[3], "extra": Payload(marker)}, path)
    return path, marker


@pytest.fixture(params=["unset", "set"])
def force_unsafe(request, monkeypatch):
    if request.param == "set":
        monkeypatch.setenv(FORCE_UNSAFE, "1")
    else:
        monkeypatch.delenv(FORCE_UNSAFE, raising=False)
    return request.param == "set"


@pytest.mark.filterwarnings(f"ignore:Environment variable {FORCE_UNSAFE}:UserWarning")
def test_the_payload_is_live(hostile, trained, monkeypatch):
    """Controls: torch reads the variable at call time, and RecBole's evaluate then runs code."""
    path, marker = hostile
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv(FORCE_UNSAFE, "1")
    _, trainer, test, _ = trained
    Trainer.evaluate(trainer, test, load_best_model=True, model_file=str(path))
    assert marker.exists()


def test_resume_refuses(hostile, trained, force_unsafe):
    path, marker = hostile
    trainer = trained[1]
    with pytest.raises(ValueError, match="Refused to load .*exec"):
        trainer.resume_checkpoint(path)
    assert not marker.exists()


def test_evaluate_with_best_model_refuses(hostile, trained, force_unsafe):
    path, marker = hostile
    _, trainer, test, _ = trained
    with pytest.raises(ValueError, match="Refused to load"):
        trainer.evaluate(test, load_best_model=True, model_file=str(path))
    saved = trainer.saved_model_file
    trainer.saved_model_file = str(path)  # the default file, as after fit
    try:
        with pytest.raises(ValueError, match="Refused to load"):
            trainer.evaluate(test)
    finally:
        trainer.saved_model_file = saved
    assert not marker.exists()


def test_load_data_and_model_refuses(hostile, force_unsafe):
    path, marker = hostile
    with pytest.raises(ValueError, match="Refused to load"):
        load_data_and_model(path)
    assert not marker.exists()


def test_resumed_run_refuses(hostile, force_unsafe, capsys):
    path, marker = hostile
    with pytest.raises(ValueError, match="Refused to load"):
        run_recbole_adt(resume_file=path)
    with pytest.raises(SystemExit) as stopped:
        cli.main([f"--resume={path}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Refused to load" in err and "Traceback" not in err
    assert not marker.exists()


def test_saved_settings_are_never_evaluated(trained, tmp_path, force_unsafe):
    """RecBole evals command-line and config_dict strings; a checkpoint's settings go there."""
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    checkpoint = trained[3]
    for key in ("learning_rate", "wandb_project", "harmless_looking_key"):
        path = tmp_path / f"{key}.pth"
        external = {**checkpoint["external_config"], key: code}
        torch.save({**checkpoint, "external_config": external}, path)
        try:
            config = load_data_and_model(path)[0]
        except ValueError as err:  # learning_rate: the string is not a number
            assert "learning_rate must be a number" in str(err)
        else:  # kept as the text it is; a name no setting has is left out, as its run ignored it
            assert config[key] == (None if key == "harmless_looking_key" else code)
    assert not marker.exists()


def test_our_checkpoints_still_load(trained, force_unsafe):
    settings, trainer, test, _ = trained
    result = trainer.evaluate(test, load_best_model=True)
    assert "ndcg@20" in result
    config, model, *_ = load_data_and_model(trainer.saved_model_file)
    assert config["model"] == "GMF" and config["epochs"] == 1


@pytest.mark.slow
def test_item_knn_similarity_round_trips(base_config):
    """ItemKNN keeps its similarity as a scipy matrix: saved as tensors, it reloads the same."""
    result = run_recbole_adt("ItemKNN", config_dict=base_config)
    assert result["test_result"]["ndcg@20"] > 0
    _, model, *_ = load_data_and_model(result["model_file"])
    _, _, _, trained, _ = prepare("ItemKNN", base_config)
    assert (model.w != trained.w).nnz == 0 and model.w.format == trained.w.format
