"""The noise sweep: runs per rate and mechanism, its table, paired tests, plot and resume."""

import pytest

from recbole_adt.experiments import runner
from recbole_adt.experiments.cli import main
from recbole_adt.experiments.sweep import mechanism_list, rate_list, sweep
from tests.test_experiments import assert_png, common_settings, fake_result, read_csv

# Hand-made test NDCG@20 per (loss, rate, seed).
VALUES = {
    ("CE", 0.0, 1): 0.30,
    ("CE", 0.0, 2): 0.32,
    ("TCE", 0.0, 1): 0.33,
    ("TCE", 0.0, 2): 0.36,
    ("CE", 0.2, 1): 0.20,
    ("CE", 0.2, 2): 0.22,
    ("TCE", 0.2, 1): 0.26,
    ("TCE", 0.2, 2): 0.27,
}


def scripted(calls):
    def run(model, dataset, config_file_list, config_dict):
        rate = float(config_dict["noise_rate"])
        calls.append((config_dict["adt_loss"], rate, config_dict.get("noise_mechanism")))
        value = VALUES[(config_dict["adt_loss"], rate, config_dict["seed"])]
        return fake_result(valid=value - 0.1, test=value)

    return run


def test_sweep_table_paired_tests_plot_and_resume(base_config, tmp_path, monkeypatch):
    calls, lines = [], []
    monkeypatch.setattr(runner, "run_recbole_adt", scripted(calls))
    arguments = dict(
        models="GMF",
        losses="ce,tce",
        noise_rates="0.2,0",
        mechanism="uniform,popularity",
        seeds=2,
        dataset="planted",
        settings=common_settings(base_config),
        echo=lines.append,
    )
    outcome = sweep(tmp_path / "out", **arguments)
    assert outcome["failed"] == 0
    # Rate 0 runs once for both mechanisms: 2 losses x 2 seeds x (1 + 2 mechanisms).
    assert len(calls) == 12
    assert sorted(set(calls)) == [
        ("CE", 0.0, None),
        ("CE", 0.2, "popularity"),
        ("CE", 0.2, "uniform"),
        ("TCE", 0.0, None),
        ("TCE", 0.2, "popularity"),
        ("TCE", 0.2, "uniform"),
    ]
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert len(rows) == 12 and {row["status"] for row in rows} == {"ok"}
    table = (tmp_path / "out" / "results.md").read_text()
    uniform, popularity = table.split("## Mechanism: popularity")
    assert "## Mechanism: uniform" in uniform
    for section in (uniform, popularity):
        # T-CE at rate 0: 0.33, 0.36 -> 0.3450 ± 0.0212; at 0.2: 0.26, 0.27 -> 0.2650 ± 0.0071
        assert "| GMF | 0 | T-CE | 2 | 0.3450 ± 0.0212 |" in section
        assert "| GMF | 0.2 | CE | 2 | 0.2100 ± 0.0141 |" in section
        assert "| GMF | 0.2 | T-CE | 2 | 0.2650 ± 0.0071 |" in section
        # Paired against CE at the same rate: rate 0, d = .03, .04, t = 7, p (1 df) =
        # 1 - (2/pi) atan 7 = 0.090, change .345/.31 - 1; rate 0.2, t = 11, p = 0.058.
        assert "| GMF | 0 | T-CE | +11.29% (p 0.090, n 2) |" in section
        assert "| GMF | 0.2 | T-CE | +26.19% (p 0.058, n 2) |" in section
    for name in ("degradation_uniform.png", "degradation_popularity.png"):
        assert_png(tmp_path / "out" / name)
        assert f"]({name})" in table

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(runner, "run_recbole_adt", must_not_run)
    lines.clear()
    assert sweep(tmp_path / "out", **arguments)["failed"] == 0
    assert any("12 of 12 runs already finished" in line for line in lines)


def test_rates_and_mechanisms_are_checked():
    assert rate_list("0.4,0,0.1") == [0.0, 0.1, 0.4]
    assert mechanism_list("uniform, user+popularity") == ["uniform", "popularity+user"]
    for bad in ("", "0,-0.1", "0,a", "0.1,0.1"):
        with pytest.raises(ValueError, match="--noise_rates"):
            rate_list(bad)
    with pytest.raises(ValueError, match="noise_mechanism"):
        mechanism_list("exposure")
    with pytest.raises(ValueError, match="twice"):
        mechanism_list("user,user")


def test_cli_errors(base_config, tmp_path, capsys):
    out = str(tmp_path / "out")
    data = ["--dataset", "planted", f"--data_path={base_config['data_path']}"]
    for argv, message in (
        (["sweep", "--noise_rates", "0,x"], "--noise_rates"),
        (["sweep", "--mechanism", "exposure"], "noise_mechanism"),
        (["sweep", "--noise_rate=0.1"], "set by --noise_rates"),
        (["sweep", "--noise_user_beta=[0,1]"], "noise_user_beta"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--output", out, *data])
        assert stop.value.code == 2, argv
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error
    assert not (tmp_path / "out" / "results.csv").exists()  # nothing ran


@pytest.mark.slow
def test_sweep_trains_on_injected_noise(base_config, tmp_path):
    """GMF under CE and T-CE, rates 0 and 0.5 (popularity), one seed, one epoch, for real."""
    settings = {**common_settings(base_config), "epochs": 1, "num_gradual": 5}
    outcome = sweep(
        tmp_path / "out",
        models="GMF",
        losses="ce,tce",
        noise_rates="0,0.5",
        mechanism="popularity",
        seeds="3,",
        dataset="planted",
        settings=settings,
        echo=lambda line: None,
    )
    assert outcome["failed"] == 0
    runs = tmp_path / "out" / "runs"
    noisy = read_csv(
        runs / "GMF_ce_noise_mechanism-popularity_noise_rate-0.5_seed-3" / "training.csv"
    )
    clean = read_csv(runs / "GMF_ce_noise_rate-0.0_seed-3" / "training.csv")
    # The diagnostics see every injected row, as a false positive: round(0.5 |D_train|) more.
    added = round(0.5 * int(clean[0]["positives"]))
    assert int(noisy[0]["positives"]) == int(clean[0]["positives"]) + added
    assert int(noisy[0]["false_positives"]) == int(clean[0]["false_positives"]) + added
    assert_png(tmp_path / "out" / "degradation_popularity.png")
