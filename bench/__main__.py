"""Every benchmark of recbole-adt in one JSON object.

    python -m bench [--quick] [--output FILE]

Runs ``figures(quick)`` of each module in :data:`MODULES` and prints one JSON object keyed by
module name, plus ``machine`` (cores, torch threads, versions). Each figure is a ratio measured
side by side in one process, so it holds on a noisy machine; glibc's malloc keeps freed memory
(:func:`bench.steady_allocator`, ``--default_malloc`` to leave it) so that no epoch pays for
page faults another did not. A module that is missing or fails gets an ``{"error": ...}`` entry
and the others still run. ``--quick`` runs on small data; the
full run states its sizes in each module's entry. ``BENCH_SMOKE=1`` (the test suite) shrinks
``--quick`` further, for modules that read it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback

from bench import steady_allocator

MODULES = ("bench_training", "bench_evaluation", "bench_colliding", "bench_converters")


def machine() -> dict:
    """What the figures were measured on."""
    import recbole
    import torch

    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def collect(quick: bool, modules: tuple[str, ...] = MODULES) -> dict:
    """``figures(quick)`` of each module, or an ``error`` entry for it."""
    out: dict = {"machine": machine()}
    for name in modules:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            figures = module.figures(quick)
        except Exception as err:  # one module's failure must not lose the others' figures
            last = traceback.extract_tb(err.__traceback__)[-1]
            where = f"{os.path.basename(last.filename)}:{last.lineno}"
            figures = {"error": f"{type(err).__name__}: {err} ({where})"}
        figures["seconds"] = time.perf_counter() - start
        out[name] = figures
    return out


def write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".bench-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data: minutes, not hours")
    parser.add_argument("--output", help="also write the JSON object to this file")
    parser.add_argument(
        "--modules", nargs="+", choices=MODULES, default=list(MODULES), help="run only these"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--default_malloc", action="store_true", help="leave glibc's malloc thresholds moving"
    )
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads the command line
    import torch

    torch.set_num_threads(args.threads)  # small ops run fastest on one thread of a small machine
    steady = not args.default_malloc and steady_allocator()
    figures = collect(args.quick, tuple(args.modules))
    figures["machine"]["steady_allocator"] = steady
    text = json.dumps(figures, indent=1)
    print(text)
    if args.output:
        write_atomic(args.output, text + "\n")


if __name__ == "__main__":
    main()
