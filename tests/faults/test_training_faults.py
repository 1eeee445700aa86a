"""Training survives faults: kill -9 and resume, stop signals, unwritable checkpoint folders and
full disks, and numbers that stop being finite.

Every case asserts the exit code or the exception, the message, that nothing was lost (the last
good checkpoint loads, and a resumed run ends exactly where an uninterrupted one does) and that
nothing was left where it should not be (no partial or probe file beside the checkpoints).

The runs are GMF with T-CE on the 'planted' data (30 batches per epoch), learning slowly enough
that every epoch improves on validation: each epoch saves a checkpoint and the run keeps its last,
so the resumed epochs decide the result. Killed and signalled runs are subprocesses of the command
line (:mod:`tests.faults.driver` plants the fault at a fixed batch); resumed and reference runs
run in this process. On CPU with one thread the resumed run is bitwise the uninterrupted one: the
checkpoint holds the random states and the loaders' shuffling generators.
"""

from __future__ import annotations

import errno
import os
import random
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recbole.trainer import Trainer

from recbole_adt import cli
from recbole_adt.quick_start import run_recbole_adt
from recbole_adt.trainer import ADTTrainer, NumericalFault
from recbole_adt.trainer.checkpoint import CheckpointWriteError, read_checkpoint
from tests.faults.util import (
    checkpoints,
    cli_args,
    drive,
    fault_settings,
    leftovers,
    same_training_state,
)
from tests.pipeline import prepare

BATCHES = 30  # training batches per epoch of 'planted' at train_batch_size 256
PHASES = ["warmup:2", "adt:2", "finetune:2"]


@pytest.fixture(scope="module")
def reference(planted_data, tmp_path_factory):
    """The uninterrupted 6-epoch run, and the phased one: their results and kept checkpoints."""
    folder = tmp_path_factory.mktemp("reference")
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(sys, "argv", ["pytest"])
        for name, changes in (("plain", {}), ("phased", {"phases": PHASES})):
            settings = fault_settings(planted_data, folder / name, **changes)
            runs[name] = run_recbole_adt("GMF", config_dict=settings)
    assert runs["plain"]["best_epoch"] == 5  # every epoch improved: the last decides
    return runs


def resumed_result(checkpoint) -> dict:
    return run_recbole_adt(resume_file=str(checkpoint))


def assert_same_run(resumed: dict, reference: dict) -> None:
    for key in ("test_result", "best_valid_result", "best_valid_score", "best_epoch"):
        assert resumed[key] == reference[key], key
    same_training_state(resumed["model_file"], reference["model_file"])


# --- kill -9, then --resume ------------------------------------------------------------------

KILL_POINTS = sorted(random.Random(17).sample(range(2 * BATCHES + 1, 5 * BATCHES + 1), 3))


@pytest.mark.slow
@pytest.mark.parametrize("batch", KILL_POINTS)
def test_kill_at_a_random_batch_then_resume_ends_as_the_uninterrupted_run(
    batch, planted_data, tmp_path, reference
):
    folder = tmp_path / "saved"
    killed = drive(f"kill@{batch}", cli_args(fault_settings(planted_data, folder)), tmp_path)
    assert killed.returncode == -signal.SIGKILL
    (checkpoint,) = checkpoints(folder)
    epoch = (batch - 1) // BATCHES  # the epoch killed; the one before it saved last
    assert read_checkpoint(checkpoint)["epoch"] == epoch - 1
    assert read_checkpoint(checkpoint)["adt_iteration"] == epoch * BATCHES
    assert leftovers(folder) == []
    assert_same_run(resumed_result(checkpoint), reference["plain"])
    assert leftovers(folder) == []


@pytest.mark.slow
def test_kill_inside_a_save_keeps_the_previous_checkpoint(planted_data, tmp_path, reference):
    """Killed after the third save's partial file is complete, before it replaces the file."""
    folder = tmp_path / "saved"
    killed = drive("kill-in-save@3", cli_args(fault_settings(planted_data, folder)), tmp_path)
    assert killed.returncode == -signal.SIGKILL
    (checkpoint,) = checkpoints(folder)
    assert read_checkpoint(checkpoint)["epoch"] == 1  # epoch 2's save never replaced it
    (partial,) = leftovers(folder)
    assert partial.startswith(checkpoint.name) and partial.endswith(".partial")
    assert_same_run(resumed_result(checkpoint), reference["plain"])
    assert leftovers(folder) == []  # the resumed run removed the dead run's partial file


