"""Distributed training through RecBole's DDP, on GPUs (NCCL) and on CPUs (gloo).

RecBole 1.2.1 runs ``nproc`` processes per machine, ``world_size`` in all, that meet at
``ip:port``; a machine's first process has global rank ``offset`` (``quick_start.run``). Its
``Config`` joins them with NCCL on CUDA only, and its trainer wraps the model with CUDA device ids.
This module adds what a CPU run needs (gloo, a DDP wrapper without device ids), the collectives the
ADT trainer uses to agree across ranks, and the spawning of the processes with rank 0's result.

Under DDP each rank trains on its own share of every epoch (RecBole's ``DistributedSampler``,
which pads the shares to the same length, so every rank runs the same number of batches) and
averages the gradients; T-CE's drop-rate schedule therefore counts the same iterations T on every
rank (Wang et al., "Learning Robust Recommender from Noisy Implicit Feedback", Eq. 3).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import sys
import tempfile

import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import ProcessRaisedException

from recbole_adt.denoisers import ADT_LOSS_NAMES, DENOISERS

_SEE = "README, 'Distributed training'"


def is_distributed(config) -> bool:
    """Whether this process is one rank of a DDP run (RecBole's ``single_spec`` is False)."""
    return not config["single_spec"]


def spawns_workers(config) -> bool:
    """Whether a run with this config starts ``nproc`` worker processes (it is not one itself)."""
    # RecBole sets local_rank 0 in a single process; a worker is given its own and is no longer one.
    return config["single_spec"] and (config["nproc"] > 1 or config["world_size"] > 0)


def uses_gpus(settings) -> bool:
    """RecBole's NCCL-on-CUDA path applies: CUDA is there, gpu_id names GPUs, use_gpu is not off."""
    gpu_id = settings["gpu_id"]
    ids = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (list, tuple)) else str(gpu_id)
    return torch.cuda.is_available() and settings["use_gpu"] is not False and ids.strip() != ""


def check_distributed_settings(settings) -> bool:
    """Check ``nproc``, ``world_size``, ``ip``, ``port``, ``offset``; True if they ask for DDP.

    Under DDP, a ``world_size`` of -1 becomes ``nproc`` (one machine), as in RecBole's ``run``.
    """
    for key in ("nproc", "world_size", "offset"):
        if not _is_int(settings[key]):
            raise ValueError(f"{key} must be an integer, not {settings[key]!r}; see {_SEE}.")
    nproc, world_size, offset = settings["nproc"], settings["world_size"], settings["offset"]
    if nproc < 1:
        raise ValueError(f"nproc is the number of processes on this machine: >= 1, not {nproc}.")
    distributed = nproc > 1 or world_size > 0 or "local_rank" in settings
    if not distributed:
        return False
    if world_size == -1:
        world_size = settings["world_size"] = nproc
    if world_size < 1 or offset < 0 or offset + nproc > world_size:
        raise ValueError(
            f"world_size {world_size}, nproc {nproc} and offset {offset} do not fit: the "
            "processes of this machine take global ranks offset .. offset + nproc - 1, which "
            "must lie in 0 .. world_size - 1. On one machine leave world_size (-1) and offset "
            f"(0) out; on several, world_size is the total of their nproc; see {_SEE}."
        )
    port = settings["port"]
    if not (_is_int(port) or (isinstance(port, str) and port.isdigit())) or not (
        0 < int(port) < 65536
    ):
        raise ValueError(f"port must be a TCP port number (1-65535), not {port!r}.")
    settings["port"] = int(port)
    if not isinstance(settings["ip"], str) or not settings["ip"].strip():
        raise ValueError(
            f"ip must be the address of the machine that runs rank 0, not {settings['ip']!r}."
        )
    local_rank = settings.get("local_rank")
    if local_rank is not None and not (_is_int(local_rank) and 0 <= local_rank < nproc):
        raise ValueError(f"local_rank must be in 0 .. nproc - 1 ({nproc - 1}), not {local_rank!r}.")
    _check_supported(settings)
    if uses_gpus(settings) and len(str(settings["gpu_id"]).split(",")) < nproc:
        raise ValueError(
            f"nproc {nproc} needs one GPU per process, but gpu_id is {settings['gpu_id']!r}: "
            f"list {nproc} GPUs (e.g. gpu_id: '0,1'), or set use_gpu: False to run on CPUs."
        )
    return True


