"""Hyper-parameter search over the paper's grids, selected on validation only (section 5).

The paper's grids, each declared by its denoiser (:mod:`recbole_adt.denoisers`): T-CE
ε_max ∈ {0.05, 0.1, 0.2} × ε_N ∈ {1k, 5k, 10k, 20k, 30k} iterations (``num_gradual_unit:
iterations`` goes with it); R-CE β ∈ {0.05, 0.1, ..., 0.25, 0.5, 1.0}; colliding inference
|N_u| ∈ {1, 3, 5, 10, 20, 50, 100} × λ ∈ {0, 0.1, ..., 1}. T-BPR and DCF share T-CE's schedule
grid, R-BPR R-CE's. A choice that sets ``num_gradual`` also records the ``num_gradual_unit`` its
runs used, so that ``compare --tuned`` reruns the same ramp whatever the default.

Every grid point trains once per search seed; the point with the best mean *validation* value
of ``valid_metric``, read at the checkpoint the run's checkpoint rule chose, wins (ties: the
first in grid order). Test results are reported beside it and never used. The chosen setting
can then run over more seeds (``final_seeds``). Colliding inference does not change training:
when ``colliding_inference`` is on, each run gets the |N_u| and λ lists and picks its pair on
validation itself (see :func:`recbole_adt.evaluation.select_colliding`).

RecBole's own hyper-tuning (``recbole.trainer.HyperTuning``) runs hyperopt over
``recbole.quick_start.objective_function``, which builds RecBole's dataset and models (no
clean test, no plugin models) and imports ray; this is the plain loop over our run function.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from recbole_adt.config import SETTINGS_OWNERS
from recbole_adt.denoisers import ADT_LOSS_NAMES, DENOISERS
from recbole_adt.denoisers.base import LOSS_GRIDS
from recbole_adt.experiments import plots
from recbole_adt.experiments.choices import (
    check_jobs,
    config_value,
    literal,
    loss_names,
    make_experiment,
    model_names,
    seed_list,
    split_list,
)
from recbole_adt.experiments.results import OK, TEST, display_loss, write_atomic
from recbole_adt.experiments.runner import (
    Experiment,
    RunSpec,
    check_runs,
    check_settings,
    make_spec,
    run_all,
)
from recbole_adt.experiments.tables import (
    Group,
    grid_markdown,
    group_runs,
    selection_value,
)
from recbole_adt.experiments.workspace import Workspace
from recbole_adt.known_settings import check_known_settings
from recbole_adt.utils import get_model

CHOICES_FILE = "grid_choice.json"
WARMUP = "warmup"  # --grid warmup=0,5,10: warm-up lengths, searched as phases
GRID_FILE = "grid.md"

COLLIDING_GRID = {
    "colliding_neighbours": [1, 3, 5, 10, 20, 50, 100],
    "colliding_lambda": [round(0.1 * k, 1) for k in range(11)],
}
# loss (lower case) -> the paper's grid: the loss's own (LOSS_GRIDS, NR) or its denoiser's
DEFAULT_GRIDS = {
    name.lower(): LOSS_GRIDS.get(name) or DENOISERS[loss.denoiser].default_grid
    for name, loss in ADT_LOSS_NAMES.items()
    if LOSS_GRIDS.get(name) or DENOISERS[loss.denoiser].default_grid
}


def default_grid(loss: str, model: str | None = None) -> dict[str, list]:
    """The default grid of a (model, loss): the model's own settings (``default_grid`` of its
    class, e.g. NMTR's loss weights), then the loss's paper grid; the product of both when both
    have one. ``ValueError`` when neither has a grid."""
    model_grid = dict(getattr(get_model(model), "default_grid", {})) if model else {}
    if loss not in DEFAULT_GRIDS and not model_grid:
        with_grids = ", ".join(DEFAULT_GRIDS)
        raise ValueError(
            f"{display_loss(loss)} has no grid in the paper (only {with_grids} do, and the "
            "model NMTR has its own): give one, e.g. --grid drop_rate=0.05,0.1,0.2."
        )
    grid = {**model_grid, **DEFAULT_GRIDS.get(loss, {})}
    return {
        name: [list(value) if isinstance(value, tuple) else value for value in values]
        for name, values in grid.items()
    }


def parse_grid(texts: Sequence[str]) -> dict[str, list]:
    """``['drop_rate=0.05,0.1', 'num_gradual=1000,5000']`` -> ``{name: [values]}``, in order.

    Values are literals (``0.1``, ``[10,20]``); commas inside brackets stay with their value.
    """
    grid: dict[str, list] = {}
    for text in texts:
        name, equals, values = text.partition("=")
        name = name.strip().lstrip("-")
        parts = _split_top_level(values)
        if not equals or not name.isidentifier() or not parts:
            raise ValueError(
                f"--grid {text!r}: give a setting and its values, e.g. "
                "--grid drop_rate=0.05,0.1,0.2 (repeat --grid for another setting)."
            )
        if name in grid:
            raise ValueError(f"--grid {name} is given twice: give all its values in one --grid.")
        grid[name] = [literal(part) for part in parts]
    return check_grid(grid)


def check_grid(grid: Mapping[str, Sequence]) -> dict[str, list]:
    """``grid`` as lists, checked: known setting names that the experiment does not set
    itself, each with at least one value and none twice. The values are checked with each
    run's Config (:func:`~recbole_adt.experiments.runner.check_runs`). ``warmup`` (warm-up
    lengths, :func:`warmup_phases`) becomes ``phases`` in its place."""
    if WARMUP in grid:
        if "phases" in grid:
            raise ValueError(
                "--grid warmup and --grid phases both set phases: give one of them (warmup=N "
                "searches [warmup:N, adt], 0 meaning [adt])."
            )
        grid = {
            ("phases" if name == WARMUP else name): (
                warmup_phases(values) if name == WARMUP else values
            )
            for name, values in grid.items()
        }
    check_settings(grid, "--grid")
    check_known_settings(grid, "--grid", SETTINGS_OWNERS)
    checked = {}
    for name, values in grid.items():
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
            values = [values]  # one value
        if not values:
            raise ValueError(f"--grid {name} has no values: give them, e.g. --grid {name}=V1,V2.")
        for index, value in enumerate(values):
            if value in values[:index]:
                raise ValueError(
                    f"--grid {name} lists {value!r} twice: each grid point runs once, and a "
                    "repeat would train the same runs again. Remove the repeat."
                )
        checked[name] = list(values)
    return checked


def warmup_phases(lengths) -> list[list[str]]:
    """Warm-up lengths as ``phases`` values: N -> ``[warmup:N, adt]`` (N epochs of CE on D*
    before ADT), 0 -> ``[adt]`` (no warm-up), so that no warm-up competes on validation.

    ``ValueError`` for a length that is not a whole number >= 0."""
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence):
        lengths = [lengths]
    phases = []
    for length in lengths:
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(
                f"--grid warmup: {length!r} is not a warm-up length. Give whole numbers of "
                "epochs >= 0, e.g. --grid warmup=0,5,10,20 (0: no warm-up)."
            )
        phases.append(["adt"] if length == 0 else [f"warmup:{length}", "adt"])
    return phases


def grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination, the last setting varying fastest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def grid_search(
    output: str | Path,
    *,
    models: str | Sequence[str] = ("GMF",),
    losses: str | Sequence[str] = ("tce",),
    grid: Mapping[str, Sequence] | Sequence[str] | None = None,
    seeds: int | str | Sequence[int] = 1,
    final_seeds: int | str | Sequence[int] | None = None,
    dataset: str | None = None,
    config_files: Sequence[str] | str | None = None,
    settings: Mapping | None = None,
    jobs: int = 1,
    keep_checkpoints: bool = False,
    verbose: bool = False,
    plots_wanted: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Search each (model, loss)'s grid on validation; optionally rerun the choice on more seeds.

    ``grid`` is ``{setting: values}`` or ``--grid`` texts; ``None`` takes each loss's paper
    grid. Writes ``DIR/results.csv`` (every run), ``DIR/grid.md`` (this search's tables),
    ``DIR/grid_choice.json`` (the choices, merged with earlier searches in ``DIR``; give it to
    ``compare(tuned=...)``) and ``DIR/grid_<model>_<loss>.png``. Returns ``{"choices": {"MODEL/
    loss": choice}, "rows": [...], "plots": [...], "failed": n}``.

    As in :func:`~recbole_adt.experiments.compare.compare`, every name, grid value and run is
    checked before the first run starts, and the output folder is locked while it runs.
    """
    model_list = model_names(split_list(models))
    loss_list = loss_names(split_list(losses))
    if not model_list or not loss_list:
        raise ValueError("A grid search needs at least one model (--models) and loss (--loss).")
    if grid is not None:
        grid = check_grid(grid) if isinstance(grid, Mapping) else parse_grid(list(grid))
    search_seeds = seed_list(seeds)
    final = seed_list(final_seeds, "--final_seeds") if final_seeds not in (None, 0, "0", "") else []
    check_jobs(jobs)
    experiment = make_experiment(
        output,
        dataset=dataset,
        config_files=config_files,
        settings=settings,
        keep_checkpoints=keep_checkpoints,
        verbose=verbose,
    )
    grids = {
        (model, loss): dict(grid) if grid is not None else default_grid(loss, model)
        for model in model_list
        for loss in loss_list
    }
    searched_names = {name for loss_grid in grids.values() for name in loss_grid}
    colliding = {
        name: values
        for name, values in _colliding_lists(experiment, model_list).items()
        if name not in searched_names  # searched as grid points instead
    }
    if colliding:
        experiment = make_experiment(
            output,
            dataset=dataset,
            config_files=config_files,
            settings={**colliding, **dict(experiment.settings)},
            keep_checkpoints=keep_checkpoints,
            verbose=verbose,
        )
    for loss_grid in grids.values():
        for name in set(loss_grid) & set(dict(experiment.settings)):
            raise ValueError(
                f"{name} is both searched (--grid or the loss's grid) and set (--{name}=...): "
                "leave the --key=value out, or give the values you want as --grid."
            )
    earlier = _earlier_choices(experiment.output / CHOICES_FILE)
    searches = {
        (model, loss): [
            [make_spec(model, loss, seed, point) for seed in search_seeds]
            for point in grid_points(grids[model, loss])
        ]
        for model in model_list
        for loss in loss_list
    }
    all_specs = [spec for points in searches.values() for specs in points for spec in specs]
    check_runs(experiment, all_specs)  # the final seeds' runs have the same settings
    echo(f"grid search: {len(all_specs)} runs ({'; '.join(_search_sizes(searches))})")
    with Workspace(experiment.output, echo):
        return _search(
            experiment,
            searches,
            search_seeds,
            final,
            earlier=earlier,
            jobs=jobs,
            plots_wanted=plots_wanted,
            echo=echo,
        )


