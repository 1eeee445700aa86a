"""Evaluation by user-ratio group (Table 5) and colliding inference through RecBole's evaluator;
a plain run evaluates the test split once."""

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_adt.evaluation import evaluate_groups, select_colliding
from recbole_adt.quick_start import run_recbole_adt, run_seeds
from recbole_adt.trainer import PhasedTrainer
from tests.pipeline import prepare

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def warm(base_config):
    return {**base_config, "phases": ["warmup:2", "adt:2"], "adt_loss": "TCE", "num_gradual": 20}


def test_a_plain_run_tests_once_without_extra_feedback(base_config, monkeypatch, tmp_path, caplog):
    evaluated = []
    evaluate = PhasedTrainer.evaluate

    def record(self, eval_data, *args, **kwargs):
        evaluated.append(eval_data)
        return evaluate(self, eval_data, *args, **kwargs)

    monkeypatch.setattr(PhasedTrainer, "evaluate", record)
    with caplog.at_level(logging.INFO):
        result = run_recbole_adt("GMF", config_dict={**base_config, "state": "INFO"})
    valid = evaluated[0]  # the first validation
    assert len([loader for loader in evaluated if loader is not valid]) == 1
    assert "test_groups" not in result and result["test_sparsity_groups"] == []
    assert result["diagnostics_dir"] is None
    text = caplog.text
    assert "test result" in text and "best valid" in text
    for line in ("Extra feedback", "ratio <", "sparsity group", "user sparsity"):
        assert line not in text
    assert not (tmp_path / "log_diagnostics").exists()


def test_a_group_holding_every_user_scores_as_overall(warm):
    result = run_recbole_adt("GMF", config_dict={**warm, "ratio_groups": [0.1, 1.01]})
    groups = result["test_groups"]
    assert groups["ratio < 1.01"] == groups["overall"] == result["test_result"]
    assert groups["ratio < 0.1"] != groups["overall"]


def test_colliding_with_lambda_one_is_the_plain_prediction(warm):
    settings = {**warm, "colliding_inference": True, "colliding_lambda": 1.0}
    result = run_recbole_adt("GMF", config_dict=settings)
    assert result["test_result"] == result["test_result_plain"]
    assert result["test_groups"] == result["test_groups_plain"]


def test_colliding_changes_only_the_sparse_groups(warm):
    settings = {
        **warm,
        "colliding_inference": True,
        "colliding_lambda": 0.0,
        "colliding_neighbours": 5,
        "colliding_ratio_threshold": 0.1,
        "ratio_groups": [0.1],
        "seed": 3,
    }
    result = run_recbole_adt("GMF", config_dict=settings)
    assert result["test_groups"]["ratio < 0.1"] != result["test_groups_plain"]["ratio < 0.1"]
    assert result["colliding"] == {"neighbours": 5, "lambda": 0.0}


def recorded_scores(trainer, eval_data, colliding=None) -> dict[int, torch.Tensor]:
    """User -> the score row RecBole's evaluator ranks (history masked with -inf)."""
    seen = {}
    evaluate_batch = trainer._full_sort_batch_eval

    def record(batched_data):
        interaction, scores, positive_u, positive_i = evaluate_batch(batched_data)
        for user, row in zip(interaction["user_id"].tolist(), scores):
            seen[user] = row.clone()
        return interaction, scores, positive_u, positive_i

    trainer._full_sort_batch_eval = record
    try:
        evaluate_groups(trainer, eval_data, {}, colliding=colliding, load_best_model=False)
    finally:
        del trainer._full_sort_batch_eval
    return seen


def hand_neighbours(reps, ratio, user: int, k: int, skip: bool) -> list[int]:
    """N_u by a loop: the k users other than u (with skip, only users with D*) by
    <e_u, e_j>, ties to the lower id."""
    candidates = [j for j in range(1, len(ratio)) if j != user and (ratio[j] > 0 or not skip)]
    return sorted(candidates, key=lambda j: (-float(reps[user] @ reps[j]), j))[:k]


@pytest.mark.parametrize("without_extra", ["skip", "mix"])
def test_colliding_scores_are_eq_8_by_hand(warm, without_extra):
    """Through RecBole's evaluator: users at or above the threshold, and with skip the users
    without D*, rank their plain scores bitwise; every sparse user ranks
    lambda * y_u + (1 - lambda) / k * sum of y_j over N_u."""
    k, lam, threshold = 3, 0.3, 0.1
    skip = without_extra == "skip"
    settings = {
        **warm,
        "extra_feedback_ratio": 0.1,  # about 2 of a user's ~24 clicks: some users have none
        "colliding_users_without_extra": without_extra,
        "colliding_inference": True,
        "colliding_neighbours": k,
        "colliding_lambda": lam,
        "colliding_ratio_threshold": threshold,
    }
    config, _, (train, valid, test), model, trainer = prepare("GMF", settings)
    trainer.fit(train, valid, saved=False, show_progress=False)
    extra = train._dataset.extra_feedback
    colliding, _ = select_colliding(config, trainer, extra, valid)
    plain = recorded_scores(trainer, test)
    mixed = recorded_scores(trainer, test, colliding)
    assert plain.keys() == mixed.keys()
    ratio, reps = extra.user_ratio, trainer.representations
    with torch.no_grad():
        n_users = len(ratio)
        ids = torch.arange(n_users)
        y = model.full_sort_predict(Interaction({"user_id": ids})).view(n_users, -1)
    counts = {"sparse": 0, "plain": 0, "no D*": 0}
    for user, row in mixed.items():
        counts["no D*"] += int(ratio[user] == 0)
        if (skip and ratio[user] == 0) or ratio[user] >= threshold:
            assert torch.equal(row, plain[user])
            counts["plain"] += int(ratio[user] > 0)
            continue
        counts["sparse"] += 1
        neighbours = hand_neighbours(reps, ratio, user, k, skip)
        expected = lam * y[user] + (1 - lam) * sum(y[j] for j in neighbours) / k
        shown = torch.isfinite(plain[user])  # the history is -inf in both
        assert torch.equal(torch.isfinite(row), shown)
        torch.testing.assert_close(row[shown], expected[shown], rtol=1e-5, atol=1e-6)
        assert not torch.equal(row, plain[user])
    assert min(counts.values()) > 0, counts


