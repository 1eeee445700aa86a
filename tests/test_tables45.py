"""Tables 4 and 5 in one command each (compare --strategies / --colliding) and the warm-up
length as a grid setting, with the runs' results scripted by hand."""

import csv

import pytest

from recbole_adt.experiments import compare, grid_search, runner
from recbole_adt.experiments.cli import main
from recbole_adt.experiments.grid import COLLIDING_GRID, parse_grid, read_tuned
from tests.test_experiments import common_settings, fake_result


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def phases_of(config_dict) -> str:
    phases = config_dict.get("phases")
    return "none" if phases is None else ",".join(phases)


# Hand-made test NDCG@20 per run kind (model, adt_loss, phases) and seed 1, 2.
TABLE4 = {
    ("GMF", "CE", "none"): (0.30, 0.32),  # plain GMF: mean 0.31
    ("GMF", "TCE", "none"): (0.33, 0.36),  # mean 0.345: RI +11.29%
    ("GMF", "CE", "adt,finetune"): (0.31, 0.31),  # mean 0.31: RI +0.00%
    ("GMF", "TCE", "adt,finetune"): (0.34, 0.36),  # mean 0.35: RI +12.90%
    ("GMF", "CE", "warmup,adt"): (0.29, 0.31),  # mean 0.30: RI -3.23%
    ("GMF", "TCE", "warmup,adt"): (0.36, 0.38),  # mean 0.37: RI +19.35%
    ("NMTR", "CE", "none"): (0.279, 0.279),  # mean 0.279: RI -10.00%
    ("GMF", "NR", "none"): (0.31, 0.341),  # mean 0.3255: RI +5.00%
}


def table4_run(calls):
    def run(model, dataset, config_file_list, config_dict):
        key = (model, config_dict["adt_loss"], phases_of(config_dict))
        calls.append((*key, config_dict["seed"]))
        test = TABLE4[key][config_dict["seed"] - 1]
        return fake_result(valid=test - 0.1, test=test)

    return run


def test_table4_rows_ri_against_plain_and_old_runs_kept(base_config, tmp_path, monkeypatch):
    settings = common_settings(base_config)
    out = tmp_path / "out"
    calls = []
    monkeypatch.setattr(runner, "run_recbole_adt", table4_run(calls))
    # a compare made before strategies: its runs are the strategy "none" runs of Table 4
    arguments = dict(seeds=2, dataset="planted", settings=settings, plots_wanted=False)
    compare(out, models="GMF", losses="ce,tce", echo=lambda line: None, **arguments)
    assert len(calls) == 4
    calls.clear()
    outcome = compare(
        out,
        models="GMF",
        losses="ce,tce",
        strategies="none,finetune,warmup",
        baselines="NMTR,NR",
        echo=lambda line: None,
        **arguments,
    )
    assert outcome["failed"] == 0
    # the 4 runs without strategies were not run again; strategies set the phases
    assert sorted({call[:3] for call in calls}) == sorted(
        set(TABLE4)
        - {
            ("GMF", "CE", "none"),
            ("GMF", "TCE", "none"),
        }
    )
    rows = {row["run_id"]: row for row in read_csv(out / "results.csv")}
    assert {"GMF_ce_seed-1", "GMF_tce_warmup_seed-2", "GMF_nr_seed-1", "NMTR_own_seed-2"} <= set(
        rows
    )
    assert rows["GMF_tce_finetune_seed-1"]["strategy"] == "finetune"
    assert rows["GMF_ce_seed-1"]["strategy"] == ""

    table = (out / "results.md").read_text()
    test = table.split("## Test")[1].split("##")[0]
    assert "| Model | Loss | Strategy | n | NDCG@20 | RI |" in test
    for row in (
        "| GMF | CE | none | 2 | 0.3100 ± 0.0141 |  |",
        "| GMF | T-CE | none | 2 | 0.3450 ± 0.0212 | +11.29% |",
        "| GMF | CE | finetune | 2 | 0.3100 ± 0.0000 | +0.00% |",
        "| GMF | T-CE | finetune | 2 | 0.3500 ± 0.0141 | +12.90% |",
        "| GMF | CE | warmup | 2 | 0.3000 ± 0.0141 | -3.23% |",
        "| GMF | T-CE | warmup | 2 | **0.3700 ± 0.0141** | +19.35% |",
        "| GMF | NR | none | 2 | 0.3255 ± 0.0219 | +5.00% |",
        "| NMTR | (own loss) | none | 2 | 0.2790 ± 0.0000 | -10.00% |",
    ):
        assert row in test, row
    paired = table.split("## Paired test against plain training (CE, strategy none)")[1]
    # T-CE warm-up: d = (0.06, 0.06): constant, so t = inf and p = 0
    assert "| GMF | T-CE | warmup | 2 | +19.35% (p = < 0.001) |" in paired
    assert "| GMF | CE | none |" not in paired.split("## Validation")[0]  # the reference


