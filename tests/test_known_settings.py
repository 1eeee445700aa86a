"""Setting names: unknown ones refused with a suggestion, unread ones warned about once, lists
read the RecBole way, and models the plugin cannot serve told so in its own words.

Config-level and fast: a Config reads no data. The command-line cases end to end are in
test_bad_input.py.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest
import yaml

from recbole_adt import config as config_module
from recbole_adt import known_settings
from recbole_adt.config import SETTINGS_OWNERS, Config
from recbole_adt.denoisers import DENOISERS
from recbole_adt.known_settings import (
    RECBOLE_DIR,
    check_known_settings,
    known_keys,
    known_saved_settings,
    unread_settings,
)
from recbole_adt.settings import literal_setting

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_warnings():
    """Each test sees its own once-per-process warnings."""
    known_settings._log_once.cache_clear()
    yield
    known_settings._log_once.cache_clear()


def unread(model: str, base_config: dict, **settings) -> list[str]:
    config = Config(model, config_dict={**base_config, **settings})
    return unread_settings(config.model_class, config.final_config_dict, list(settings))


# --- which names are known


def test_every_source_of_names_is_known():
    known = known_keys(SETTINGS_OWNERS)
    recbole_overall = yaml.safe_load((RECBOLE_DIR / "properties" / "overall.yaml").read_text())
    ours = yaml.safe_load((ROOT / "recbole_adt" / "properties" / "overall.yaml").read_text())
    sample = yaml.safe_load((RECBOLE_DIR / "properties" / "dataset" / "sample.yaml").read_text())
    assert set(recbole_overall) | set(ours) | set(sample) <= known
    assert {"mlp_hidden_size", "reg_weight", "n_layers", "nmtr_loss_weights"} <= known  # models
    assert {key for owner in SETTINGS_OWNERS for key in owner.KEYS} <= known
    # read by RecBole's source with no yaml default
    source_only = {"benchmark_filename", "load_col", "unload_col", "threshold", "local_rank"}
    assert source_only | {"MODEL_TYPE", "nproc", "world_size"} <= known
    # url.yaml maps dataset names to addresses: they are not settings
    assert "ml-1m" not in known and "yelp" not in known


def test_every_setting_this_package_reads_is_known():
    """A ``config["..."]`` read in recbole_adt of a name no source declares would be refused."""
    known = known_keys(SETTINGS_OWNERS)
    read = set()
    for path in (ROOT / "recbole_adt").rglob("*.py"):
        read |= known_settings._source_reads(path.read_text(encoding="utf-8"))
    assert read and sorted(read - known) == []


def test_every_cli_option_is_known():
    from recbole_adt.cli import build_parser

    options = {action.dest for action in build_parser()._actions if action.option_strings} - {
        "help"
    }
    known = known_keys(SETTINGS_OWNERS)
    assert options <= known
    assert set(known_settings.CLI_ONLY_OPTIONS) <= options


def test_owners_are_read_when_the_config_is_made(base_config, monkeypatch):
    """An owner added to SETTINGS_OWNERS makes its keys known without touching this module."""

    class NewOwner:
        KEYS = ("brand_new_setting",)

        @classmethod
        def from_config(cls, config):
            return cls()

    with pytest.raises(ValueError, match="Unknown setting 'brand_new_setting'"):
        Config("GMF", config_dict={**base_config, "brand_new_setting": 1})
    monkeypatch.setattr(config_module, "SETTINGS_OWNERS", (*SETTINGS_OWNERS, NewOwner))
    config = Config("GMF", config_dict={**base_config, "brand_new_setting": 1})
    assert config["brand_new_setting"] == 1


def test_open_ended_families_are_known():
    known = known_keys()
    assert known_settings.is_known("alias_of_user_id", known)
    assert known_settings.is_known("t_embedding_size", known)  # KD_DAGFM's teacher
    assert not known_settings.is_known("t_no_such_thing", known)


# --- unknown names refused


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"epoch": 2}, r"Unknown setting 'epoch' in config_dict: .* Did you mean epochs\?"),
        ({"drop-rate": 0.1}, r"'drop-rate'.* Did you mean drop_rate\? Setting names use under"),
        ({"learning_rte": 0.1}, r"Did you mean learning_rate\?"),
        ({"num_gradul": 3}, r"Did you mean num_gradual or num_gradual_unit\?"),
        ({"zzzzqx": 1}, r"^Unknown setting 'zzzzqx' in config_dict: [^?]*$"),
        ({"seeds": [1, 2]}, r"seeds in config_dict is an option of the command line"),
    ],
    ids=["misspelt", "dashes", "close", "two-close", "nothing-close", "cli-only"],
)
def test_unknown_config_dict_key_is_refused(given, expected, base_config):
    with pytest.raises(ValueError, match=expected):
        Config("GMF", config_dict={**base_config, **given})


def test_unknown_command_line_key_is_refused(base_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run", "--epoch=2", "--drop-rate=0.1", "--epochs=3"])
    with pytest.raises(ValueError) as refused:
        Config("GMF", config_dict=base_config)
    message = str(refused.value)
    assert message.startswith("Unknown settings --epoch and --drop-rate on the command line:")
    assert "Did you mean epochs for --epoch; drop_rate for --drop-rate?" in message
    assert "\n" not in message  # one paragraph


def test_unknown_yaml_key_names_the_file(base_config, tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("epochs: 3\n")
    bad.write_text("adt_loss: TCE\nnum_gradul: 5\n")
    with pytest.raises(ValueError, match=rf"'num_gradul' in config file '{re.escape(str(bad))}'"):
        Config("GMF", config_file_list=[str(good), str(bad)], config_dict=base_config)


def test_shipped_configs_hold_only_known_names():
    known = known_keys(SETTINGS_OWNERS)
    for path in sorted((ROOT / "properties").rglob("*.yaml")):
        check_known_settings(yaml.safe_load(path.read_text()) or {}, str(path), SETTINGS_OWNERS)
    assert known


def test_a_checkpoints_stale_names_are_left_out(caplog):
    saved = {"epochs": 5, "adt_loss": "TCE", "epoch": 2, "old_setting": 1}
    with caplog.at_level(logging.WARNING):
        kept = known_saved_settings(saved, "run.pth", SETTINGS_OWNERS)
        known_saved_settings(saved, "run.pth", SETTINGS_OWNERS)
    assert kept == {"epochs": 5, "adt_loss": "TCE"}
    lines = [r.getMessage() for r in caplog.records if "run.pth" in r.getMessage()]
    assert lines == [
        "run.pth holds settings that no longer exist, left out: 'epoch' and 'old_setting'"
    ]


# --- known names this run never reads: one warning line each


def test_another_models_setting(base_config):
    (line,) = unread("GMF", base_config, mlp_hidden_size=[64])
    assert line.startswith("mlp_hidden_size is a setting of the models NeuMF, ")
    assert "GMF does not read it" in line
    assert unread("NeuMF", base_config, mlp_hidden_size=[64]) == []


def test_nmtr_weights_with_another_model(base_config):
    assert unread("GMF", base_config, nmtr_loss_weights=[0.3, 0.7]) == [
        "nmtr_loss_weights is a setting of the model NMTR; GMF does not read it: remove it, "
        "or choose that model."
    ]
    assert unread("NMTR", base_config, nmtr_loss_weights=[0.3, 0.7]) == []


@pytest.mark.parametrize(
    ("loss", "settings", "unread_keys"),
    [
        (
            "CE",
            {"drop_rate": 0.1, "num_gradual": 3, "drop_base": "batch"},
            ["drop_rate", "num_gradual", "drop_base"],
        ),
        ("TCE", {"drop_rate": 0.1, "num_gradual": 3, "drop_base": "batch"}, []),
        ("DCF", {"drop_rate": 0.1, "drop_base": "positives", "dcf_time_step": 2}, []),
        ("TCE", {"dcf_time_step": 2, "beta": 0.1}, ["dcf_time_step", "beta"]),
        ("RCE", {"beta": 0.1, "drop_rate": 0.1}, ["drop_rate"]),
        ("TCE", {"nr_pos_ratio": 0.3}, ["nr_pos_ratio"]),
        ("NR", {"nr_pos_ratio": 0.3, "nr_neg_ratio": 0}, []),
    ],
)
def test_loss_settings(loss, settings, unread_keys, base_config):
    lines = unread("GMF", base_config, adt_loss=loss, **settings)
    assert [line.split(" ", 1)[0] for line in lines] == unread_keys
    for line in lines:
        assert f"this run's adt_loss {loss} ignores it" in line


def test_drop_rate_line_names_its_readers(base_config):
    (line,) = unread("GMF", base_config, drop_rate=0.1)
    assert line == (
        "drop_rate is read only by adt_loss TCE, DCF and TBPR, and this run's adt_loss CE "
        "ignores it: remove drop_rate, or choose one of those losses."
    )


def test_every_denoisers_settings_are_read_by_its_losses(base_config):
    """From the registry: each adt_loss name reads its denoiser's owner's keys."""
    readers = known_settings._loss_readers()
    for denoiser in DENOISERS.values():
        owner = getattr(denoiser, "settings", None)
        for loss in getattr(denoiser, "adt_losses", ()):
            for key in getattr(owner, "KEYS", ()):
                assert loss.name in readers[key], (loss.name, key)


def test_models_with_their_own_beta(base_config):
    """NAIS and RecVAE read beta themselves: no R-CE warning with CE there."""
    assert unread("NAIS", base_config, beta=0.3) == []
    assert unread("RecVAE", base_config, beta=0.3) == []
    assert [line.split(" ", 1)[0] for line in unread("GMF", base_config, beta=0.3)] == ["beta"]


def test_switched_settings(base_config):
    (line,) = unread("GMF", base_config, colliding_lambda=0.5)
    assert line == (
        "colliding_lambda is read only with colliding_inference: True, and this run has "
        "colliding_inference: False: remove colliding_lambda, or set colliding_inference."
    )
    on = {"colliding_inference": True, "phases": ["warmup", "adt"], "colliding_lambda": 0.5}
    assert unread("GMF", base_config, **on) == []
    assert unread("GMF", base_config, checkpoint_truncate_ratio=0.1)[0].startswith(
        "checkpoint_truncate_ratio is read only with checkpoint_rule: valid_loss_truncated"
    )


def test_extra_feedback_settings_without_extra_feedback(base_config, caplog):
    """D*'s settings are read only where something uses D* (recbole_adt.data.extra_feedback)."""
    plain = {**base_config, "extra_feedback_ratio": 0.3}
    with caplog.at_level(logging.WARNING):
        Config("GMF", config_dict=dict(plain))
        Config("GMF", config_dict={**plain, "phases": ["warmup", "adt"], "ratio_groups": [0.1]})
        Config("NMTR", config_dict={**plain, "ratio_groups": [0.2]})
    lines = [r.getMessage() for r in caplog.records if "extra feedback" in r.getMessage()]
    assert lines == [
        "extra_feedback_ratio is read only by runs that use extra feedback D* (a warmup or "
        "finetune phase, colliding inference, model NMTR or adt_loss NR), and this run uses "
        "none: remove extra_feedback_ratio, or add one of those."
    ]