def _check_supported(settings) -> None:
    """What the ranks cannot share refuses to run under DDP rather than run differently: a
    keyed denoiser (DCF, UDT) keeps state over every training interaction."""
    name = str(settings.get("adt_loss", "")).upper()
    if name in ADT_LOSS_NAMES and DENOISERS[ADT_LOSS_NAMES[name].denoiser].keyed:
        raise ValueError(
            f"adt_loss {name} keeps a loss memory of every training interaction, and under DDP "
            "each rank sees a different share of them in every epoch, so the memory would be "
            f"split: train {name} in one process (nproc: 1), or use TCE or RCE under DDP."
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def join_cpu_group(settings) -> None:
    """Join the run's process group with gloo, the CPU backend, set up like RecBole's NCCL one."""
    local_rank = settings["local_rank"]
    dist.init_process_group(
        backend="gloo",
        rank=local_rank + settings["offset"],
        world_size=settings["world_size"],
        init_method=f"tcp://{settings['ip']}:{settings['port']}",
    )
    settings["device"] = torch.device("cpu")
    settings["single_spec"] = False
    if local_rank != 0:  # as RecBole: only each machine's first process logs and shows progress
        settings["state"] = "error"
        settings["show_progress"] = False
        settings["verbose"] = False


@contextlib.contextmanager
def ddp_on_cpu(trainer, config):
    """Around RecBole's ``Trainer.__init__``: on CPU, wrap the model in DDP without device ids.

    RecBole's ``AbstractTrainer`` passes ``device_ids=[local_rank]``, which DDP refuses for a CPU
    model: inside, the config reads as one process; the wrapper is made after (without
    SyncBatchNorm, which is CUDA-only). On GPUs and in one process this does nothing.
    """
    on_cpu = is_distributed(config) and config["device"].type == "cpu"
    if on_cpu:
        config["single_spec"] = True
    try:
        yield
    finally:
        if on_cpu:
            config["single_spec"] = False
    if on_cpu:
        trainer.distributed_model = torch.nn.parallel.DistributedDataParallel(trainer.model)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over every rank (a new tensor; the local one is left as it was)."""
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def check_same_on_every_rank(value: int, what: str, device) -> None:
    """RuntimeError unless every rank holds the same ``value`` (one all_reduce of max and -min)."""
    extremes = torch.tensor([value, -value], dtype=torch.long, device=device)
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
    high, low = int(extremes[0]), -int(extremes[1])
    if high != low:
        raise RuntimeError(
            f"{what} differs across ranks ({low} .. {high}): each rank must run the same "
            "number of batches per epoch."
        )


def broadcast_from_rank0(value, config):
    """Rank 0's ``value`` on every rank (a picklable object); ``value`` itself outside DDP."""
    if not is_distributed(config):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(config) -> None:
    """Wait for every rank; nothing outside DDP."""
    if is_distributed(config):
        dist.barrier()


def leave_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# Spawning: the workers are RecBole's (``run_recboles``): top-level functions taking
# (rank, *args, kwargs). Rank 0 hands its result back through a file in a private folder
# rather than RecBole's pipe, which blocks a result larger than the pipe's buffer until join.
_RESULT = "result.pkl"


def spawn_workers(worker, nproc: int, args: tuple, kwargs: dict):
    """Run ``worker(rank, *args, {**kwargs, "outbox": folder})`` in ``nproc`` processes.

    Returns what local rank 0 passed to :func:`post_result` (None if nothing). A ``ValueError``
    raised in a worker (a setting or file to fix) is raised here as a ``ValueError``.
    """
    with tempfile.TemporaryDirectory(prefix="recbole-adt-ddp-") as outbox:
        try:
            torch.multiprocessing.spawn(
                _run_then_exit,
                args=(worker, *args, {**kwargs, "outbox": outbox}),
                nprocs=nproc,
                join=True,
            )
        except ProcessRaisedException as err:
            reported = sorted(name for name in os.listdir(outbox) if name.startswith("error-"))
            if reported:
                with open(os.path.join(outbox, reported[0]), encoding="utf-8") as file:
                    raise ValueError(file.read()) from err
            raise
        path = os.path.join(outbox, _RESULT)
        if not os.path.exists(path):
            return None
        with open(path, "rb") as file:
            return pickle.load(file)  # written by our own rank 0, just now, in a private folder


def _run_then_exit(rank: int, worker, *args) -> None:
    """A spawned process: ``worker(rank, *args)``, then an exit that skips the interpreter's
    teardown once the worker has returned (its result and logs written, its group left).

    Gloo's C++ threads can still hold tensors when Python finalizes, and destroying them then
    aborts the process (SIGABRT, "terminate called without an active exception"): rarely, and
    after the run has ended, but the launcher would report a finished run as failed. A worker that
    raises is left to torch's ``spawn``, which reports the error.
    """
    worker(rank, *args)
    gc.collect()  # the trainer's DDP wrapper and its reducer, while the interpreter is whole
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def post_result(outbox: str, result) -> None:
    with open(os.path.join(outbox, _RESULT), "wb") as file:
        pickle.dump(result, file)


def post_error(outbox: str, rank: int, error: ValueError) -> None:
    with open(os.path.join(outbox, f"error-{rank}.txt"), "w", encoding="utf-8") as file:
        file.write(str(error))
