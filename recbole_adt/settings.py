"""Settings that RecBole only trips over late, checked once before any data is loaded.

RecBole reads ``epochs``, ``topk``, the batch sizes and the like where it first uses them: a
``--epochs=abc`` fails inside ``int()``, a ``--learning_rate=fast`` inside the optimizer, a
``valid_metric`` that is not computed at the end of the first epoch, and ``train_batch_size: 0``
never finishes. :func:`check_run_settings` checks their types and ranges up front and raises a
``ValueError`` that names the setting, the value and the fix. Config files are read by
:func:`read_config_file`, which names the file and the line of a yaml error.
"""

from __future__ import annotations

import ast
import math
import os
from typing import ClassVar, Protocol, TypeVar

import yaml

SHARED_PAIRS_POLICIES = ("mask", "drop", "unmask")


class SettingsOwner(Protocol):
    """One concept's settings, parsed and validated once (see :class:`recbole_adt.config.Config`).

    An owner is a small frozen class: ``KEYS`` names the config keys it owns, and
    ``from_config(config)`` reads them from a RecBole ``Config`` (or a plain mapping), raises a
    ``ValueError`` that names the setting and the fix, and returns the parsed object. Nothing
    else reads or re-checks those keys: trainers, models and evaluation take the parsed object
    from :func:`parsed`.
    """

    KEYS: ClassVar[tuple[str, ...]]

    @classmethod
    def from_config(cls, config): ...


Owner = TypeVar("Owner")


def parsed(config, owner: type[Owner]) -> Owner:
    """``owner``'s parsed settings of ``config``.

    A :class:`recbole_adt.config.Config` parses every owner once, when it is made, and keeps the
    results in ``parsed_settings``; a plain mapping (a test's settings dict) is parsed now.
    """
    cache = getattr(config, "parsed_settings", None)
    if cache is not None and owner in cache:
        return cache[owner]
    return owner.from_config(config)


# name -> smallest allowed value; whole-number floats (1e3 on a command line) become ints.
_INTEGER_SETTINGS = {
    "epochs": 1,
    "train_batch_size": 1,
    "eval_batch_size": 1,
    "stopping_step": 0,
    "eval_step": 0,
    "seed": 0,
}
_POSITIVE_NUMBERS = ("learning_rate",)
_NON_NEGATIVE_NUMBERS = ("weight_decay",)
_BOOLEAN_SETTINGS = ("clean_test", "show_progress", "reproducibility")
_TEXT_SETTINGS = ("data_path", "checkpoint_dir")


def check_run_settings(settings: dict, defaults: dict | None = None) -> None:
    """Raise ``ValueError`` on a setting of the wrong type or range; normalise whole floats.

    ``settings`` is the merged config (RecBole's ``final_config_dict``), changed in place where a
    whole-number float stands for an integer. ``defaults`` (the internal, non-user settings)
    supply the example value in each message.
    """
    defaults = defaults or {}
    for name, minimum in _INTEGER_SETTINGS.items():
        if name in settings:
            settings[name] = _integer(name, settings[name], minimum, defaults)
    if "num_threads" in settings and settings["num_threads"] is not None:
        settings["num_threads"] = _integer("num_threads", settings["num_threads"], 0, defaults)
    for name in _POSITIVE_NUMBERS:
        value = settings.get(name)
        if name in settings and not (_is_number(value) and math.isfinite(value) and value > 0):
            raise ValueError(_message(name, value, "a number > 0", defaults))
    for name in _NON_NEGATIVE_NUMBERS:
        value = settings.get(name)
        if value is not None and not (_is_number(value) and math.isfinite(value) and value >= 0):
            raise ValueError(_message(name, value, "a number >= 0", defaults))
    for name in _BOOLEAN_SETTINGS:
        if name in settings and not isinstance(settings[name], bool):
            raise ValueError(_message(name, settings[name], "True or False", defaults))
    for name in _TEXT_SETTINGS:
        if name in settings and not isinstance(settings[name], str):
            raise ValueError(_message(name, settings[name], "a path", defaults))
    fp_field = settings.get("fp_field")
    if fp_field is not None and not isinstance(fp_field, str):
        raise ValueError(_message("fp_field", fp_field, "a field name (or empty)", defaults))
    check_shared_pairs(settings.get("shared_pairs", "mask"))
    _check_metrics(settings, defaults)


def check_shared_pairs(policy) -> str:
    """Validate ``shared_pairs``: what to do with test pairs already seen in training data."""
    if policy not in SHARED_PAIRS_POLICIES:
        raise ValueError(
            f"shared_pairs must be one of {', '.join(SHARED_PAIRS_POLICIES)}, got {policy!r}. "
            "It applies to pre-split data (benchmark_filename) whose evaluation split repeats "
            "(user, item) pairs of an earlier split: mask keeps them as positives but masks "
            "them like history (the authors' protocol), drop removes them from the later "
            "split, unmask keeps RecBole's behaviour (they can be hit)."
        )
    return policy


