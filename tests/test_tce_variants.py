"""T-CE options next to the paper's rule: epsilon_N in epochs, a drop count relative to the
batch's positives, the authors' released count and ramp; and T-CE without a host sync."""

import math

import numpy as np
import pytest
import torch

from recbole_adt.config import Config
from recbole_adt.denoisers.truncate import (
    BoundedCount,
    Truncate,
    batch_drop_count,
    drop_count,
    largest_loss_positives,
)
from recbole_adt.losses import bce, bpr, truncated_bce, truncated_bpr
from recbole_adt.schedule import DropSchedule, drop_rate_schedule
from recbole_adt.settings import parsed
from tests.pipeline import prepare

DROP = ("batch", "positives")
RULE = ("paper", "authors")

# --- counts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop_rate", "n", "paper", "authors"),
    [
        (0.1, 30, 3, 3),  # whole: both 3 (0.1 * 30 is 3.0000000000000004 in floats)
        (0.15, 30, 4, 5),  # 4.5: floor 4, the authors keep int(25.5) = 25 of 30
        (0.3, 90, 27, 27),  # whole; the authors' int((1 - 0.3) * 90) is 62, dropping 28
        (0.0, 30, 0, 0),
        (0.2 / 29999, 1024, 0, 1),  # the authors' second batch of the ramp
        (0.99, 7, 6, 7),
    ],
)
def test_hand_counts(drop_rate, n, paper, authors):
    assert drop_count(drop_rate, n) == drop_count(drop_rate, n, rule="paper") == paper
    assert drop_count(drop_rate, n, rule="authors") == authors
    sizes = torch.tensor([n, n])
    assert drop_count(drop_rate, sizes, rule="authors").tolist() == [authors, authors]
    assert drop_count(drop_rate, sizes).tolist() == [paper, paper]


def test_authors_count_is_their_kept_rows_without_float_error():
    """n - floor((1 - eps) n) = ceil(eps n) exactly; their literal int() differs at eps 0.3."""
    for k in range(1, 99):
        eps = k / 100
        for n in range(1, 301):
            exact = math.ceil(round(eps * n, 9))
            assert drop_count(eps, n, rule="authors") == exact
            assert drop_count(eps, n) == math.floor(round(eps * n, 9))
    assert 90 - int((1 - 0.3) * 90) == 28  # the released code's float error, not ours


def test_positives_relative_count_on_a_batch_with_known_positives():
    # 6 positives (losses 6, 5, 4, 3, 2, 1 at even places) and 14 negatives of loss 9
    loss = torch.full((20,), 9.0)
    loss[[0, 2, 4, 6, 8, 10]] = torch.tensor([1.0, 6.0, 2.0, 5.0, 3.0, 4.0])
    labels = torch.zeros(20)
    labels[[0, 2, 4, 6, 8, 10]] = 1.0
    # eps = 0.25: the batch base drops floor(5) = 5 of 20 rows, the positives base floor(1.5) = 1
    assert batch_drop_count(0.25, labels) == 5
    count = batch_drop_count(0.25, labels, base="positives")
    assert isinstance(count, BoundedCount) and count.count.item() == 1 and count.bound == 5
    assert largest_loss_positives(loss, labels, count).nonzero().flatten().tolist() == [2]
    assert largest_loss_positives(loss, labels, 5).nonzero().flatten().tolist() == [2, 4, 6, 8, 10]
    authors = batch_drop_count(0.25, labels, base="positives", rule="authors")
    assert authors.count.item() == 2  # ceil(1.5)
    assert largest_loss_positives(loss, labels, authors).nonzero().flatten().tolist() == [2, 6]
    # the pure loss: kept rows averaged
    logits = torch.randn(20, generator=torch.Generator().manual_seed(1))
    ce = bce(logits, labels, reduction="none")
    top = ce.masked_fill(labels < 0.5, -1).argmax()
    kept = torch.ones(20, dtype=torch.bool)
    kept[top] = False
    value = truncated_bce(logits, labels, drop_rate=0.25, drop_base="positives")
    assert value.item() == pytest.approx(ce[kept].mean().item())


def test_bounded_count_per_row_and_its_int():
    loss = torch.tensor([[5.0, 1.0, 3.0, 9.0], [2.0, 8.0, 4.0, 6.0]])
    labels = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]])
    count = BoundedCount(torch.tensor([2, 1]), bound=3)
    mask = largest_loss_positives(loss, labels, count)
    assert mask.tolist() == [[True, False, True, False], [False, False, False, True]]
    assert torch.equal(mask, largest_loss_positives(loss, labels, torch.tensor([2, 1])))
    assert int(count) == 2  # what a denoiser that needs a number (DCF) reads


