"""The experiments command: compare, grid search, results files, tables and plots."""

import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import pytest

from recbole_adt.experiments import compare, grid_search, plots, results, runner
from recbole_adt.experiments.choices import loss_names, seed_list
from recbole_adt.experiments.cli import main
from recbole_adt.experiments.grid import default_grid, parse_grid, read_tuned
from recbole_adt.experiments.runner import make_spec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ROOT = Path(__file__).resolve().parents[1]


def common_settings(base_config) -> dict:
    """The planted settings, less those an experiment sets for each run itself."""
    reserved = ("dataset", "seed", "checkpoint_dir")
    return {key: value for key, value in base_config.items() if key not in reserved}


def fake_result(valid: float, test: float, metric: str = "ndcg@20") -> dict:
    """What run_recbole_adt returns, with hand-made numbers."""
    return {
        "best_valid_score": valid,
        "valid_score_bigger": True,
        "best_valid_result": {metric: valid},
        "test_result": {metric: test},
        "model_file": None,
        "checkpoint_rule": "valid_metric",
        "best_epoch": 3,
    }


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, f"{path}: {len(data)} bytes"


# Hand-made test NDCG@20 per (loss, seed): CE 0.30, 0.32 and T-CE 0.33, 0.36.
TEST_VALUES = {("CE", 1): 0.30, ("CE", 2): 0.32, ("TCE", 1): 0.33, ("TCE", 2): 0.36}


def scripted(calls, fail=()):
    def run(model, dataset, config_file_list, config_dict):
        key = (config_dict["adt_loss"], config_dict["seed"])
        calls.append(key)
        if key in fail:
            raise RuntimeError("boom\nin the middle of an epoch")
        return fake_result(valid=TEST_VALUES[key] - 0.1, test=TEST_VALUES[key])

    return run


