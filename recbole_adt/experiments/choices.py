"""The names an experiment is given (models, losses, seeds, config files, settings), checked
once before any run starts, so that a typo stops the command instead of failing every run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from recbole_adt.cli import _settings_as_argv
from recbole_adt.config import SETTINGS_OWNERS
from recbole_adt.experiments.runner import Experiment, check_settings, config_warnings_hidden
from recbole_adt.experiments.workspace import check_output
from recbole_adt.known_settings import check_known_settings
from recbole_adt.losses import LOSS_NAMES
from recbole_adt.settings import literal_setting
from recbole_adt.utils import get_model

_SEED_LIMIT = 2**32  # numpy's seeds (RecBole's init_seed seeds numpy, random and torch)


def model_names(names: Iterable[str], option: str = "--models") -> list[str]:
    """RecBole's class names (``gmf`` finds GMF); ``ValueError`` naming the closest ones, or a
    model given twice."""
    found: dict[str, str] = {}  # class name -> as given
    for name in names:
        try:
            model = get_model(name.strip()).__name__
        except ValueError as err:
            raise ValueError(f"{option}: {err}") from None
        if model in found:
            raise ValueError(_twice(option, model, found[model], name))
        found[model] = name
    return list(found)


def loss_names(names: Iterable[str]) -> list[str]:
    """Our ``adt_loss`` names, case-insensitive, as lower case (``TCE`` -> ``tce``);
    ``ValueError`` for an unknown name or a loss given twice (``tce,T-CE``)."""
    found: dict[str, str] = {}  # loss -> as given
    for name in names:
        key = name.strip().upper().replace("-", "")
        if key not in LOSS_NAMES:
            valid = ", ".join(loss.lower() for loss in LOSS_NAMES)
            raise ValueError(f"--losses: unknown loss {name!r}. Choose from {valid}.")
        if key.lower() in found:
            raise ValueError(_twice("--losses", key.lower(), found[key.lower()], name))
        found[key.lower()] = name
    return list(found)


def seed_list(seeds: int | str | Sequence[int], option: str = "--seeds") -> list[int]:
    """Seeds from a count N (seeds 1..N), a comma-separated list (``3,7,11``) or a list;
    ``ValueError`` for a seed given twice (it would repeat the same run and report a spread
    of 0) or outside [0, 2**32)."""
    if isinstance(seeds, str):
        text = seeds.strip()
        try:
            if "," not in text:
                count = int(text)
                if count < 1:
                    raise ValueError
                return list(range(1, count + 1))
            seeds = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"{option} {seeds!r}: give a number of seeds ({option} 5 runs seeds 1 to 5) or "
                f"comma-separated seeds ({option} 3,7,11; one seed: {option} 7,)."
            ) from None
    elif isinstance(seeds, int) and not isinstance(seeds, bool):
        return seed_list(str(seeds), option)
    seeds = [int(seed) for seed in seeds]
    if not seeds or any(not 0 <= seed < _SEED_LIMIT for seed in seeds):
        raise ValueError(
            f"{option}: seeds must be integers from 0 to {_SEED_LIMIT - 1}, and at least one: "
            f"got {seeds}."
        )
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(
            f"{option} {','.join(map(str, seeds))} gives seed {_join(repeated)} more than once. "
            "A seed sets the split and the initialisation, so a repeat trains the same run "
            "again and its spread of 0 would pass for a measured one: give distinct seeds, "
            f"e.g. {option} {','.join(map(str, dict.fromkeys(seeds)))}."
        )
    return seeds


def check_jobs(jobs: int) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"--jobs must be 1 or more, not {jobs!r}.")


def split_list(text: str | Sequence[str] | None) -> list[str]:
    """``'GMF,NeuMF'`` or ``['GMF', 'NeuMF']`` -> ``['GMF', 'NeuMF']``."""
    if text is None:
        return []
    if isinstance(text, str):
        text = text.split(",")
    return [part.strip() for part in text if part.strip()]


def make_experiment(
    output: str | Path,
    *,
    dataset: str | None,
    config_files: Sequence[str] | str | None,
    settings: Mapping | None,
    keep_checkpoints: bool,
    verbose: bool,
) -> Experiment:
    """The shared part of every run, checked: config files exist, ``output`` is a folder the
    runs can write in (:func:`~recbole_adt.experiments.workspace.check_output`), the
    settings' names are known and none is one the experiment sets itself."""
    if isinstance(config_files, str):
        config_files = config_files.split()
    files = tuple(str(Path(f).resolve()) for f in config_files or ())
    for name, file in zip(config_files or (), files):
        if not Path(file).is_file():
            raise ValueError(f"--config_files: {name} is not a file. Check the path.")
    output = check_output(output)
    settings = dict(settings or {})
    check_settings(settings, "the command line")
    check_known_settings(settings, "the command line", SETTINGS_OWNERS)
    return Experiment(
        output=output.resolve(),
        dataset=dataset,
        config_files=files,
        settings=tuple(sorted(settings.items())),
        keep_checkpoints=keep_checkpoints,
        verbose=verbose,
    )


def settings_from_args(args: Sequence[str]) -> dict[str, str]:
    """``['--epochs=5']`` -> ``{'epochs': '5'}``: strings, read as literals by our Config."""
    settings = {}
    for arg in args:
        name, _, value = arg[2:].partition("=")
        settings[name] = value
    return settings


def config_value(experiment: Experiment, model: str, name: str):
    """One setting of a model's run as the config resolves it (yaml defaults, files, command
    line), without loading data."""
    from recbole_adt.config import Config

    settings = {k: v for k, v in experiment.settings}
    with _settings_as_argv([]), config_warnings_hidden():
        config = Config(model, experiment.dataset, list(experiment.config_files) or None, settings)
    return config.final_config_dict.get(name)


def literal(text: str):
    """A grid value as the value it spells (``0.1`` -> 0.1, ``[10,20]`` -> list)."""
    return literal_setting(text.strip())


def _twice(option: str, name: str, first: str, second: str) -> str:
    spelt = f" (as {first!r} and {second!r})" if first.strip() != second.strip() else ""
    return (
        f"{option} names {name} twice{spelt}: each runs once, and a repeat would run the same "
        "runs again. Remove the repeat."
    )


def _join(items: Sequence) -> str:
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"
