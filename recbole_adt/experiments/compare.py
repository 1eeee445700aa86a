"""Compare models, losses and RecBole baselines over seeds: the paper's Table 3, with its
statistics.

Every (model, loss) trains once per seed; the seed sets the split, so all losses and
baselines of a seed train, select and test on the same data and the same clean test. RecBole
baselines (``baselines``) train with their own loss through
:func:`~recbole_adt.quick_start.run_recbole_adt`. Writes ``DIR/results.csv`` (a row per run),
``DIR/results.md`` (mean ± std, RI over CE, paired t-tests) and, with matplotlib, the figures
beside them (with ``strategies``, Table 4's shape; with ``colliding``, Table 5's too:
:func:`~recbole_adt.experiments.tables.compare_markdown`): ``compare.png`` (bars),
``loss_curves_<model>.png`` (Fig. 2/8), ``drop_<model>.png`` (Fig. 9),
``sparsity_<model>.png`` (Fig. 7), and each run's ``loss_curves.png`` and ``drop.png`` in
``DIR/runs/<run id>/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from recbole_adt.data.embedded import EMBEDDED_DATASET
from recbole_adt.denoisers import ADT_LOSS_NAMES, DENOISERS
from recbole_adt.experiments import plots
from recbole_adt.experiments.choices import (
    check_jobs,
    loss_names,
    make_experiment,
    model_names,
    seed_list,
    split_list,
)
from recbole_adt.experiments.grid import COLLIDING_GRID, read_tuned
from recbole_adt.experiments.results import OK, TEST, write_atomic
from recbole_adt.experiments.runner import (
    BASELINE,
    STRATEGIES,
    Experiment,
    RunSpec,
    check_runs,
    make_spec,
    run_all,
)
from recbole_adt.experiments.tables import Group, compare_markdown, group_runs
from recbole_adt.experiments.workspace import Workspace

TABLE_FILE = "results.md"
NR_BASELINE = "NR"  # --baselines NR: adt_loss NR on each --models model (not a RecBole model)
# The losses whose denoiser follows the drop-rate schedule (their runs get a drop plot).
_TRUNCATING = tuple(
    name.lower() for name, loss in ADT_LOSS_NAMES.items() if DENOISERS[loss.denoiser].drops
)


def compare(
    output: str | Path,
    *,
    models: str | Sequence[str] = ("GMF", "NeuMF", "CDAE"),
    losses: str | Sequence[str] = ("ce", "tce", "rce"),
    baselines: str | Sequence[str] = (),
    strategies: str | Sequence[str] | None = None,
    colliding: bool = False,
    seeds: int | str | Sequence[int] = 5,
    dataset: str | None = None,
    config_files: Sequence[str] | str | None = None,
    settings: Mapping | None = None,
    tuned: str | Path | Sequence[str | Path] | None = None,
    jobs: int = 1,
    keep_checkpoints: bool = False,
    verbose: bool = False,
    plots_wanted: bool = True,
    command: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run every model x loss and every baseline on every seed; write the tables and plots.

    ``seeds`` is a count N (seeds 1..N) or the seeds. ``settings`` apply to every run (as
    ``--key=value`` would); ``tuned`` names grid searches (folders or ``grid_choice.json``)
    whose chosen settings apply to their (model, loss), and to baselines (the choice of
    (model, ``ce``); NR: (model, ``nr``)).

    Table 4: ``strategies`` (``none,finetune,warmup``) trains each (model, loss) under each
    strategy's phases (``STRATEGIES``; a tuned warm-up length, ``phases``, goes to ``warmup``
    only), and the table's RI and paired tests are against plain training (CE, none);
    ``baselines`` may name ``NR`` (adt_loss NR on each model). Table 5: ``colliding`` runs
    the warmup strategy with colliding inference and adds each ratio group's warm-up and
    warm-up + colliding results. Runs already in ``DIR/results.csv``
    with the same settings are skipped. ``jobs`` runs that many at once in spawned processes
    (the same results; a calling script needs ``if __name__ == "__main__":``). Returns
    ``{"rows", "groups", "results_csv", "results_md", "plots", "failed"}``.

    Every name, setting and run is checked before the first run starts (a ``ValueError``).
    ``DIR`` is locked while the runs write to it; a stop signal records the runs in progress
    as interrupted and raises :class:`~recbole_adt.experiments.workspace.Stopped`
    (:class:`~recbole_adt.experiments.workspace.Workspace`).
    """
    model_list = model_names(split_list(models))
    baseline_names = split_list(baselines)
    nr = [name for name in baseline_names if name.strip().upper() == NR_BASELINE]
    baseline_list = model_names([n for n in baseline_names if n not in nr], "--baselines")
    loss_list = loss_names(split_list(losses))
    strategy_list = strategy_names(split_list(strategies), colliding)
    _check_extra_feedback_options(model_list, loss_list, baseline_list, nr, colliding)
    if not model_list and not baseline_list:
        raise ValueError("Nothing to compare: give --models (with --losses) or --baselines.")
    if model_list and not loss_list:
        raise ValueError("--models needs --losses, e.g. --losses ce,tce,rce.")
    both = [model for model in model_list if model in baseline_list]
    if both:
        raise ValueError(
            f"{', '.join(both)} in both --models and --baselines: a baseline trains with the "
            "model's own loss (adt_loss CE), the same runs as --losses ce. Give each model in "
            "one of them."
        )
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
    if strategy_list and "phases" in dict(experiment.settings):
        raise ValueError(
            "--phases cannot be given with --strategies: each strategy sets the phases of its "
            "runs (none: [adt], finetune: [adt, finetune], warmup: [warmup, adt]; a tuned "
            "warm-up length comes from --tuned). Leave out --phases."
        )
    if colliding:
        experiment = _with_colliding(experiment, settings)
    choices = read_tuned(tuned) if tuned else {}
    # (model, loss) of every run kind: a tuned choice applies to the runs of its key
    keys = {(m, loss) for m in model_list for loss in loss_list}
    keys |= {(m, "ce") for m in baseline_list} | {(m, "nr") for m in model_list if nr}
    unused = [f"{m}/{loss}" for m, loss in choices if (m, loss) not in keys]
    if unused:
        echo(f"--tuned: not used, as those models and losses are not compared: {unused}")

    def tuned_settings(model: str, loss: str, strategy: str = "") -> dict:
        """The choice of (model, loss); with strategies a searched warm-up length (phases)
        belongs to the warmup strategy only."""
        chosen = dict(choices.get((model, loss)) or {})
        if strategy_list and strategy != "warmup":
            chosen.pop("phases", None)
        return chosen

    specs = [
        make_spec(model, loss, seed, tuned_settings(model, loss, strategy), strategy)
        for model in model_list
        for loss in loss_list
        for strategy in strategy_list or [""]
        for seed in seed_values
    ]
    specs += [
        make_spec(model, "nr", seed, tuned_settings(model, "nr"))
        for model in (model_list if nr else [])
        for seed in seed_values
    ]
    specs += [
        make_spec(model, BASELINE, seed, tuned_settings(model, "ce"))
        for model in baseline_list
        for seed in seed_values
    ]
    check_runs(experiment, specs)
    echo(f"compare: {len(specs)} runs into {experiment.output}")
    with Workspace(experiment.output, echo):
        return _compare_runs(
            experiment,
            specs,
            seed_values,
            jobs=jobs,
            plots_wanted=plots_wanted,
            command=command,
            dataset=dataset,
            strategies=bool(strategy_list),
            colliding=colliding,
            echo=echo,
        )