def check_topk_fits(topk, n_items: int, dataset_name: str) -> None:
    """``ValueError`` if a cut-off asks for more items than the dataset has."""
    too_large = [k for k in topk if k > n_items]
    if too_large:
        raise ValueError(
            f"topk {list(topk)} asks for top-{max(too_large)} lists, but dataset "
            f"{dataset_name!r} has only {n_items} items. Set topk to values of at most "
            f"{n_items} (e.g. --topk=[{min(10, n_items)}]) and valid_metric to match."
        )


def read_config_file(path, loader=yaml.FullLoader) -> dict:
    """The settings in one yaml config file; ``ValueError`` naming the file and the fix."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        where = "is a folder" if os.path.isdir(path) else "does not exist"
        raise ValueError(
            f"Config file {path!r} {where} (working directory {os.getcwd()}). Give the path of "
            "a yaml file, e.g. --config_files=properties/tce.yaml; several go in one quoted, "
            'space-separated value: --config_files="a.yaml b.yaml".'
        )
    try:
        with open(path, encoding="utf-8") as file:
            settings = yaml.load(file.read(), Loader=loader)
    except UnicodeDecodeError as err:
        raise ValueError(f"Config file {path!r} is not UTF-8 text ({err.reason}).") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(
            f"Config file {path!r} is not valid yaml{where}: {problem}. Write one "
            "'setting: value' per line, e.g. 'epochs: 5' or 'topk: [10, 20]'."
        ) from err
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ValueError(
            f"Config file {path!r} holds a yaml {type(settings).__name__}, not settings: write "
            "one 'setting: value' per line (a mapping), e.g. 'epochs: 5'."
        )
    return settings


def literal_setting(text: str, *, name: str | None = None):
    """A command-line or config-dict string as the value it spells, never running code.

    RecBole ``eval``s these strings; a saved checkpoint's settings pass through here too, so
    only Python literals (numbers, lists, dicts, True, None ...) are converted. Lists and dicts
    may also be written as in a yaml file, with bare words: ``[train,valid,test]`` is
    ``['train', 'valid', 'test']``, ``{inter: [user_id, item_id]}`` a dict of a list, and
    ``[warmup:50,adt]`` keeps ``warmup:50`` whole (a colon splits only a dict's entries). Text
    that starts with ``[`` or ``{`` and is neither is a ``ValueError`` naming ``name``: RecBole
    would keep it as a string and read it character by character.
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        return _BareWords(stripped, name).parse()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


class _BareWords:
    """Reads a list or dict whose strings may be unquoted, e.g. ``{inter: [user_id, item_id]}``.

    Grammar: value = list | dict | scalar; list = ``[`` value, ... ``]``; dict = ``{`` key
    ``:`` value, ... ``}``; a scalar is a quoted Python string or the trimmed text up to the next
    ``,`` or closing bracket (and, for a key, ``:``), read as a Python literal (``10``, ``0.5``,
    ``None``), true/false, or else kept as text. A trailing comma is allowed.
    """

    def __init__(self, text: str, name: str | None):
        self.text, self.name, self.at = text, name, 0

    def parse(self):
        try:
            value = self._value(stops=",]}")
        except RecursionError:
            self._fail("brackets nested too deeply")
        self._skip_spaces()
        if self.at != len(self.text):
            self._fail(f"unexpected {self.text[self.at :]!r} after the closing bracket")
        return value

    def _value(self, stops: str):
        self._skip_spaces()
        opening = self.text[self.at : self.at + 1]
        if opening == "[":
            return self._list()
        if opening == "{":
            return self._dict()
        return self._scalar(stops)

    def _list(self) -> list:
        self.at += 1  # [
        items: list = []
        while not self._closes("]"):
            items.append(self._value(stops=",]"))
            self._separator("]")
        return items

    def _dict(self) -> dict:
        self.at += 1  # {
        entries: dict = {}
        while not self._closes("}"):
            key = self._scalar(stops=":,}")
            if self.text[self.at : self.at + 1] != ":":
                self._fail(f"the entry {key!r} has no ':' and value")
            self.at += 1  # :
            entries[key] = self._value(stops=",}")
            self._separator("}")
        return entries

    def _scalar(self, stops: str):
        self._skip_spaces()
        if self.text[self.at : self.at + 1] in ("'", '"'):
            return self._quoted()
        start = self.at
        while self.at < len(self.text) and self.text[self.at] not in stops + "[{":
            self.at += 1
        word = self.text[start : self.at].strip()
        if not word:
            self._fail("an empty element")
        return literal_setting(word)

    def _quoted(self) -> str:
        quote, start = self.text[self.at], self.at
        self.at += 1
        while self.at < len(self.text) and self.text[self.at] != quote:
            self.at += 2 if self.text[self.at] == "\\" else 1
        if self.at >= len(self.text):
            self._fail(f"the quote at character {start + 1} is not closed")
        self.at += 1
        try:
            return ast.literal_eval(self.text[start : self.at])
        except (ValueError, SyntaxError) as err:
            self._fail(f"the quoted text at character {start + 1} is not valid: {err}")

    def _closes(self, bracket: str) -> bool:
        self._skip_spaces()
        if self.at >= len(self.text):
            self._fail(f"a missing {bracket!r}")
        if self.text[self.at] == bracket:
            self.at += 1
            return True
        return False

    def _separator(self, bracket: str) -> None:
        self._skip_spaces()
        if self.text[self.at : self.at + 1] == ",":
            self.at += 1
        elif self.text[self.at : self.at + 1] != bracket:
            found = repr(self.text[self.at]) if self.at < len(self.text) else "the end"
            self._fail(f"{found} where ',' or {bracket!r} was expected")

    def _skip_spaces(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def _fail(self, problem: str):
        name = self.name or "VALUE"
        shown = self.text if len(self.text) <= 80 else f"{self.text[:60]}...{self.text[-10:]}"
        raise ValueError(
            f"{name} = {shown!r} is not a list or dict that can be read ({problem}). Write "
            f"a list as [a,b,c] and a dict as {{key: value}}, as in a yaml file, e.g. "
            f'--benchmark_filename=[train,valid,test] or --load_col="{{inter: [user_id, '
            f'item_id]}}"; quote a text value that starts with a bracket: --{name}="\'[text\'".'
        )


def _integer(name: str, value, minimum: int, defaults: dict) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(_message(name, value, wanted, defaults))
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _message(name: str, value, wanted: str, defaults: dict) -> str:
    example = defaults.get(name)
    fix = f"--{name}={example}" if example is not None and not isinstance(example, dict) else ""
    fix = f" (the default: {fix})" if fix else ""
    return (
        f"{name} must be {wanted}, got {value!r}. Set it on the command line as --{name}=VALUE"
        f"{fix} or as '{name}: VALUE' in a config file."
    )


def _check_metrics(settings: dict, defaults: dict) -> None:
    """metrics, topk and valid_metric: known names, positive cut-offs, a computed valid_metric."""
    from recbole.evaluator.base_metric import TopkMetric
    from recbole.evaluator.register import metrics_dict

    metrics = settings.get("metrics")
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics:
        raise ValueError(_message("metrics", settings.get("metrics"), "a list", defaults))
    known = {name.lower() for name in metrics_dict}
    for metric in metrics:
        if not isinstance(metric, str) or metric.lower() not in known:
            raise ValueError(
                f"Unknown metric {metric!r} in metrics. RecBole's metrics are: "
                f"{', '.join(sorted(metrics_dict))} (case-insensitive)."
            )
    topk = settings.get("topk")
    ks = [topk] if isinstance(topk, int) and not isinstance(topk, bool) else topk
    if (
        not isinstance(ks, list)
        or not ks
        or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks)
    ):
        raise ValueError(
            f"topk must be a positive integer or a list of them, got {topk!r}: e.g. "
            "--topk=[10,20] (no spaces on a command line) or 'topk: [10, 20]' in a config file."
        )
    valid_metric = settings.get("valid_metric")
    if not isinstance(valid_metric, str):
        raise ValueError(_message("valid_metric", valid_metric, "a metric name", defaults))
    name, _, cutoff = valid_metric.partition("@")
    topk_metrics = [m for m in metrics if issubclass(metrics_dict[m.lower()], TopkMetric)]
    choices = [f"{m}@{k}" for m in topk_metrics for k in ks]
    choices += [m for m in metrics if m not in topk_metrics]
    is_topk = name.lower() in metrics_dict and issubclass(metrics_dict[name.lower()], TopkMetric)
    computed = name.lower() in {m.lower() for m in metrics} and (
        (is_topk and cutoff.isdigit() and int(cutoff) in ks) or (not is_topk and not cutoff)
    )
    if not computed:
        raise ValueError(
            f"valid_metric {valid_metric!r} is not among the computed metrics (metrics "
            f"{metrics}, topk {ks}): choose one of {', '.join(choices)}, or add it to metrics "
            "and topk."
        )
