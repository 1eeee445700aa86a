"""The paper's figures, drawn from an experiment's CSV files as PNG (matplotlib, Agg).

- :func:`plot_loss_curves`: mean CE loss of true- vs false-positive training interactions per
  epoch, one panel per loss (Fig. 2 and 8); R-CE's mean weights of both beside them.
- :func:`plot_drop`: T-CE's precision and recall of false positives among the dropped
  interactions, against dropping at random (Fig. 9).
- :func:`plot_sparsity_groups`: the test metric of four user groups with equal numbers of
  interactions, sparsest first, one line per loss, users per group as bars (Fig. 7).
- :func:`plot_grid`: validation and test metric over a grid of settings (Fig. 10).
- :func:`plot_compare`: mean ± std of each test metric per model and loss.

matplotlib is an optional extra (``pip install -e .[plots]``): :func:`available` says whether
it is there. Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, so pyplot's
global state and the caller's backend are left alone. Each PNG is written to a temporary file
and renamed into place, with the mode of the user's umask. A function returns ``None`` (and
writes nothing) when its CSV columns are missing or empty: the diagnostics only exist with a
false-positive flag and the right loss.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from recbole_adt.files import atomic_file

INSTALL_HINT = 'pip install -e ".[plots]"'  # or: pip install "matplotlib>=3.5"

TRAINING_CSV = "training.csv"
SPARSITY_CSV = "sparsity_groups.csv"
_GROUP_COLUMNS = ("group", "users", "interactions", "min_interactions", "max_interactions")


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file; none if it is missing or empty."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def numbers(rows: Sequence[Mapping[str, str]], name: str) -> list[float]:
    """A column as floats, NaN where a cell is empty, missing or not a number."""
    values = []
    for row in rows:
        try:
            values.append(float(row.get(name) or "nan"))
        except ValueError:
            values.append(math.nan)
    return values


def has_values(rows: Sequence[Mapping[str, str]], *names: str) -> bool:
    return any(not math.isnan(v) for name in names for v in numbers(rows, name))


def plot_loss_curves(runs: Mapping[str, Path], png: Path) -> Path | None:
    """Fig. 2/8: per epoch, the mean CE loss of true and of false positives; one panel per
    run (``label -> training.csv``); with R-CE weights, a second row of panels with them."""
    data = {label: read_csv(path) for label, path in runs.items()}
    data = {k: v for k, v in data.items() if has_values(v, "loss_tp_mean", "loss_fp_mean")}
    if not data:
        return None
    weights = any(has_values(v, "weight_tp_mean", "weight_fp_mean") for v in data.values())
    figure = _figure(len(data), 2 if weights else 1)
    axes = figure.subplots(2 if weights else 1, len(data), squeeze=False)
    for column, (label, rows) in enumerate(data.items()):
        x = list(range(1, len(rows) + 1))
        ax = axes[0][column]
        ax.plot(x, numbers(rows, "loss_tp_mean"), label="true positives", color="tab:blue")
        ax.plot(x, numbers(rows, "loss_fp_mean"), label="false positives", color="tab:red")
        ax.set(title=label, xlabel=_epoch_label(rows), ylabel="mean CE loss")
        _whole_epochs(ax)
        ax.legend()
        if weights:
            ax = axes[1][column]
            if not has_values(rows, "weight_tp_mean", "weight_fp_mean"):
                ax.axis("off")  # this loss weighs nothing: no empty axes
                continue
            ax.plot(x, numbers(rows, "weight_tp_mean"), label="true positives")
            ax.plot(x, numbers(rows, "weight_fp_mean"), label="false positives")
            ax.legend()
            ax.set(title=f"{label}: mean weight", xlabel=_epoch_label(rows), ylabel="weight")
            _whole_epochs(ax)
    return _save(figure, png)


def plot_drop(runs: Mapping[str, Path], png: Path) -> Path | None:
    """Fig. 9: precision and recall of false positives among the dropped interactions per
    epoch, against the random-drop reference, one line pair per run."""
    data = {label: read_csv(path) for label, path in runs.items()}
    data = {k: v for k, v in data.items() if has_values(v, "drop_precision", "drop_recall")}
    if not data:
        return None
    figure = _figure(2, 1)
    axes = figure.subplots(1, 2, squeeze=False)[0]
    for ax, name in zip(axes, ("precision", "recall")):
        for index, (label, rows) in enumerate(data.items()):
            x = list(range(1, len(rows) + 1))
            color = f"C{index}"
            ax.plot(x, numbers(rows, f"drop_{name}"), color=color, label=f"{label}: dropped")
            ax.plot(
                x,
                numbers(rows, f"random_{name}"),
                color=color,
                linestyle="--",
                label=f"{label}: random drop",
            )
        ax.set(title=f"false positives: {name}", xlabel="epoch", ylabel=name)
        _whole_epochs(ax)
        ax.legend(fontsize="small")
    return _save(figure, png)


def plot_sparsity_groups(
    runs: Mapping[str, Sequence[Path]], png: Path, *, metric: str | None = None
) -> Path | None:
    """Fig. 7: ``metric`` per user-sparsity group, one line per label (mean over its files,
    one ``sparsity_groups.csv`` per seed); bars: users per group (from the first file)."""
    curves, groups, users = {}, None, None
    for label, paths in runs.items():
        tables = [rows for rows in (read_csv(p) for p in paths) if rows]
        if not tables:
            continue
        name = _metric_column(tables[0], metric)
        if name is None:
            continue
        if groups is None:
            groups = [row.get("group", str(i + 1)) for i, row in enumerate(tables[0])]
            users = numbers(tables[0], "users")
        runs_values = [numbers(rows, name) for rows in tables if len(rows) == len(groups)]
        if runs_values:
            curves[label] = ([_nanmean(col) for col in zip(*runs_values)], name)
    if not curves:
        return None
    figure = _figure(1, 1, width=6.4)
    ax = figure.subplots()
    x = list(range(len(groups)))
    bars = ax.twinx()
    bars.bar(x, [0 if math.isnan(u) else u for u in users], color="lightgrey", alpha=0.6)
    bars.set_ylabel("users")
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    for label, (values, _) in curves.items():
        ax.plot(x, values, marker="o", label=label)
    ax.set_xticks(x, [str(g) for g in groups])
    shown = next(iter(curves.values()))[1]
    ax.set(xlabel="user group (sparsest first)", ylabel=f"test {shown}")
    ax.legend()
    return _save(figure, png)


def plot_grid(
    points: Sequence[tuple[Mapping, float, float]],
    png: Path,
    *,
    metric: str,
    title: str = "",
) -> Path | None:
    """Fig. 10: ``points`` are (setting, validation value, test value). The x axis is the
    setting's last parameter (in grid order), one line per value of the others."""
    points = [p for p in points if not (math.isnan(p[1]) and math.isnan(p[2]))]
    if not points:
        return None
    names = list(points[0][0])
    x_name = names[-1] if names else "setting"
    x_values = list(dict.fromkeys(p[0].get(x_name) for p in points))
    lines: dict[tuple, dict] = {}
    for setting, valid, test in points:
        key = tuple((n, setting[n]) for n in names[:-1])
        lines.setdefault(key, {})[setting.get(x_name)] = (valid, test)
    figure = _figure(2, 1)
    axes = figure.subplots(1, 2, squeeze=False)[0]
    for ax, index, split in ((axes[0], 0, "validation"), (axes[1], 1, "test")):
        for key, values in lines.items():
            label = ", ".join(f"{n}={v}" for n, v in key) or None
            y = [values.get(v, (math.nan, math.nan))[index] for v in x_values]
            ax.plot(range(len(x_values)), y, marker="o", label=label)
        ax.set_xticks(range(len(x_values)), [str(v) for v in x_values])
        ax.set(xlabel=x_name, ylabel=f"{split} {metric}", title=f"{title} {split}".strip())
        if any(lines):
            ax.legend(fontsize="small")
    return _save(figure, png)