def test_table5_each_threshold_plain_and_colliding(base_config, tmp_path, monkeypatch):
    seen = []
    # seed -> group -> (plain, mixed) NDCG@20
    values = {
        1: {"ratio < 0.1": (0.10, 0.14), "ratio < 0.2": (0.20, 0.22), "overall": (0.30, 0.31)},
        2: {"ratio < 0.1": (0.12, 0.15), "ratio < 0.2": (0.22, 0.23), "overall": (0.32, 0.32)},
    }

    def run(model, dataset, config_file_list, config_dict):
        seen.append(
            (
                config_dict["adt_loss"],
                phases_of(config_dict),
                config_dict["colliding_inference"],
                config_dict["colliding_lambda"],
            )
        )
        groups = values[config_dict["seed"]]
        plain = {name: {"ndcg@20": v[0]} for name, v in groups.items()}
        mixed = {name: {"ndcg@20": v[1]} for name, v in groups.items()}
        return {
            **fake_result(0.2, mixed["overall"]["ndcg@20"]),
            "test_groups": mixed,
            "test_groups_plain": plain,
            "colliding": {"neighbours": 5, "lambda": 0.7},
        }

    monkeypatch.setattr(runner, "run_recbole_adt", run)
    out = tmp_path / "out"
    compare(
        out,
        models="GMF",
        losses="tce",
        colliding=True,
        seeds=2,
        dataset="planted",
        settings=common_settings(base_config),
        plots_wanted=False,
        echo=lambda line: None,
    )
    lambdas = COLLIDING_GRID["colliding_lambda"]
    assert seen == [("TCE", "warmup,adt", True, lambdas)] * 2  # λ chosen on validation
    row = read_csv(out / "results.csv")[0]
    assert row["plain[ratio < 0.1]:ndcg@20"] == "0.1"
    assert row["colliding[ratio < 0.1]:ndcg@20"] == "0.14"
    table = (out / "results.md").read_text()
    section = table.split("## Colliding inference per user group (Table 5)")[1]
    for line in (
        "| GMF | T-CE | ratio < 0.1 | warm-up | 2 | 0.1100 ± 0.0141 |",
        "| GMF | T-CE | ratio < 0.1 | warm-up + colliding | 2 | 0.1450 ± 0.0071 |",
        "| GMF | T-CE | ratio < 0.2 | warm-up | 2 | 0.2100 ± 0.0141 |",
        "| GMF | T-CE | ratio < 0.2 | warm-up + colliding | 2 | 0.2250 ± 0.0071 |",
        "| GMF | T-CE | all users | warm-up + colliding | 2 | 0.3150 ± 0.0071 |",
        # ratio < 0.2: d = (0.02, 0.01), t = 0.015 / (0.00707 / sqrt 2) = 3, p = 0.205
        "| GMF | T-CE | ratio < 0.2 | 2 | +7.14% (p = 0.205) |",
    ):
        assert line in section, line
    assert section.index("ratio < 0.1") < section.index("ratio < 0.2") < section.index("all")


