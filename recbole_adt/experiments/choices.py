"""The names an experiment is given (models, losses, seeds, config files, settings), checked
once before any run starts, so that a typo stops the command instead of failing every run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from recbole_adt.cli import _settings_as_argv
from recbole_adt.experiments.runner import Experiment, check_settings
from recbole_adt.losses import ADT_LOSSES
from recbole_adt.settings import literal_setting
from recbole_adt.utils import get_model


def model_names(names: Iterable[str], option: str = "--models") -> list[str]:
    """RecBole's class names (``gmf`` finds GMF); ``ValueError`` naming the closest ones."""
    found = []
    for name in names:
        try:
            found.append(get_model(name.strip()).__name__)
        except ValueError as err:
            raise ValueError(f"{option}: {err}") from None
    return list(dict.fromkeys(found))


def loss_names(names: Iterable[str]) -> list[str]:
    """Our ``adt_loss`` names, case-insensitive, as lower case (``TCE`` -> ``tce``)."""
    losses = []
    for name in names:
        key = name.strip().upper().replace("-", "")
        if key not in ADT_LOSSES:
            valid = ", ".join(loss.lower() for loss in ADT_LOSSES)
            raise ValueError(f"--losses: unknown loss {name!r}. Choose from {valid}.")
        losses.append(key.lower())
    return list(dict.fromkeys(losses))


def seed_list(seeds: int | str | Sequence[int]) -> list[int]:
    """Seeds from a count N (seeds 1..N), a comma-separated list (``3,7,11``) or a list."""
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
                f"--seeds {seeds!r}: give a number of seeds (--seeds 5 runs seeds 1 to 5) or "
                "comma-separated seeds (--seeds 3,7,11; one seed: --seeds 7,)."
            ) from None
    elif isinstance(seeds, int) and not isinstance(seeds, bool):
        return seed_list(str(seeds))
    seeds = list(dict.fromkeys(int(seed) for seed in seeds))
    if not seeds or any(seed < 0 for seed in seeds):
        raise ValueError(f"Seeds must be integers >= 0, and at least one: got {seeds}.")
    return seeds


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
    """The shared part of every run, checked: config files exist, no reserved setting."""
    if isinstance(config_files, str):
        config_files = config_files.split()
    files = tuple(str(Path(f).resolve()) for f in config_files or ())
    for name, file in zip(config_files or (), files):
        if not Path(file).is_file():
            raise ValueError(f"--config_files: {name} is not a file. Check the path.")
    if Path(output).exists() and not Path(output).is_dir():
        raise ValueError(f"--output {output} is a file: give a folder (it is made if missing).")
    settings = dict(settings or {})
    check_settings(settings, "the command line")
    return Experiment(
        output=Path(output).resolve(),
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
    with _settings_as_argv([]):
        config = Config(model, experiment.dataset, list(experiment.config_files) or None, settings)
    return config.final_config_dict.get(name)


def literal(text: str):
    """A grid value as the value it spells (``0.1`` -> 0.1, ``[10,20]`` -> list)."""
    return literal_setting(text.strip())