def test_each_ratio_group_mixes_the_users_below_its_own_threshold(warm):
    """Table 5: the "< 0.3" row mixes users in [0.2, 0.3) too, whatever
    colliding_ratio_threshold (which sets the overall result) is."""
    settings = {
        **warm,
        "colliding_inference": True,
        "colliding_lambda": 0.0,
        "colliding_neighbours": 5,
        "ratio_groups": [0.3],
    }
    at_02 = run_recbole_adt("GMF", config_dict={**settings, "colliding_ratio_threshold": 0.2})
    at_03 = run_recbole_adt("GMF", config_dict={**settings, "colliding_ratio_threshold": 0.3})
    # Users in [0.2, 0.3) change the overall result: the overall rows differ ...
    assert at_02["test_result"] != at_03["test_result"]
    assert at_02["test_result_plain"] == at_03["test_result_plain"]
    # ... but the "< 0.3" row mixes them in both runs.
    assert at_02["test_groups"]["ratio < 0.3"] == at_03["test_groups"]["ratio < 0.3"]
    assert at_02["test_groups"]["ratio < 0.3"] != at_02["test_groups_plain"]["ratio < 0.3"]


def test_colliding_grid_is_chosen_on_validation(warm):
    settings = {
        **warm,
        "colliding_inference": True,
        "colliding_lambda": [0.0, 1.0],
        "colliding_neighbours": [1, 3],
    }
    result = run_recbole_adt("GMF", config_dict=settings)
    tried = result["colliding_validation"]
    assert [(t["neighbours"], t["lambda"]) for t in tried] == [(1, 0), (1, 1), (3, 0), (3, 1)]
    best = max(tried, key=lambda t: t["ndcg@20"])  # max keeps the first of equal scores
    assert result["colliding"] == {"neighbours": best["neighbours"], "lambda": best["lambda"]}
    # lambda = 1 is the plain model, whatever |N_u|
    assert tried[1]["ndcg@20"] == tried[3]["ndcg@20"] == result["best_valid_score"]


def test_colliding_needs_a_warmup_phase(base_config):
    from recbole_adt.config import Config

    with pytest.raises(ValueError, match="add warmup to phases"):
        Config("GMF", config_dict={**base_config, "colliding_inference": True})


def test_phases_need_one_of_our_models(base_config):
    from recbole_adt.config import Config

    with pytest.raises(ValueError, match="BPR cannot"):
        Config("BPR", config_dict={**base_config, "phases": ["warmup", "adt"]})


@pytest.mark.parametrize(
    "setting, value",
    [
        ("colliding_lambda", 1.5),
        ("colliding_neighbours", 0),
        ("colliding_lambda", [0.5, -1]),
        ("colliding_ratio_threshold", 0),
        ("colliding_neighbours", []),
    ],
)
def test_bad_colliding_settings_raise_before_loading(setting, value, base_config):
    from recbole_adt.config import Config

    with pytest.raises(ValueError, match="colliding_"):
        Config("GMF", config_dict={**base_config, setting: value})


def test_seeds_summarize_each_group(base_config):
    settings = {**base_config, "adt_loss": "NR", "ratio_groups": [0.2, 0.3]}  # NR uses D*
    outcome = run_seeds([1, 2], "GMF", config_dict=settings)
    assert set(outcome["group_summary"]) == {"overall", "ratio < 0.2", "ratio < 0.3"}
    mean, std = outcome["group_summary"]["ratio < 0.3"]["ndcg@20"]
    values = [run["test_groups"]["ratio < 0.3"]["ndcg@20"] for run in outcome["runs"]]
    assert mean == pytest.approx(sum(values) / 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, model, expected",
    [
        ("warmup.yaml", "GMF", r"\[warmup\] epoch 0 training"),
        ("finetune.yaml", "NeuMF", r"\[finetune\] epoch 0 training"),
        ("colliding.yaml", "GMF", r"test result, colliding inference \(ratio < 0\.1\)"),
        ("nmtr.yaml", "NMTR", r"test result"),
        ("nr.yaml", "GMF", r"test result"),
    ],
)
def test_cli_runs_each_extra_feedback_config(config, model, expected, planted_data, tmp_path):
    command = [
        sys.executable,
        str(ROOT / "run_recbole_adt.py"),
        f"--model={model}",
        f"--config_files={ROOT / 'properties' / config}",
        "--dataset=planted",
        f"--data_path={planted_data}",
        "--epochs=1",
        "--show_progress=False",
        "--verbose",  # the per-epoch and group lines, on the console too
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert re.search(expected, output)
    assert re.search(r"test result.*'ndcg@20', 0\.\d+", output)
