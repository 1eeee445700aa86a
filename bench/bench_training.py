"""What a training epoch costs, and what ADT adds to it, measured side by side in one process.

    python -m bench.bench_training [--quick] [--models GMF NeuMF] [--rounds N]
    python -m bench.bench_training --amazon_scale [--users 80000 --items 98000
        --interactions 2700000] [--sparse_embeddings] [--no_evaluate] [--steady_allocator]
    python -m bench.bench_training --breakdown [--users ... as above] [--sparse_embeddings]

Figures (:func:`figures`), on synthetic data from :mod:`bench.synthetic` (``--quick``: 2k users,
4k items, 40k interactions; otherwise the size of the issue's Yelp slice, 45k users, 50k items,
237k interactions), one thread, timed in CPU seconds of this process (on a shared machine they
move far less than wall-clock seconds):

- ``tce_over_ce_epoch``, ``rce_over_ce_epoch`` per model: the time of one epoch with T-CE
  (at its maximum drop rate) and with R-CE over CE, from the same initial weights on the same
  batches, drawn once from RecBole's dataloader and replayed, so that sampling, which costs all
  three the same, does not dilute the difference. Best of ``rounds`` epochs each, interleaved.
- ``epoch_over_reference``: our GMF CE epoch through RecBole's ``Trainer._train_epoch`` over a
  minimal plain-torch loop on the same batches (same embeddings and initial weights, BCE with
  logits, the same optimizer); ``_sparse``: both with sparse embeddings and SparseAdam;
  ``epoch_with_sampling_over_reference``: ours drawing its batches from RecBole's dataloader
  (negative sampling and batch building included) over the same reference.
- ``epoch_breakdown``: time per stage of one GMF T-CE epoch, dense and sparse (RecBole's
  sampler, batch building, ``.to(device)``, forward, loss, backward, optimizer), from a loop that
  does what ``Trainer._train_epoch`` does with a clock around each stage.
- full size only, ``amazon_scale``: :func:`amazon_scale` in a fresh process (for its own peak
  memory): one GMF T-CE epoch and one full clean-test evaluation at Amazon-book's size, with the
  wall-clock and CPU seconds (system seconds apart: page faults) and the resident memory of each
  stage, with glibc's default malloc as a run gets it; ``_steady_allocator`` and ``_sparse``: the
  epoch alone, with :func:`bench.steady_allocator` and with ``sparse_embeddings``.

The figures above run with :func:`bench.steady_allocator` (``python -m bench`` and this module's
command line set it): with glibc's moving mmap threshold the same epoch takes 1x or 2.5x by the
allocator's history, which no ratio survives.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from recbole.data import data_preparation
from recbole.utils import init_seed

from bench import steady_allocator
from bench.synthetic import AMAZON_BOOK, SyntheticSpec, generate_dataset
from recbole_adt.config import Config
from recbole_adt.quick_start import build_dataset
from recbole_adt.utils import get_model, get_trainer

LOSSES = ("CE", "TCE", "RCE")
SIZES = {
    "tiny": {"users": 300, "items": 600, "interactions": 4_500, "clusters": 5},
    "quick": {"users": 2_000, "items": 4_000, "interactions": 40_000, "clusters": 10},
    # The issue's Yelp slice: 45.5k test users x 50.8k items, 188k training interactions.
    "yelp": {"users": 45_000, "items": 50_000, "interactions": 237_000},
}


def figures(quick: bool, *, models=("GMF", "NeuMF"), rounds: int | None = None) -> dict:
    """The training figures; ``quick`` on small data in seconds, else Yelp-slice size + Amazon."""
    size = "tiny" if _smoke_run() else "quick" if quick else "yelp"
    # Quick epochs last a fraction of a second: more of them for a stable minimum.
    rounds = rounds or {"tiny": 2, "quick": 6, "yelp": 5}[size]
    with tempfile.TemporaryDirectory() as folder, bench_environment(folder):
        settings = synthetic_settings(folder, size)
        out: dict = {"training_data": {"size": size, **SIZES[size], "rounds": rounds}}
        for model_name in models:
            ratios = loss_ratios(model_name, settings, rounds=rounds)
            for key, value in ratios.items():
                out.setdefault(key, {})[model_name] = value
        out.update(reference_ratios(settings, rounds=rounds))
        out["epoch_breakdown"] = {
            mode: epoch_breakdown(
                {**settings, "adt_loss": "TCE", "sparse_embeddings": mode == "sparse"}
            )
            for mode in ("dense", "sparse")
        }
    if not quick:
        out["amazon_scale"] = amazon_scale_subprocess()
        for variant in ("steady_allocator", "sparse_embeddings"):
            run = amazon_scale_subprocess(no_evaluate=True, **{variant: True})
            out[f"amazon_scale_{variant.split('_')[0]}"] = run
    return out


# --- set-up ---------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_environment(folder: str, threads: int = 1) -> Iterator[None]:
    """Work in ``folder`` (RecBole's trainer writes ``log_tensorboard/`` to the working
    directory), one torch thread, no command line for RecBole's Config to read, no warnings."""
    argv, old_threads, cwd = sys.argv, torch.get_num_threads(), os.getcwd()
    sys.argv = sys.argv[:1]
    torch.set_num_threads(threads)
    os.chdir(folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # RecBole 1.2.1 on pandas 2, torch 2
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        os.chdir(cwd)
        sys.argv = argv
        torch.set_num_threads(old_threads)


def synthetic_settings(folder: str, size: str, **spec) -> dict:
    """Write the synthetic data set ``size`` into ``folder``; the settings that load it."""
    sizes = {**SIZES[size], **spec}
    if sizes["interactions"] < 6 * sizes["users"]:
        sizes.setdefault("min_user_interactions", 3)
    generate_dataset(folder, size, SyntheticSpec(**sizes))
    return {
        "dataset": size,
        "data_path": folder,
        "checkpoint_dir": os.path.join(folder, "saved"),
        "show_progress": False,
        "state": "ERROR",
        "num_threads": 1,
        "seed": 2020,
        "drop_rate": 0.2,
    }


def prepare(model_name: str, settings: dict, losses=LOSSES) -> tuple:
    """RecBole's train and test data, and one trainer per loss with the same initial weights.

    ``losses`` are ``adt_loss`` values, each optionally tagged (``"CE#2"``: a second CE trainer).
    """
    config = Config(model_name, config_dict={**settings, "adt_loss": losses[0]})
    init_seed(config["seed"], config["reproducibility"])
    train, _valid, test = data_preparation(config, build_dataset(config))
    trainers = {}
    for tagged in losses:
        loss = tagged.split("#")[0]
        loss_config = Config(model_name, config_dict={**settings, "adt_loss": loss})
        init_seed(loss_config["seed"], loss_config["reproducibility"])
        model = get_model(model_name, adt_loss=loss)(loss_config, train._dataset)
        trainer = get_trainer(loss_config["MODEL_TYPE"], model_name)(loss_config, model)
        # T past epsilon_N: T-CE drops its full share from the first batch, as in steady state.
        trainer.adt_iteration = 10**9
        trainers[tagged] = trainer
    return train, test, trainers


def clock() -> float:
    """CPU seconds of this process: the benchmarks run on one thread, and on a shared machine
    CPU time moves far less than wall-clock time with the load of other processes."""
    return time.process_time()


def interleaved_best(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best CPU seconds of each run over ``rounds`` rounds, one untimed warm-up round first.

    Each round runs every entry once, in a rotating order, so slow spells on a shared machine
    fall on all of them alike; the minimum is the least disturbed time.
    """
    names = list(runs)
    best = dict.fromkeys(names, math.inf)
    for round_index in range(rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            runs[name]()
            if round_index:
                best[name] = min(best[name], clock() - start)
    return best


def _replay(trainer, batches: list) -> Callable[[], object]:
    return lambda: trainer._train_epoch(batches, 0)


# --- figures --------------------------------------------------------------------------------


def loss_ratios(model_name: str, settings: dict, *, rounds: int) -> dict[str, float]:
    """T-CE and R-CE epoch time over CE: same initial weights, same replayed batches.

    ``ce_repeat_over_ce`` times a second, identical CE trainer: the noise floor of the ratios.
    """
    train, _test, trainers = prepare(model_name, settings, losses=(*LOSSES, "CE#2"))
    batches = list(train)
    best = interleaved_best({loss: _replay(t, batches) for loss, t in trainers.items()}, rounds)
    return {
        "tce_over_ce_epoch": best["TCE"] / best["CE"],
        "rce_over_ce_epoch": best["RCE"] / best["CE"],
        "ce_repeat_over_ce": best["CE#2"] / best["CE"],
        "ce_epoch_s": best["CE"],
    }


class PlainGMF(torch.nn.Module):
    """GMF as a plain torch module: the reference loop's model."""

    def __init__(self, gmf):
        super().__init__()
        self.user = torch.nn.Embedding.from_pretrained(gmf.user_embedding.weight.detach().clone())
        self.item = torch.nn.Embedding.from_pretrained(gmf.item_embedding.weight.detach().clone())
        for table in (self.user, self.item):
            table.weight.requires_grad_(True)
            table.sparse = gmf.user_embedding.sparse
        self.output = torch.nn.Linear(gmf.embedding_size, 1)
        self.output.load_state_dict(gmf.predict_layer.state_dict())

    def forward(self, user, item):
        return self.output(self.user(user) * self.item(item)).squeeze(-1)


def reference_epoch(gmf, batches: list, *, learning_rate: float) -> Callable[[], None]:
    """A minimal training loop over ``batches``: BCE with logits, Adam (SparseAdam on sparse
    embeddings), nothing else; a copy of ``gmf``'s initial weights."""
    model = PlainGMF(gmf)
    if model.user.sparse:
        optimizers = [
            torch.optim.SparseAdam([model.user.weight, model.item.weight], lr=learning_rate),
            torch.optim.Adam(model.output.parameters(), lr=learning_rate),
        ]
    else:
        optimizers = [torch.optim.Adam(model.parameters(), lr=learning_rate)]
    data = [(b[gmf.USER_ID], b[gmf.ITEM_ID], b[gmf.LABEL]) for b in batches]

    def epoch() -> None:
        for user, item, label in data:
            for optimizer in optimizers:
                optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(model(user, item), label).backward()
            for optimizer in optimizers:
                optimizer.step()

    return epoch


def reference_ratios(settings: dict, *, rounds: int) -> dict[str, float]:
    """Our GMF CE epoch over the plain-torch reference, dense and sparse embeddings."""
    out = {}
    for suffix, sparse in (("", False), ("_sparse", True)):
        train, _test, trainers = prepare(
            "GMF", {**settings, "sparse_embeddings": sparse}, losses=("CE",)
        )
        trainer = trainers["CE"]
        batches = list(train)
        reference = reference_epoch(
            trainer.model, batches, learning_rate=trainer.config["learning_rate"]
        )
        runs = {"ours": _replay(trainer, batches), "reference": reference}
        if not sparse:
            runs["ours_sampling"] = _replay(trainer, train)  # RecBole's dataloader, sampling
        best = interleaved_best(runs, rounds)
        out[f"epoch_over_reference{suffix}"] = best["ours"] / best["reference"]
        out[f"reference_epoch{suffix}_s"] = best["reference"]
        if not sparse:
            out["epoch_with_sampling_over_reference"] = best["ours_sampling"] / best["reference"]
    return out


def epoch_breakdown(settings: dict, *, model_name: str = "GMF") -> dict:
    """CPU seconds per stage of one epoch: what ``Trainer._train_epoch`` does, with a clock around
    each stage, after one untimed epoch (RecBole's own epoch is timed too, on the next one)."""
    loss = settings.get("adt_loss", "CE")
    train, _test, trainers = prepare(model_name, settings, losses=(loss,))
    trainer = trainers[loss]
    trainer._train_epoch(train, 0)  # the optimizer's state and the allocator's pools
    model, optimizer = trainer.model, trainer.optimizer
    stages = dict.fromkeys(
        ("sampling", "batching", "to_device", "zero_grad", "forward", "loss", "backward"), 0.0
    )
    stages["optimizer"] = 0.0
    sampler = train._sampler
    sample = sampler.sample_by_user_ids

    def timed_sample(*args, **kwargs):
        start = clock()
        try:
            return sample(*args, **kwargs)
        finally:
            stages["sampling"] += clock() - start

    sampler.sample_by_user_ids = timed_sample  # this sampler object only, undone below
    trainer.adt_batches_per_epoch = len(train)
    model.train()
    total = clock()
    try:
        batches = iter(train)
        mark = clock()
        for interaction in batches:
            now = clock()
            stages["batching"] += now - mark
            interaction = interaction.to(trainer.device)
            mark = _lap(stages, "to_device", now)
            optimizer.zero_grad()
            mark = _lap(stages, "zero_grad", mark)
            model.drop_rate = trainer.current_drop_rate()
            logits = model.forward(interaction[model.USER_ID], interaction[model.ITEM_ID])
            mark = _lap(stages, "forward", mark)
            loss_value = model.pointwise_loss(logits, interaction)
            mark = _lap(stages, "loss", mark)
            loss_value.backward()
            mark = _lap(stages, "backward", mark)
            optimizer.step()
            loss_value.item()
            mark = _lap(stages, "optimizer", mark)
    finally:
        del sampler.sample_by_user_ids
    stages["batching"] -= stages["sampling"]  # the dataloader's time includes the sampler's
    out = {"stages_s": stages, "total_s": clock() - total}
    out["batches"] = len(train)
    start = clock()
    trainer._train_epoch(train, 1)
    out["recbole_epoch_s"] = clock() - start
    return out


def _lap(stages: dict, name: str, since: float) -> float:
    now = clock()
    stages[name] += now - since
    return now


# --- Amazon-book scale ----------------------------------------------------------------------


def memory_mib() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MiB (Linux /proc, else rusage)."""
    try:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        return {
            "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
            "peak_rss_mib": int(fields["VmHWM"].split()[0]) / 1024,
        }
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"rss_mib": math.nan, "peak_rss_mib": peak}


def amazon_scale(
    users: int = AMAZON_BOOK["users"],
    items: int = AMAZON_BOOK["items"],
    interactions: int = AMAZON_BOOK["interactions"],
    *,
    fp_rate: float = 0.1,
    seed: int = 0,
    model_name: str = "GMF",
    loss: str = "TCE",
    settings: dict | None = None,
    evaluate: bool = True,
) -> dict:
    """One training epoch and one full clean-test evaluation at Amazon-book's size.

    Generates the data, builds RecBole's dataset and dataloaders, trains one ``loss`` epoch and
    evaluates the test split through ``Trainer.evaluate``; reports each stage's seconds and the
    resident memory after it (``rss_mib``) and at the peak so far (``peak_rss_mib``). Run it in a
    fresh process for a peak that is its own (:func:`amazon_scale_subprocess`).
    """
    stages = {"start": memory_mib()}

    def now() -> tuple[float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), usage.ru_utime, usage.ru_stime

    last = [now()]

    def stage(name: str) -> None:
        """Seconds since the previous stage; CPU seconds too (user, and system: page faults),
        as they move less than wall-clock seconds on a shared machine; memory after it."""
        (wall, user, system), (wall0, user0, system0) = now(), last[0]
        stages[name] = {"s": wall - wall0, "cpu_s": user - user0 + system - system0}
        stages[name].update(system_s=system - system0, **memory_mib())
        last[0] = (wall, user, system)

    with tempfile.TemporaryDirectory() as folder, bench_environment(folder):
        spec = SyntheticSpec(users, items, interactions, fp_rate=fp_rate, seed=seed)
        generate_dataset(folder, "amazon", spec)
        stage("generate")
        config_dict = {
            "dataset": "amazon",
            "data_path": folder,
            "checkpoint_dir": os.path.join(folder, "saved"),
            "show_progress": False,
            "state": "ERROR",
            "num_threads": 1,
            "adt_loss": loss,
            **(settings or {}),
        }
        config = Config(model_name, config_dict=config_dict)
        init_seed(config["seed"], config["reproducibility"])
        dataset = build_dataset(config)
        stage("load_dataset")
        train, _valid, test = data_preparation(config, dataset)
        stage("split_and_dataloaders")
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(model_name, adt_loss=loss)(config, train._dataset)
        trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
        trainer.adt_iteration = 10**9  # T-CE at its full drop rate
        stage("model_and_trainer")
        trainer._train_epoch(train, 0)
        stage("train_epoch")
        result = {}
        if evaluate:
            result = trainer.evaluate(test, load_best_model=False)
            stage("evaluate_test")
    return {
        "sizes": {"users": users, "items": items, "interactions": interactions},
        "model": model_name,
        "loss": loss,
        "sparse_embeddings": bool(config["sparse_embeddings"]),
        "train_batches": len(train),
        "test_users": len(getattr(test, "uid_list", ())),
        "eval_batch_size": config["eval_batch_size"],
        "train_epoch_s": stages["train_epoch"]["s"],
        "train_epoch_cpu_s": stages["train_epoch"]["cpu_s"],
        "evaluate_test_s": stages["evaluate_test"]["s"] if evaluate else None,
        "evaluate_test_cpu_s": stages["evaluate_test"]["cpu_s"] if evaluate else None,
        "peak_rss_mib": memory_mib()["peak_rss_mib"],
        "stages": stages,
        "test_result": {key: float(value) for key, value in result.items()},
    }


def amazon_scale_subprocess(timeout: float | None = None, **kwargs) -> dict:
    """:func:`amazon_scale` in a fresh Python, so that its peak memory is its own."""
    flags = ("sparse_embeddings", "no_evaluate", "steady_allocator")
    args = [f"--{key}={value}" for key, value in kwargs.items() if key not in flags]
    args += [f"--{flag}" for flag in flags if kwargs.get(flag)]
    command = [sys.executable, "-m", "bench.bench_training", "--amazon_scale", *args]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            command,
            cwd=folder,
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1:] or f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _smoke_run() -> bool:
    """The test suite's run of the entry point: ``BENCH_SMOKE=1`` shrinks ``--quick`` to seconds."""
    return os.environ.get("BENCH_SMOKE") == "1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, seconds")
    parser.add_argument("--models", nargs="+", default=["GMF", "NeuMF"], help="loss ratios of")
    parser.add_argument("--rounds", type=int, help="timed epochs of each (default 6 or 5)")
    scale = parser.add_argument_group("one run at a given size, default Amazon-book's")
    mode = scale.add_mutually_exclusive_group()
    mode.add_argument("--amazon_scale", action="store_true", help="amazon_scale(): time, memory")
    mode.add_argument("--breakdown", action="store_true", help="epoch_breakdown() at this size")
    for name, default in AMAZON_BOOK.items():
        scale.add_argument(f"--{name}", type=int, default=default)
    scale.add_argument("--sparse_embeddings", action="store_true")
    scale.add_argument("--no_evaluate", action="store_true", help="amazon_scale: train only")
    scale.add_argument("--loss", default="TCE")
    scale.add_argument(
        "--steady_allocator", action="store_true", help="amazon_scale: bench.steady_allocator()"
    )
    args = parser.parse_args(argv)
    sizes = {name: getattr(args, name) for name in AMAZON_BOOK}
    settings = {"sparse_embeddings": args.sparse_embeddings}
    if args.amazon_scale:  # what a run gets: glibc's default malloc, unless asked
        if args.steady_allocator:
            steady_allocator()
        result = amazon_scale(
            **sizes, loss=args.loss, settings=settings, evaluate=not args.no_evaluate
        )
    elif args.breakdown:
        steady_allocator()
        with tempfile.TemporaryDirectory() as folder, bench_environment(folder):
            data = synthetic_settings(folder, "quick", **sizes, clusters=20)
            result = epoch_breakdown({**data, **settings, "adt_loss": args.loss})
        result["sizes"] = sizes
    else:
        steady_allocator()
        result = figures(args.quick, models=args.models, rounds=args.rounds)
    # amazon_scale_subprocess reads the last line: one line there.
    print(json.dumps(result, indent=None if args.amazon_scale else 1))


if __name__ == "__main__":
    main()
