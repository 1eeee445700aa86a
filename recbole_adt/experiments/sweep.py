r"""Sweep the injected noise rate: how each loss degrades as false positives are added.

    python -m recbole_adt.experiments sweep --models GMF --losses ce,tce,rce,dcf \
        --noise_rates 0,0.1,0.2,0.4 --mechanism popularity --seeds 5 --output DIR

Every (model, loss, rate, seed) is one run of ``compare``'s machinery
(:func:`~recbole_adt.experiments.runner.run_all`: resumable through ``DIR/results.csv``,
checked before the first run, ``DIR`` locked) with ``noise_rate`` and ``noise_mechanism`` set
(:mod:`recbole_adt.data.noise_injection`): the run's training split gets
:math:`\mathrm{round}(r \cdot |D_{train}|)` flagged false positives, validation and the clean
test stay the run's without injection. The seed sets the split and the injected pairs, so all
losses of a (rate, seed) train on the same noisy data and test on the same clean test. Rate 0
runs once and serves every mechanism (``--mechanism uniform,popularity`` sweeps both).

Writes ``DIR/results.md``: per mechanism, model, rate and loss the mean ± sample std of each
test metric over the seeds, and each metric's paired t-test against CE of the same model at
the same rate (:func:`~recbole_adt.experiments.stats.paired_t_test`); and with matplotlib
``DIR/degradation_<mechanism>.png``: each test metric against the injected rate, one line per
(model, loss), error bars ± one sample std.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from recbole_adt.data.embedded import EMBEDDED_DATASET
from recbole_adt.data.noise_injection import UNIFORM, mechanism_names
from recbole_adt.experiments import plots
from recbole_adt.experiments.choices import (
    check_jobs,
    loss_names,
    make_experiment,
    model_names,
    seed_list,
    split_list,
)
from recbole_adt.experiments.results import (
    OK,
    TEST,
    display_loss,
    display_metric,
    format_mean_std,
    format_percent,
    format_pvalue,
    metric_names,
    write_atomic,
)
from recbole_adt.experiments.runner import Experiment, RunSpec, check_runs, make_spec, run_all
from recbole_adt.experiments.stats import paired_t_test, relative_improvement
from recbole_adt.experiments.tables import PAIRED_TEST_NOTE, Group, group_runs
from recbole_adt.experiments.workspace import Workspace

TABLE_FILE = "results.md"
RATE, MECHANISM = "noise_rate", "noise_mechanism"
_OPTIONS = {RATE: "--noise_rates", MECHANISM: "--mechanism"}


def rate_list(text: str | Sequence[float]) -> list[float]:
    """``'0,0.1,0.2'`` -> ``[0.0, 0.1, 0.2]``, sorted; ``ValueError`` for a value that is not
    a number >= 0, a repeat, or none."""
    parts = split_list(text) if isinstance(text, str) else list(text)
    try:
        rates = [float(part) for part in parts]
    except (TypeError, ValueError):
        rates = []
    if not rates or any(not math.isfinite(r) or r < 0 for r in rates):
        raise ValueError(
            f"--noise_rates {text!r}: give comma-separated numbers >= 0, the false positives "
            "injected per training interaction, e.g. --noise_rates 0,0.1,0.2,0.4."
        )
    if len(set(rates)) < len(rates):
        raise ValueError(f"--noise_rates {text!r} gives a rate twice: remove the repeat.")
    return sorted(rates)


def mechanism_list(text: str | Sequence[str]) -> list[str]:
    """``'uniform,popularity+user'`` -> ``['uniform', 'popularity+user']``, each checked by
    :func:`~recbole_adt.data.noise_injection.mechanism_names`."""
    names = ["+".join(mechanism_names(name)) for name in split_list(text)]
    if not names:
        raise ValueError("--mechanism: give a mechanism, e.g. --mechanism popularity.")
    if len(set(names)) < len(names):
        raise ValueError(f"--mechanism {text!r} names a mechanism twice: remove the repeat.")
    return names


def sweep_settings(rate: float, mechanism: str) -> dict:
    """A run's own settings: rate 0 has no mechanism (one clean run serves them all)."""
    if rate == 0:
        return {RATE: 0.0}
    return {RATE: rate, MECHANISM: mechanism}