def _search(
    experiment: Experiment,
    searches: Mapping[tuple[str, str], list[list[RunSpec]]],
    search_seeds: list[int],
    final: list[int],
    *,
    earlier: dict,
    jobs: int,
    plots_wanted: bool,
    echo: Callable[[str], None],
) -> dict:
    """Run the checked searches in the locked output folder; write the choices and tables."""
    all_specs = [spec for points in searches.values() for specs in points for spec in specs]
    rows = run_all(experiment, all_specs, jobs=jobs, echo=echo)
    searched = {
        key: group_runs([spec for specs in points for spec in specs], rows)
        for key, points in searches.items()
    }
    chosen = {key: choose(groups) for key, groups in searched.items()}
    finals = {
        key: [make_spec(*key, seed, group.settings) for seed in final]
        for key, group in chosen.items()
        if group is not None and final
    }
    if finals:
        specs = [spec for specs in finals.values() for spec in specs]
        echo(f"the chosen settings over seeds {final}: {len(specs)} runs")
        rows.update(run_all(experiment, specs, jobs=jobs, echo=echo))

    choices, sections, drawn = {}, [], []
    for key, groups in searched.items():
        metric = _selection_metric(groups)
        final_group = group_runs(finals[key], rows)[0] if key in finals else None
        sections.append(
            grid_markdown(*key, groups, chosen[key], selection_metric=metric, final=final_group)
        )
        unit = _gradual_unit(experiment, chosen[key])
        choices["/".join(key)] = _choice(chosen[key], metric, final_group, search_seeds, unit)
        if plots_wanted and plots.available():
            drawn += _draw(experiment.output, *key, groups, metric)
    path = experiment.output / CHOICES_FILE
    write_atomic(path, json.dumps({**earlier, **choices}, indent=2, sort_keys=True) + "\n")
    header = [
        "# Grid search, selected on validation",
        "",
        f"Search seeds: {', '.join(map(str, search_seeds))}. A setting's validation value is "
        "the mean over the search seeds, each read at the checkpoint its checkpoint rule chose.",
        "",
    ]
    if drawn:
        sections.append("\n".join(f"![{png.name}]({png.name})" for png in drawn) + "\n")
    write_atomic(experiment.output / GRID_FILE, "\n".join(header + sections))
    if plots_wanted and not plots.available():
        echo(f"plots skipped: matplotlib is not installed ({plots.INSTALL_HINT} adds it)")
    for key, choice in choices.items():
        echo(f"chosen for {key}: {choice['settings'] if choice else 'nothing (no run finished)'}")
    echo(f"wrote {experiment.output / GRID_FILE} and {path}")
    failed = sum(row.get("status") != OK for row in rows.values())
    return {"choices": choices, "rows": list(rows.values()), "plots": drawn, "failed": failed}