def test_warmup_length_grid_includes_no_warmup_and_tunes_the_strategy(
    base_config, tmp_path, monkeypatch
):
    assert parse_grid(["warmup=0,5"]) == {"phases": [["adt"], ["warmup:5", "adt"]]}
    for bad, message in (
        (["warmup=-1"], "not a warm-up length"),
        (["warmup=2.5"], "not a warm-up length"),
        (["warmup=0", "phases=[adt]"], "both set phases"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_grid(bad)

    valid = {"none": 0.20, "adt": 0.21, "warmup:5,adt": 0.25, "warmup:10,adt": 0.22}
    seen = []

    def run(model, dataset, config_file_list, config_dict):
        phases = phases_of(config_dict)
        seen.append((config_dict["adt_loss"], phases, config_dict.get("drop_rate")))
        return fake_result(valid=valid[phases], test=0.5 - valid[phases])  # test never used

    monkeypatch.setattr(runner, "run_recbole_adt", run)
    settings = common_settings(base_config)
    grid = tmp_path / "grid"
    outcome = grid_search(
        grid,
        models="GMF",
        losses="tce",
        grid=["warmup=0,5,10", "drop_rate=0.1"],
        dataset="planted",
        settings=settings,
        plots_wanted=False,
        echo=lambda line: None,
    )
    assert [s[1] for s in seen] == ["adt", "warmup:5,adt", "warmup:10,adt"]
    chosen = {"phases": ["warmup:5", "adt"], "drop_rate": 0.1}
    assert outcome["choices"]["GMF/tce"]["settings"] == chosen
    assert read_tuned(grid) == {("GMF", "tce"): chosen}

    # --tuned: the warm-up length goes to the warmup strategy, drop_rate to every strategy
    seen.clear()
    compare(
        tmp_path / "tuned",
        models="GMF",
        losses="tce",
        strategies="none,finetune,warmup",
        seeds=1,
        dataset="planted",
        settings=settings,
        tuned=grid,
        plots_wanted=False,
        echo=lambda line: None,
    )
    assert seen == [
        ("TCE", "none", 0.1),
        ("TCE", "adt,finetune", 0.1),
        ("TCE", "warmup:5,adt", 0.1),
    ]


def test_table_options_are_checked_before_any_run(base_config, tmp_path, capsys):
    out = str(tmp_path / "out")
    data = ["--dataset", "planted", f"--data_path={base_config['data_path']}"]
    for argv, message in (
        (["--strategies", "none,pretrain"], "unknown strategy 'pretrain'"),
        (["--strategies", "warmup,warm-up"], "names warmup twice"),
        (["--strategies", "none,warmup", "--colliding"], "Give --strategies warmup"),
        (["--colliding", "--baselines", "NMTR"], "--colliding with --baselines NMTR"),
        (["--strategies", "none,warmup", "--phases=[adt]"], "--phases cannot be given"),
        (["--losses", "ce,nr", "--baselines", "NR"], "NR in both --losses and --baselines"),
        (["--colliding", "--colliding_inference=False"], "leave out one of them"),
    ):
        with pytest.raises(SystemExit) as stop:
            main(["compare", "--models", "GMF", "--output", out, *argv, *data])
        assert stop.value.code == 2, argv
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error, (argv, error)
    with pytest.raises(SystemExit) as stop:
        main(["compare", "--baselines", "NR", "--output", out, *data])
    assert stop.value.code == 2 and "give --models" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.slow
def test_tables_4_and_5_end_to_end(base_config, tmp_path):
    """Real runs, one epoch per phase: every Table 4 row trains, and Table 5's groups come
    from the runs' own results."""
    settings = {**common_settings(base_config), "epochs": 1, "num_gradual": 1}
    arguments = dict(seeds="1,", dataset="planted", plots_wanted=False, echo=lambda line: None)
    table4 = compare(
        tmp_path / "t4",
        models="GMF",
        losses="ce,tce",
        strategies="none,finetune,warmup",
        baselines="NMTR,NR",
        settings=settings,
        **arguments,
    )
    assert table4["failed"] == 0, [row["error"] for row in table4["rows"]]
    text = (tmp_path / "t4" / "results.md").read_text()
    for row in ("| GMF | T-CE | warmup | 1 |", "| NMTR | (own loss) | none | 1 |", "| GMF | NR |"):
        assert row in text, row
    table5 = compare(
        tmp_path / "t5",
        models="GMF",
        losses="tce",
        colliding=True,
        settings={**settings, "colliding_neighbours": 3, "colliding_lambda": [0.5, 1.0]},
        **arguments,
    )
    assert table5["failed"] == 0, [row["error"] for row in table5["rows"]]
    row = table5["rows"][0]
    for variant in ("plain", "colliding"):
        for name in ("ratio < 0.1", "ratio < 0.2", "ratio < 0.3", "overall"):
            assert 0 <= float(row[f"{variant}[{name}]:ndcg@20"]) <= 1
    assert row["colliding[overall]:ndcg@20"] == row["test:ndcg@20"]
    text = (tmp_path / "t5" / "results.md").read_text()
    assert "| GMF | T-CE | ratio < 0.3 | warm-up + colliding | 1 |" in text
