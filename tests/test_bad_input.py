"""Bad input never gives a wrong result, a raw traceback or a leftover file (issue 7).

Each case runs the command line as a user would (``recbole_adt.cli.main``, in this process) and
checks the exit code (2), that no traceback is printed, that the one-paragraph message names the
problem, and that nothing partial is left: no checkpoint, no temporary or lock file, and the data
folder exactly as it was. The last cases run the real entry point as a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_adt import cli
from tests.synthetic import HEADER, planted_interactions

ROOT = Path(__file__).resolve().parents[1]
ROWS = planted_interactions()  # (user, item, rating, timestamp, false_positive), 4800 rows


def write_inter(path: Path, rows=ROWS, header: str = HEADER, fp=None) -> Path:
    """Rows as an atomic file; ``fp`` maps a row index to the text written in its flag column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fp = fp or {}
    lines = [header]
    for n, (user, item, rating, stamp, flag) in enumerate(rows):
        lines.append(f"{user}\t{item}\t{rating}\t{stamp}\t{fp.get(n, flag)}\n")
    path.write_text("".join(lines))
    return path


def write_splits(folder: Path, name: str, test_rows, valid_rows=None) -> None:
    """Pre-split data: NAME.train/valid/test.inter (train: the rest of ROWS)."""
    valid_rows = ROWS[-800:-400] if valid_rows is None else valid_rows
    write_inter(folder / name / f"{name}.train.inter", ROWS[:-800])
    write_inter(folder / name / f"{name}.valid.inter", valid_rows)
    write_inter(folder / name / f"{name}.test.inter", test_rows)


SPLITS = "--benchmark_filename=['train','valid','test']"


def _flag_values(data: Path) -> list[str]:
    write_inter(data / "bad" / "bad.inter", fp={3: "2", 10: "0.5", 11: "2", 20: "-1"})
    return ["--dataset=bad"]


def _flag_blanks(data: Path) -> list[str]:
    write_inter(data / "bad" / "bad.inter", fp={5: "", 6: "", 7: ""})
    return ["--dataset=bad"]


def _flag_text(data: Path) -> list[str]:
    write_inter(data / "bad" / "bad.inter", fp={8: "yes"})
    return ["--dataset=bad"]


def _bad_header(data: Path) -> list[str]:
    write_inter(data / "bad" / "bad.inter", header="user_id\titem_id\trating\ttimestamp\tfp\n")
    return ["--dataset=bad"]


def _unknown_type(data: Path) -> list[str]:
    header = HEADER.replace("rating:float", "rating:number")
    write_inter(data / "bad" / "bad.inter", header=header)
    return ["--dataset=bad"]


def _empty_file(data: Path) -> list[str]:
    (data / "bad").mkdir(parents=True)
    (data / "bad" / "bad.inter").write_text("")
    return ["--dataset=bad"]


def _header_only(data: Path) -> list[str]:
    write_inter(data / "bad" / "bad.inter", rows=[])
    return ["--dataset=bad"]


def _short_row(data: Path) -> list[str]:
    path = write_inter(data / "bad" / "bad.inter")
    with path.open("a") as file:
        file.write("u1\ti1\t3.0\n")
    return ["--dataset=bad"]


def _latin1(data: Path) -> list[str]:
    path = write_inter(data / "bad" / "bad.inter")
    path.write_bytes(path.read_bytes().replace(b"u1\t", b"\xe9t\xe9\t", 1))
    return ["--dataset=bad"]


def _wrong_name(data: Path) -> list[str]:
    write_inter(data / "bad" / "other.inter")
    return ["--dataset=bad"]


def _missing_split(data: Path) -> list[str]:
    write_splits(data, "bad", ROWS[-400:])
    (data / "bad" / "bad.valid.inter").unlink()
    return ["--dataset=bad", SPLITS]


def _empty_valid_split(data: Path) -> list[str]:
    write_splits(data, "bad", ROWS[-400:], valid_rows=[])
    return ["--dataset=bad", SPLITS]


def _all_test_false_positives(data: Path) -> list[str]:
    write_splits(data, "bad", [(*row[:4], 1.0) for row in ROWS[-400:]])
    return ["--dataset=bad", SPLITS]


def _all_test_false_positives_seeds(data: Path) -> list[str]:
    return [*_all_test_false_positives(data), "--seeds=1,2"]