@pytest.mark.slow
def test_compare_end_to_end(base_config, tmp_path, monkeypatch):
    """GMF under CE and T-CE plus RecBole's BPR, 2 seeds: CSV, table, figures; then a rerun."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where run checkpoints go
    settings = {**common_settings(base_config), "num_gradual": 20}
    lines, out = [], tmp_path / "out"
    outcome = compare(
        out,
        models="GMF",
        losses="ce,tce",
        baselines="BPR",
        seeds=2,
        dataset="planted",
        settings=settings,
        echo=lines.append,
    )
    assert outcome["failed"] == 0
    rows = read_csv(out / "results.csv")
    assert [(r["model"], r["loss"], r["seed"]) for r in rows] == [
        ("GMF", "ce", "1"),
        ("GMF", "ce", "2"),
        ("GMF", "tce", "1"),
        ("GMF", "tce", "2"),
        ("BPR", "own", "1"),
        ("BPR", "own", "2"),
    ]
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert 0 < float(row["test:ndcg@20"]) <= 1 and 0 < float(row["valid:ndcg@20"]) <= 1
        assert row["best_epoch"] != "" and row["selection_metric"] == "ndcg@20"
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == 6 and all("ETA" in line for line in progress)
    assert not list(scratch.glob("recbole-adt-*"))  # temporary checkpoint folders removed
    assert not any((out / "runs").glob("*/checkpoints"))

    # The seed sets the split: each seed's runs are tested on the same users and interactions.
    for seed in (1, 2):
        groups = [
            [(g["users"], g["interactions"]) for g in read_csv(path)]
            for path in sorted((out / "runs").glob(f"*_seed-{seed}/sparsity_groups.csv"))
        ]
        assert len(groups) == 3 and groups[0] == groups[1] == groups[2]

    table = (out / "results.md").read_text()
    assert "| GMF | CE | 2 |" in table and "| BPR | (own loss) | 2 |" in table
    assert "| GMF | T-CE | 2 |" in table and "%" in table.split("| GMF | T-CE | 2 |")[1]
    assert "scipy.stats.ttest_rel" in table and "6 of 6 runs finished" in table
    for name in ("compare.png", "loss_curves_GMF.png", "drop_GMF.png", "sparsity_GMF.png"):
        assert_png(out / name)
        assert f"]({name})" in table
    assert_png(out / "runs" / "GMF_tce_seed-1" / "drop.png")
    assert_png(out / "runs" / "GMF_ce_seed-2" / "loss_curves.png")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(runner, "run_recbole_adt", must_not_run)
    lines.clear()
    again = compare(
        out,
        models="GMF",
        losses="ce,tce",
        baselines="BPR",
        seeds=2,
        dataset="planted",
        settings=settings,
        echo=lines.append,
    )
    assert again["failed"] == 0
    assert any("6 of 6 runs already finished" in line for line in lines)
    assert read_csv(out / "results.csv") == rows


def test_failed_run_is_recorded_and_retried(base_config, tmp_path, monkeypatch):
    calls, lines, out = [], [], tmp_path / "out"
    monkeypatch.setattr(runner, "run_recbole_adt", scripted(calls, fail={("TCE", 2)}))
    arguments = dict(
        models="gmf",
        losses="CE,T-CE",
        seeds=2,
        dataset="planted",
        settings=common_settings(base_config),
        plots_wanted=False,
    )
    outcome = compare(out, echo=lines.append, **arguments)
    assert outcome["failed"] == 1 and len(calls) == 4  # the others went on
    rows = {row["run_id"]: row for row in read_csv(out / "results.csv")}
    failed = rows["GMF_tce_seed-2"]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: boom in the middle of an epoch"
    assert "Traceback" in (out / "runs" / "GMF_tce_seed-2" / "error.txt").read_text()
    assert sum(row["status"] == "ok" for row in rows.values()) == 3
    assert any("FAILED" in line and "boom" in line for line in lines)
    table = (out / "results.md").read_text()
    assert "3 of 4 runs finished" in table and "`GMF_tce_seed-2`: RuntimeError: boom" in table
    assert "| GMF | T-CE | 1 |" in table and "p = n/a" in table  # one pair: no test

    calls.clear()
    monkeypatch.setattr(runner, "run_recbole_adt", scripted(calls))
    outcome = compare(out, echo=lines.append, **arguments)
    assert calls == [("TCE", 2)]  # only the failed run ran again
    assert outcome["failed"] == 0
    table = (out / "results.md").read_text()
    # CE 0.30, 0.32: 0.3100 ± 0.0141; T-CE 0.33, 0.36: 0.3450 ± 0.0212;
    # RI = (0.345 - 0.31) / 0.31 = +11.29%. Paired: d = (0.03, 0.04), t = 0.035 / (0.00707 /
    # sqrt 2) = 7 with 1 degree of freedom: p = 1 - 2 atan(7) / pi = 0.090.
    assert "| GMF | CE | 2 | 0.3100 ± 0.0141 |" in table
    assert "| GMF | T-CE | 2 | **0.3450 ± 0.0212** | +11.29% |" in table
    assert "| GMF | T-CE | 2 | +11.29% (p = 0.090) |" in table
    assert f"{1 - 2 * math.atan(7) / math.pi:.3f}" == "0.090"


def test_changed_settings_rerun_finished_runs(base_config, tmp_path, monkeypatch):
    calls, out = [], tmp_path / "out"
    monkeypatch.setattr(runner, "run_recbole_adt", scripted(calls))
    settings = common_settings(base_config)
    arguments = dict(models="GMF", losses="ce", seeds=1, dataset="planted", plots_wanted=False)
    compare(out, settings=settings, echo=lambda line: None, **arguments)
    compare(out, settings=settings, echo=lambda line: None, **arguments)
    assert len(calls) == 1
    compare(out, settings={**settings, "epochs": 3}, echo=lambda line: None, **arguments)
    assert len(calls) == 2  # another epochs: the result no longer holds
    assert len(read_csv(out / "results.csv")) == 1


def test_grid_picks_best_validation_setting(base_config, tmp_path, monkeypatch):
    """Validation picks (0.1, 5000); the test column would have picked (0.2, 1000)."""
    valid = {
        (0.05, 1000): 0.20,
        (0.05, 5000): 0.21,
        (0.1, 1000): 0.22,
        (0.1, 5000): 0.25,
        (0.2, 1000): 0.19,
        (0.2, 5000): 0.24,
    }
    calls = []

    def run(model, dataset, config_file_list, config_dict):
        point = (config_dict["drop_rate"], config_dict["num_gradual"])
        calls.append((*point, config_dict["seed"]))
        test = 0.40 if point == (0.2, 1000) else 0.30
        return fake_result(valid=valid[point] + 0.001 * config_dict["seed"], test=test)

    monkeypatch.setattr(runner, "run_recbole_adt", run)
    out, lines = tmp_path / "grid", []
    outcome = grid_search(
        out,
        models="GMF",
        losses="tce",
        grid=["drop_rate=0.05,0.1,0.2", "num_gradual=1000,5000"],
        seeds=1,
        final_seeds="1,2",
        dataset="planted",
        settings=common_settings(base_config),
        echo=lines.append,
    )
    assert len(calls) == 7  # 6 settings x seed 1, then the choice on seed 2 (seed 1 reused)
    assert calls[-1] == (0.1, 5000, 2)
    choice = outcome["choices"]["GMF/tce"]
    # the choice records the unit its num_gradual counted (the experiment's: iterations)
    chosen = {"drop_rate": 0.1, "num_gradual": 5000, "num_gradual_unit": "iterations"}
    assert choice["settings"] == chosen
    assert choice["valid"] == pytest.approx(0.251)
    assert choice["final_seeds"] == [1, 2]
    assert json.loads((out / "grid_choice.json").read_text())["GMF/tce"] == choice
    text = (out / "grid.md").read_text()
    assert "**drop_rate=0.1, num_gradual=5000**" in text
    assert "Chosen setting over seeds 1, 2" in text
    assert_png(out / "grid_GMF_tce.png")
    assert any(f"chosen for GMF/tce: {chosen}" in x for x in lines)

    # compare --tuned: the choice is the T-CE runs' setting; CE has none.
    assert read_tuned(out) == {("GMF", "tce"): chosen}
    seen = []

    def record(model, dataset, config_file_list, config_dict):
        seen.append((config_dict["adt_loss"], config_dict.get("drop_rate")))
        return fake_result(0.2, 0.3)

    monkeypatch.setattr(runner, "run_recbole_adt", record)
    compare(
        tmp_path / "tuned",
        models="GMF",
        losses="ce,tce",
        seeds=1,
        dataset="planted",
        settings=common_settings(base_config),
        tuned=out,
        plots_wanted=False,
        echo=lines.append,
    )
    assert seen == [("CE", None), ("TCE", 0.1)]


def test_default_grids_are_the_papers():
    assert default_grid("tce") == {
        "drop_rate": [0.05, 0.1, 0.2],
        "num_gradual": [1000, 5000, 10000, 20000, 30000],
        "num_gradual_unit": ["iterations"],
    }
    assert default_grid("rce") == {"beta": [0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0]}
    with pytest.raises(ValueError, match="no grid in the paper"):
        default_grid("ce")
    with pytest.raises(ValueError, match="no grid in the paper"):
        default_grid("ce", "GMF")


def test_nmtrs_loss_weights_are_its_default_grid_alone_or_times_the_losss():
    weights = [[0.5, 0.5], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1], [0.95, 0.05]]
    assert default_grid("ce", "NMTR") == {"nmtr_loss_weights": weights}
    assert all(math.isclose(sum(pair), 1.0) for pair in weights)  # the paper's constraint
    assert default_grid("rce", "NMTR") == {"nmtr_loss_weights": weights, **default_grid("rce")}
    assert default_grid("rce", "GMF") == default_grid("rce")


def test_tuned_num_gradual_needs_its_unit(tmp_path):
    # the README's tuned choices count num_gradual in iterations, explicitly
    tuned = read_tuned(ROOT / "docs" / "results" / "ml-100k")
    assert tuned[("GMF", "tce")] == {
        "drop_rate": 0.05,
        "num_gradual": 1000,
        "num_gradual_unit": "iterations",
    }
    assert tuned[("GMF", "rce")] == {"beta": 0.15}
    # a choice written before the unit was recorded is refused, not read as epochs
    legacy = {"GMF/tce": {"settings": {"drop_rate": 0.1, "num_gradual": 1000}}}
    (tmp_path / "grid_choice.json").write_text(json.dumps(legacy))
    with pytest.raises(ValueError, match="choice for GMF/tce sets num_gradual 1000 but not num_gr"):
        read_tuned(tmp_path)


def test_parse_grid_and_names():
    grid = parse_grid(["drop_rate=0.05,0.1", "--topk=[10,20],[50]"])
    assert grid == {"drop_rate": [0.05, 0.1], "topk": [[10, 20], [50]]}
    for bad in (["drop_rate"], ["drop_rate="], ["beta=1", "beta=2"]):
        with pytest.raises(ValueError, match="--grid"):
            parse_grid(bad)
    with pytest.raises(ValueError, match="--seeds"):
        parse_grid(["seed=1,2"])
    assert seed_list("3") == [1, 2, 3] and seed_list("7,") == [7] and seed_list([4, 2]) == [4, 2]
    with pytest.raises(ValueError, match="gives seed 4 more than once"):
        seed_list([4, 4, 2])  # a repeat would report a spread of 0
    with pytest.raises(ValueError, match="--seeds"):
        seed_list("two")
    assert loss_names(["CE", "t-ce", "Rce"]) == ["ce", "tce", "rce"]
    with pytest.raises(ValueError, match="unknown loss 'xce'"):
        loss_names(["xce"])


def test_run_ids_are_folder_names_and_distinct():
    plain = make_spec("GMF", "tce", 1, {"drop_rate": 0.1, "num_gradual": 1000})
    assert plain.run_id == "GMF_tce_drop_rate-0.1_num_gradual-1000_seed-1"
    odd = [make_spec("GMF", "ce", 1, {"data_path": p}) for p in ("a/b", "a b", "a:b")]
    ids = [spec.run_id for spec in odd]
    assert len(set(ids)) == 3 and all("/" not in i and " " not in i for i in ids)
    with pytest.raises(ValueError, match="--losses"):
        make_spec("GMF", "ce", 1, {"adt_loss": "TCE"})


def test_results_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    row = {"run_id": "a", "fingerprint": "f", "status": "ok", "test:ndcg@20": "0.5"}
    results.write_rows(path, [row])
    before = path.read_text()

    def interrupted(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", interrupted)
    with pytest.raises(OSError):
        results.write_rows(path, [row, {**row, "run_id": "b"}])
    assert path.read_text() == before  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left


def test_without_matplotlib_csvs_are_written_and_the_hint_printed(
    base_config, tmp_path, monkeypatch
):
    monkeypatch.setattr(runner, "run_recbole_adt", scripted([]))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    assert not plots.available()
    lines, out = [], tmp_path / "out"
    compare(
        out,
        models="GMF",
        losses="ce,tce",
        seeds=2,
        dataset="planted",
        settings=common_settings(base_config),
        echo=lines.append,
    )
    assert (out / "results.csv").exists() and (out / "results.md").exists()
    assert not list(out.rglob("*.png"))
    assert any('pip install -e ".[plots]"' in line for line in lines)


def test_plots_from_diagnostics_csvs(tmp_path):
    """The figures drawn from CSVs shaped like the trainer's diagnostics."""
    training = tmp_path / "run" / "training.csv"
    training.parent.mkdir()
    header = (
        "phase,epoch,iteration,drop_rate,positives,false_positives,loss_tp_mean,loss_fp_mean,"
        "dropped,dropped_fp,drop_precision,drop_recall,random_precision,random_recall,"
        "weight_tp_mean,weight_fp_mean,valid_score"
    )
    epochs = [
        f"adt,{e},{10 * e},0.1,100,20,{0.7 - 0.1 * e},{0.7 + 0.05 * e},10,{3 + e},"
        f"{0.3 + 0.05 * e},{0.15 + 0.02 * e},0.2,0.1,{0.6 + 0.05 * e},{0.5 - 0.05 * e},0.2"
        for e in range(4)
    ]
    training.write_text("\n".join([header, *epochs]) + "\n")
    drawn = plots.run_plots(training.parent, "T-CE")
    assert [p.name for p in drawn] == ["loss_curves.png", "drop.png"]
    for png in drawn:
        assert_png(png)

    sparsity = []
    for seed in (1, 2):
        path = tmp_path / f"sparsity_{seed}.csv"
        path.write_text(
            "group,users,interactions,min_interactions,max_interactions,recall@20,ndcg@20\n"
            + "".join(f"{g},{50 - 10 * g},400,{g},{g + 3},0.{g}{seed},0.1{g}\n" for g in range(4))
        )
        sparsity.append(path)
    png = plots.plot_sparsity_groups(
        {"CE": sparsity, "T-CE": sparsity[:1]}, tmp_path / "s.png", metric="NDCG@20"
    )
    assert_png(png)
    points = [({"beta": b}, 0.1 + b / 10, 0.2 - b / 10) for b in (0.05, 0.1, 0.25, 1.0)]
    assert_png(plots.plot_grid(points, tmp_path / "g.png", metric="ndcg@20"))

    # CE diagnostics have no drops; a missing CSV draws nothing.
    no_drops = tmp_path / "ce" / "training.csv"
    no_drops.parent.mkdir()
    no_drops.write_text(header + "\nadt,0,10,,100,20,0.7,0.8,,,,,,,,,0.2\n")
    assert [p.name for p in plots.run_plots(no_drops.parent)] == ["loss_curves.png"]
    assert plots.run_plots(tmp_path / "missing") == []