@pytest.mark.slow
def test_phased_run_killed_in_adt_resumes_into_the_same_finetune(planted_data, tmp_path, reference):
    """The D* loader of warm-up and finetune shuffles on from where warm-up left it."""
    folder = tmp_path / "saved"
    settings = fault_settings(planted_data, folder, phases=PHASES)
    _, _, (train, _, _), _, trainer = prepare("GMF", settings)
    warmup = len(trainer._phase_loaders(train)["warmup"])
    batch = 2 * warmup + BATCHES + 10  # ADT epoch 1, batch 10
    killed = drive(f"kill@{batch}", cli_args(settings), tmp_path)
    assert killed.returncode == -signal.SIGKILL
    (adt,) = folder.glob("*-adt.pth")
    saved = read_checkpoint(adt)
    assert (saved["phase_index"], saved["epoch"], saved["adt_iteration"]) == (1, 0, BATCHES)
    assert len(saved["random_state"]["loaders"]) == 2  # the ADT loader and the D* loader
    assert_same_run(resumed_result(adt), reference["phased"])


def test_truncated_checkpoint_is_refused_by_resume(reference, tmp_path, capsys):
    """A checkpoint cut short (copied while a disk filled, say): a clear error, exit 2."""
    whole = Path(reference["plain"]["model_file"]).read_bytes()
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(whole[: len(whole) // 2])
    code, out, err = _run_cli([f"--resume={truncated}"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{truncated} is not a readable checkpoint" in err and "truncated" in err


# --- stop signals ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name, code", [("term", 143), ("int", 130)])
def test_stop_signal_stops_at_the_next_batch_and_resumes(
    name, code, planted_data, tmp_path, reference
):
    folder = tmp_path / "saved"
    batch = 2 * BATCHES + 7
    stopped = drive(f"{name}@{batch}", cli_args(fault_settings(planted_data, folder)), tmp_path)
    assert stopped.returncode == code
    (checkpoint,) = checkpoints(folder)
    signame = "SIGTERM" if name == "term" else "SIGINT"
    # sent during batch 7's loss, seen before batch 7's update or, at the latest, batch 8's
    assert f"Stopped by {signame} at epoch 2, batch " in stopped.stderr
    assert f"(epoch 1), is complete: continue with --resume={checkpoint}" in stopped.stderr
    assert "Traceback" not in stopped.stderr and stopped.stdout == ""
    assert read_checkpoint(checkpoint)["epoch"] == 1
    assert leftovers(folder) == []
    assert_same_run(resumed_result(checkpoint), reference["plain"])


def test_stop_handlers_are_only_ours_while_training(base_config):
    """fit restores the handlers it found, and leaves a handler of someone else's in place."""
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        _, _, (train, valid, _), model, trainer = prepare("GMF", {**base_config, "epochs": 1})
        loss = model.calculate_loss
        count = [0]

        def signalled(interaction):
            count[0] += 1
            if count[0] == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return loss(interaction)

        model.calculate_loss = signalled
        trainer.fit(train, valid, saved=False)  # someone else's handler: no stop
        assert seen == [signal.SIGTERM] and trainer.stop_signal is None
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signal.getsignal(signal.SIGTERM) is previous


# --- checkpoint folders that cannot take a checkpoint -----------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """Records whether any epoch trained."""
    trained = []
    original = ADTTrainer._train_epoch

    def record(self, *args, **kwargs):
        trained.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ADTTrainer, "_train_epoch", record)
    return trained


def _run_cli(args, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(args)
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


def test_checkpoint_dir_that_is_a_file_fails_before_training(
    planted_data, tmp_path, capsys, no_training
):
    path = tmp_path / "saved"
    path.write_text("notes")
    code, out, err = _run_cli(cli_args(fault_settings(planted_data, path)), capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"checkpoint_dir {path} is a file, not a folder" in err and "--checkpoint_dir=" in err
    assert path.read_text() == "notes" and no_training == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write to: a read-only tmpfs mount for root (which ignores modes),
    mode 0555 for anyone else."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("root cannot mount a read-only tmpfs here: no read-only folder to test")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("inside", [False, True], ids=["folder", "subfolder"])
def test_read_only_checkpoint_dir_fails_before_training(
    inside, read_only_dir, planted_data, capsys, no_training
):
    path = read_only_dir / "saved" if inside else read_only_dir
    code, out, err = _run_cli(cli_args(fault_settings(planted_data, path)), capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    what = "cannot be made" if inside else "is not writable"
    assert f"checkpoint_dir {path} {what}" in err and "--checkpoint_dir=" in err
    assert no_training == [] and list(read_only_dir.iterdir()) == []


def _fail_save(monkeypatch, at: int, error: OSError) -> None:
    """The ``at``-th torch.save writes some bytes, then fails with ``error``."""
    save, count = torch.save, [0]

    def failing(obj, file, *args, **kwargs):
        count[0] += 1
        if count[0] == at:
            file.write(b"PK\x03\x04 half a checkpoint")
            raise error
        return save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing)


def _fit_until_a_save_fails(settings):
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    with pytest.raises(CheckpointWriteError) as failed:
        trainer.fit(train, valid)
    return trainer, str(failed.value)


def test_disk_full_at_a_save_keeps_the_previous_checkpoint(planted_data, tmp_path, monkeypatch):
    folder = tmp_path / "saved"
    _fail_save(monkeypatch, 3, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    trainer, message = _fit_until_a_save_fails(fault_settings(planted_data, folder))
    path = trainer.saved_model_file
    assert f"the checkpoint of epoch 2 could not be written to {path}" in message
    assert "the disk is full (No space left on device)" in message
    assert f"The previous checkpoint, {path} (epoch 1), is intact" in message
    assert f"--resume={path}" in message and "Nothing partial was left" in message
    assert read_checkpoint(path)["epoch"] == 1
    assert [p.name for p in checkpoints(folder)] == [os.path.basename(path)]
    assert leftovers(folder) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs: room for one checkpoint of GMF on 'planted' (139 KiB), not two (root)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)], capture_output=True
    )
    if os.geteuid() != 0 or mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_disk_that_fills_up_fails_at_the_second_save(planted_data, small_disk):
    """A real ENOSPC, which torch wraps in a RuntimeError."""
    trainer, message = _fit_until_a_save_fails(fault_settings(planted_data, small_disk))
    path = trainer.saved_model_file
    assert f"the checkpoint of epoch 1 could not be written to {path}" in message
    assert "the disk is full (No space left on device)" in message
    assert f"The previous checkpoint, {path} (epoch 0), is intact" in message
    assert read_checkpoint(path)["epoch"] == 0
    assert leftovers(small_disk) == [] and len(checkpoints(small_disk)) == 1


@pytest.mark.slow
def test_file_size_limit_fails_at_the_first_save_and_leaves_nothing(planted_data, tmp_path):
    """RLIMIT_FSIZE below one checkpoint: the write fails with EFBIG (SIGXFSZ ignored)."""
    folder = tmp_path / "saved"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    args = cli_args(fault_settings(planted_data, folder))
    failed = drive("none", args, tmp_path, preexec_fn=limit, restore_signals=False)
    assert failed.returncode == 2 and failed.stdout == "" and "Traceback" not in failed.stderr
    assert "the checkpoint of epoch 0 could not be written" in failed.stderr
    assert "the file size limit (ulimit -f) is reached" in failed.stderr
    assert "This run had saved no checkpoint before: start it again" in failed.stderr
    assert checkpoints(folder) == [] and leftovers(folder) == []


# --- numerical faults ------------------------------------------------------------------------


def _planted_loss(model, *, epoch: int, batch: int, value: float):
    """Make the loss of ``batch`` (1-based) of ``epoch`` equal ``value``."""
    loss, count = model.calculate_loss, [0]

    def faulty(interaction):
        count[0] += 1
        result = loss(interaction)
        if count[0] == epoch * BATCHES + batch:
            return result * 0 + value
        return result

    model.calculate_loss = faulty


@pytest.mark.parametrize("value, shown", [(float("nan"), "NaN"), (float("inf"), "+inf")])
def test_non_finite_loss_stops_before_its_update(value, shown, planted_data, tmp_path):
    settings = fault_settings(planted_data, tmp_path / "saved", epochs=3)
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    _planted_loss(model, epoch=1, batch=4, value=value)
    with pytest.raises(NumericalFault) as fault:
        trainer.fit(train, valid)
    message = str(fault.value)
    assert f"the training loss became {shown} at epoch 1, batch 4 of {BATCHES}" in message
    assert "Lower learning_rate (now 0.0003), e.g. --learning_rate=3e-05" in message
    path = trainer.saved_model_file
    assert f"The last checkpoint, {path} (epoch 0), is complete" in message
    assert read_checkpoint(path)["epoch"] == 0 and leftovers(tmp_path / "saved") == []
    assert trainer.adt_iteration == BATCHES + 4  # the batch counted, never applied


def test_learning_rate_that_overflows_stops_the_run_without_a_result(
    planted_data, tmp_path, capsys
):
    """lr 1e6: the second batch's loss is ~1e18, finite, long before anything is NaN."""
    folder = tmp_path / "saved"
    args = cli_args(fault_settings(planted_data, folder, learning_rate=1e6))
    code, out, err = _run_cli(args, capsys)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"at epoch 0, batch 2 of {BATCHES}, before that batch's update" in err
    assert "over 1000 times the first batch's 0.6931" in err
    assert "Lower learning_rate (now 1e+06), e.g. --learning_rate=0.001" in err
    assert "No result is reported" in err and "No checkpoint of this run was saved yet" in err
    assert checkpoints(folder) == [] and leftovers(folder) == []


def test_parameters_that_overflow_on_an_epoch_s_last_batch_stop_before_its_checkpoint(
    planted_data, tmp_path, monkeypatch
):
    settings = fault_settings(planted_data, tmp_path / "saved", epochs=3)
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    step, count = torch.optim.Adam.step, [0]

    def overflowing(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        count[0] += 1
        if count[0] == 2 * BATCHES:  # the last update of epoch 1
            with torch.no_grad():
                model.predict_layer.weight[0, 0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", overflowing)
    with pytest.raises(
        NumericalFault,
        match=r"after epoch 1 the model's parameters are no longer "
        r"finite \(predict_layer\.weight\): an optimizer step overflowed",
    ):
        trainer.fit(train, valid)
    assert read_checkpoint(trainer.saved_model_file)["epoch"] == 0


def test_non_finite_validation_score_stops_the_run(planted_data, tmp_path, monkeypatch):
    settings = fault_settings(planted_data, tmp_path / "saved", epochs=3)
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    valid_epoch, count = Trainer._valid_epoch, [0]

    def second_is_nan(self, *args, **kwargs):
        count[0] += 1
        score, result = valid_epoch(self, *args, **kwargs)
        return (float("nan"), result) if count[0] == 2 else (score, result)

    monkeypatch.setattr(Trainer, "_valid_epoch", second_is_nan)
    with pytest.raises(
        NumericalFault, match=r"validation score that selects the kept epoch is nan after epoch 1\."
    ):
        trainer.fit(train, valid)
    assert read_checkpoint(trainer.saved_model_file)["epoch"] == 0


def test_the_guard_leaves_a_seeded_run_unchanged(base_config):
    """The checks only read: a run with them is bitwise a run without them."""
    from recbole_adt.trainer import faults

    settings = {**base_config, "adt_loss": "TCE", "num_gradual": 10}
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    trainer.fit(train, valid, saved=False)
    guarded = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faults.FaultGuardMixin, "_check_nan", Trainer._check_nan)
        patch.setattr(faults, "non_finite_parameters", lambda model: [])
        _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
        trainer.fit(train, valid, saved=False)
    assert all(torch.equal(guarded[k], v) for k, v in model.state_dict().items())
