"""``python -m bench --quick`` at a smoke size: one JSON object, every figure finite."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import MODULES

ROOT = Path(__file__).resolve().parent.parent


def numbers(value):
    """Every number in a nested JSON value (bools are not figures)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


@pytest.mark.slow
def test_entry_point_prints_and_writes_finite_figures(tmp_path):
    output = tmp_path / "bench.json"
    env = {**os.environ, "BENCH_SMOKE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        cwd=tmp_path,  # RecBole writes log/ and saved/ here
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout)
    assert json.loads(output.read_text()) == printed
    assert {"cores", "torch_threads", "torch", "recbole", "python"} <= set(printed["machine"])
    present = [name for name in MODULES if (ROOT / "bench" / f"{name}.py").is_file()]
    assert "bench_training" in present
    for name in present:
        figures = printed[name]
        assert "error" not in figures, f"{name}: {figures.get('error')}"
        values = list(numbers({k: v for k, v in figures.items() if k != "seconds"}))
        assert values, f"{name} reported no figures"
        assert all(math.isfinite(v) for v in values), f"{name}: {figures}"
    training = printed["bench_training"]
    for key in ("tce_over_ce_epoch", "rce_over_ce_epoch"):
        assert set(training[key]) == {"GMF", "NeuMF"}
    assert training["epoch_over_reference"] > 0
    assert set(training["epoch_breakdown"]["dense"]["stages_s"]) >= {"sampling", "optimizer"}


def test_a_failing_module_becomes_an_error_entry(monkeypatch):
    import bench.__main__ as entry

    monkeypatch.setitem(sys.modules, "bench.bench_missing", None)  # import fails
    out = entry.collect(True, ("bench_missing",))
    assert "error" in out["bench_missing"] and "machine" in out