def sweep(
    output: str | Path,
    *,
    models: str | Sequence[str] = ("GMF",),
    losses: str | Sequence[str] = ("ce", "tce", "rce"),
    noise_rates: str | Sequence[float] = (0.0, 0.1, 0.2, 0.4),
    mechanism: str | Sequence[str] = UNIFORM,
    seeds: int | str | Sequence[int] = 5,
    dataset: str | None = None,
    config_files: Sequence[str] | str | None = None,
    settings: Mapping | None = None,
    jobs: int = 1,
    keep_checkpoints: bool = False,
    verbose: bool = False,
    plots_wanted: bool = True,
    command: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run every model x loss x rate (x mechanism) on every seed; write the table and plots.

    ``settings`` apply to every run (``noise_popularity_exponent``, ``noise_user_beta``,
    ``noise_seed`` among them); ``noise_rate`` and ``noise_mechanism`` are the sweep's own.
    Returns ``{"rows", "groups", "results_csv", "results_md", "plots", "failed"}``.
    """
    model_list = model_names(split_list(models))
    loss_list = loss_names(split_list(losses))
    rates = rate_list(noise_rates)
    mechanisms = mechanism_list(mechanism)
    if not model_list or not loss_list:
        raise ValueError("Nothing to sweep: give --models and --losses, e.g. --losses ce,tce.")
    for name, option in _OPTIONS.items():
        if name in (settings or {}):
            raise ValueError(f"{name} cannot be given to sweep: it is set by {option}.")
    seed_values = seed_list(seeds)
    check_jobs(jobs)
    experiment = make_experiment(
        output,
        dataset=dataset,
        config_files=config_files,
        settings=settings,
        keep_checkpoints=keep_checkpoints,
        verbose=verbose,
    )
    specs = list(
        dict.fromkeys(
            make_spec(model, loss, seed, sweep_settings(rate, mech))
            for mech in mechanisms
            for model in model_list
            for loss in loss_list
            for rate in rates
            for seed in seed_values
        )
    )
    check_runs(experiment, specs)
    echo(f"sweep: {len(specs)} runs into {experiment.output}")
    with Workspace(experiment.output, echo):
        return _sweep_runs(
            experiment,
            specs,
            mechanisms,
            jobs=jobs,
            plots_wanted=plots_wanted,
            command=command,
            title=f"Noise sweep on {dataset or EMBEDDED_DATASET}, seeds "
            + ", ".join(map(str, seed_values)),
            echo=echo,
        )


def _sweep_runs(
    experiment: Experiment,
    specs: list[RunSpec],
    mechanisms: list[str],
    *,
    jobs: int,
    plots_wanted: bool,
    command: str | None,
    title: str,
    echo: Callable[[str], None],
) -> dict:
    """Run the checked specs in the locked output folder; write the table and the plots."""
    rows = run_all(experiment, specs, jobs=jobs, echo=echo)
    groups = group_runs(specs, rows)
    curves = {mech: degradation(groups, mech) for mech in mechanisms}
    drawn: list[Path] = []
    if plots_wanted and plots.available():
        for mech, lines in curves.items():
            png = experiment.output / f"degradation_{_file(mech)}.png"
            png = plot_degradation(lines, png, title=f"injected false positives: {mech}")
            drawn += [png] if png is not None else []
    elif plots_wanted:
        echo(f"plots skipped: matplotlib is not installed ({plots.INSTALL_HINT} adds it)")
    text = sweep_markdown(
        curves,
        title=title,
        command=command,
        plots=[png.name for png in drawn],
        failed=[row for row in rows.values() if row.get("status") != OK],
    )
    table = experiment.output / TABLE_FILE
    write_atomic(table, text)
    failed = [rows[spec.run_id] for spec in specs if rows[spec.run_id].get("status") != OK]
    echo(f"wrote {experiment.results_file} and {table}")
    if failed:
        echo(
            f"{len(failed)} of {len(specs)} runs failed (errors in {experiment.results_file}); "
            "run the same command again to retry them"
        )
    return {
        "rows": [rows[spec.run_id] for spec in specs],
        "groups": groups,
        "results_csv": experiment.results_file,
        "results_md": table,
        "plots": drawn,
        "failed": len(failed),
    }


Curves = dict[tuple[str, str], dict[float, Group]]  # (model, loss) -> rate -> its runs


def degradation(groups: Sequence[Group], mechanism: str) -> Curves:
    """The groups of one mechanism (and the shared rate-0 groups) by (model, loss) and rate."""
    curves: Curves = {}
    for group in groups:
        rate = float(group.settings.get(RATE, 0.0))
        if rate > 0 and group.settings.get(MECHANISM) != mechanism:
            continue
        curves.setdefault((group.model, group.loss), {})[rate] = group
    return {key: dict(sorted(by_rate.items())) for key, by_rate in curves.items()}


def sweep_markdown(
    curves: Mapping[str, Curves],
    *,
    title: str,
    command: str | None = None,
    plots: Sequence[str] = (),
    failed: Sequence[Mapping[str, str]] = (),
) -> str:
    """Per mechanism: mean ± std per (model, rate, loss), then the paired tests against CE."""
    lines = [f"# {title}", ""]
    if command:
        lines += ["```", command, "```", ""]
    for mechanism, by_key in curves.items():
        groups = [g for by_rate in by_key.values() for g in by_rate.values()]
        metrics = metric_names([row for g in groups for row in g.ok], TEST)
        lines += [f"## Mechanism: {mechanism}", "", *_summary(by_key, metrics), ""]
        lines += [
            "Test: true positives only (the clean test; injected pairs are training-only). "
            "Mean ± sample std over the seeds that finished (n); rate: injected false "
            "positives per training interaction.",
            "",
        ]
        paired = _paired(by_key, metrics)
        if paired:
            lines += [f"### Paired test against CE at the same rate ({mechanism})", ""]
            lines += [*paired, "", PAIRED_TEST_NOTE, ""]
    if failed:
        lines += ["## Runs that did not finish", ""]
        lines += [f"- {row['run_id']}: {row.get('error') or row.get('status')}" for row in failed]
        lines += [""]
    if plots:
        lines += ["## Plots", "", *(f"![{name}]({name})" for name in plots), ""]
    return "\n".join(lines)


def _summary(by_key: Curves, metrics: list[str]) -> list[str]:
    head = ["Model", "Rate", "Loss", "n", *map(display_metric, metrics)]
    rows = [_row(head), _row(["---"] * len(head))]
    for model, rate, loss, group in _ordered(by_key):
        summary = group.summary(TEST)
        cells = [format_mean_std(*summary[m]) if m in summary else "n/a" for m in metrics]
        rows.append(_row([model, f"{rate:g}", display_loss(loss), str(len(group.ok)), *cells]))
    return rows


def _paired(by_key: Curves, metrics: list[str]) -> list[str]:
    head = ["Model", "Rate", "Loss", *map(display_metric, metrics)]
    rows = []
    for model, rate, loss, group in _ordered(by_key):
        reference = by_key.get((model, "ce"), {}).get(rate)
        if loss == "ce" or reference is None:
            continue
        cells = [paired_cell(group, reference, metric) for metric in metrics]
        rows.append(_row([model, f"{rate:g}", display_loss(loss), *cells]))
    return [_row(head), _row(["---"] * len(head)), *rows] if rows else []


def paired_cell(group: Group, reference: Group, metric: str) -> str:
    """``+3.10% (p 0.012, n 5)``: the relative change of the means over the seeds where both
    finished, and the paired t-test's p-value; n/a with fewer than 2 pairs."""
    ours, theirs = group.by_seed(TEST), reference.by_seed(TEST)
    seeds = [s for s in ours if s in theirs and metric in ours[s] and metric in theirs[s]]
    test = paired_t_test([ours[s][metric] for s in seeds], [theirs[s][metric] for s in seeds])
    if test is None:
        return "n/a"
    mean_ours = math.fsum(ours[s][metric] for s in seeds) / len(seeds)
    mean_ref = math.fsum(theirs[s][metric] for s in seeds) / len(seeds)
    change = format_percent(relative_improvement(mean_ours, mean_ref))
    return f"{change} (p {format_pvalue(test.pvalue)}, n {test.pairs})"


def _ordered(by_key: Curves):
    """(model, rate, loss, group) by model, then rate, then loss in the given order."""
    models = list(dict.fromkeys(model for model, _ in by_key))
    rates = sorted({rate for by_rate in by_key.values() for rate in by_rate})
    for model in models:
        for rate in rates:
            for (m, loss), by_rate in by_key.items():
                if m == model and rate in by_rate:
                    yield model, rate, loss, by_rate[rate]


def plot_degradation(curves: Curves, png: Path, title: str = "") -> Path | None:
    """Each test metric against the injected rate, one line per (model, loss), error bars ±
    one sample std over the seeds; ``None`` (nothing written) without finished runs."""
    groups = [g for by_rate in curves.values() for g in by_rate.values()]
    metrics = metric_names([row for g in groups for row in g.ok], TEST)
    if not metrics:
        return None
    models = {model for model, _ in curves}
    figure = plots._figure(len(metrics), 1)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for (model, loss), by_rate in curves.items():
            points = [(r, g.summary(TEST).get(metric)) for r, g in by_rate.items() if g.ok]
            points = [(r, s) for r, s in points if s is not None]
            if not points:
                continue
            label = display_loss(loss) if len(models) == 1 else f"{model} {display_loss(loss)}"
            ax.errorbar(
                [r for r, _ in points],
                [s[0] for s in (s for _, s in points)],
                yerr=[0.0 if math.isnan(s[1]) else s[1] for _, s in points],
                marker="o",
                capsize=3,
                label=label,
            )
        ax.set(xlabel="injected noise rate", ylabel=f"test {display_metric(metric)}")
        ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return plots._save(figure, png)


def _file(mechanism: str) -> str:
    return mechanism.replace("+", "-")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
