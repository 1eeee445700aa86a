"""Bad settings raise ValueError before any training, naming the valid choices."""

from pathlib import Path

import pytest

from recbole_adt.config import Config
from recbole_adt.data import ADTDataset
from recbole_adt.losses import LOSS_NAMES
from tests.pipeline import prepare

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"adt_loss": "focal"}, "valid choices are CE, TCE, RCE"),
        ({"drop_rate": 1.0}, r"drop_rate must be a number in \[0, 1\)"),
        ({"drop_rate": -0.1}, r"drop_rate must be a number in \[0, 1\)"),
        ({"num_gradual": 0}, "num_gradual must be a positive integer"),
        ({"beta": -1.0}, "beta must be a finite number >= 0"),
        ({"fp_field": None}, "clean_test needs fp_field"),
    ],
)
def test_bad_setting_fails_in_config(setting, message, base_config):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, **setting})


def test_missing_flag_field_fails_when_loading(base_config):
    config = Config(
        "GMF", config_dict={**base_config, "load_col": {"inter": ["user_id", "item_id"]}}
    )
    with pytest.raises(ValueError, match="false-positive field 'false_positive'.*load_col"):
        ADTDataset(config)


def test_missing_flag_field_is_fine_without_clean_test(base_config):
    settings = {**base_config, "load_col": {"inter": ["user_id", "item_id"]}, "clean_test": False}
    _, _, _, model, _ = prepare("GMF", settings)
    assert model.FP_FIELD is None


def test_cdae_mse_only_with_ce(base_config):
    with pytest.raises(ValueError, match="loss_type BCE"):
        prepare("CDAE", {**base_config, "loss_type": "MSE", "adt_loss": "TCE"})


def test_command_line_overrides_config_files(tmp_path, base_config, monkeypatch):
    config_file = tmp_path / "tce.yaml"
    config_file.write_text("adt_loss: TCE\ndrop_rate: 0.1\n")
    monkeypatch.setattr("sys.argv", ["run", "--drop_rate=0.05", "--epochs=5"])
    config = Config("GMF", config_file_list=[str(config_file)], config_dict=base_config)
    assert config["adt_loss"] == "TCE" and config["drop_rate"] == 0.05
    assert config["epochs"] == 5


def test_default_dataset_is_embedded(monkeypatch):
    config = Config("GMF")
    assert config["dataset"] == "ml-100k-fp" and config["topk"] == [10, 20]


@pytest.mark.parametrize(
    "path",
    sorted(str(p) for p in (ROOT / "properties").rglob("*.yaml")),
    ids=lambda p: Path(p).name,
)
def test_shipped_configs_load(path, base_config):
    config = Config("GMF", config_file_list=[path], config_dict={"dataset": "planted"})
    assert config["adt_loss"] in LOSS_NAMES
    # the validation metric is one of the reported cut-offs
    assert int(config["valid_metric"].split("@")[1]) in config["topk"]


def test_a_recbole_models_own_defaults_beat_ours(base_config):
    """NAIS's `beta` is its smoothing exponent (0.5 in RecBole), not R-CE's 0.25."""
    assert Config("NAIS", config_dict=base_config)["beta"] == 0.5
    assert Config("GMF", config_dict=base_config)["beta"] == 0.25
    assert Config("NAIS", config_dict={**base_config, "beta": 0.3})["beta"] == 0.3
