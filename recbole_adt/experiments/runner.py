"""Run the trainings of an experiment: each (model, loss, seed, settings) once, resumably.

Each run is one :func:`~recbole_adt.quick_start.run_recbole_adt` call with the run's seed (the
seed sets the split, so every loss of a seed trains and tests on the same data). Everything it
writes lies under ``DIR/runs/<run id>/`` (its ``output_dir``: RecBole's log and tensorboard
folders, the diagnostics), except its checkpoint, which goes to a temporary folder in
``DIR/.tmp/`` (kept in ``DIR/runs/<run id>/checkpoints`` with ``keep_checkpoints``).

Before the first run, :func:`check_runs` builds every distinct run's Config once (no data is
loaded) and checks its dataset files, so a bad grid value, a loss a model cannot take or a
misspelt dataset stops the command before anything trains. A run that raises while training
is recorded as failed and the others go on. After each run ``DIR/results.csv`` is rewritten
atomically, so a rerun finds every finished run and skips it (a failed or interrupted one, or
one whose settings changed, runs again). A stop signal
(:class:`~recbole_adt.experiments.workspace.Stopped`) records the runs in progress as
``interrupted`` and ends the experiment. ``jobs > 1`` runs that many at once in spawned
processes; each run seeds itself, so the results do not depend on ``jobs``. Spawned processes
import the caller's ``__main__`` again: a script that calls with ``jobs > 1`` must do so under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import re
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from recbole_adt import known_settings
from recbole_adt.cli import _quiet_known_warnings, _settings_as_argv
from recbole_adt.config import Config
from recbole_adt.data.checks import check_dataset_files
from recbole_adt.data.embedded import EMBEDDED_DATASET
from recbole_adt.experiments.results import (
    FAILED,
    INTERRUPTED,
    OK,
    RESULTS_FILE,
    TEST,
    VALID,
    cell,
    display_loss,
    metric_column,
    read_rows,
    write_rows,
)
from recbole_adt.experiments.workspace import (
    TEMPORARY_DIR,
    Stopped,
    catch_stop_signals,
    one_run,
)
from recbole_adt.quick_start import run_recbole_adt
from recbole_adt.settings import literal_setting, read_config_file
from recbole_adt.trainer import TrainingStopped

BASELINE = "own"  # the loss of a RecBole baseline: its own (adt_loss CE keeps RecBole's model)
# A strategy (paper section 3.4.1) -> its phases; "none" is a run without one (the default
# phases, [adt]), so a compare without --strategies and its strategy "none" are the same runs.
STRATEGIES = {"none": None, "finetune": ["adt", "finetune"], "warmup": ["warmup", "adt"]}
PLAIN, COLLIDING = "plain", "colliding"  # the two results of a test group (Table 5)
RUNS_DIR = "runs"
EMBEDDED_DATA_DIR = "dataset"  # DIR/dataset: the embedded dataset, converted on first use
_MAX_ID = 120  # characters of a run id (a folder name)

# Settings that the experiment sets for each run itself, and the option that sets them.
_RESERVED = {
    "model": "--models (or --baselines)",
    "dataset": "--dataset",
    "adt_loss": "--losses",
    "seed": "--seeds",
    "checkpoint_dir": "--keep_checkpoints (each run's checkpoint goes to a temporary folder, "
    "or to DIR/runs/<run id>/checkpoints)",
    "diagnostics_dir": "--output (each run's diagnostics go to DIR/runs/<run id>)",
    "output_dir": "--output (each run writes under DIR/runs/<run id>)",
}


@dataclass(frozen=True)
class RunSpec:
    """One training: a model, a loss (``BASELINE`` for a RecBole model's own), a seed, the
    run's own settings (a grid point, a tuned setting) as sorted (name, value) pairs, and the
    strategy of ``compare --strategies`` (a name of ``STRATEGIES``; ``""`` for none, whose runs
    are the runs of a compare without strategies: same id, same fingerprint)."""

    model: str
    loss: str
    seed: int
    settings: tuple[tuple[str, object], ...] = ()
    strategy: str = ""

    @property
    def run_id(self) -> str:
        """A folder name: model_loss[_strategy]_name-value..._seed-N, with a hash where
        characters were replaced or the name was cut, so different settings never share an
        id."""
        settings = [f"{name}-{_short(value)}" for name, value in self.settings]
        strategy = [self.strategy] if self.strategy else []
        text = "_".join([self.model, self.loss, *strategy, *settings, f"seed-{self.seed}"])
        safe = re.sub(r"[^A-Za-z0-9.@+_-]", "-", text)
        if safe != text or len(safe) > _MAX_ID:
            digest = hashlib.sha1(text.encode()).hexdigest()[:8]
            safe = f"{safe[: _MAX_ID - 9]}_{digest}"
        return safe

    @property
    def settings_dict(self) -> dict:
        return {name: _thawed(value) for name, value in self.settings}

    def describe(self) -> str:
        shown = " ".join(f"{k}={_short(v)}" for k, v in self.settings)
        loss = "(own loss)" if self.loss == BASELINE else display_loss(self.loss)
        strategy = f" {self.strategy}" if self.strategy else ""
        return f"{self.model} {loss}{strategy}{' ' + shown if shown else ''} seed {self.seed}"


@dataclass(frozen=True)
class Experiment:
    """What every run of an experiment shares: output folder, data, config files, settings."""

    output: Path
    dataset: str | None = None
    config_files: tuple[str, ...] = ()
    settings: tuple[tuple[str, object], ...] = ()
    keep_checkpoints: bool = False
    verbose: bool = False

    @property
    def results_file(self) -> Path:
        return Path(self.output) / RESULTS_FILE

    @property
    def temporary_dir(self) -> Path:
        """Where runs put their temporaries (removed on exit, or on the next start)."""
        return Path(self.output) / TEMPORARY_DIR

    def run_dir(self, spec: RunSpec) -> Path:
        return Path(self.output) / RUNS_DIR / spec.run_id

    @property
    def embedded_data_dir(self) -> Path | None:
        """``DIR/dataset``, where runs on the embedded dataset convert and read it, unless the
        user chose a ``data_path``: so that the command creates nothing outside ``DIR``."""
        if (self.dataset or EMBEDDED_DATASET) != EMBEDDED_DATASET:
            return None
        given = [dict(self.settings)] + [read_config_file(f) for f in self.config_files]
        if any("data_path" in settings for settings in given):
            return None
        return Path(self.output) / EMBEDDED_DATA_DIR


def make_spec(
    model: str, loss: str, seed: int, settings: Mapping | None = None, strategy: str = ""
) -> RunSpec:
    check_settings(settings or {}, "a run's settings")
    items = tuple(sorted((name, _frozen(value)) for name, value in (settings or {}).items()))
    return RunSpec(model, loss, int(seed), items, "" if strategy == "none" else strategy)


def check_settings(settings: Mapping, where: str) -> None:
    """``ValueError`` for a setting the experiment sets itself, naming the option to use."""
    for name in settings:
        if name in _RESERVED:
            raise ValueError(
                f"{name} cannot be given in {where}: an experiment sets it for each run. "
                f"Use {_RESERVED[name]} instead."
            )


def fingerprint(experiment: Experiment, spec: RunSpec) -> str:
    """A hash of everything that sets a run's result: a finished run is skipped only if it
    matches. Config files count by content (an edited file reruns its runs, a moved one does
    not), and ``'5'`` from a command line is the same setting as ``5`` from Python."""
    files = [
        hashlib.sha1(Path(name).read_bytes()).hexdigest() if Path(name).is_file() else "missing"
        for name in experiment.config_files
    ]
    described = {
        "model": spec.model,
        "loss": spec.loss,
        "seed": spec.seed,
        "settings": [[k, _value(v)] for k, v in spec.settings],
        "dataset": experiment.dataset,
        "config_files": files,
        "common": [[k, _value(v)] for k, v in experiment.settings],
    }
    if spec.strategy:  # absent for none: the fingerprints of runs made before strategies
        described["strategy"] = spec.strategy
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_settings(experiment: Experiment, spec: RunSpec, checkpoint_dir: Path) -> dict:
    """The ``config_dict`` of a run: the common settings, the run's, then what the run fixes."""
    settings = {**dict(experiment.settings), **spec.settings_dict}
    if spec.strategy and "phases" not in spec.settings_dict:  # a tuned warm-up length wins
        settings["phases"] = list(STRATEGIES[spec.strategy])
    if not experiment.verbose:
        settings.setdefault("show_progress", False)  # the console goes to run.log
    settings.update(
        adt_loss="CE" if spec.loss == BASELINE else spec.loss.upper(),
        seed=spec.seed,
        checkpoint_dir=str(checkpoint_dir),
        diagnostics_dir=str(experiment.run_dir(spec)),
        output_dir=str(experiment.run_dir(spec)),  # RecBole's log/ and log_tensorboard/
    )
    if experiment.embedded_data_dir is not None:
        settings["data_path"] = str(experiment.embedded_data_dir)
    return settings


def check_runs(experiment: Experiment, specs: Iterable[RunSpec]) -> None:
    """``ValueError`` naming the first run that could not start, before any run starts.

    Builds each distinct (model, loss, settings)'s Config once, as the run will (the seed
    aside), which checks every setting's name and value without loading data, and checks each
    dataset's files once.
    """
    checked: set[tuple] = set()
    datasets: set[tuple] = set()
    files = list(experiment.config_files) or None
    for spec in specs:
        key = (spec.model, spec.loss, spec.settings, spec.strategy)
        if key in checked:
            continue
        checked.add(key)
        settings = run_settings(experiment, spec, experiment.temporary_dir / "checkpoints")
        try:
            with _settings_as_argv([]), _quiet_known_warnings(), config_warnings_hidden():
                config = Config(spec.model, experiment.dataset, files, settings)
            data = (config["dataset"], config["data_path"], str(config["benchmark_filename"]))
            if data not in datasets:
                check_dataset_files(config)
                datasets.add(data)
        except ValueError as err:
            raise ValueError(
                f"No run was started: the run {spec.describe()} could not start. {err}"
            ) from None


@contextlib.contextmanager
def config_warnings_hidden():
    """Without the Config's "X is read only by ..." lines: an experiment gives its settings
    to every loss and model, and each run's log (run.log) still gets them."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)
        known_settings._log_once.cache_clear()  # logged once per process: now by the runs


def execute_run(experiment: Experiment, spec: RunSpec) -> dict[str, str]:
    """Train and test one run; return its results row (status ``failed`` if it raised).

    A stop signal (:class:`Stopped`, ``KeyboardInterrupt``) is not the run's failure: it
    passes on, after the run's temporary checkpoint folder is removed. A spawned process that
    was told to stop starts no further run (:func:`one_run`).
    """
    with one_run():
        try:
            return _execute_run(experiment, spec)
        except TrainingStopped as stop:  # the trainer's handler had the signal: the same stop
            raise Stopped(stop.signum) from None


def _execute_run(experiment: Experiment, spec: RunSpec) -> dict[str, str]:
    run_dir = experiment.run_dir(spec)
    if run_dir.exists():  # an earlier, failed or outdated attempt: none of its files may stay
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    if experiment.keep_checkpoints:
        checkpoint_dir = run_dir / "checkpoints"
    else:
        experiment.temporary_dir.mkdir(parents=True, exist_ok=True)
        prefix = f"checkpoints-{spec.run_id[:40]}-"
        checkpoint_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=experiment.temporary_dir))
    row = _row(experiment, spec)
    files = list(experiment.config_files) or None
    start = time.perf_counter()
    try:
        with _isolated(run_dir / "run.log", experiment.verbose):
            settings = run_settings(experiment, spec, checkpoint_dir)
            config = Config(spec.model, experiment.dataset, files, dict(settings))
            result = run_recbole_adt(spec.model, experiment.dataset, files, dict(settings))
        row.update(_result_cells(result, config, experiment.keep_checkpoints))
    except Exception as err:  # any crash is this run's failure, not the experiment's
        message = " ".join(f"{type(err).__name__}: {err}".split())
        row.update(status=FAILED, error=message[:1000])
        (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    finally:
        row["seconds"] = f"{time.perf_counter() - start:.2f}"
        if not experiment.keep_checkpoints:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return row


def run_all(
    experiment: Experiment,
    specs: Iterable[RunSpec],
    *,
    jobs: int = 1,
    echo: Callable[[str], None] = print,
) -> dict[str, dict[str, str]]:
    """Run every spec not finished yet; return run id -> row for all of ``specs``.

    On a stop signal the runs in progress are written as ``interrupted`` (a rerun runs them
    again) before the signal's exception passes on.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be 1 or more, not {jobs}.")
    specs = list(dict.fromkeys(specs))
    path = experiment.results_file
    rows = {row["run_id"]: row for row in read_rows(path)}
    todo = [spec for spec in specs if not _finished(rows.get(spec.run_id), experiment, spec)]
    if len(todo) < len(specs):
        echo(f"{len(specs) - len(todo)} of {len(specs)} runs already finished in {path}: skipped")
    progress = _Progress(len(todo), echo)
    started: dict[str, RunSpec] = {}  # run id -> spec, while it runs

    def record(row: dict[str, str]) -> None:
        started.pop(row["run_id"], None)
        rows[row["run_id"]] = row
        write_rows(path, rows.values())
        progress.report(row, _spec_of(todo, row["run_id"]))

    try:
        if jobs == 1 or len(todo) <= 1:
            for spec in todo:
                started[spec.run_id] = spec
                record(execute_run(experiment, spec))
        else:
            _execute_in_pool(experiment, todo, jobs, started, record)
    except (Stopped, KeyboardInterrupt) as stop:
        for spec in started.values():
            rows[spec.run_id] = _interrupted_row(experiment, spec, stop)
        write_rows(path, rows.values())
        raise
    return {spec.run_id: rows[spec.run_id] for spec in specs}


def _finished(row: dict | None, experiment: Experiment, spec: RunSpec) -> bool:
    return (
        row is not None
        and row.get("status") == OK
        and row.get("fingerprint") == fingerprint(experiment, spec)
    )


def _execute_in_pool(
    experiment: Experiment,
    specs: list[RunSpec],
    jobs: int,
    started: dict[str, RunSpec],
    record: Callable[[dict[str, str]], None],
) -> None:
    """``jobs`` spawned processes take the runs one at a time; ``record`` each row.

    spawn: a fresh interpreter per worker (fork would copy torch's threads and RecBole's
    logging state). On a stop signal the waiting runs are cancelled and the running ones
    stopped with SIGTERM (their temporaries removed); those that finished meanwhile are kept.
    """
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(specs)), mp_context=context, initializer=catch_stop_signals
    )
    futures: dict[Future, RunSpec] = {}
    try:
        futures = {pool.submit(execute_run, experiment, spec): spec for spec in specs}
        for future in as_completed(futures):
            spec = futures.pop(future)
            started[spec.run_id] = spec
            record(_pool_row(experiment, spec, future))
    except BaseException:
        running = {f: spec for f, spec in futures.items() if not f.cancel()}
        started.update({spec.run_id: spec for spec in running.values()})
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError, ValueError):
                process.terminate()  # SIGTERM: Stopped inside the run
        pool.shutdown(wait=True, cancel_futures=True)
        for future, spec in running.items():
            error = future.exception()
            if error is None and future.result().get("status") == OK:
                record(future.result())  # it finished before the signal reached it
            elif isinstance(error, Stopped) and not error.started:
                del started[spec.run_id]  # queued, never started: as if cancelled
        raise
    pool.shutdown(wait=True)


