"""The console of a run: what passes RecBole's console handler, and the summary's lines."""

import contextlib
import logging

import pytest

from recbole_adt.config import Config
from recbole_adt.console import (
    NOTICE,
    Console,
    WarningsAndNotices,
    duration,
    init_run_logger,
    log_file,
    summary_lines,
)

RESULT = {
    "model": "GMF",
    "adt_loss": "TCE",
    "dataset": "planted",
    "seconds": 3.14159,
    "best_epoch": 4,
    "checkpoint_rule": "valid_metric",
    "valid_metric": "ndcg@10",
    "valid_score_bigger": True,
    "best_valid_result": {"recall@10": 0.25, "ndcg@10": 0.123456},
    "test_result": {"recall@10": 0.3, "ndcg@10": 0.15},
    "clean_test": True,
    "model_file": "saved/GMF-1.pth",
    "log_file": "log/GMF/GMF-planted-1.log",
    "diagnostics_dir": None,
}


def test_summary_of_a_plain_run():
    assert summary_lines(RESULT) == [
        "GMF, adt_loss TCE, dataset planted: 3.1 s, kept epoch 4 "
        "(checkpoint_rule valid_metric: highest ndcg@10)",
        "  valid:        recall@10 0.2500  ndcg@10 0.1235",
        "  test (clean): recall@10 0.3000  ndcg@10 0.1500",
        "checkpoint: saved/GMF-1.pth",
        "log: log/GMF/GMF-planted-1.log",
    ]


def test_summary_with_colliding_inference_shows_plain_and_mixed_scores():
    result = {
        **RESULT,
        "checkpoint_rule": "valid_loss",
        "valid_score_bigger": False,
        "test_result_plain": {"ndcg@10": 0.15},
        "test_result": {"ndcg@10": 0.175},
        "colliding": {"neighbours": 10, "lambda": 0.8},
        "clean_test": False,
        "best_epoch": None,
        "diagnostics_dir": "log_diagnostics/GMF-planted-1",
        "log_file": None,
    }
    assert summary_lines(result) == [
        "GMF, adt_loss TCE, dataset planted: 3.1 s",
        "  valid:" + " " * 25 + "recall@10 0.2500  ndcg@10 0.1235",
        "  test, plain scores:" + " " * 12 + "ndcg@10 0.1500",
        "  test, colliding (k=10, λ=0.8): ndcg@10 0.1750",
        "checkpoint: saved/GMF-1.pth",
        "diagnostics: log_diagnostics/GMF-planted-1",
    ]


def test_summary_names_a_loss_rule():
    result = {**RESULT, "checkpoint_rule": "valid_loss_truncated", "valid_score_bigger": False}
    assert summary_lines(result)[0].endswith(
        "kept epoch 4 (checkpoint_rule valid_loss_truncated: lowest)"
    )


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.04, "0.0 s"),
        (59.94, "59.9 s"),
        (59.96, "60.0 s"),
        (185, "3 min 05 s"),
        (3725, "1 h 02 min"),
    ],
)
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_quiet_filter_passes_warnings_and_notices():
    def record(level, **extra):
        return logging.makeLogRecord({"levelno": level, "msg": "m", **extra})

    keep = WarningsAndNotices().filter
    assert not keep(record(logging.INFO))
    assert not keep(record(logging.DEBUG, **{NOTICE: False}))
    assert keep(record(logging.INFO, **{NOTICE: True}))
    assert keep(record(logging.WARNING)) and keep(record(logging.ERROR))


@contextlib.contextmanager
def first_logging_setup():
    """The root logger of a new process, where RecBole's init_logger adds its handlers.

    Entered in the test itself: pytest adds its own handler after the fixtures are set up, and
    gets it back afterwards."""
    root = logging.getLogger()
    saved = root.handlers, root.level
    root.handlers = []
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved


def _log_three_lines():
    logger = logging.getLogger()
    logger.info("dump")
    logger.info("start", extra={NOTICE: True})
    logger.warning("careful")