def test_unread_settings_are_logged_once_per_process(base_config, caplog):
    settings = {**base_config, "nmtr_loss_weights": [0.3, 0.7]}
    with caplog.at_level(logging.WARNING):
        Config("GMF", config_dict=dict(settings))
        Config("NeuMF", config_dict=dict(settings))
        Config("NMTR", config_dict=dict(settings))
    lines = [r.getMessage() for r in caplog.records if "nmtr_loss_weights" in r.getMessage()]
    assert lines == [
        "nmtr_loss_weights is a setting of the model NMTR; GMF does not read it: remove it, "
        "or choose that model.",
        "nmtr_loss_weights is a setting of the model NMTR; NeuMF does not read it: remove it, "
        "or choose that model.",
    ]
    with caplog.at_level(logging.WARNING):
        Config("GMF", config_dict=dict(settings))
    assert sum("nmtr_loss_weights" in r.getMessage() for r in caplog.records) == 2


# --- lists and dicts on the command line


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[train,valid,test]", ["train", "valid", "test"]),
        ("[10,20]", [10, 20]),
        ("{inter: [user_id, item_id]}", {"inter": ["user_id", "item_id"]}),
        (
            "{inter:[user_id,item_id,false_positive]}",
            {"inter": ["user_id", "item_id", "false_positive"]},
        ),
        ("[warmup:50, adt]", ["warmup:50", "adt"]),
        ("['train', valid]", ["train", "valid"]),
        ('["a,b",c]', ["a,b", "c"]),
        ("[0.5, True, false, None, 1e3]", [0.5, True, False, None, 1000.0]),
        (
            "{split: {RS: [0.8,0.1,0.1]}, order: RO}",
            {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO"},
        ),
        ("[a,]", ["a"]),
        ("[]", []),
        ("['train','valid','test']", ["train", "valid", "test"]),
        ("text", "text"),
        ("False", False),
    ],
)
def test_lists_and_dicts_as_a_recbole_user_writes_them(text, value):
    assert literal_setting(text) == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[train,valid", "the end where ',' or ']' was expected"),
        ("[a,,b]", "an empty element"),
        ("{inter}", "the entry 'inter' has no ':' and value"),
        ("[a]b", "unexpected 'b' after the closing bracket"),
        ('["a]', "the quote at character 2 is not closed"),
        ("[" * 3000 + "]" * 3000, "brackets nested too deeply"),
    ],
)
def test_an_unreadable_list_is_one_clear_error(text, problem):
    with pytest.raises(ValueError) as refused:
        literal_setting(text, name="benchmark_filename")
    message = str(refused.value)
    assert message.startswith("benchmark_filename = ")
    assert f"({problem})" in message and "--benchmark_filename=[train,valid,test]" in message