@pytest.mark.parametrize("rows", [7, 64, 1000])
@pytest.mark.parametrize("drop_rate", [0.05, 0.2, 0.6, 0.95])
def test_every_count_form_drops_the_same_entries(rows, drop_rate):
    generator = torch.Generator().manual_seed(rows)
    loss = torch.rand(rows, generator=generator)
    labels = (torch.rand(rows, generator=generator) < 0.4).float()
    for base in ("batch", "positives"):
        for rule in ("paper", "authors"):
            count = batch_drop_count(drop_rate, labels, base=base, rule=rule)
            exact = int(count)
            expected = loss.masked_fill(labels < 0.5, -1).sort(descending=True).indices
            expected = set(expected[: min(exact, int(labels.sum()))].tolist())
            as_int = largest_loss_positives(loss, labels, exact)
            assert set(as_int.nonzero().flatten().tolist()) == expected
            assert torch.equal(as_int, largest_loss_positives(loss, labels, count))
            assert torch.equal(as_int, largest_loss_positives(loss, labels, torch.tensor(exact)))


def test_truncated_bpr_authors_count():
    pos = torch.tensor([3.0, 1.0, 0.5, 2.0, -1.0])
    neg = torch.zeros(5)
    loss = bpr(pos, neg, reduction="none")  # largest: -1.0, then 0.5
    # eps 0.3 of 5 triples: floor(1.5) = 1 (paper), 2 (authors)
    assert truncated_bpr(pos, neg, drop_rate=0.3).item() == pytest.approx(
        loss[[0, 1, 2, 3]].mean().item()
    )
    assert truncated_bpr(pos, neg, drop_rate=0.3, drop_count="authors").item() == pytest.approx(
        loss[[0, 1, 3]].mean().item()
    )


# --- no host sync ------------------------------------------------------------------------------


def test_truncation_never_reads_a_tensor_back(monkeypatch):
    """With an int or a BoundedCount, one topk sized on the host: no .item(), int(), bool()."""
    loss = torch.rand(64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1.0, 0.0] * 32)
    counts = [batch_drop_count(0.2, labels, base=b, rule=r) for b in DROP for r in RULE]

    def refuse(*args, **kwargs):
        raise AssertionError("host sync")

    for method in ("item", "tolist", "__int__", "__index__", "__bool__", "__float__"):
        monkeypatch.setattr(torch.Tensor, method, refuse)
    topk_calls = []
    original_topk = torch.Tensor.topk

    def counting_topk(self, *args, **kwargs):
        topk_calls.append(kwargs.get("sorted", True))
        return original_topk(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "topk", counting_topk)
    for count in [*counts, batch_drop_count(0.2, labels, base="positives", rule="authors")]:
        Truncate()(loss, loss, labels, num_drop=count)
    monkeypatch.undo()
    assert len(topk_calls) == 5  # one per call
    assert topk_calls[: len(RULE)] == [False] * len(RULE)  # an int count needs no sorted order


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_gradual", [2, 3, 7, 1000, 30000])
@pytest.mark.parametrize("drop_rate", [0.05, 0.1, 0.2, 0.3])
def test_authors_ramp_is_their_linspace(num_gradual, drop_rate):
    ramp = np.linspace(0, drop_rate, num_gradual)
    for t in [*range(min(num_gradual, 50)), *range(num_gradual - 50, num_gradual + 3)]:
        if t < 0:
            continue
        expected = ramp[t] if t < num_gradual else drop_rate
        got = drop_rate_schedule(t, drop_rate=drop_rate, num_gradual=num_gradual, rule="authors")
        assert got == expected, (t, got, expected)