def _pool_row(experiment: Experiment, spec: RunSpec, future: Future) -> dict[str, str]:
    """A finished future's row; a worker that died (or was stopped) gives a failed row."""
    try:
        return future.result()
    except BaseException as err:  # noqa: B036 - the worker's Stopped comes back as a result
        return _failed_row(experiment, spec, f"{type(err).__name__}: {err}")


def _row(experiment: Experiment, spec: RunSpec) -> dict[str, str]:
    """The cells that say which run a row is."""
    return {
        "run_id": spec.run_id,
        "model": spec.model,
        "loss": spec.loss,
        "strategy": spec.strategy,
        "seed": str(spec.seed),
        "settings": cell(spec.settings_dict),
        "fingerprint": fingerprint(experiment, spec),
        "diagnostics_dir": str(Path(RUNS_DIR) / spec.run_id),
    }


def _failed_row(experiment: Experiment, spec: RunSpec, error: str) -> dict[str, str]:
    return {**_row(experiment, spec), "status": FAILED, "error": " ".join(error.split())[:1000]}


def _interrupted_row(experiment: Experiment, spec: RunSpec, stop: BaseException) -> dict[str, str]:
    signum = getattr(stop, "signum", signal.SIGINT)  # KeyboardInterrupt: Ctrl-C
    how = f"stopped by {signal.Signals(signum).name}"
    return {
        **_row(experiment, spec),
        "status": INTERRUPTED,
        "error": f"{how} before it finished; the same command runs it again",
    }