def strategy_names(names: Sequence[str], colliding: bool = False) -> list[str]:
    """``--strategies`` checked: names of ``STRATEGIES`` (lower case), none twice; ``[]``
    without them. ``colliding`` (Table 5) needs warm-up: it is the only strategy then, and
    the default one."""
    found: list[str] = []
    for name in names:
        key = name.strip().lower().replace("-", "").replace("_", "")
        if key not in STRATEGIES:
            raise ValueError(
                f"--strategies: unknown strategy {name!r}. Choose from "
                f"{', '.join(STRATEGIES)} (none: [adt]; finetune: [adt, finetune]; warmup: "
                "[warmup, adt])."
            )
        if key in found:
            raise ValueError(f"--strategies names {key} twice: each runs once. Remove the repeat.")
        found.append(key)
    if colliding and found not in ([], ["warmup"]):
        raise ValueError(
            f"--colliding with --strategies {','.join(found)}: colliding inference mixes with "
            "the user space E* learnt in warm-up, so Table 5 compares warm-up with warm-up + "
            "colliding inference only. Give --strategies warmup (or leave it out), and run "
            "the other strategies (Table 4) with another --output."
        )
    return ["warmup"] if colliding and not found else found


def _check_extra_feedback_options(
    models: list[str], losses: list[str], baselines: list[str], nr: list[str], colliding: bool
) -> None:
    """The NR baseline runs on --models; --colliding (Table 5) takes no baseline."""
    if nr and not models:
        raise ValueError(
            "--baselines NR trains the --models under adt_loss NR: give --models, e.g. "
            "--models GMF --baselines NMTR,NR."
        )
    if len(nr) > 1:
        raise ValueError("--baselines names NR twice: it runs once. Remove the repeat.")
    if nr and "nr" in losses:
        raise ValueError(
            "NR in both --losses and --baselines: they are the same runs (adt_loss NR on each "
            "--models model). Give it in one of them (--baselines NR: a baseline row of "
            "Table 4, without strategies)."
        )
    if colliding and (baselines or nr):
        raise ValueError(
            f"--colliding with --baselines {','.join(baselines + nr)}: Table 5 compares "
            "warm-up with warm-up + colliding inference of the --models and --losses. Run "
            "the baselines (Table 4) with another --output."
        )