def _all_test_false_positives_bare_list(data: Path) -> list[str]:
    """The splits named as a RecBole user writes them: three files, not one per character."""
    write_splits(data, "bad", [(*row[:4], 1.0) for row in ROWS[-400:]])
    return ["--dataset=bad", "--benchmark_filename=[train,valid,test]"]


def _config_file(text: str):
    def setup(data: Path) -> list[str]:
        path = data.parent / "run.yaml"
        path.write_text(text)
        return [f"--config_files={path}"]

    return setup


def _config_folder(data: Path) -> list[str]:
    (data.parent / "configs").mkdir()
    return [f"--config_files={data.parent / 'configs'}"]


def _checkpoint(make):
    def setup(data: Path) -> list[str]:
        path = data.parent / "given.pth"
        make(path)
        return [f"--resume={path}", "--model=GMF"]

    return setup


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _hostile(path: Path) -> None:
    torch.save(
        {"config": {"model": "GMF", "dataset": "planted"}, "x": Payload(path.parent / "pwned")},
        path,
    )


def _not_ours(path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, path)


def _other_model(path: Path) -> None:
    torch.save({"config": {"model": "BPR", "dataset": "planted"}, "state_dict": {}}, path)


# class, case id, extra arguments or a setup(data) -> arguments, expected message (regex)
CASES = [
    # --- settings, caught before any data is read
    ("setting", "unknown-model", ["--model=NoSuchModel"], r"Unknown model 'NoSuchModel'.*GMF"),
    ("setting", "misspelt-model", ["--model=GMFF"], r"Did you mean GMF\?"),
    ("setting", "model-without-package", ["--model=LightGBM"], r"needs the lightgbm package"),
    ("setting", "epochs-text", ["--epochs=abc"], r"epochs must be a positive integer, got 'abc'"),
    ("setting", "epochs-zero", ["--epochs=0"], r"epochs must be a positive integer, got 0"),
    ("setting", "train-batch-zero", ["--train_batch_size=0"], r"train_batch_size must be a pos"),
    ("setting", "eval-batch-text", ["--eval_batch_size=x"], r"eval_batch_size must be a positive"),
    ("setting", "learning-rate-text", ["--learning_rate=fast"], r"learning_rate must be a number"),
    ("setting", "learning-rate-negative", ["--learning_rate=-0.1"], r"learning_rate must be a n"),
    ("setting", "stopping-step-float", ["--stopping_step=1.5"], r"stopping_step must be an int"),
    ("setting", "topk-text", ["--topk=abc"], r"topk must be a positive integer or a list"),
    ("setting", "topk-zero", ["--topk=[0,10]"], r"topk must be a positive integer or a list"),
    ("setting", "unknown-metric", ["--metrics=['NDGC']"], r"Unknown metric 'NDGC'"),
    ("setting", "valid-metric-not-computed", ["--valid_metric=NDCG@50"], r"NDCG@20"),
    ("setting", "clean-test-not-bool", ["--clean_test=maybe"], r"clean_test must be True or F"),
    ("setting", "shared-pairs-choice", ["--shared_pairs=often"], r"shared_pairs must be one of"),
    ("setting", "unknown-loss", ["--adt_loss=focal"], r"valid choices are CE, TCE, RCE"),
    ("setting", "drop-rate-range", ["--drop_rate=2"], r"drop_rate must be a number in \[0, 1\)"),
    ("setting", "no-value", ["--epochs"], r"--epochs needs a value, joined by '='"),
    ("setting", "given-twice", ["--epochs=1", "--epochs=2"], r"--epochs is given twice"),
    ("setting", "no-dashes", ["epochs=5"], r"unrecognized argument 'epochs=5'"),
    (
        "setting",
        "misspelt",
        ["--epoch=2"],
        r"^Unknown setting --epoch on the .*Did you mean epochs\?",
    ),
    ("setting", "dashes", ["--drop-rate=0.1"], r"--drop-rate .*Did you mean drop_rate\? Setting"),
    ("setting", "misspelt-seeds", ["--seeds=1,2", "--epoch=2"], r"seed 1 .*Did you mean epochs"),
    (
        "setting",
        "list-unread",
        ["--benchmark_filename=[a,b"],
        r"benchmark_filename = '\[a,b' is not",
    ),
    ("setting", "sequential", ["--model=SASRec"], r"^SASRec is a sequential model: .*GMF.*=None"),
    ("setting", "sequential-tce", ["--model=SASRec", "--adt_loss=TCE"], r"^adt_loss TCE cannot tr"),
    (
        "setting",
        "context-aware",
        ["--model=FM"],
        r"^FM is a context-aware .*--eval_args=\{mode:full",
    ),
    (
        "setting",
        "value-metric",
        ["--metrics=[AUC]", "--valid_metric=AUC"],
        r"value metrics AUC sco",
    ),
    ("setting", "seeds-not-integers", ["--seeds=1,x"], r"--seeds must be comma-separated integ"),
    ("setting", "seed-and-seeds", ["--seeds=1,2", "--seed=3"], r"--seed and --seeds together"),
    ("setting", "resume-and-seeds", ["--seeds=1,2", "--resume=x.pth"], r"leave --seeds out"),
    # --- files: config files, dataset folders and atomic files
    ("file", "config-missing", ["--config_files=missing.yaml"], r"'missing.yaml' does not exist"),
    ("file", "config-folder", _config_folder, r"is a folder"),
    ("file", "config-malformed", _config_file("epochs: [1, 2\n"), r"not valid yaml at line 2"),
    ("file", "config-not-mapping", _config_file("- epochs: 5\n"), r"holds a yaml list"),
    (
        "file",
        "unknown-key",
        _config_file("num_gradul: 5\n"),
        r"^Unknown setting 'num_gradul' in "
        r"config file '.*run\.yaml': .*Did you mean num_gradual or num_gradual_unit\?",
    ),
    (
        "file",
        "config-cli-option",
        _config_file("seeds: [1, 2]\n"),
        r"seeds in config file '.*run"
        r"\.yaml' is an option of the command line",
    ),
    ("file", "config-bad-value", _config_file("train_batch_size: abc\n"), r"train_batch_size must"),
    ("file", "unknown-dataset", ["--dataset=nope"], r"Unknown dataset 'nope': there is no fold"),
    ("file", "inter-file-name", _wrong_name, r"has no .*bad\.inter.*holds other\.inter"),
    ("file", "header-without-types", _bad_header, r"column 1 is 'user_id'"),
    ("file", "header-unknown-type", _unknown_type, r"column 3 is 'rating:number'"),
    ("file", "empty-file", _empty_file, r"bad\.inter is empty"),
    ("file", "header-only", _header_only, r"holds no interactions"),
    ("file", "short-row", _short_row, r"1 empty cell, first at bad\.inter data row 4801"),
    ("file", "not-utf8", _latin1, r"bad\.inter is not utf-8 text"),
    ("file", "split-file-missing", _missing_split, r"has no .*bad\.valid\.inter"),
    # --- data values: refused at load, before RecBole fills, remaps or trains
    ("data", "flag-values", _flag_values, r"'false_positive' must be 0.*4 rows .*\(-1, 0\.5, 2\)"),
    ("data", "flag-blanks", _flag_blanks, r"'false_positive' must be 0.*3 empty cells.*row 6"),
    ("data", "flag-text", _flag_text, r"Could not read .*bad\.inter.*false_positive:float"),
    ("data", "empty-valid-split", _empty_valid_split, r"The valid split of dataset 'bad' is em"),
    ("data", "clean-test-empty", _all_test_false_positives, r"clean test split is empty: all 400"),
    (
        "data",
        "clean-test-bare-list",
        _all_test_false_positives_bare_list,
        r"clean test split is em",
    ),
    ("data", "clean-test-empty-seeds", _all_test_false_positives_seeds, r"seed 1 .*is empty"),
    ("data", "topk-over-items", ["--topk=[500]", "--valid_metric=NDCG@500"], r"only 120 items"),
    # --- checkpoints given to --resume
    ("checkpoint", "resume-missing", ["--resume=nothere.pth"], r"No checkpoint file 'nothere"),
    ("checkpoint", "resume-not-torch", _checkpoint(lambda p: p.write_text("hi")), r"not a read"),
    ("checkpoint", "resume-hostile", _checkpoint(_hostile), r"Refused to load .*exec"),
    ("checkpoint", "resume-not-ours", _checkpoint(_not_ours), r"has no config or state_dict"),
    ("checkpoint", "resume-other-model", _checkpoint(_other_model), r"holds a BPR model.*GMF"),
]