def plot_compare(
    summaries: Sequence[tuple[str, Mapping[str, tuple[float, float]]]],
    png: Path,
) -> Path | None:
    """Bars of each metric's mean (± sample std), one bar per ``(label, summary)``."""
    summaries = [(label, summary) for label, summary in summaries if summary]
    if not summaries:
        return None
    metrics = list(dict.fromkeys(m for _, summary in summaries for m in summary))
    figure = _figure(len(metrics), 1, width=max(3.2, 0.55 * len(summaries) + 1.5))
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    x = list(range(len(summaries)))
    for ax, metric in zip(axes, metrics):
        means = [s.get(metric, (math.nan, math.nan))[0] for _, s in summaries]
        stds = [s.get(metric, (math.nan, math.nan))[1] for _, s in summaries]
        errors = [0.0 if math.isnan(e) else e for e in stds]
        ax.bar(x, means, yerr=errors, capsize=3, color=[f"C{i % 10}" for i in x])
        ax.set_xticks(x, [label for label, _ in summaries], rotation=60, ha="right")
        ax.set_title(f"test {metric}")
    return _save(figure, png)


def _metric_column(rows: Sequence[Mapping[str, str]], metric: str | None) -> str | None:
    columns = [c for c in rows[0] if c not in _GROUP_COLUMNS]
    if metric is not None:
        for column in columns:
            if column.lower() == metric.lower():
                return column
    return columns[-1] if columns else None


def _epoch_label(rows: Sequence[Mapping[str, str]]) -> str:
    phases = list(dict.fromkeys(row.get("phase") or "" for row in rows))
    return "epoch" if len(phases) < 2 else f"epoch ({' then '.join(phases)})"


def _whole_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def _figure(columns: int, rows: int, *, width: float = 4.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, png: Path) -> Path:
    """Write the figure whole, with the mode of the user's umask."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(png, "wb") as stream:
        figure.savefig(stream, format="png", dpi=100)
    return png


def run_plots(run_dir: Path, label: str = "") -> list[Path]:
    """The figures of one run, beside its ``training.csv``: ``loss_curves.png`` (Fig. 2/8) and
    ``drop.png`` (Fig. 9), where the CSV has their columns."""
    training = Path(run_dir) / TRAINING_CSV
    runs = {label or Path(run_dir).name: training}
    drawn = [
        plot_loss_curves(runs, Path(run_dir) / "loss_curves.png"),
        plot_drop(runs, Path(run_dir) / "drop.png"),
    ]
    return [png for png in drawn if png is not None]