def _result_cells(result: Mapping, config, keep_checkpoints: bool) -> dict[str, str]:
    # checkpoint_rule, best_epoch: set by the checkpoint-rule trainer; RecBole's own rule
    # (the best validation metric) where it is not there.
    rule = result.get("checkpoint_rule") or config.final_config_dict.get("checkpoint_rule")
    cells = {
        "status": OK,
        "error": "",
        "best_epoch": cell(result.get("best_epoch")),
        "checkpoint_rule": rule or "valid_metric",
        "selection_metric": str(config["valid_metric"]).lower(),
        "bigger_is_better": cell(bool(config["valid_metric_bigger"])),
        "best_valid_score": cell(_plain(result.get("best_valid_score"))),
        "colliding": cell(result.get("colliding")),
        "model_file": cell(result.get("model_file")) if keep_checkpoints else "",
    }
    for split, key in ((VALID, "best_valid_result"), (TEST, "test_result")):
        for metric, value in (result.get(key) or {}).items():
            cells[metric_column(split, metric)] = cell(_plain(value))
    cells.update(_group_cells(result))
    return cells


def _group_cells(result: Mapping) -> dict[str, str]:
    """The test per user-ratio group (runs with D*; Table 5) as ``plain[<group>]:<metric>``
    and, with colliding inference, ``colliding[<group>]:<metric>`` cells; the group
    ``overall`` is every user. Without colliding inference ``test_groups`` is the plain test;
    with it, ``test_groups_plain`` is and ``test_groups`` holds the mixed scores."""
    plain = result.get("test_groups_plain")
    if plain is None:
        variants = [(PLAIN, result.get("test_groups") or {})]
    else:
        variants = [(PLAIN, plain), (COLLIDING, result.get("test_groups") or {})]
    cells = {}
    for variant, groups in variants:
        for name, metrics in groups.items():
            for metric, value in (metrics or {}).items():
                cells[group_column(variant, name, metric)] = cell(_plain(value))
    return cells