def choose(groups: Sequence[Group]) -> Group | None:
    """The group with the best mean validation value of its selection metric (first on
    ties); ``None`` when no group has a finished run."""
    best, best_value = None, math.nan
    for group in groups:
        if not group.ok:
            continue
        metric = group.ok[0]["selection_metric"]
        value = selection_value(group, metric)
        if math.isnan(value):
            continue
        bigger = group.ok[0].get("bigger_is_better", "True") != "False"
        if best is None or (value > best_value if bigger else value < best_value):
            best, best_value = group, value
    return best


def read_tuned(paths: str | Path | Sequence[str | Path]) -> dict[tuple[str, str], dict]:
    """(model, loss) -> the chosen settings, from ``grid_choice.json`` files or the folders
    holding them (later files win), colliding inference's chosen pair included.

    ``ValueError`` naming the file for one that is missing, damaged or not a grid search's
    choices, or that sets a setting no one reads."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    tuned = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            path = path / CHOICES_FILE
        if not path.is_file():
            raise ValueError(
                f"--tuned {given}: no {CHOICES_FILE} there. Give the --output folder of a "
                "grid search, or its grid_choice.json."
            )
        fix = (
            "Run the grid search that wrote it again (python -m recbole_adt.experiments grid "
            "... --output DIR) or restore the file, or give the --output folder of another "
            "grid search."
        )
        for key, choice in _read_choices(path, f"--tuned {given}", fix).items():
            if choice:
                if "num_gradual" in choice["settings"]:
                    _check_gradual_unit(given, key, choice["settings"])
                model, _, loss = key.partition("/")
                settings = {**choice["settings"], **choice.get("colliding", {})}
                check_known_settings(settings, f"--tuned {path} ({key})", SETTINGS_OWNERS)
                tuned[(model, loss)] = settings
    return tuned


def _earlier_choices(path: Path) -> dict:
    """The choices of earlier searches in this output folder, merged with this one's."""
    if not path.exists():
        return {}
    fix = (
        f"Move it away (this search then writes a new {CHOICES_FILE} with its own choices), "
        "or give another --output."
    )
    return _read_choices(path, "the earlier grid searches in --output", fix)


