"""The numbers of README.md and docs/ are the ones their result files give (docs/fill_numbers.py).

The first test is the check itself; the others pin the script on hand-made files with
hand-computed values, so that a check that passes means something.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("fill_numbers", ROOT / "docs" / "fill_numbers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


numbers = _load_script()


def test_pages_match_their_result_files():
    problems = numbers.check(ROOT)
    assert not problems, "\n".join(map(str, problems)) + f"\n{numbers.REFILL}"


def _write(root: Path, path: str, text: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text, encoding="utf-8")


def test_values_and_tables_are_filled_from_their_files(tmp_path):
    _write(tmp_path, "r/a.json", json.dumps({"x": {"y": 0.123456, "n": 13366}, "s": "0.2 ± 0.01"}))
    table = {"columns": ["A", "B"], "rows": [{"id": "one", "A": "1", "B": "2"}, ["3", "4"]]}
    _write(tmp_path, "r/t.json", json.dumps(table))
    page = (
        "x is <!--n r/a.json#x/y|.3f-->?<!--/n--> and <!--n r/a.json#x/n|,d-->?<!--/n-->,"
        " mean <!--n r/a.json#s|mean-->?<!--/n-->\n"
        "<!-- numbers: table r/t.json -->\nstale\n<!-- /numbers -->\n"
        "<!-- numbers: table r/t.json ids=one columns=B -->\n<!-- /numbers -->\n"
    )
    filled = numbers.fill(page, numbers.Files(tmp_path))
    assert filled == (
        "x is <!--n r/a.json#x/y|.3f-->0.123<!--/n--> and <!--n r/a.json#x/n|,d-->13,366<!--/n-->,"
        " mean <!--n r/a.json#s|mean-->0.2<!--/n-->\n"
        "<!-- numbers: table r/t.json -->\n| A | B |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |\n"
        "<!-- /numbers -->\n"
        "<!-- numbers: table r/t.json ids=one columns=B -->\n| B |\n| --- |\n| 2 |\n"
        "<!-- /numbers -->\n"
    )


def test_check_names_a_stale_number_and_write_mends_it(tmp_path):
    _write(tmp_path, "r/a.json", json.dumps({"v": 0.5}))
    _write(tmp_path, "README.md", "title\n\nv = <!--n r/a.json#v|.2f-->0.40<!--/n-->\n")
    problems = numbers.check(tmp_path)
    assert [(p.page, p.line) for p in problems] == [("README.md", 3)]
    assert numbers.write(tmp_path) == ["README.md"]
    assert "<!--n r/a.json#v|.2f-->0.50<!--/n-->" in (tmp_path / "README.md").read_text()
    assert numbers.check(tmp_path) == []


def test_compare_block_by_hand(tmp_path):
    """CE and T-CE of one model on 2 seeds; means, stds, RI and the paired test by hand.

    NDCG@20 differences d = (0.01, 0.03): t = d̄ / (s_d/√2) = 0.02 / (0.01414/1.414) = 2 on 1
    degree of freedom, whose two-sided p is 1 − (2/π)·atan(2) = 0.2952. Changes of the means:
    Recall (0.37 − 0.35)/0.35 = +5.714%, NDCG (0.27 − 0.25)/0.25 = +8.00%; RI is their mean,
    +6.857%.
    """
    head = "run_id,model,loss,seed,settings,status,best_epoch,seconds,test:recall@20,test:ndcg@20"
    rows = [
        "a,M,ce,1,{},ok,3,10,0.30,0.20",
        "b,M,ce,2,{},ok,5,20,0.40,0.30",
        'c,M,tce,1,"{""drop_rate"": 0.1}",ok,4,30,0.33,0.21',
        'd,M,tce,2,"{""drop_rate"": 0.1}",ok,6,40,0.41,0.33',
    ]
    _write(tmp_path, "r/results.csv", "\n".join([head, *rows]) + "\n")
    page = "<!-- numbers: compare r/results.csv -->\n<!-- /numbers -->\n"
    body = numbers.fill(page, numbers.Files(tmp_path)).splitlines()[3:5]
    assert body == [
        "| M | CE |  | 0.3500 ± 0.0707 | 0.2500 ± 0.0707 |  |  |",
        "| M | T-CE | ε_max 0.1 | **0.3700 ± 0.0566** | **0.2700 ± 0.0849** | +6.86% "
        "| +8.00%, p = 0.295 |",
    ]
    summary = numbers.compare_summary(tmp_path / "r/results.csv")
    assert summary["runs"] == {
        "count": 4,
        "finished": 4,
        "total_minutes": 100 / 60,
        "seeds": [1, 2],
    }
    assert summary["M"]["tce"]["paired"]["test:ndcg@20"]["p"] == pytest.approx(0.29517, abs=1e-5)
    assert summary["M"]["seconds_mean"] == 25


def test_table4_groups_by_strategy_against_plain_ce(tmp_path):
    """A strategy's runs form LOSS+STRATEGY, and a baseline model is compared with the plain CE
    of the one model trained with CE: NDCG@20 0.30 vs 0.20 (seed 1) and 0.36 vs 0.30 (seed 2)
    gives a change of the means (0.33 − 0.25)/0.25 = +32%; Recall 0.35 vs 0.35, 0%."""
    head = "run_id,model,loss,strategy,seed,settings,status,best_epoch,seconds,"
    head += "test:recall@20,test:ndcg@20"
    rows = [
        "a,M,ce,,1,{},ok,3,10,0.30,0.20",
        "b,M,ce,,2,{},ok,5,20,0.40,0.30",
        "c,M,ce,warmup,1,{},ok,3,10,0.30,0.10",
        "d,M,ce,warmup,2,{},ok,5,20,0.40,0.20",
        "e,NMTR,own,,1,{},ok,3,10,0.35,0.30",
        "f,NMTR,own,,2,{},ok,5,20,0.35,0.36",
    ]
    _write(tmp_path, "r/results.csv", "\n".join([head, *rows]) + "\n")
    summary = numbers.compare_summary(tmp_path / "r/results.csv")
    assert set(summary["M"]) == {"ce", "ce+warmup", "seconds_mean"}
    assert summary["M"]["ce+warmup"]["paired"]["test:ndcg@20"]["change"] == pytest.approx(-0.4)
    nmtr = summary["NMTR"]["own"]["paired"]
    assert nmtr["test:ndcg@20"]["change"] == pytest.approx(0.32)
    assert nmtr["test:recall@20"]["change"] == pytest.approx(0.0)
    assert summary["NMTR"]["own"]["ri"] == pytest.approx(0.16)
    assert numbers.display_group("ce+warmup") == "CE + warm-up"


def _cells(markdown: str, section: str) -> dict[tuple[str, str], list[str]]:
    """(model, loss) -> the cells of a table of the experiments' results.md."""
    table = markdown.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ")]
    return {(r[0].lstrip("| "), r[1]): [c.strip(" |*") for c in r] for r in rows[2:]}