def group_column(variant: str, group: str, metric: str) -> str:
    """``plain[ratio < 0.1]:ndcg@20``: a test group's metric (``variant`` plain or colliding)."""
    return f"{variant}[{group}]:{metric}"


def _frozen(value):
    """Lists as tuples, so that a spec hashes (``phases: [warmup:5, adt]``)."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _thawed(value):
    """Tuples as lists again: the settings as given (a Config, JSON)."""
    return [_thawed(v) for v in value] if isinstance(value, (list, tuple)) else value


def _value(value):
    return literal_setting(value) if isinstance(value, str) else value


def _plain(value):
    """A float from a float, a numpy or a 0-d torch number; other values unchanged."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@contextlib.contextmanager
def _isolated(log_file: Path, verbose: bool):
    """Run with no command-line settings, RecBole's known warnings hidden, the console in
    ``log_file`` (unless verbose) and RecBole's log handlers removed afterwards, so the next
    run in this process logs to its own file."""
    root = logging.getLogger()
    before = list(root.handlers)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_settings_as_argv([]))
        stack.enter_context(_quiet_known_warnings())
        if not verbose:
            stream = stack.enter_context(log_file.open("a", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(stream))
            stack.enter_context(contextlib.redirect_stderr(stream))
        try:
            yield
        finally:
            for handler in root.handlers[:]:
                if handler not in before:
                    root.removeHandler(handler)
                    handler.close()


class _Progress:
    """One line per finished run, with the time left at the rate so far."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.done, self.echo = total, 0, echo
        self.start = time.perf_counter()

    def report(self, row: Mapping[str, str], spec: RunSpec) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        width = len(str(self.total))
        head = f"[{self.done:>{width}}/{self.total}] {spec.describe()}"
        seconds = float(row.get("seconds") or 0)
        if row.get("status") == OK:
            metric = row.get("selection_metric", "")
            valid = row.get(metric_column(VALID, metric), "")
            test = row.get(metric_column(TEST, metric), "")
            scores = f": valid {metric} {_number(valid)}, test {_number(test)}" if metric else ""
            line = f"{head} ok in {seconds:.1f} s{scores}"
        else:
            line = f"{head} FAILED after {seconds:.1f} s: {row.get('error', '')}"
        self.echo(f"{line} | ETA {_duration(left)}")


def _spec_of(specs: list[RunSpec], run_id: str) -> RunSpec:
    return next(spec for spec in specs if spec.run_id == run_id)


def _number(text: str) -> str:
    return f"{float(text):.4f}" if text else "n/a"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _short(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)
