"""Training phases: order and lengths, fresh optimizer and early stopping, the ADT-only schedule
counter, negatives of the D* phases, checkpoints per phase, resume in the right phase, E*."""

import glob
import math

import numpy as np
import pytest
import torch

from recbole_adt.config import Config
from recbole_adt.phases import Phase, PhaseSettings, parse_phases
from recbole_adt.quick_start import run_recbole_adt
from recbole_adt.trainer import PhasedTrainer
from tests.pipeline import prepare


@pytest.fixture
def phased(base_config):
    return {
        **base_config,
        "adt_loss": "TCE",
        "num_gradual": 30,
        "phases": ["warmup:2", "adt:3", "finetune:2"],
        "stopping_step": 100,  # no early stop: each phase runs its full length
    }


class Recorder:
    """Wraps a trainer's _train_epoch to record the state each epoch starts from."""

    def __init__(self, trainer):
        self.epochs = []
        original = trainer._train_epoch

        def record(train_data, epoch_idx, loss_func=None, show_progress=False):
            self.epochs.append(
                {
                    "phase": trainer.phase.name,
                    "epoch": epoch_idx,
                    "optimizer": trainer.optimizer,
                    "optimizer_state": len(trainer.optimizer.state),
                    "best": trainer.best_valid_score,
                    "cur_step": trainer.cur_step,
                    "T": trainer.adt_iteration,
                    "loss": trainer.model.adt_loss,
                    "batches": len(train_data),
                }
            )
            return original(train_data, epoch_idx, loss_func, show_progress)

        trainer._train_epoch = record


@pytest.mark.parametrize(
    "value, expected",
    [
        (["adt"], (Phase("adt", 9),)),
        (
            ["warmup:20", "adt", "finetune:5"],
            (Phase("warmup", 20), Phase("adt", 9), Phase("finetune", 5)),
        ),
        ("[warmup:2,adt]", (Phase("warmup", 2), Phase("adt", 9))),
        ("finetune adt", (Phase("finetune", 9), Phase("adt", 9))),
        (["Warm-up", "ADT"], (Phase("warmup", 9), Phase("adt", 9))),
    ],
)
def test_parse_phases(value, expected):
    assert parse_phases(value, 9) == expected


def test_phase_settings():
    settings = PhaseSettings.from_config(
        {"phases": ["warmup:20", "adt", "finetune:5"], "epochs": 9}
    )
    assert settings.names == ("warmup", "adt", "finetune")
    assert settings.adt == Phase("adt", 9) and settings.on_extra_feedback
    assert not PhaseSettings.from_config({"phases": ["adt"], "epochs": 9}).on_extra_feedback
    with pytest.raises(ValueError, match="Unknown phase 'pretrain': phases must be a non-empty"):
        PhaseSettings.from_config({"phases": ["pretrain", "adt"], "epochs": 9})


@pytest.mark.parametrize(
    "value",
    [
        [],
        ["pretrain", "adt"],
        ["warmup:0", "adt"],
        ["adt:x"],
        ["adt:-1"],
        ["warmup"],
        ["adt", "adt"],
        3,
        ["adt:2.5"],
    ],
)
def test_bad_phases_raise_listing_valid_ones(value, base_config):
    with pytest.raises(ValueError, match="warmup, adt, finetune"):
        Config("GMF", config_dict={**base_config, "phases": value})


def test_phase_order_lengths_and_fresh_state(phased):
    _, _, (train, valid, _), model, trainer = prepare("GMF", phased)
    assert isinstance(trainer, PhasedTrainer)
    recorder = Recorder(trainer)
    trainer.fit(train, valid, saved=False)
    phases = [epoch["phase"] for epoch in recorder.epochs]
    assert phases == ["warmup"] * 2 + ["adt"] * 3 + ["finetune"] * 2
    firsts = [e for e in recorder.epochs if e["epoch"] == 0]
    assert len(firsts) == 3
    for first in firsts:  # a new RecBole fit each time: no optimizer state, no best score
        assert first["optimizer_state"] == 0 and first["cur_step"] == 0
        assert first["best"] == -np.inf
    assert len({id(first["optimizer"]) for first in firsts}) == 3
    # D* phases train with CE on D* (fewer batches), ADT with T-CE on everything
    losses = {e["phase"]: (e["loss"], e["batches"]) for e in recorder.epochs}
    assert losses["warmup"][0] == losses["finetune"][0] == "CE" and losses["adt"][0] == "TCE"
    assert losses["warmup"][1] < losses["adt"][1]
    assert model.adt_loss == "TCE"


def test_schedule_counts_only_adt_iterations(phased):
    _, _, (train, valid, _), _, trainer = prepare("GMF", phased)
    recorder = Recorder(trainer)
    trainer.fit(train, valid, saved=False)
    assert trainer.adt_iteration == 3 * len(train)
    adt_start = next(e for e in recorder.epochs if e["phase"] == "adt")
    assert adt_start["T"] == 0  # warm-up advanced nothing
    finetune_start = next(e for e in recorder.epochs if e["phase"] == "finetune")
    assert finetune_start["T"] == 3 * len(train)


def test_single_adt_phase_is_the_plain_trainer(base_config):
    """phases: [adt] (the default) trains exactly as before phases existed."""
    from recbole_adt.trainer import ADTTrainer

    settings = {**base_config, "adt_loss": "TCE", "num_gradual": 30}
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    trainer.fit(train, valid, saved=False)
    _, _, (train2, valid2, _), model2, _ = prepare("GMF", settings)
    plain = ADTTrainer(Config("GMF", config_dict=settings), model2)
    plain.fit(train2, valid2, saved=False)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))