def test_list_items_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    assert literal_setting(f"[{code}]") == [code]
    assert not marker.exists()


def test_command_line_list_reaches_the_config(base_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run", "--benchmark_filename=[train,valid,test]"])
    config = Config("GMF", config_dict=base_config)
    assert config["benchmark_filename"] == ["train", "valid", "test"]


# --- models the plugin's defaults do not fit


def test_sequential_model_gets_the_plugins_message(base_config):
    with pytest.raises(ValueError) as refused:
        Config("SASRec", config_dict=base_config)
    message = str(refused.value)
    assert message.startswith("SASRec is a sequential model: ")
    assert "GMF, NeuMF, CDAE, NMTR" in message and "LightGCN" in message
    assert "train_neg_sample_args: None" in message
    assert "should be None when the loss_type is CE" not in message


def test_sequential_model_with_a_denoising_loss(base_config):
    with pytest.raises(ValueError, match="adt_loss TCE cannot train RecBole's SASRec: it is a seq"):
        Config("SASRec", config_dict={**base_config, "adt_loss": "TCE"})


def test_context_aware_model_is_told_to_rank_all_items(base_config):
    """RecBole's context-aware defaults evaluate labelled pairs; ranking metrics crashed there."""
    with pytest.raises(ValueError) as refused:
        Config("FM", config_dict=base_config)
    message = str(refused.value)
    assert message.startswith("FM is a context-aware model, and RecBole's defaults for those ")
    assert "--eval_args={mode:full}" in message


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"metrics": ["AUC"], "valid_metric": "AUC"}, "The value metrics AUC score labelled pairs"),
        ({"metrics": ["AUC", "NDCG"]}, r"mix ranking metrics \(NDCG\) and value metrics \(AUC\)"),
        ({"eval_args": {"mode": "labeled"}}, "^eval_args mode: labeled evaluates labelled pairs"),
    ],
)
def test_metrics_that_the_eval_mode_cannot_give(settings, problem, base_config):
    with pytest.raises(ValueError, match=problem):
        Config("GMF", config_dict={**base_config, **settings})


@pytest.mark.parametrize(
    ("model", "settings"),
    [
        ("SASRec", {"train_neg_sample_args": None}),  # a plain RecBole baseline
        ("SASRec", {"loss_type": "BPR"}),
        ("DIN", {}),  # sequential with its own input type: RecBole's check does not apply
        ("FM", {"eval_args": {"mode": "full"}}),  # context-aware, ranking all items
        ("KGAT", {}),  # knowledge-aware
        ("Pop", {}),  # traditional
    ],
)
def test_what_ran_before_still_configures(model, settings, base_config):
    config = Config(model, config_dict={**base_config, **settings})
    assert config["model"] == model