def _with_colliding(experiment: Experiment, settings: Mapping | None) -> Experiment:
    """The experiment with colliding inference on, and the paper's |N_u| and λ lists where
    not given, so that each run picks its pair on validation (a tuned pair overrides them)."""
    given = dict(settings or {})
    if str(given.get("colliding_inference", True)).strip().lower() in ("false", "0"):
        raise ValueError(
            "--colliding turns colliding inference on, and --colliding_inference=False turns "
            "it off: leave out one of them."
        )
    common = dict(experiment.settings)
    common["colliding_inference"] = True
    for name, values in COLLIDING_GRID.items():
        common.setdefault(name, values)
    return replace(experiment, settings=tuple(sorted(common.items())))


def _compare_runs(
    experiment: Experiment,
    specs: list[RunSpec],
    seed_values: list[int],
    *,
    jobs: int,
    plots_wanted: bool,
    command: str | None,
    dataset: str | None,
    strategies: bool = False,
    colliding: bool = False,
    echo: Callable[[str], None],
) -> dict:
    """Run the checked specs in the locked output folder; write the table and the plots."""
    rows = run_all(experiment, specs, jobs=jobs, echo=echo)
    groups = group_runs(specs, rows)

    drawn: list[Path] = []
    if plots_wanted and plots.available():
        drawn = draw(experiment.output, groups)
    elif plots_wanted:
        echo(f"plots skipped: matplotlib is not installed ({plots.INSTALL_HINT} adds it)")
    rules = sorted({row["checkpoint_rule"] for g in groups for row in g.ok}) or ["valid_metric"]
    seeds_text = ", ".join(map(str, seed_values))
    text = compare_markdown(
        groups,
        title=f"Comparison on {dataset or EMBEDDED_DATASET}, seeds {seeds_text}",
        checkpoint_rule=", ".join(rules),
        command=command,
        plots=[png.name for png in drawn if png.parent == experiment.output],
        strategies=strategies,
        colliding=colliding,
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


def draw(output: Path, groups: Sequence[Group]) -> list[Path]:
    """The comparison's figures from its CSV files (see the module docstring)."""
    drawn = []
    for group in groups:
        for row in group.ok:
            drawn += plots.run_plots(output / row["diagnostics_dir"], _label(group))
    summaries = [(f"{group.model} {group.label}", group.summary(TEST)) for group in groups]
    drawn.append(plots.plot_compare(summaries, output / "compare.png"))
    for model in dict.fromkeys(group.model for group in groups):
        own = [group for group in groups if group.model == model and group.ok]
        first = {g: output / g.ok[0]["diagnostics_dir"] / plots.TRAINING_CSV for g in own}
        curves = {_label(g): path for g, path in first.items()}
        drawn.append(plots.plot_loss_curves(curves, output / f"loss_curves_{model}.png"))
        drops = {_label(g): path for g, path in first.items() if g.loss in _TRUNCATING}
        drawn.append(plots.plot_drop(drops, output / f"drop_{model}.png"))
        sparsity = {
            _label(g): [output / r["diagnostics_dir"] / plots.SPARSITY_CSV for r in g.ok]
            for g in own
        }
        metric = own[0].ok[0]["selection_metric"] if own else None
        drawn.append(
            plots.plot_sparsity_groups(sparsity, output / f"sparsity_{model}.png", metric=metric)
        )
    return [png for png in drawn if png is not None]


def _label(group: Group) -> str:
    label = f"{group.label} {group.strategy}" if group.strategy else group.label
    settings = " ".join(f"{k}={v}" for k, v in group.settings.items())
    return f"{label} {settings}".strip() if settings else label