def test_authors_ramp_by_hand():
    # linspace(0, 0.2, 5) = 0, 0.05, 0.1, 0.15, 0.2; the paper's: 0, 0.04, 0.08, 0.12, 0.16, 0.2
    authors = [
        drop_rate_schedule(t, drop_rate=0.2, num_gradual=5, rule="authors") for t in range(7)
    ]
    paper = [drop_rate_schedule(t, drop_rate=0.2, num_gradual=5) for t in range(7)]
    assert authors == pytest.approx([0, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert paper == pytest.approx([0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.2])
    assert drop_rate_schedule(0, drop_rate=0.2, num_gradual=1, rule="authors") == 0.0
    assert drop_rate_schedule(1, drop_rate=0.2, num_gradual=1, rule="authors") == 0.2


@pytest.mark.parametrize("rule", RULE)
@pytest.mark.parametrize(("epochs", "batches"), [(1, 1), (3, 157), (6, 13), (2.5, 10), (0.5, 8)])
def test_epochs_unit_is_iterations_times_batches(rule, epochs, batches):
    iterations = epochs * batches
    for t in range(int(iterations * 2) + 3):
        by_epochs = drop_rate_schedule(
            t,
            drop_rate=0.2,
            num_gradual=epochs,
            unit="epochs",
            batches_per_epoch=batches,
            rule=rule,
        )
        if float(iterations).is_integer():
            same = drop_rate_schedule(t, drop_rate=0.2, num_gradual=int(iterations), rule=rule)
            assert by_epochs == same
        # epochs trained, T / B, against epsilon_N epochs
        if rule == "paper":
            assert by_epochs == pytest.approx(min(0.2 * (t / batches) / epochs, 0.2))


def test_num_gradual_checks():
    assert DropSchedule(0.2, 2.5, "epochs", "paper").num_gradual == 2.5
    assert DropSchedule(0.2, 3.0, "epochs", "paper").num_gradual == 3
    for bad in (0, -1, float("inf"), True, "2"):
        with pytest.raises(ValueError, match="num_gradual must be a positive number of epochs"):
            DropSchedule(0.2, bad, "epochs", "paper")
    with pytest.raises(ValueError, match="num_gradual_unit: epochs"):
        DropSchedule(0.2, 2.5, "iterations", "paper")
    with pytest.raises(ValueError, match="batches per epoch"):
        drop_rate_schedule(3, drop_rate=0.2, num_gradual=2, unit="epochs")


def test_authors_drop_from_the_first_batches_of_the_ramp():
    """368 batches of 512 positives + 512 negatives (188,416 positives), eps 0.1 over 30k
    iterations: the paper's rule drops its first positive at batch 293, the authors' at batch 1."""

    def drops(rule):
        per_batch = []
        for t in range(368):
            eps = drop_rate_schedule(t, drop_rate=0.1, num_gradual=30000, rule=rule)
            per_batch.append(drop_count(eps, 1024, rule=rule))
        return per_batch

    paper, authors = drops("paper"), drops("authors")
    assert paper.index(1) == 293 and authors.index(1) == 1
    assert (sum(paper), sum(authors)) == (75, 442)


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"num_gradual_unit": "batches"}, "num_gradual_unit must be one of iterations, epochs"),
        ({"drop_base": "rows"}, "drop_base must be one of batch, positives"),
        ({"drop_count": "ceil"}, "drop_count must be one of paper, authors"),
        ({"num_gradual": 2.5}, "num_gradual_unit: epochs"),
        ({"num_gradual": -2, "num_gradual_unit": "epochs"}, "positive number of epochs"),
    ],
)
def test_bad_settings_fail_in_config(setting, message, base_config):
    with pytest.raises(ValueError, match=message):
        Config("GMF", config_dict={**base_config, "adt_loss": "TCE", **setting})


def test_defaults(base_config):
    package = {k: v for k, v in base_config.items() if k != "num_gradual_unit"}
    config = Config("GMF", config_dict=package)
    assert (config["num_gradual_unit"], config["drop_base"], config["drop_count"]) == (
        "epochs",
        "batch",
        "paper",
    )
    iterations = Config("GMF", config_dict={**package, "num_gradual_unit": "iterations"})
    assert parsed(iterations, DropSchedule).iterations() == 6  # accepted as 6 iterations


# --- models ------------------------------------------------------------------------------------


def _one_batch_stats(model, batch, drop_rate):
    model.drop_rate = drop_rate
    model.reset_denoising_stats()
    loss = model.calculate_loss(batch)
    return loss, model.denoising_summary()


@pytest.mark.parametrize(("base", "rule"), [(b, r) for b in DROP for r in RULE])
def test_gmf_batch_counts(base, rule, base_config):
    settings = {**base_config, "adt_loss": "TCE", "drop_base": base, "drop_count": rule}
    _, _, (train, _, _), model, _ = prepare("GMF", settings)
    batch = next(iter(train))
    positives = int((batch["label"] > 0.5).sum())
    n = positives if base == "positives" else len(batch)
    _, stats = _one_batch_stats(model, batch, 0.15)
    assert stats["positives"] == positives
    assert stats["dropped"] == drop_count(0.15, n, rule=rule)