def _read_choices(path: Path, origin: str, fix: str) -> dict:
    """A ``grid_choice.json``: ``{"MODEL/loss": {"settings": {...}, ...} or null}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"{origin}: {path} cannot be read ({err.strerror}). {fix}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{origin}: {path} is damaged: it is not UTF-8 text. {fix}") from None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{origin}: {path} is damaged: it is not valid JSON ({err.msg} at line "
            f"{err.lineno}, column {err.colno}). {fix}"
        ) from None
    problem = _choices_problem(data)
    if problem:
        raise ValueError(
            f"{origin}: {path} does not hold a grid search's choices: {problem}. A grid "
            'search writes {"MODEL/loss": {"settings": {"name": value, ...}, ...}, ...}. '
            f"{fix}"
        )
    return data


def _choices_problem(data) -> str | None:
    """What is wrong with the shape of a ``grid_choice.json``'s contents, or None."""
    if not isinstance(data, dict):
        return f"it holds {_json_kind(data)}, not an object"
    for key, choice in data.items():
        model, slash, loss = key.partition("/")
        if not (slash and model and loss):
            return f"its key {key!r} is not MODEL/loss (e.g. GMF/tce)"
        if choice is None:
            continue
        if not isinstance(choice, dict):
            return f"{key} holds {_json_kind(choice)}, not an object"
        if not isinstance(choice.get("settings"), dict):
            return f'{key} has no "settings" object'
        if not isinstance(choice.get("colliding", {}), dict):
            return f'{key}\'s "colliding" is {_json_kind(choice["colliding"])}, not an object'
    return None