def test_cli_errors_and_exit_codes(base_config, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "out")
    data = ["--dataset", "planted", f"--data_path={base_config['data_path']}"]
    for argv, message in (
        (["compare", "--models", "GFM", "--output", out], "GMF"),
        (["compare", "--models", "GMF", "--output", out, "--seed=3"], "--seeds"),
        (["compare", "--models", "GMF", "--losses", "xce", "--output", out], "xce"),
        (["grid", "--losses", "ce", "--output", out], "no grid in the paper"),
        (["grid", "--grid", "drop_rate", "--output", out], "--grid"),
        (["grid", "--output", out, "--num_gradual=100"], "num_gradual is both searched"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([*argv, *data])
        assert stop.value.code == 2, argv
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error
    assert not (tmp_path / "out" / "results.csv").exists()  # nothing ran

    monkeypatch.setattr(runner, "run_recbole_adt", scripted([], fail={("TCE", 1)}))
    argv = ["compare", "--models", "GMF", "--losses", "ce,tce", "--seeds", "1,"]
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--output", out, "--no_plots", *data, "--epochs=1"])
    assert stop.value.code == 1  # a run failed
    printed = capsys.readouterr().out
    assert "[1/2] GMF CE seed 1 ok" in printed and "[2/2] GMF T-CE seed 1 FAILED" in printed
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--output", str(tmp_path / "other"), "--losses", "ce", *data])
    assert stop.value.code == 0


def test_a_model_the_loss_does_not_apply_to_is_refused_before_any_run(base_config, tmp_path):
    """CDAE (whole user rows) refuses DCF: found by its Config before GMF under DCF trains."""
    with pytest.raises(ValueError, match="the run CDAE DCF seed 1 could not start. adt_loss DCF"):
        compare(
            tmp_path / "out",
            models="GMF,CDAE",
            losses="dcf",
            seeds=1,
            dataset="planted",
            settings={**common_settings(base_config), "epochs": 1},
            plots_wanted=False,
            echo=lambda line: None,
        )
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was made


@pytest.mark.slow
def test_parallel_jobs_give_the_sequential_results(base_config, tmp_path):
    arguments = dict(
        models="GMF",
        losses="ce,tce",
        seeds="3,",
        dataset="planted",
        settings={**common_settings(base_config), "epochs": 1, "num_gradual": 10},
        plots_wanted=False,
        echo=lambda line: None,
    )
    sequential = compare(tmp_path / "one", jobs=1, **arguments)["rows"]
    parallel = compare(tmp_path / "two", jobs=2, **arguments)["rows"]
    metrics = [{k: v for k, v in row.items() if ":" in k} for row in sequential]
    assert metrics == [{k: v for k, v in row.items() if ":" in k} for row in parallel]
    assert all(row["status"] == "ok" for row in parallel)


def test_grid_with_colliding_inference_searches_its_pair_within_each_run(
    base_config, tmp_path, monkeypatch
):
    seen = []

    def run(model, dataset, config_file_list, config_dict):
        seen.append((config_dict["colliding_neighbours"], config_dict["colliding_lambda"]))
        result = fake_result(valid=config_dict["beta"], test=0.3)
        return {**result, "colliding": {"neighbours": 5, "lambda": 0.7}}

    monkeypatch.setattr(runner, "run_recbole_adt", run)
    settings = {**common_settings(base_config), "colliding_inference": True}
    settings["phases"] = ["warmup", "adt"]
    outcome = grid_search(
        tmp_path / "grid",
        models="GMF",
        losses="rce",
        grid={"beta": [0.1, 0.25]},
        dataset="planted",
        settings=settings,
        plots_wanted=False,
        echo=lambda line: None,
    )
    assert seen == [([1, 3, 5, 10, 20, 50, 100], [round(0.1 * k, 1) for k in range(11)])] * 2
    assert outcome["choices"]["GMF/rce"]["settings"] == {"beta": 0.25}
    assert read_tuned(tmp_path / "grid") == {
        ("GMF", "rce"): {"beta": 0.25, "colliding_neighbours": 5, "colliding_lambda": 0.7}
    }