@pytest.mark.parametrize("base", DROP)
def test_cdae_counts_each_rows_positives_under_either_base(base, base_config):
    settings = {**base_config, "adt_loss": "TCE", "drop_base": base, "drop_count": "authors"}
    _, _, _, model, _ = prepare("CDAE", settings)
    from recbole.data.interaction import Interaction

    users = torch.arange(1, 9)
    _, stats = _one_batch_stats(model, Interaction({"user_id": users}), 0.25)
    positives = (model.get_rating_matrix(users) > 0).sum(-1)
    assert stats["dropped"] == sum(math.ceil(0.25 * p) for p in positives.tolist())


def test_default_keys_give_bitwise_the_same_run(base_config):
    """A seeded 1-epoch GMF T-CE run with the defaults equals one with them spelled out."""

    package = {k: v for k, v in base_config.items() if k != "num_gradual_unit"}

    def run(**settings):
        config = {**package, "adt_loss": "TCE", "num_gradual": 0.5, "epochs": 1, **settings}
        _, _, (train, valid, _), model, trainer = prepare("GMF", config)
        trainer.fit(train, valid, saved=False)
        return model.state_dict(), model.denoising_summary()

    state, stats = run()
    explicit, explicit_stats = run(num_gradual_unit="epochs", drop_base="batch", drop_count="paper")
    assert all(torch.equal(state[k], explicit[k]) for k in state)
    assert stats == explicit_stats and stats["dropped"] > 0
    other, _ = run(drop_count="authors")
    assert not all(torch.equal(state[k], other[k]) for k in state)


class RateRecorder:
    """Records the drop rate the trainer sets for each batch."""

    def __init__(self, model):
        self.rates = []
        original = model.calculate_loss

        def record(interaction):
            self.rates.append(model.drop_rate)
            return original(interaction)

        model.calculate_loss = record


@pytest.mark.slow
def test_epochs_unit_reads_the_adt_phase_and_survives_resume(base_config):
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "num_gradual_unit": "epochs",
        "num_gradual": 2.5,
        "phases": ["warmup:1", "adt:2"],
        "eval_step": 0,  # a checkpoint every epoch
        "stopping_step": 100,
    }
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    recorder = RateRecorder(model)
    trainer.fit(train, valid)
    batches = len(train)  # the ADT loader's, not the smaller D* loader's
    assert trainer.adt_batches_per_epoch == batches
    adt_rates = recorder.rates[-2 * batches :]
    assert set(recorder.rates[: -2 * batches]) == {0.0}  # warm-up: no dropping
    assert adt_rates == [min(0.2 * t / (2.5 * batches), 0.2) for t in range(2 * batches)]

    # resume the ADT phase from its last checkpoint and train one more epoch
    longer = {**settings, "phases": ["warmup:1", "adt:3"]}
    _, _, (train, valid, _), model, resumed = prepare("GMF", longer)
    resumed.resume_checkpoint(trainer.saved_model_file)
    recorder = RateRecorder(model)
    resumed.fit(train, valid)
    assert recorder.rates == [
        min(0.2 * t / (2.5 * batches), 0.2) for t in range(2 * batches, 3 * batches)
    ]
    assert resumed.adt_iteration == 3 * batches


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"drop_base": "positives"},
        {"drop_count": "authors"},
        {"num_gradual_unit": "epochs", "num_gradual": 2},
        {
            "drop_base": "positives",
            "drop_count": "authors",
            "num_gradual_unit": "epochs",
            "num_gradual": 2,
        },
    ],
    ids=["paper", "positives", "authors", "epochs", "all-three"],
)
def test_planted_run_of_each_variant(variant, base_config):
    settings = {
        **base_config,
        "adt_loss": "TCE",
        "drop_rate": 0.2,
        "num_gradual": 10,
        "learning_rate": 0.01,
        "epochs": 6,
        **variant,
    }
    _, _, (train, valid, _), model, trainer = prepare("GMF", settings)
    trainer.fit(train, valid, saved=False)
    stats = model.denoising_summary()  # the last epoch, at eps_max
    base_rate = stats["false_positives"] / stats["positives"]
    precision = stats["dropped_false_positives"] / stats["dropped"]
    assert precision > 2 * base_rate, (precision, base_rate)
    share = stats["dropped"] / stats["positives"]
    # eps_max of the rows drops about 2 eps_max of the positives (one negative each)
    expected = 0.2 if variant.get("drop_base") == "positives" else 0.4
    assert expected - 0.02 <= share <= expected + 0.02, share
