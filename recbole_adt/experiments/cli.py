"""Compare models, losses and RecBole baselines over seeds, or search the paper's grids.

    python -m recbole_adt.experiments compare --models GMF,NeuMF,CDAE --losses ce,tce,rce \\
        --baselines BPR,LightGCN --seeds 5 --output out/compare [--key=value ...]
    python -m recbole_adt.experiments grid --models GMF --losses tce,rce --output out/grid
    python -m recbole_adt.experiments compare ... --tuned out/grid   # with the chosen settings
    python -m recbole_adt.experiments compare --models GMF --losses ce,tce,rce \\
        --strategies none,finetune,warmup --baselines NMTR,NR --output out/table4
    python -m recbole_adt.experiments compare --models GMF --losses tce,rce --colliding \\
        --output out/table5
    python -m recbole_adt.experiments grid --models GMF --losses tce --grid warmup=0,5,10,20 ...
    python -m recbole_adt.experiments sweep --models GMF --losses ce,tce,rce,dcf \\
        --noise_rates 0,0.1,0.2,0.4 --mechanism popularity --seeds 5 --output out/sweep

Any other --key=value is a setting of every run, as with run_recbole_adt.py. Every name,
setting and grid value is checked before the first run. Exit codes: 0 every run finished, 1
some run failed (rerun the command to retry it), 2 a setting, name or folder to fix (or
another command is writing to the same --output), 128 + N stopped by signal N (143: SIGTERM,
130: Ctrl-C; the same command again finishes the rest).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys

from recbole_adt.cli import DEBUG_ENV, _check_settings_args
from recbole_adt.experiments.choices import settings_from_args
from recbole_adt.experiments.compare import compare
from recbole_adt.experiments.grid import grid_search
from recbole_adt.experiments.sweep import sweep
from recbole_adt.experiments.workspace import Stopped

PROG = "python -m recbole_adt.experiments"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    compare_parser = commands.add_parser(
        "compare",
        allow_abbrev=False,  # --seed (a RecBole setting) must not read as --seeds
        help="models x losses and RecBole baselines over seeds: results.csv, results.md, plots",
    )
    compare_parser.add_argument("--models", default="", help="e.g. GMF,NeuMF,CDAE")
    compare_parser.add_argument("--losses", default="ce,tce,rce", help="default: ce,tce,rce")
    compare_parser.add_argument(
        "--baselines", default="", help="RecBole models with their own loss, e.g. BPR,LightGCN"
    )
    compare_parser.add_argument(
        "--strategies",
        default=None,
        help="Table 4: none,finetune,warmup (phases [adt], [adt,finetune], [warmup,adt])",
    )
    compare_parser.add_argument(
        "--colliding",
        action="store_true",
        help="Table 5: warm-up runs with colliding inference, each test group plain and mixed",
    )
    compare_parser.add_argument(
        "--seeds", default="5", help="N (seeds 1..N) or a list 3,7,11 (default: 5)"
    )
    compare_parser.add_argument(
        "--tuned",
        nargs="+",
        default=None,
        metavar="DIR",
        help="grid search outputs whose chosen settings apply to their model and loss",
    )
    grid_parser = commands.add_parser(
        "grid",
        allow_abbrev=False,
        help="search the paper's grid of a loss on validation; report the choice and its test",
    )
    grid_parser.add_argument("--models", default="GMF", help="default: GMF")
    grid_parser.add_argument(
        "--losses", "--loss", default="tce", help="default: tce (its grid: drop_rate x num_gradual)"
    )
    grid_parser.add_argument(
        "--grid",
        action="append",
        default=None,
        metavar="NAME=V1,V2,...",
        help="a setting and its values (repeat for more settings); default: the paper's grid",
    )
    grid_parser.add_argument(
        "--seeds", default="1", help="seeds of the search: N (1..N) or a list (default: 1)"
    )
    grid_parser.add_argument(
        "--final_seeds", default=None, help="then run the chosen setting on these seeds"
    )
    sweep_parser = commands.add_parser(
        "sweep",
        allow_abbrev=False,
        help="inject false positives at rising rates: each loss's degradation, paired tests",
    )
    sweep_parser.add_argument("--models", default="GMF", help="default: GMF")
    sweep_parser.add_argument("--losses", default="ce,tce,rce", help="default: ce,tce,rce")
    sweep_parser.add_argument(
        "--noise_rates", default="0,0.1,0.2,0.4", help="injected per training interaction"
    )
    sweep_parser.add_argument(
        "--mechanism",
        default="uniform",
        help="uniform, popularity, user or popularity+user; several: uniform,popularity",
    )
    sweep_parser.add_argument(
        "--seeds", default="5", help="N (seeds 1..N) or a list 3,7,11 (default: 5)"
    )
    for sub in (compare_parser, grid_parser, sweep_parser):
        sub.set_defaults(parser=sub)  # its errors print its usage
        sub.add_argument("--output", required=True, metavar="DIR", help="results folder")
        sub.add_argument("--dataset", "-d", default=None, help="default: ml-100k-fp (embedded)")
        sub.add_argument("--config_files", default=None, help="space-separated yaml files")
        sub.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
        sub.add_argument(
            "--keep_checkpoints",
            action="store_true",
            help="keep each run's checkpoint in DIR/runs/<run id>/checkpoints",
        )
        sub.add_argument("--no_plots", action="store_true", help="write no PNG")
        sub.add_argument(
            "--verbose", action="store_true", help="show RecBole's log (default: run.log)"
        )
        sub.add_argument(
            "--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_ENV}=1)"
        )
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    settings = settings_from_args(_check_settings_args(args.parser, rest))
    debug = args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false")
    common = {
        "output": args.output,
        "dataset": args.dataset,
        "config_files": args.config_files,
        "settings": settings,
        "jobs": args.jobs,
        "keep_checkpoints": args.keep_checkpoints,
        "verbose": args.verbose,
        "plots_wanted": not args.no_plots,
        "echo": _echo,
    }
    try:
        if args.command == "compare":
            command = " ".join([PROG, *(shlex.quote(arg) for arg in argv)])
            outcome = compare(
                models=args.models,
                losses=args.losses,
                baselines=args.baselines,
                strategies=args.strategies,
                colliding=args.colliding,
                seeds=args.seeds,
                tuned=args.tuned,
                command=command,
                **common,
            )
        elif args.command == "sweep":
            outcome = sweep(
                models=args.models,
                losses=args.losses,
                noise_rates=args.noise_rates,
                mechanism=args.mechanism,
                seeds=args.seeds,
                command=" ".join([PROG, *(shlex.quote(arg) for arg in argv)]),
                **common,
            )
        else:
            outcome = grid_search(
                models=args.models,
                losses=args.losses,
                grid=args.grid,
                seeds=args.seeds,
                final_seeds=args.final_seeds,
                **common,
            )
    except ValueError as err:
        if debug:
            raise
        print(
            f"{PROG}: error: {err}\n(--debug or {DEBUG_ENV}=1 shows the traceback)", file=sys.stderr
        )
        raise SystemExit(2) from None
    except (Stopped, KeyboardInterrupt) as stop:
        if debug:
            raise
        stop = Stopped(getattr(stop, "signum", signal.SIGINT))  # KeyboardInterrupt: Ctrl-C
        print(
            f"{PROG}: {stop}: the finished runs are kept in {args.output}/results.csv, the run "
            "in progress is recorded there as interrupted, and no temporary file is left. Run "
            "the same command again to finish (finished runs are skipped).",
            file=sys.stderr,
        )
        raise SystemExit(stop.exit_code) from None
    raise SystemExit(1 if outcome["failed"] else 0)


def _echo(line: str) -> None:
    print(line, flush=True)