def test_extra_feedback_negatives_avoid_every_implicit_item(phased):
    _, _, (train, valid, _), _, trainer = prepare("GMF", phased)
    dataset = train._dataset
    implicit = set(
        zip(dataset.inter_feat["user_id"].tolist(), dataset.inter_feat["item_id"].tolist())
    )
    loader = trainer._phase_loaders(train)["warmup"]
    extra = dataset.extra_feedback
    seen_negatives = 0
    for batch in loader:
        users, items, labels = batch["user_id"], batch["item_id"], batch["label"]
        positive = labels > 0.5
        assert extra.contains(users[positive], items[positive]).all()
        for u, i in zip(users[~positive].tolist(), items[~positive].tolist()):
            assert (u, i) not in implicit
            seen_negatives += 1
    assert seen_negatives == len(extra)


def test_each_phase_has_its_own_checkpoint_and_next_starts_from_it(phased, tmp_path):
    settings = {**phased, "phases": ["warmup:2", "adt:2"], "colliding_inference": False}
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    trainer.fit(train, valid)
    files = sorted(glob.glob(str(tmp_path / "saved" / "*.pth")))
    assert [f.rsplit("-", 1)[1] for f in files] == ["adt.pth", "warmup.pth"]
    assert trainer.saved_model_file.endswith("-adt.pth")
    warmup = torch.load(files[1], weights_only=True)
    assert warmup["phase_index"] == 0


def test_e_star_is_the_selected_warmup_model(phased):
    settings = {**phased, "phases": ["warmup:3", "adt:1"], "colliding_inference": True}
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    trainer.fit(train, valid)
    warmup_file = trainer.saved_model_file.replace("-adt.pth", "-warmup.pth")
    selected = torch.load(warmup_file, weights_only=True)["state_dict"]["user_embedding.weight"]
    assert torch.equal(trainer.representations, selected)
    assert not torch.equal(model.user_embedding.weight, selected)  # ADT moved on
    saved = torch.load(trainer.saved_model_file, weights_only=True)
    assert torch.equal(saved["representations"], selected)


def test_resume_reads_e_star_of_old_checkpoints(phased, tmp_path):
    """Checkpoints written before E* was a declared field kept it under another name."""
    settings = {**phased, "phases": ["warmup:1", "adt:2"], "colliding_inference": True}
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    trainer.fit(train, valid)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    checkpoint["representations_after_warmup"] = checkpoint.pop("representations")
    old = str(tmp_path / "old.pth")
    torch.save(checkpoint, old)
    _, _, _, _, resumed = prepare("GMF", settings)
    resumed.resume_checkpoint(old)
    assert torch.equal(resumed.representations, trainer.representations)


def test_resume_continues_in_the_interrupted_phase(phased):
    settings = {**phased, "phases": ["warmup:2", "adt:2"], "eval_step": 0}
    _, _, (train, valid, _), _, trainer = prepare("GMF", settings)
    trainer.fit(train, valid)  # eval_step 0: a checkpoint every epoch
    interrupted = trainer.saved_model_file  # the adt phase's, after its epoch 1
    before = open(interrupted, "rb").read()

    longer = {**settings, "phases": ["warmup:2", "adt:4"]}
    _, _, (train, valid, _), _, resumed = prepare("GMF", longer)
    resumed.resume_checkpoint(interrupted)
    assert resumed.phase.name == "adt" and resumed.start_epoch == 2
    assert resumed.adt_iteration == 2 * len(train)
    recorder = Recorder(resumed)
    resumed.fit(train, valid)
    assert [(e["phase"], e["epoch"]) for e in recorder.epochs] == [("adt", 2), ("adt", 3)]
    assert resumed.adt_iteration == 4 * len(train)
    assert resumed.saved_model_file != interrupted
    assert open(interrupted, "rb").read() == before  # the resumed checkpoint is left alone


@pytest.mark.parametrize("model_name", ["GMF", "NeuMF", "CDAE"])
def test_every_model_runs_all_phases(model_name, phased):
    settings = {**phased, "phases": ["warmup:1", "adt:1", "finetune:1"], "adt_loss": "RCE"}
    result = run_recbole_adt(model_name, config_dict=settings)
    assert all(0 <= v <= 1 and math.isfinite(v) for v in result["test_result"].values())
    assert result["model_file"].endswith("-finetune.pth")


@torch.no_grad()
def test_cdae_extra_feedback_loss_skips_implicit_non_extra_items(phased):
    _, _, (train, _, _), model, _ = prepare("CDAE", {**phased, "phases": ["warmup:1", "adt"]})
    model.set_training_phase("warmup")
    model.eval()  # no input dropout, so the loss is deterministic
    users = torch.arange(1, model.n_users)
    users = users[model.has_extra[users]]
    extra = model._dense_rows(users, *model.extra_history)
    implicit = model.get_rating_matrix(users)
    logits = model.forward(extra, users)
    keep = (extra > 0) | (implicit == 0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[keep], extra[keep], reduction="sum"
    )
    assert model._extra_feedback_loss(users) == pytest.approx(
        float(expected + model._regularization()), rel=1e-5
    )
    assert ((implicit > 0) & (extra == 0)).any()  # there were entries to skip
    assert model.user_representations().shape == (model.n_users, model.embedding_size)


def test_extra_feedback_phases_need_extra_feedback(phased):
    settings = {
        **phased,
        "fp_field": None,
        "clean_test": False,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    }
    with pytest.raises(
        ValueError, match="the warmup phase and the finetune phase need extra feedback D\\*"
    ):
        prepare("GMF", settings)
