r"""Which setting names exist, who reads each one, and which models the plugin's defaults fit.

RecBole reads settings where it first needs them and ignores every other key, so a misspelt
``--epoch=2`` trains RecBole's 300 epochs. This module decides, before any data is loaded:

**Known names** (:func:`known_keys`) are the union of

- RecBole's ``overall.yaml``, the dataset yamls it loads (``sample.yaml``, ``ml-100k.yaml``; not
  ``url.yaml``/``kg_url.yaml``, which map dataset names to download addresses), the
  quick-start yamls of its model families and every model yaml;
- the keys RecBole's own source reads with no yaml default (``benchmark_filename``,
  ``load_col``, ``threshold``, ``local_rank``, ``MODEL_TYPE``, ...): its installed source is
  scanned once for ``config["..."]``, ``config.get("...")`` and ``"..." in config``, so a
  RecBole update brings its new keys along, and its argument lists (``recbole.utils``);
- this package's yamls (``recbole_adt/properties/**``), the ``KEYS`` of the settings owners
  the Config passes in (``recbole_adt.config.SETTINGS_OWNERS``, read at each call) and of the
  denoisers' owners, and the command-line options of ``run_recbole_adt.py``.

Two name families are open-ended in RecBole and known by pattern: ``alias_of_<field>`` and
KD_DAGFM's teacher settings ``t_<setting>``.

**An unknown name** on the command line, in ``config_dict`` or in a config file is a
``ValueError`` naming where it came from and the closest known names
(:func:`check_known_settings`): ``--epoch`` -> epochs, ``--drop-rate`` -> drop_rate. A
command-line-only option (``seeds``, ``resume``, ``debug``) in a file or ``config_dict`` is
refused too, as nothing there reads it. A checkpoint's saved settings instead drop names that
are no longer known, with one warning (:func:`known_saved_settings`): the run that saved them
ignored those names, so dropping them reproduces it.

**A known name that this run never reads** (:func:`unread_settings`) gets one warning line,
logged once per process, not an error: ``compare`` and ``grid`` apply one config file to
several losses and models, so a file with ``drop_rate`` (T-CE's) legitimately runs CE as well,
and a refusal would make such a file impossible. The line names the key, who reads it and the
fix. The readers are

- a model's settings (a key of some model yaml, or read in one model's source file): the
  chosen model reads it if its yamls list it or its classes' source reads it, so NAIS and
  RecVAE keep their own ``beta``;
- a loss's settings: the denoiser registry (:data:`recbole_adt.denoisers.DENOISERS`) says which
  ``adt_loss`` names use which owner's keys (its ``settings`` owner, plus
  :class:`~recbole_adt.schedule.DropSchedule`'s keys for a denoiser that ``drops``), and NR
  reads :class:`~recbole_adt.losses.NRWeights`;
- switched settings: ``colliding_*`` are read only with ``colliding_inference: True``,
  ``checkpoint_truncate_ratio`` only with ``checkpoint_rule: valid_loss_truncated``, and
  :math:`D^*`'s settings (``extra_feedback_*``, ``ratio_groups``) only by a run that uses
  :math:`D^*` (:func:`recbole_adt.data.extra_feedback.uses_extra_feedback`).

**Sequential models** (:func:`check_model_fits_defaults`): RecBole trains those with
``loss_type: CE`` over all items and refuses sampled negatives, which this package's
``overall.yaml`` sets for every model. Rather than RecBole's "train_neg_sample_args [...]
should be None", such a run gets this package's message: which models it serves, and how to run
the model as a plain RecBole baseline (``train_neg_sample_args: None``), which keeps working.
**Context-aware models** (:func:`check_eval_mode`): RecBole's defaults for them evaluate
labelled pairs (``eval_args`` mode ``labeled``), where this package's ranking metrics crashed
with a ``TypeError``; they are told to rank all items (``--eval_args={mode:full}``), which
trains and tests them as any general model. The same check turns RecBole's failures on value
metrics (AUC) under full ranking, or on ranking and value metrics mixed, into one paragraph.
A denoising ``adt_loss`` a model cannot take is reported first, by the model lookup.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import re
from collections.abc import Iterable, Mapping
from logging import getLogger
from pathlib import Path

import recbole
import yaml
from recbole.evaluator import metric_types
from recbole.utils import (
    EvaluatorType,
    ModelType,
    dataset_arguments,
    evaluation_arguments,
    general_arguments,
    training_arguments,
)

from recbole_adt import losses
from recbole_adt.data.extra_feedback import ExtraFeedbackSettings, uses_extra_feedback
from recbole_adt.denoisers import DENOISERS
from recbole_adt.model import MODELS
from recbole_adt.model.generic import supported_models_message
from recbole_adt.schedule import DropSchedule
from recbole_adt.utils import model_for_loss

RECBOLE_DIR = Path(recbole.__file__).resolve().parent
PLUGIN_PROPERTIES = Path(__file__).resolve().parent / "properties"

# Options of run_recbole_adt.py (recbole_adt.cli.build_parser) that are not settings: argparse
# takes them off the command line, and nothing reads them from a file or config_dict.
CLI_ONLY_OPTIONS = ("seeds", "resume", "debug", "verbose")
# run_recbole_adt.py options that RecBole reads as settings too.
CLI_SETTINGS = ("model", "dataset", "config_files")

# Files under recbole/properties/dataset that are not settings but name -> download address.
_ADDRESS_FILES = ("url.yaml", "kg_url.yaml")
# RecBole's model-family plumbing: keys read there concern every model, not one.
_SHARED_MODEL_FILES = ("__init__.py", "abstract_recommender.py", "layers.py", "loss.py", "init.py")
_READ = re.compile(
    r"""(?:config|final_config_dict|internal_config_dict|external_config_dict)\[\s*["'](\w+)["']\s*\]"""
    r"""|(?:config|final_config_dict)\.get\(\s*["'](\w+)["']"""
    r"""|["'](\w+)["']\s+(?:not\s+)?in\s+(?:self\.)?(?:config|final_config_dict)\b"""
)
_CLASS = re.compile(r"^class (\w+)\(", re.M)
# Open-ended families: RecBole's field aliases, KD_DAGFM's teacher copies of a setting.
_ALIAS_PREFIX = "alias_of_"
_TEACHER_PREFIX = "t_"

# RecBole model families whose quick-start defaults this package's overall.yaml overrides.
_MODEL_FAMILIES = {ModelType.CONTEXT: "context-aware", ModelType.DECISIONTREE: "decision-tree"}
# Switched settings: key -> (the switch, the values under which the key is read).
_SWITCHED = {
    "colliding_neighbours": ("colliding_inference", (True,)),
    "colliding_lambda": ("colliding_inference", (True,)),
    "colliding_ratio_threshold": ("colliding_inference", (True,)),
    "colliding_users_without_extra": ("colliding_inference", (True,)),
    "checkpoint_truncate_ratio": ("checkpoint_rule", ("valid_loss_truncated",)),
}
# n of the drop count, read by every denoiser that drops (recbole_adt.model.DenoisingLossMixin),
# though owned by truncate's settings.
_DROP_COUNT_KEYS = ("drop_base",)


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The setting names of RecBole and of this package's yamls, read once per process.

    ``shared``: read whatever the model (RecBole's overall, dataset and quick-start yamls, its
    source outside the model files, this package's ``overall.yaml``); ``model_readers``: key ->
    the models whose yaml or source file reads it, for the keys that are not shared;
    ``model_yaml``: model name -> the keys of its yamls (RecBole's and this package's).
    """

    shared: frozenset[str]
    model_readers: Mapping[str, frozenset[str]]
    model_yaml: Mapping[str, frozenset[str]]

    @property
    def names(self) -> frozenset[str]:
        return self.shared | frozenset(self.model_readers)


@functools.cache
def catalogue() -> Catalogue:
    """RecBole's and this package's setting names, from their yaml files and RecBole's source."""
    properties = RECBOLE_DIR / "properties"
    shared = set(general_arguments + training_arguments + evaluation_arguments)
    shared |= set(dataset_arguments) | set(CLI_SETTINGS)
    shared |= _yaml_keys(properties / "overall.yaml", PLUGIN_PROPERTIES / "overall.yaml")
    dataset_files = [
        p for p in (properties / "dataset").glob("*.yaml") if p.name not in _ADDRESS_FILES
    ]
    shared |= _yaml_keys(*dataset_files, *(PLUGIN_PROPERTIES / "dataset").glob("*.yaml"))
    shared |= _yaml_keys(*(properties / "quick_start_config").glob("*.yaml"))
    model_dir = RECBOLE_DIR / "model"
    readers: dict[str, set[str]] = {}
    for path in sorted(RECBOLE_DIR.rglob("*.py")):
        keys = _source_reads(path.read_text(encoding="utf-8"))
        if not path.is_relative_to(model_dir) or path.name in _SHARED_MODEL_FILES:
            shared |= keys
            continue
        for key in keys:
            readers.setdefault(key, set()).update(_model_names(path))
    model_yaml: dict[str, frozenset[str]] = {}
    for folder in (properties / "model", PLUGIN_PROPERTIES / "model"):
        for path in sorted(folder.glob("*.yaml")):
            keys = _yaml_keys(path)
            model_yaml[path.stem] = model_yaml.get(path.stem, frozenset()) | keys
            for key in keys:
                readers.setdefault(key, set()).add(path.stem)
    return Catalogue(
        shared=frozenset(shared),
        model_readers={k: frozenset(v) for k, v in readers.items() if k not in shared},
        model_yaml=model_yaml,
    )


def known_keys(owners: Iterable[type] = ()) -> frozenset[str]:
    """Every known setting name: RecBole's and this package's, and the ``owners``' ``KEYS``."""
    owned = {key for owner in (*owners, *_denoiser_owners()) for key in owner.KEYS}
    return catalogue().names | owned | set(CLI_ONLY_OPTIONS)


def is_known(key: str, known: frozenset[str]) -> bool:
    """Whether ``key`` names a setting, the open-ended families included."""
    if key in known:
        return True
    if key.startswith(_ALIAS_PREFIX):
        return len(key) > len(_ALIAS_PREFIX)
    return key.startswith(_TEACHER_PREFIX) and key[len(_TEACHER_PREFIX) :] in known


def check_known_settings(settings: Mapping, origin: str, owners: Iterable[type] = ()) -> None:
    """``ValueError`` naming the unknown keys of ``settings``, where they came from and the
    closest known names.

    ``origin`` is ``"the command line"``, ``"config_dict"`` or ``"config file 'NAME'"``; a
    command-line-only option is unknown anywhere but on the command line.
    """
    known = known_keys(owners)
    cli_only = [key for key in settings if key in CLI_ONLY_OPTIONS]
    if cli_only and origin != "the command line":
        key = cli_only[0]
        raise ValueError(
            f"{key} in {origin} is an option of the command line (run_recbole_adt.py "
            f"--{key}...), not a setting: nothing reads it from {origin}. Give it on the "
            "command line, or remove it."
        )
    unknown = [key for key in settings if not isinstance(key, str) or not is_known(key, known)]
    if unknown:
        raise ValueError(unknown_settings_message(unknown, origin, known))


def unknown_settings_message(unknown: list, origin: str, known: frozenset[str]) -> str:
    """One paragraph: the unknown names, where they came from, the closest known names."""
    on_line = origin == "the command line"
    shown = [f"--{key}" if on_line else repr(key) for key in unknown]
    several = len(unknown) > 1
    them = "them" if several else "it"
    return " ".join(
        part
        for part in (
            f"Unknown setting{'s' if several else ''} {_join(shown)} "
            f"{'on' if on_line else 'in'} {origin}: neither RecBole nor recbole-adt reads "
            f"{'these names' if several else 'that name'}, so the run would ignore {them}.",
            _suggestions(unknown, known, on_line),
            f"Fix or remove {them}; run_recbole_adt.py --help lists this package's settings, "
            "RecBole's documentation its own.",
        )
        if part
    )


def known_saved_settings(settings: Mapping, source: str, owners: Iterable[type] = ()) -> dict:
    """A checkpoint's saved settings without the names that are no longer known, with one warning.

    The run that saved them ignored those names (or an older version knew them), so leaving
    them out rebuilds the same run; a refusal would make the checkpoint unloadable.
    """
    known = known_keys(owners)
    dropped = [key for key in settings if not (isinstance(key, str) and is_known(key, known))]
    if dropped:
        _log_once(
            f"{source} holds settings that no longer exist, left out: {_join(map(repr, dropped))}"
        )
    return {key: value for key, value in settings.items() if key not in dropped}


def unread_settings(
    model_class: type,
    settings: Mapping,
    user_keys: Iterable[str],
    *,
    extra_feedback_used: bool = True,
) -> list[str]:
    """One line for each of ``user_keys`` that this run never reads, naming its readers.

    ``settings``: the run's final settings (``adt_loss``, the switches); ``model_class``: the
    model trained; ``extra_feedback_used``: whether anything in the run uses :math:`D^*`
    (:func:`recbole_adt.data.extra_feedback.uses_extra_feedback`), without which D*'s
    settings go unread. See the module doc for who reads what and why this warns.
    """
    lines = []
    model = model_class.__name__
    loss = str(settings.get("adt_loss", "CE")).upper().replace("-", "")
    loss_readers = _loss_readers()
    for key in user_keys:
        if key in ExtraFeedbackSettings.KEYS and not extra_feedback_used:
            lines.append(
                f"{key} is read only by runs that use extra feedback D* (a warmup or finetune "
                "phase, colliding inference, model NMTR or adt_loss NR), and this run uses "
                f"none: remove {key}, or add one of those."
            )
        elif key in loss_readers and loss not in loss_readers[key]:
            if not _model_reads(model_class, key):
                lines.append(_loss_line(key, loss, loss_readers[key]))
        elif key in _SWITCHED:
            switch, values = _SWITCHED[key]
            if settings.get(switch) not in values:
                lines.append(
                    f"{key} is read only with {switch}: {values[0]}, and this run has "
                    f"{switch}: {settings.get(switch)}: remove {key}, or set {switch}."
                )
        elif key in catalogue().model_readers and not _model_reads(model_class, key):
            # this package's models first, then RecBole's by name
            readers = sorted(catalogue().model_readers[key], key=lambda m: (m not in MODELS, m))
            lines.append(
                f"{key} is a setting of the model{'s' if len(readers) > 1 else ''} "
                f"{_few(readers)}; {model} does not read it: remove it, or choose "
                f"{'one of those models' if len(readers) > 1 else 'that model'}."
            )
    return lines


def warn_unread_settings(config) -> None:
    """Log :func:`unread_settings` of a RecBole ``Config``, each line once per process."""
    used = uses_extra_feedback(config)
    settings, keys = config.final_config_dict, list(config.external_config_dict)
    for line in unread_settings(config.model_class, settings, keys, extra_feedback_used=used):
        _log_once(line)


def check_model_fits_defaults(model_class: type, settings: Mapping) -> None:
    """``ValueError`` where RecBole would refuse this package's sampled negatives.

    Exactly RecBole's condition (``Config._set_default_parameters``): a sequential model
    without ``input_type``, ``loss_type: CE`` and ``train_neg_sample_args`` set. A denoising
    ``adt_loss`` gets the model lookup's message (which models it applies to); ``CE`` gets the
    same list and the way to train the model as a plain RecBole baseline.
    """
    if (
        hasattr(model_class, "input_type")
        or settings.get("MODEL_TYPE") != ModelType.SEQUENTIAL
        or settings.get("loss_type") != "CE"
        or settings.get("train_neg_sample_args") is None
    ):
        return
    model_for_loss(model_class, settings.get("adt_loss", "CE"))  # a denoising loss: its message
    name = model_class.__name__
    raise ValueError(
        f"{name} is a sequential model: recbole-adt's denoising losses and clean test split "
        f"do not apply to it. {supported_models_message()} To train {name} as a plain "
        "RecBole baseline (adt_loss CE, RecBole's own test split), set train_neg_sample_args: "
        "None (--train_neg_sample_args=None): this package samples one negative per positive "
        f"by default, and RecBole trains {name} with loss_type CE over all items instead."
    )


def check_eval_mode(model_class: type, settings: Mapping) -> None:
    """``ValueError`` where the metrics cannot be computed in ``eval_args``' mode.

    Ranking metrics (Recall, NDCG: this package's) need ranked items (``mode`` full, uniN or
    popN); value metrics (AUC, LogLoss) need labelled pairs (``mode: labeled``); RecBole fails
    on either mismatch only when it evaluates (a ``TypeError``), or with a
    ``NotImplementedError``. Context-aware models meet the first: RecBole's defaults for them
    (``quick_start_config/context-aware.yaml``) evaluate labelled pairs, this package's
    ``overall.yaml`` asks for ranking metrics; ranking all items (``{mode: full}``) serves them.
    """
    metrics = settings.get("metrics")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
    kinds = {metric_types.get(str(m).lower()) for m in metrics} - {None}
    value = [m for m in metrics if metric_types.get(str(m).lower()) == EvaluatorType.VALUE]
    ranking = [m for m in metrics if m not in value]
    if len(kinds) > 1:
        raise ValueError(
            f"metrics {metrics} mix ranking metrics ({_join(ranking)}) and value metrics "
            f"({_join(value)}); RecBole computes one kind per run. Keep one kind, e.g. "
            "--metrics=[Recall,NDCG] (this package's default)."
        )
    eval_args = settings.get("eval_args")
    mode = eval_args.get("mode", "full") if isinstance(eval_args, dict) else "full"
    modes = set(mode.values()) if isinstance(mode, dict) else {mode}
    if ranking and "labeled" in modes:
        model_for_loss(model_class, settings.get("adt_loss", "CE"))  # a loss it cannot take first
        kind = _MODEL_FAMILIES.get(getattr(model_class, "type", None))
        why = (
            f"{model_class.__name__} is a {kind} model, and RecBole's defaults for those "
            "evaluate labelled pairs (eval_args mode: labeled)"
            if kind
            else "eval_args mode: labeled evaluates labelled pairs"
        )
        raise ValueError(
            f"{why}, which cannot give the ranking metrics {_join(ranking)} (this package "
            "ranks all items and tests on the true positives). Rank all items: "
            "--eval_args={mode:full}, or 'eval_args: {mode: full}' in a config file."
        )
    if value and "labeled" not in modes:
        raise ValueError(
            f"The value metrics {_join(value)} score labelled pairs, but eval_args mode "
            f"{_join(sorted(map(str, modes)))} ranks items: use ranking metrics (this "
            "package's default --metrics=[Recall,NDCG]), or eval_args mode: labeled with a "
            "label field (RecBole's LABEL_FIELD, or threshold)."
        )


def _yaml_keys(*paths: Path) -> set[str]:
    keys: set[str] = set()
    for path in paths:
        if path.is_file():
            found = yaml.safe_load(path.read_text(encoding="utf-8"))
            keys |= set(found) if isinstance(found, dict) else set()
    return keys


def _source_reads(text: str) -> set[str]:
    return {next(name for name in match if name) for match in _READ.findall(text)}


def _model_names(path: Path) -> set[str]:
    """The model classes a RecBole model file defines: the one named as the file, else all."""
    classes = _CLASS.findall(path.read_text(encoding="utf-8"))
    named = [name for name in classes if name.lower() == path.stem.lower()]
    return set(named or classes)


def _model_reads(model_class: type, key: str) -> bool:
    """Whether the model's yamls list ``key`` or the source of one of its classes reads it."""
    if key in catalogue().model_yaml.get(model_class.__name__, ()):
        return True
    return any(key in _file_reads(cls) for cls in model_class.__mro__)


@functools.cache
def _file_reads(cls: type) -> frozenset[str]:
    if not cls.__module__.startswith(("recbole.", "recbole_adt.")):
        return frozenset()
    try:
        return frozenset(_source_reads(Path(inspect.getfile(cls)).read_text(encoding="utf-8")))
    except (OSError, TypeError):  # a class built at run time (recbole_adt.model.generic)
        return frozenset()


def _denoiser_owners() -> tuple[type, ...]:
    return tuple(cls.settings for cls in DENOISERS.values() if cls.settings is not None)


def _loss_readers() -> dict[str, frozenset[str]]:
    """Key -> the ``adt_loss`` names that read it, from the denoiser registry."""
    base_keys = {"nr": losses.NRWeights.KEYS}
    readers: dict[str, set[str]] = {}
    for name, (base, denoiser_name) in _loss_table().items():
        denoiser = DENOISERS[denoiser_name]
        keys = list(denoiser.settings.KEYS) if denoiser.settings is not None else []
        if denoiser.drops:
            keys += [*DropSchedule.KEYS, *_DROP_COUNT_KEYS]
        keys += list(base_keys.get(base, ()))
        for key in keys:
            readers.setdefault(key, set()).add(name)
    for keys in base_keys.values():
        for key in keys:
            readers.setdefault(key, set())
    return {key: frozenset(names) for key, names in readers.items()}


def _loss_table() -> dict[str, tuple[str, str]]:
    """``adt_loss`` name -> (base loss, denoiser name)."""
    return {name: (entry[0], entry[1]) for name, entry in losses.ADT_LOSSES.items()}


def _loss_line(key: str, loss: str, readers: frozenset[str]) -> str:
    ordered = [name for name in _loss_table() if name in readers]
    return (
        f"{key} is read only by adt_loss {_join(ordered, 'and')}, and this run's adt_loss "
        f"{loss} ignores it: remove {key}, or choose "
        f"{'one of those losses' if len(ordered) > 1 else 'that loss'}."
    )


def _suggestions(unknown: list, known: frozenset[str], on_line: bool) -> str:
    """The "Did you mean ...?" for the unknown names that have a close known one."""
    found = {key: _closest(key, known) for key in unknown if isinstance(key, str)}
    found = {key: close for key, close in found.items() if close}
    if not found:
        return ""
    dashes = any("-" in key and close == [key.replace("-", "_")] for key, close in found.items())
    note = " Setting names use underscores." if dashes else ""
    if len(unknown) == 1:
        return f"Did you mean {_join(next(iter(found.values())), 'or')}?{note}"
    dash = "--" if on_line else ""
    each = [f"{_join(close, 'or')} for {dash}{key}" for key, close in found.items()]
    return f"Did you mean {'; '.join(each)}?{note}"


def _closest(key: str, known: frozenset[str]) -> list[str]:
    """The underscored spelling of ``key`` if known, else up to three close known names."""
    underscored = key.replace("-", "_")
    if underscored != key and underscored in known:
        return [underscored]
    by_lower = {name.lower(): name for name in sorted(known)}
    close = difflib.get_close_matches(underscored.lower(), list(by_lower), n=3, cutoff=0.7)
    return [by_lower[name] for name in close]


def _join(items: Iterable[str], word: str = "and") -> str:
    items = list(items)
    if len(items) <= 2:
        return f" {word} ".join(items)
    return ", ".join(items[:-1]) + f" {word} {items[-1]}"


def _few(names: list[str], limit: int = 5) -> str:
    if len(names) <= limit:
        return _join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"


@functools.cache
def _log_once(line: str) -> None:
    """A warning, logged the first time only: ``compare`` builds one Config per run."""
    getLogger().warning(line)