def _json_kind(value) -> str:
    kinds = ((bool, "true or false"), (dict, "an object"), (list, "an array"), (str, "a string"))
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return "null" if value is None else "a number"


def _check_gradual_unit(given, key: str, settings: Mapping) -> None:
    """A tuned num_gradual needs its unit: the default changed from iterations to epochs."""
    if "num_gradual_unit" not in settings:
        raise ValueError(
            f"--tuned {given}: the choice for {key} sets num_gradual {settings['num_gradual']} "
            "but not num_gradual_unit, whose default is now epochs. Grid searches before it "
            'was recorded counted num_gradual in iterations: add "num_gradual_unit": '
            f'"iterations" next to "num_gradual" in {CHOICES_FILE} (or "epochs" if that '
            "search set num_gradual_unit: epochs)."
        )


def _gradual_unit(experiment, group: Group | None) -> str | None:
    """The num_gradual_unit of a group's runs when it searched num_gradual without it."""
    if group is None or "num_gradual" not in group.settings:
        return None
    if "num_gradual_unit" in group.settings:
        return None
    return config_value(experiment, group.model, "num_gradual_unit")


def _choice(group, metric, final_group, search_seeds, unit: str | None = None) -> dict | None:
    """The chosen group's settings and results; ``unit``: its runs' num_gradual_unit, recorded
    when it searched num_gradual without it."""
    if group is None:
        return None
    settings = dict(group.settings)
    if unit is not None:
        settings["num_gradual_unit"] = unit
    choice = {
        "settings": settings,
        "selection_metric": metric,
        "valid": selection_value(group, metric),
        "search_seeds": search_seeds,
        "test": {m: v[0] for m, v in group.summary(TEST).items()},
    }
    colliding = [json.loads(r["colliding"]) for r in group.ok if r.get("colliding")]
    if colliding:  # the pair most runs chose on validation (first on ties)
        pair = max(colliding, key=lambda c: sum(c == other for other in colliding))
        choice["colliding"] = {
            "colliding_neighbours": pair["neighbours"],
            "colliding_lambda": pair["lambda"],
        }
    if final_group is not None and final_group.ok:
        choice["final_seeds"] = sorted(int(r["seed"]) for r in final_group.ok)
        choice["final_test"] = {m: list(v) for m, v in final_group.summary(TEST).items()}
    return choice


def _colliding_lists(experiment, models: Sequence[str]) -> dict:
    """The paper's |N_u| and λ lists when colliding inference is on and they are not given."""
    if not any(config_value(experiment, model, "colliding_inference") for model in models):
        return {}
    given = dict(experiment.settings)
    return {name: values for name, values in COLLIDING_GRID.items() if name not in given}


def _selection_metric(groups: Sequence[Group]) -> str:
    for group in groups:
        for row in group.ok:
            return row["selection_metric"]
    return ""


def _draw(output: Path, model: str, loss: str, groups, metric: str) -> list[Path]:
    points = []
    for group in groups:
        if group.ok:
            setting = group.settings
            valid = selection_value(group, metric)
            tests = [float(r[f"test:{metric}"]) for r in group.ok if r.get(f"test:{metric}")]
            points.append((setting, valid, sum(tests) / len(tests) if tests else math.nan))
    title = f"{model} + {display_loss(loss)}"
    png = plots.plot_grid(points, output / f"grid_{model}_{loss}.png", metric=metric, title=title)
    drawn = [png] if png else []
    for group in groups:
        for row in group.ok:
            plots.run_plots(output / row["diagnostics_dir"])
    return drawn


def _search_sizes(searches: Mapping[tuple[str, str], list]) -> list[str]:
    return [
        f"{model} + {display_loss(loss)}: {len(points)} settings x {len(points[0])} seeds"
        for (model, loss), points in searches.items()
        if points
    ]


def _split_top_level(text: str) -> list[str]:
    """Split on the commas outside brackets: ``0.1,[10,20]`` -> ``['0.1', '[10,20]']``."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]
