"""What a run shows a person on the console, and what it leaves to the log file.

RecBole's ``init_logger`` sends every line to two handlers, the console (stderr) and a log file,
at the level of the ``state`` setting: a run's config dump, dataset and model dumps, per-epoch
lines and progress bars all reach the terminal. A :class:`Console` (the command line's choice)
keeps RecBole's logging and narrows only its console handler: warnings and errors, and the
INFO lines marked with :data:`NOTICE` (the run's start line), pass; the log file keeps every
line. The run ends with :func:`summary_lines` on stdout. Python API callers pass no Console and
keep RecBole's console as it is (``compare`` routes it into each run's ``run.log``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Mapping

from recbole.utils import init_logger

from recbole_adt.output import OutputSettings, inside
from recbole_adt.settings import parsed

# Log with ``extra={NOTICE: True}`` for an INFO line that a quiet console still shows.
NOTICE = "recbole_adt_notice"


@dataclasses.dataclass(frozen=True)
class Console:
    """How a run uses the console where the user's settings leave it open.

    ``quiet``: RecBole's console handler passes warnings, errors and notices only, unless the
    settings give ``state`` (then RecBole's console as that level says). ``progress``: whether
    RecBole's tqdm bars may show where the settings do not give ``show_progress`` (False turns
    them off; True leaves RecBole's value, which is False on the other ranks of a DDP run).
    """

    quiet: bool = True
    progress: bool = False

    @classmethod
    def for_stderr(cls, *, verbose: bool = False) -> Console:
        """The command line's console: quiet unless ``verbose``; progress bars on a terminal."""
        return cls(quiet=not verbose, progress=sys.stderr.isatty())


class WarningsAndNotices(logging.Filter):
    """Passes records at WARNING and above, and those marked with :data:`NOTICE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or bool(getattr(record, NOTICE, False))


def init_run_logger(config, console: Console | None = None) -> None:
    """RecBole's ``init_logger`` under ``output_dir``, then ``console``'s choices for what the
    user did not set.

    RecBole's log folder is ``./log/<model>/``, fixed in its code: with ``output_dir`` set it is
    made there (:func:`recbole_adt.output.inside`; the file handler keeps an absolute path).
    Only the console handler that ``init_logger`` adds now is narrowed (RecBole configures
    logging once per process: a later run in the same process reuses the first run's handlers).
    """
    root = logging.getLogger()
    before = set(root.handlers)
    user_set = config.external_config_dict  # config files, config_dict and command line
    if console is not None and "show_progress" not in user_set:
        config["show_progress"] = bool(config["show_progress"]) and console.progress
    with inside(parsed(config, OutputSettings).output_dir):
        # RecBole makes these with a check-then-mkdir that fails when two runs start together.
        os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
        init_logger(config)
    if console is None or not console.quiet or "state" in user_set:
        return
    for handler in root.handlers:
        # FileHandler is a StreamHandler too: only RecBole's console handler is this exact type.
        if handler not in before and type(handler) is logging.StreamHandler:
            handler.addFilter(WarningsAndNotices())


def log_file() -> str | None:
    """The path of RecBole's log file in this process (``init_logger``'s FileHandler), if any."""
    for handler in logging.getLogger().handlers:
        name = str(getattr(handler, "baseFilename", ""))
        if isinstance(handler, logging.FileHandler) and name.endswith(".log"):
            return name  # not pytest's file handler, which writes to os.devnull
    return None


def log_start(config, path: str | None) -> None:
    """The run's one start line, shown on a quiet console too."""
    where = f"; log: {shown_path(path)}" if path else ""
    logging.getLogger().info(
        f"{run_title(config)}: training, up to {config['epochs']} epochs{where}",
        extra={NOTICE: True},
    )


def run_title(run: Mapping) -> str:
    """``GMF, adt_loss CE, dataset ml-100k-fp``, from a config or a run's result."""
    return f"{run['model']}, adt_loss {run['adt_loss']}, dataset {run['dataset']}"


def summary_lines(result: Mapping) -> list[str]:
    """A few lines on one run's result (:func:`recbole_adt.quick_start.run_recbole_adt`).

    The title, run time and kept epoch; the validation metrics of that epoch; the test metrics
    (with colliding inference, plain and mixed scores); the checkpoint, log file and
    diagnostics folder. Metrics with 4 decimals.
    """
    head = f"{run_title(result)}: {duration(result['seconds'])}"
    if result.get("best_epoch") is not None:
        head += f", kept epoch {result['best_epoch']} ({_rule(result)})"
    test = "test (clean)" if result.get("clean_test") else "test"
    rows = [("valid", result.get("best_valid_result") or {})]
    if "test_result_plain" in result:
        colliding = result.get("colliding") or {}
        mixed = f"(k={colliding.get('neighbours')}, λ={colliding.get('lambda')})"
        rows.append((f"{test}, plain scores", result["test_result_plain"]))
        rows.append((f"{test}, colliding {mixed}", result["test_result"]))
    else:
        rows.append((test, result["test_result"]))
    width = max(len(label) for label, _ in rows) + 1
    lines = [head, *(f"  {label + ':':<{width}} {metrics_text(values)}" for label, values in rows)]
    model_file = result.get("model_file")
    lines.append(f"checkpoint: {shown_path(model_file) if model_file else 'not saved'}")
    for label, key in (("log", "log_file"), ("diagnostics", "diagnostics_dir")):
        if result.get(key):
            lines.append(f"{label}: {shown_path(result[key])}")
    return lines


def metrics_text(metrics: Mapping) -> str:
    """``recall@10 0.1771  ndcg@10 0.1210``: each metric with 4 decimals."""
    return "  ".join(f"{name} {float(value):.4f}" for name, value in metrics.items())


def duration(seconds: float) -> str:
    """``2.4 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it, else as it is."""
    relative = os.path.relpath(os.path.abspath(path))
    return path if relative.startswith(os.pardir) else relative


def _rule(result: Mapping) -> str:
    rule = result.get("checkpoint_rule") or "valid_metric"
    if rule != "valid_metric":
        return f"checkpoint_rule {rule}: lowest"
    best = "highest" if result.get("valid_score_bigger", True) else "lowest"
    return f"checkpoint_rule valid_metric: {best} {result.get('valid_metric')}"