def snapshot(folder: Path) -> dict:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def leftovers(root: Path) -> list[str]:
    """Checkpoints, temporaries and locks anywhere under ``root``."""
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.suffix in (".pth", ".tmp", ".lock") and path.name != "given.pth"
    ]


@pytest.mark.parametrize(
    ("kind", "case", "arguments", "expected"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_bad_input_is_a_clear_error(
    kind, case, arguments, expected, planted_data, tmp_path, capsys
):
    data = tmp_path / "data"
    data.mkdir()
    for source in planted_data.rglob("*.inter"):  # a private copy, to see that nothing changes
        target = data / source.relative_to(planted_data)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    extra = arguments(data) if callable(arguments) else arguments
    given = {arg.partition("=")[0] for arg in extra}
    base = [
        "--dataset=planted",
        f"--data_path={data}",
        "--epochs=1",
        "--state=WARNING",
        "--show_progress=False",
    ]
    argv = [arg for arg in base if arg.partition("=")[0] not in given] + extra
    before = snapshot(data)

    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)

    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert "Traceback" not in err
    message = err.split("error: ", 1)[1]
    assert re.search(expected, message, re.S), message
    assert snapshot(data) == before
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "pwned").exists()


def test_a_setting_the_model_never_reads_is_one_warning_line(
    planted_data, tmp_path, capsys, caplog
):
    """Warned, not refused (compare applies one config to several models and losses): the
    line names the key, its reader and the fix. The run then stops on a missing dataset."""
    from recbole_adt import known_settings

    known_settings._log_once.cache_clear()
    argv = ["--model=GMF", "--nmtr_loss_weights=[0.3,0.7]", "--dataset=nope"]
    with caplog.at_level("WARNING"), pytest.raises(SystemExit) as stopped:
        cli.main([*argv, f"--data_path={planted_data}", "--state=WARNING"])
    assert stopped.value.code == 2
    warned = [r.getMessage() for r in caplog.records if "nmtr_loss_weights" in r.getMessage()]
    assert warned == [
        "nmtr_loss_weights is a setting of the model NMTR; GMF does not read it: remove it, "
        "or choose that model."
    ]
    assert "Traceback" not in capsys.readouterr().err
    known_settings._log_once.cache_clear()


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(ValueError, match="Unknown model"):
        cli.main(["--model=NoSuchModel", "--debug"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="Unknown model"):
        cli.main(["--model=NoSuchModel"])


@pytest.mark.parametrize(
    ("name", "model"), [("gmf", "GMF"), ("neumf", "NeuMF"), ("Cdae", "CDAE"), ("bpr", "BPR")]
)
def test_model_names_are_case_insensitive(name, model):
    from recbole_adt.utils import get_model

    assert get_model(name).__name__ == model


def test_help_lists_every_setting_with_its_default(capsys):
    import yaml

    from recbole_adt.config import PROPERTIES_DIR

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    shown = capsys.readouterr().out
    defaults = yaml.safe_load(Path(PROPERTIES_DIR, "overall.yaml").read_text())
    for name in ("adt_loss", "drop_rate", "num_gradual", "beta", "fp_field", "clean_test"):
        assert f"--{name}={defaults[name]}" in shown
    for name in defaults:
        assert name in shown
    assert "--resume" in shown and "--debug" in shown


def test_cpu_config_does_not_claim_a_gpu(base_config):
    from recbole_adt.config import Config

    config = Config("GMF", config_dict=base_config)
    if config["device"].type == "cpu":
        assert config["use_gpu"] is False
        assert "use_gpu = True" not in str(config)


def run_entry_point(*args, cwd, env=None):
    command = [sys.executable, str(ROOT / "run_recbole_adt.py"), *args]
    environment = {**os.environ, **(env or {})}
    environment.pop(cli.DEBUG_ENV, None) if env is None else None
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, env=environment
    )


def test_entry_point_unknown_model(tmp_path):
    """What the shared before-stop hook probes: no traceback, exit 2, nothing written."""
    done = run_entry_point("--model=NoSuchModel", "--epochs=1", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert "Unknown model 'NoSuchModel'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_entry_point_misspelt_setting(tmp_path):
    """The before-stop hook's probe: refused before any data is read or file written."""
    done = run_entry_point("--model=GMF", "--epoch=1", "--epochs=1", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert "Unknown setting --epoch on the command line" in done.stderr
    assert "Did you mean epochs?" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_normal_run_console_is_clean(planted_data, tmp_path):
    """No FutureWarning noise, no use_gpu = True on CPU, and the checkpoint path at the end."""
    done = run_entry_point(
        "--dataset=planted",
        f"--data_path={planted_data}",
        "--epochs=1",
        "--show_progress=False",
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Warning" not in output and "use_gpu = True" not in output
    checkpoint = re.search(r"^checkpoint: (\S+)$", done.stdout, re.M).group(1)
    assert (tmp_path / checkpoint).is_file()