def test_ml100k_summary_agrees_with_the_experiments_own_table():
    """What the script computes from results.csv is what `compare` wrote in results.md."""
    folder = ROOT / "docs" / "results" / "ml-100k"
    summary = numbers.compare_summary(folder / "results.csv")
    written = (folder / "results.md").read_text(encoding="utf-8")
    loss_of = {"CE": "ce", "T-CE": "tce", "R-CE": "rce", "(own loss)": "own"}
    metrics = ["test:recall@10", "test:recall@20", "test:ndcg@10", "test:ndcg@20"]
    test, paired = _cells(written, "Test"), _cells(written, "Paired test")
    assert len(test) == 11 and len(paired) == 6
    for (model, loss), cells in test.items():
        group = summary[model][loss_of[loss]]
        assert cells[4:8] == [numbers.mean_std(group[m]) for m in metrics]
        ri = f"{100 * group['ri']:+.2f}%" if "ri" in group else ""
        assert cells[8] == ri
    for (model, loss), cells in paired.items():
        for metric, cell in zip(metrics, cells[4:8]):
            test_of = summary[model][loss_of[loss]]["paired"][metric]
            assert cell == f"{100 * test_of['change']:+.2f}% (p = {numbers.pvalue(test_of['p'])})"


def test_settings_tables_by_hand(tmp_path):
    _write(
        tmp_path,
        "d.yaml",
        "# Top comment.\n\n# Group one\nalpha_x: 0.5      # (float) The alpha | pipe, in [0, 1).\n"
        "                  # More about D* alpha.\nlist_y: [1, 2]\nepochs: 7\n",
    )
    page = "<!-- numbers: settings d.yaml -->\n<!-- /numbers -->\n"
    assert numbers.fill(page, numbers.Files(tmp_path)).splitlines()[1:-1] == [
        "Top comment.",
        "",
        "Group one",
        "",
        "| Setting | Type | Default | Meaning |",
        "| --- | --- | --- | --- |",
        "| `alpha_x` | float | `0.5` | The alpha \\| pipe, in [0, 1). More about D\\* alpha. |",
        "| `list_y` |  | `[1, 2]` |  |",
        "| `epochs` |  | `7` | RecBole's setting; its default: `300`. |",
    ]


def test_every_plugin_setting_is_on_the_settings_page():
    for path in ("recbole_adt/properties/overall.yaml", *map(str, _model_yamls())):
        text = (ROOT / path).read_text(encoding="utf-8")
        parsed = [s.key for _, settings in numbers.parse_settings(text) for s in settings]
        assert sorted(parsed) == sorted(yaml.safe_load(text)), path
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    page = page.split("## The plugin's defaults", 1)[1].split("\n## ", 1)[0]
    for key in yaml.safe_load((ROOT / "recbole_adt/properties/overall.yaml").read_text()):
        assert len(re.findall(rf"^\| `{key}` \|", page, re.M)) == 1, key


def _model_yamls():
    return sorted(
        p.relative_to(ROOT) for p in (ROOT / "recbole_adt/properties/model").glob("*.yaml")
    )


def test_numbers_typed_by_hand_are_found_outside_markers_and_code():
    page = (
        "mean ± sample std is prose\n"
        "NDCG 0.2874 typed\n"
        "`0.2874` in code\n"
        "<!--n r/a.json#v-->0.2874 ± 0.0011<!--/n-->\n"
        "a gain of +1.51%\n"
    )
    assert [(s.line, s.page) for s in numbers.strays(page, "p.md")] == [(2, "p.md"), (5, "p.md")]


def test_a_marker_that_cannot_be_filled_names_its_page_and_line(tmp_path):
    _write(tmp_path, "r/a.json", json.dumps({"v": 1}))
    with pytest.raises(ValueError, match=r"p\.md:2: .*unknown kind 'chart'.*compare, table"):
        numbers.fill(
            "x\n<!-- numbers: chart r/a.json -->\n<!-- /numbers -->\n",
            numbers.Files(tmp_path),
            "p.md",
        )
    with pytest.raises(ValueError, match=r"p\.md:1: .*has no 'w'"):
        numbers.fill("<!--n r/a.json#w-->1<!--/n-->", numbers.Files(tmp_path), "p.md")
    with pytest.raises(ValueError, match=r"r/missing\.json is not a file"):
        numbers.fill("<!--n r/missing.json#w-->1<!--/n-->", numbers.Files(tmp_path), "p.md")
