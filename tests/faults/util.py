"""Shared helpers for the fault corpus: settings, the command line in a subprocess, checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from recbole_adt.trainer.checkpoint import read_checkpoint
from tests.conftest import planted_settings

ROOT = Path(__file__).resolve().parents[2]


def fault_settings(data_path, checkpoint_dir, **changes) -> dict:
    """GMF with T-CE on 'planted' for 6 epochs, learning slowly enough that every epoch's
    validation improves: each epoch saves a checkpoint, and the kept one is the last."""
    return {
        **planted_settings(data_path, checkpoint_dir),
        "adt_loss": "TCE",
        "num_gradual": 30,
        "epochs": 6,
        "learning_rate": 0.0003,
        **changes,
    }


def cli_args(settings: dict, model: str = "GMF") -> list[str]:
    """``settings`` as the command line's ``--name=value`` arguments."""
    args = [f"--model={model}"]
    for name, value in settings.items():
        if isinstance(value, list):
            value = "[" + ",".join(str(v) for v in value) + "]"
        args.append(f"--{name}={value}")
    return args


def drive(fault: str, args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """The command line in a new process, with ``fault`` planted (:mod:`tests.faults.driver`)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("RECBOLE_ADT_DEBUG", None)
    command = [sys.executable, "-m", "tests.faults.driver", fault, *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kwargs
    )


def checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pth"))


def leftovers(folder: Path) -> list[str]:
    """Files that a save must never leave: partial writes and probes."""
    return sorted(
        p.name for p in folder.iterdir() if p.name.endswith(".partial") or "write-check" in p.name
    )


def same_training_state(first: str | Path, second: str | Path) -> None:
    """Assert two checkpoints hold the same epoch, T, phase, early stopping, weights and optimizer
    state, bitwise."""
    a, b = read_checkpoint(first), read_checkpoint(second)
    for key in ("epoch", "adt_iteration", "phase_index", "cur_step", "best_valid_score"):
        assert a.get(key) == b.get(key), key
    assert a["best_valid_result"] == b["best_valid_result"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    moments_a, moments_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert moments_a.keys() == moments_b.keys()
    for slot in moments_a:
        for name, value in moments_a[slot].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(moments_b[slot][name]))
