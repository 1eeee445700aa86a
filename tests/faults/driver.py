"""The command line with one planted fault: ``python -m tests.faults.driver FAULT ARGS...``.

``FAULT`` is ``none``; ``kill@N``, ``term@N`` or ``int@N``: SIGKILL, SIGTERM or SIGINT at the
N-th training batch of the run (counted over epochs and phases), after its loss and before its
update; or ``kill-in-save@K``: SIGKILL in the K-th checkpoint save, after its partial file is
written whole and before it replaces the checkpoint. ``ARGS`` go to the command line.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from recbole_adt import cli
from recbole_adt.trainer import faults

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}


def plant(fault: str) -> None:
    kind, _, count = fault.partition("@")
    if kind == "none":
        return
    at, seen = int(count), [0]
    if kind in SIGNALS:
        check = faults.FaultGuardMixin._check_nan

        def signalled(self, loss):
            seen[0] += 1
            if seen[0] == at:
                os.kill(os.getpid(), SIGNALS[kind])
            return check(self, loss)

        faults.FaultGuardMixin._check_nan = signalled
    elif kind == "kill-in-save":
        save = torch.save

        def killed_after(obj, file, *args, **kwargs):
            save(obj, file, *args, **kwargs)
            seen[0] += 1
            if seen[0] == at:
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        torch.save = killed_after
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    plant(sys.argv[1])
    cli.main(sys.argv[2:])
