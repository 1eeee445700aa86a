"""Command line: train and test a recommender with Adaptive Denoising Training.

    python run_recbole_adt.py --model=GMF --config_files=properties/tce.yaml
    python run_recbole_adt.py --model=NeuMF --config_files=properties/rce.yaml --seeds=1,2,3
    python run_recbole_adt.py --resume=saved/GMF-...pth     # continue an interrupted run

With no dataset given, runs on MovieLens-100K (bundled with RecBole, rating < 3 = false positive).
Any RecBole setting can be added as --key=value, e.g. --epochs=5 --dataset=yelp --data_path=out/.

A run ends with a short summary on stdout (scores, kept epoch, run time, checkpoint and log file).
The console (stderr) gets warnings and one start line, and progress bars on a terminal only; the
config dump and per-epoch detail go to the log file. --verbose (or --state=INFO) shows them too.

A mistake in a setting, a file or a model name prints one paragraph naming the problem and the fix,
and exits with code 2; --debug (or RECBOLE_ADT_DEBUG=1) shows the traceback instead. So does a run
whose loss or parameters stop being finite, or whose checkpoint cannot be written. SIGTERM, SIGINT
or SIGHUP stop training at the next batch, with the checkpoint to --resume from, and exit with
128 + the signal's number (143, 130, 129).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import textwrap
import warnings
from pathlib import Path

import recbole
import yaml

from recbole_adt.config import PROPERTIES_DIR
from recbole_adt.console import Console, shown_path, summary_lines
from recbole_adt.quick_start import run_recbole_adt, run_seeds
from recbole_adt.trainer.faults import TrainingStopped

DEFAULT_MODEL = "GMF"
DEBUG_ENV = "RECBOLE_ADT_DEBUG"

# FutureWarnings of RecBole 1.2.1's own code on the pinned pandas and torch, hidden in CLI runs
# (the library itself leaves warning filters alone).
KNOWN_WARNINGS = (
    r"A value is trying to be set on a copy of a DataFrame or Series through chained assignment",
    r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # --seed (a RecBole setting) must not read as --seeds
        description=__doc__.split("\n\n")[0],
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help=f"GMF, NeuMF, CDAE, NMTR or a RecBole model (default: {DEFAULT_MODEL}, or the "
        "resumed run's)",
    )
    parser.add_argument("--dataset", "-d", default=None, help="default: ml-100k-fp (embedded)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, one run per seed")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="PATH",
        help="continue the run that saved this checkpoint, with its settings (the command line "
        "wins); the iteration counter carries on, and the checkpoint is left as it was",
    )
    parser.add_argument(
        "--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_ENV}=1)"
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="show RecBole's log on the console too (config dump, per-epoch lines), as "
        "--state=INFO does; by default it goes to the log file only",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    # The rest (--epochs=5, ...) are RecBole settings, which RecBole's Config reads from sys.argv.
    args, rest = parser.parse_known_args(argv)
    args.recbole_args = _check_settings_args(parser, rest)
    args.seed_list = None
    if args.seeds is not None:
        if any(arg.startswith("--seed=") for arg in rest):
            parser.error("--seed and --seeds together: the command line --seed would win every run")
        if args.resume:
            parser.error("--resume continues one run: leave --seeds out")
        try:
            args.seed_list = [int(seed) for seed in args.seeds.split(",")]
        except ValueError:
            parser.error(f"--seeds must be comma-separated integers (e.g. 1,2,3), not {args.seeds}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false")
    handlers = set(logging.getLogger().handlers)
    try:
        with _quiet_known_warnings(), _settings_as_argv(args.recbole_args):
            _run(args)
    except ValueError as err:  # the library's way of saying the user must change something
        if debug:
            raise
        _log_to_new_files(handlers, f"Stopped: {err}")
        prog = os.path.basename(sys.argv[0]) or "recbole-adt"
        print(
            f"{prog}: error: {err}\n(--debug or {DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except TrainingStopped as stop:  # a stop signal, honoured between batches
        _log_to_new_files(handlers, str(stop))
        prog = os.path.basename(sys.argv[0]) or "recbole-adt"
        print(f"{prog}: {stop}", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None


def _run(args: argparse.Namespace) -> None:
    config_files = args.config_files.split() if args.config_files else None
    console = Console.for_stderr(verbose=args.verbose)
    if args.seed_list is None:
        model = args.model or (None if args.resume else DEFAULT_MODEL)
        result = run_recbole_adt(
            model, args.dataset, config_files, resume_file=args.resume, console=console
        )
        print("\n".join(summary_lines(result)))
        return
    seeds, model = args.seed_list, args.model or DEFAULT_MODEL
    outcome = run_seeds(seeds, model, args.dataset, config_files, console=console)
    mixed = "group_summary_plain" in outcome  # colliding inference: plain and mixed scores
    suffix = ", colliding inference" if mixed else ""
    print(f"test result of {model} over seeds {seeds}{suffix} (mean ± sample std):")
    print_summary(outcome["test_summary"])
    for key, title in (("group_summary_plain", ", plain scores"), ("group_summary", suffix)):
        for group, summary in outcome.get(key, {}).items():
            if group != "overall" or key == "group_summary_plain":
                print(f" {'all users' if group == 'overall' else 'users with ' + group}{title}:")
                print_summary(summary)
    for seed, run in zip(seeds, outcome["runs"]):
        print(f"checkpoint of seed {seed}: {run['model_file']}")
    for path in dict.fromkeys(run["log_file"] for run in outcome["runs"] if run["log_file"]):
        print(f"log: {shown_path(path)}")  # one process logs every seed to its first file


def print_summary(summary: dict) -> None:
    for metric, (mean, std) in summary.items():
        print(f"  {metric}: {mean:.4f} ± {std:.4f}")


def settings_help() -> str:
    """Our settings and the RecBole defaults we change, read from ``overall.yaml``."""
    path = Path(PROPERTIES_DIR) / "overall.yaml"
    defaults = yaml.safe_load(path.read_text(encoding="utf-8"))
    described = _described_settings(path)
    recbole_file = Path(recbole.__file__).parent / "properties" / "overall.yaml"
    recbole_keys = set(yaml.safe_load(recbole_file.read_text(encoding="utf-8")) or {})
    ours = [name for name in defaults if name not in recbole_keys]
    changed = [name for name in defaults if name in recbole_keys]
    lines = [
        "recbole-adt settings, with their defaults (give them as --name=value, or as "
        "'name: value' in a config file):"
    ]
    for name in ours:
        lines.append(f"  --{name}={_show(defaults[name])}")
        text = described.get(name, "")
        lines.extend(textwrap.wrap(text, 92, initial_indent=" " * 6, subsequent_indent=" " * 6))
    lines.append("")
    lines.append("RecBole settings whose default differs here:")
    shown = ", ".join(f"{name}={_show(defaults[name])}" for name in changed)
    lines.extend(textwrap.wrap(shown, 94, initial_indent="  ", subsequent_indent="  "))
    lines.append("")
    lines.append(
        "Any other --name=value is a RecBole setting (e.g. --epochs=5 --topk=[50,100]). "
        f"Exit codes: 0 done, 2 a setting, file or name to fix, or a numerical or disk fault "
        f"({DEBUG_ENV}=1 for tracebacks), 128 + N stopped by signal N (143 SIGTERM, 130 "
        "SIGINT), with the checkpoint to --resume from."
    )
    return "\n".join(lines)


def _described_settings(path: Path) -> dict[str, str]:
    """name -> its comment in overall.yaml, continuation lines included."""
    described, name = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line[:1].isalpha() and ":" in line:
            name = line.split(":", 1)[0]
            comment = line.partition("#")[2].strip()
            described[name] = comment
        elif line.lstrip().startswith("#") and line[:1] == " " and name and described.get(name):
            described[name] += " " + line.strip().lstrip("#").strip()
        elif not line.strip() or line.startswith("#"):
            name = None
    return described


def _show(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return str(value)


def _check_settings_args(parser: argparse.ArgumentParser, rest: list[str]) -> list[str]:
    """RecBole's settings must be --name=value, each name once (RecBole ignores the others)."""
    seen: dict[str, str] = {}
    for arg in rest:
        name, equals, value = arg[2:].partition("=")
        if not arg.startswith("--") or not name:
            parser.error(f"unrecognized argument {arg!r}: settings are given as --name=value")
        if not equals:
            parser.error(f"{arg} needs a value, joined by '=': {arg}=VALUE")
        if "=" in value:
            parser.error(f"{arg}: a setting's value cannot contain '='")
        if seen.get(name, value) != value:
            parser.error(f"--{name} is given twice ({seen[name]} and {value}): keep one")
        seen[name] = value
    return rest


@contextlib.contextmanager
def _settings_as_argv(settings: list[str]):
    """RecBole's Config reads settings from sys.argv: give it these, and only these."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "recbole-adt", *settings]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _quiet_known_warnings():
    # The processes of a distributed run (nproc > 1) are new interpreters: they read the same
    # filters from PYTHONWARNINGS (plain message prefixes there, not patterns).
    inherited = os.environ.get("PYTHONWARNINGS")
    plain = [re.sub(r"\\(.)", r"\1", message) for message in KNOWN_WARNINGS]
    os.environ["PYTHONWARNINGS"] = ",".join(
        [*([inherited] if inherited else []), *(f"ignore:{m}:FutureWarning" for m in plain)]
    )
    try:
        with warnings.catch_warnings():
            for message in KNOWN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield
    finally:
        if inherited is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = inherited


def _log_to_new_files(before: set, message: str) -> None:
    """End the run's log file with the error, so that the log says why the run stopped."""
    for handler in logging.getLogger().handlers:
        if handler not in before and isinstance(handler, logging.FileHandler):
            handler.handle(
                logging.makeLogRecord({"msg": message, "levelno": 40, "levelname": "ERROR"})
            )


if __name__ == "__main__":
    main()