@pytest.mark.parametrize(
    "settings, console, shown",
    [
        ({}, Console(quiet=True), ["start", "careful"]),
        ({}, Console(quiet=False), ["dump", "start", "careful"]),
        ({}, None, ["dump", "start", "careful"]),  # the Python API: RecBole's console
        ({"state": "INFO"}, Console(quiet=True), ["dump", "start", "careful"]),
        ({"state": "WARNING"}, Console(quiet=True), ["careful"]),
    ],
)
def test_console_handler_and_log_file(settings, console, shown, capsys):
    config = Config("GMF", "planted", config_dict={"data_path": ".", **settings})
    with first_logging_setup():
        init_run_logger(config, console)
        _log_three_lines()
        path = log_file()
    err = capsys.readouterr().err
    assert [word for word in ("dump", "start", "careful") if f"  {word}" in err] == shown
    with open(path, encoding="utf-8") as file:  # the log file as RecBole keeps it
        logged = file.read()
    expected = ["careful"] if settings.get("state") == "WARNING" else ["dump", "start", "careful"]
    assert [word for word in ("dump", "start", "careful") if f"  {word}" in logged] == expected


@pytest.mark.parametrize(
    "settings, progress, shown",
    [
        ({}, False, False),
        ({}, True, True),
        ({"show_progress": True}, False, True),  # the user's setting wins
        ({"show_progress": False}, True, False),
    ],
)
def test_progress_bars_follow_the_console_unless_set(settings, progress, shown):
    config = Config("GMF", "planted", config_dict={"data_path": ".", **settings})
    with first_logging_setup():
        init_run_logger(config, Console(progress=progress))
    assert config["show_progress"] is shown


def test_progress_bars_stay_off_where_recbole_turned_them_off():
    config = Config("GMF", "planted", config_dict={"data_path": "."})
    config["show_progress"] = False  # as RecBole does on the other ranks of a DDP run
    with first_logging_setup():
        init_run_logger(config, Console(progress=True))
    assert config["show_progress"] is False


@pytest.mark.slow
def test_cli_run_ends_with_its_summary(planted_data, monkeypatch, capsys):
    """A plain command-line run: the summary of its result on stdout, warnings and one start
    line on stderr (not a terminal: no progress bars), the detail in the log file."""
    from recbole_adt import cli

    results = []

    def recorded(*args, **kwargs):
        results.append(cli_run(*args, **kwargs))
        return results[-1]

    cli_run = cli.run_recbole_adt
    monkeypatch.setattr(cli, "run_recbole_adt", recorded)
    with first_logging_setup():
        cli.main(["--dataset=planted", f"--data_path={planted_data}", "--epochs=1"])
    out, err = capsys.readouterr()
    (result,) = results

    lines = out.splitlines()
    assert lines[0].startswith("GMF, adt_loss CE, dataset planted: ")
    assert lines[0].endswith(" s, kept epoch 0 (checkpoint_rule valid_metric: highest ndcg@20)")
    valid = "  ".join(f"{k} {v:.4f}" for k, v in result["best_valid_result"].items())
    test = "  ".join(f"{k} {v:.4f}" for k, v in result["test_result"].items())
    assert lines[1] == f"  valid:        {valid}" and "ndcg@20 0." in valid
    assert lines[2] == f"  test (clean): {test}"
    assert lines[3] == f"checkpoint: {result['model_file']}"
    log = result["log_file"]
    assert lines[4] == f"log: log/GMF/{log.rsplit('/', 1)[1]}" and log.endswith(".log")
    assert lines[5:] == [f"diagnostics: {result['diagnostics_dir']}"] * bool(
        result["diagnostics_dir"]
    )

    info = [line for line in err.splitlines() if " INFO " in line]  # besides any warnings
    assert len(info) == 1 and info[0].endswith(
        f"INFO  GMF, adt_loss CE, dataset planted: training, up to 1 epochs; log: {lines[4][5:]}"
    )
    with open(log, encoding="utf-8") as file:
        logged = file.read()
    for detail in ("General Hyper Parameters", "The number of inters", "epoch 0 training"):
        assert detail in logged and detail not in err
    assert "%|" not in err and "%|" not in logged  # no tqdm bar
