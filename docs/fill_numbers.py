"""Fill the numbers of README.md, bench/README.md and docs/*.md from the files they come from.

    python docs/fill_numbers.py           # rewrite every marked place from its file
    python docs/fill_numbers.py --check   # exit 1, naming each place, where a page differs

A page marks what this script owns; the text between a pair of markers is generated:

- a block, ``<!-- numbers: KIND PATH [name=value ...] -->`` ... ``<!-- /numbers -->``, with
  KIND one of :data:`BLOCKS`:

  - ``compare``: the Table-3 summary of an experiments ``results.csv`` (mean ± sample std over
    seeds, RI over CE of the same model, the paired t-test of one metric against CE), with
    ``rows=`` (models in order), ``metrics=`` and ``paired=`` (RecBole metric names);
  - ``table``: a table in a JSON file (``PATH`` or ``PATH#KEY/KEY``) with ``columns`` and
    ``rows`` (objects keyed by column, or lists in column order), with ``ids=`` (rows by their
    ``id``) and ``columns=`` to show a part;
  - ``settings``: a commented yaml of defaults (``key: value  # (type) meaning``) as tables;
  - ``output``: a command's printed text kept in a result file (``PATH#KEY/KEY``), as code;

- a value, ``<!--n PATH#KEY/KEY[|FORMAT]-->text<!--/n-->``: KEY/KEY walks into the file's
  JSON (a list element by index or by its ``id``); for a ``results.csv`` into
  :func:`compare_summary`. FORMAT is a Python format spec (``.4f``, ``+.2%``, ``,d``), or
  ``mean`` / ``std`` to take one side of an "a ± b" text.

PATH is relative to the repository root. ``--check`` also refuses result-like numbers written
by hand outside the markers and outside code (four or more decimals, a number beside "±", a
decimal percentage). A marker this script cannot fill (unknown kind, missing file or key) is a
``ValueError`` naming the page and line; the command line turns it into exit 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "bench/README.md", "docs/*.md")

BLOCK = re.compile(r"(<!-- numbers: (?P<spec>[^\n]*?) -->\n)(?P<body>.*?)(<!-- /numbers -->)", re.S)
VALUE = re.compile(r"(<!--n (?P<ref>[^|\n]*?)(?:\|(?P<fmt>[^\n]*?))?-->)(?P<text>.*?)(<!--/n-->)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
# Numbers that only a measurement gives: four or more decimals, a spread, a decimal percentage.
STRAY = re.compile(r"\d\.\d{4,}|\d ?±|± ?\.?\d|\d\.\d+ ?%")
REFILL = "run `python docs/fill_numbers.py` to refill the page from its files"


@dataclass(frozen=True)
class Difference:
    """A marked place whose text is not what its file gives."""

    page: str
    line: int
    marker: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.marker} differs from its file"


@dataclass(frozen=True)
class Stray:
    """A result-like number written by hand outside the markers."""

    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text!r} is typed by hand; mark it with <!--n ...-->"


@dataclass
class Files:
    """The result files under ``root``, each read once."""

    root: Path
    _cache: dict[str, Any] = field(default_factory=dict)

    def read(self, path: str) -> Any:
        if path not in self._cache:
            file = self.root / path
            if not file.is_file():
                raise ValueError(f"{path} is not a file under {self.root}: fix the marker's path.")
            if file.suffix == ".json":
                self._cache[path] = json.loads(file.read_text(encoding="utf-8"))
            elif file.suffix == ".csv":
                self._cache[path] = compare_summary(file)
            elif file.suffix in (".yaml", ".yml"):
                self._cache[path] = file.read_text(encoding="utf-8")
            else:
                raise ValueError(f"{path}: only .json, .csv and .yaml files hold numbers.")
        return self._cache[path]


# --- the summary of an experiments results.csv ----------------------------------------------

SETTING_NAMES = {"drop_rate": "ε_max", "num_gradual": "ε_N", "beta": "β"}
BASELINE = "own"


def settings_text(settings: Mapping[str, Any]) -> str:
    """``ε_max 0.05, ε_N 1000 iterations``: a run's own settings in the paper's symbols."""
    unit = settings.get("num_gradual_unit")
    parts = []
    for key, value in settings.items():
        if key == "num_gradual_unit":
            continue
        text = f"{SETTING_NAMES.get(key, key)} {value}"
        parts.append(f"{text} {unit}" if key == "num_gradual" and unit else text)
    return ", ".join(parts)


def compare_summary(path: Path) -> dict:
    """What ``python -m recbole_adt.experiments compare`` reports, from its ``results.csv``.

    ``{"runs": {count, finished, total_minutes, seeds}, MODEL: {"seconds_mean": s, LOSS: group}}``
    with, per (model, loss) group over its finished seeds: ``n``, ``settings`` (and their
    ``settings_text``), ``seconds_mean``, ``best_epoch_mean``, ``SPLIT:METRIC`` →
    ``{mean, std}`` (x̄ and the sample std s), and, for a loss other than CE or a baseline's
    own, ``ri`` = (1/M) Σ_m (x̄_m − x̄_m^CE) / x̄_m^CE over the M test metrics and
    ``paired`` → ``{METRIC: {change, p}}``: (x̄ − x̄^CE) / x̄^CE and the two-sided paired
    t-test's p over the seeds both finished. The statistics are the experiments command's own.

    Table 4 (``compare --strategies``): a run of strategy S other than none is the group
    ``LOSS+S`` (``tce+warmup``); the reference stays plain CE (strategy none), and a baseline
    model (NMTR) is compared with the plain CE of the one model trained with CE, as
    ``results.md`` does.
    """
    from recbole_adt.experiments.stats import (  # the experiments' formulas, not a copy
        mean,
        mean_relative_improvement,
        paired_t_test,
        relative_improvement,
        sample_std,
    )

    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    ok = [row for row in rows if row["status"] == "ok"]
    # Table 5 (compare --colliding) adds each user group's plain and colliding test metrics.
    prefixes = ("valid:", "test:", "plain[", "colliding[")
    metrics = [name for name in rows[0] if name.startswith(prefixes)] if rows else []
    out: dict = {
        "runs": {
            "count": len(rows),
            "finished": len(ok),
            "total_minutes": math.fsum(float(row["seconds"]) for row in rows) / 60,
            "seeds": sorted({int(row["seed"]) for row in rows}),
        }
    }
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in ok:
        groups.setdefault((row["model"], _group_loss(row)), []).append(row)
    for (model, loss), members in groups.items():
        settings = json.loads(members[0]["settings"] or "{}")
        group = {
            "n": len(members),
            "settings": settings,
            "settings_text": settings_text(settings),
            "seconds_mean": mean([float(row["seconds"]) for row in members]),
            "best_epoch_mean": mean([float(row["best_epoch"]) for row in members]),
        }
        for metric in metrics:
            if any(row.get(metric, "") == "" for row in members):
                continue  # a group test that these runs did not make
            values = [float(row[metric]) for row in members]
            group[metric] = {"mean": mean(values), "std": sample_std(values)}
        out.setdefault(model, {})[loss] = group
    for model, losses in out.items():
        if model == "runs":
            continue
        members = [row for row in ok if row["model"] == model]
        losses["seconds_mean"] = mean([float(row["seconds"]) for row in members])
        reference_model = model if "ce" in losses else _baseline_reference(model, groups, ok)
        if reference_model is None:
            continue
        reference = out[reference_model]["ce"]
        ce_by_seed = {row["seed"]: row for row in groups[(reference_model, "ce")]}
        for loss, group in losses.items():
            if loss == "seconds_mean" or (model == reference_model and loss in ("ce", BASELINE)):
                continue
            tests = [m for m in metrics if m.startswith("test:")]
            group["ri"] = mean_relative_improvement(
                {m: group[m]["mean"] for m in tests}, {m: reference[m]["mean"] for m in tests}
            )
            pairs = [(row, ce_by_seed.get(row["seed"])) for row in groups[(model, loss)]]
            pairs = [(a, b) for a, b in pairs if b is not None]
            group["paired"] = {}
            for metric in metrics:
                if metric not in group or metric not in reference:
                    continue
                ours = [float(a[metric]) for a, _ in pairs]
                theirs = [float(b[metric]) for _, b in pairs]
                test = paired_t_test(ours, theirs)
                group["paired"][metric] = {
                    "change": relative_improvement(mean(ours), mean(theirs)),
                    "p": test.pvalue if test else math.nan,
                    "pairs": len(pairs),
                }
    return out


def _group_loss(row: Mapping[str, str]) -> str:
    """A run's group within its model: its loss, and ``+strategy`` for a Table 4 strategy."""
    strategy = row.get("strategy") or ""
    return f"{row['loss']}+{strategy}" if strategy else row["loss"]


def _baseline_reference(model: str, groups: Mapping, rows: list[dict]) -> str | None:
    """The model a baseline (its own loss only) is compared with in a Table 4 results.csv: the
    one model with a plain CE group; None elsewhere (Table 3 compares baselines with nobody)."""
    if not any(row.get("strategy") for row in rows) or set(
        loss for m, loss in groups if m == model
    ) != {BASELINE}:
        return None
    with_ce = [m for m, loss in groups if loss == "ce"]
    return with_ce[0] if len(with_ce) == 1 else None


# --- formatting -----------------------------------------------------------------------------


def mean_std(value: Mapping[str, float], digits: int = 4) -> str:
    """``x̄ ± s`` as the experiments' results.md writes it."""
    return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"


def percent(fraction: float) -> str:
    """A signed percentage with a true minus sign: +1.66%, −0.99%."""
    return f"{100 * fraction:+.2f}%".replace("-", "−")


def pvalue(p: float) -> str:
    return "n/a" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def display_metric(metric: str) -> str:
    name, _, k = metric.partition("@")
    return {"recall": "Recall", "ndcg": "NDCG"}.get(name, name) + (f"@{k}" if k else "")


LOSS_NAMES = {"ce": "CE", "tce": "T-CE", "rce": "R-CE", "nr": "NR", BASELINE: "own"}
STRATEGY_NAMES = {"finetune": "finetuning", "warmup": "warm-up"}


def display_group(loss: str) -> str:
    """``tce+warmup`` -> ``T-CE + warm-up``: a group of :func:`compare_summary` as shown."""
    loss, _, strategy = loss.partition("+")
    name = LOSS_NAMES.get(loss, loss)
    return f"{name} + {STRATEGY_NAMES.get(strategy, strategy)}" if strategy else name


def format_value(value: Any, spec: str | None) -> str:
    """``value`` under a format spec; ``mean`` / ``std`` split an "a ± b" text."""
    if spec in ("mean", "std"):
        if not isinstance(value, str) or "±" not in value:
            raise ValueError(f"|{spec} takes one side of an 'a ± b' text, not {value!r}.")
        return value.split("±")[0 if spec == "mean" else 1].strip()
    if spec:
        text = format(value, spec)
        return text.replace("-", "−") if spec.startswith("+") else text
    return str(value)


# --- blocks ---------------------------------------------------------------------------------


def compare_block(files: Files, path: str, options: Mapping[str, str]) -> str:
    """The README's Table-3 shape: settings, two metrics, RI, one metric's paired test."""
    summary = files.read(path)
    choices_file = files.root / Path(path).parent / "grid_choice.json"
    choices = json.loads(choices_file.read_text(encoding="utf-8")) if choices_file.is_file() else {}
    models = options.get("rows", "").split(",") if options.get("rows") else []
    models = models or [m for m in summary if m != "runs"]
    metrics = options.get("metrics", "recall@20,ndcg@20").split(",")
    paired = options.get("paired", "ndcg@20")
    head = ["Model", "Loss", "setting (chosen on validation)"]
    head += [display_metric(m) for m in metrics] + [
        "RI",
        f"{display_metric(paired)} vs CE, paired t",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model in models:
        if model not in summary:
            raise ValueError(f"{path} has no finished run of {model}: fix rows= in the marker.")
        losses = [loss for loss in ("ce", "tce", "rce") if loss in summary[model]]
        losses += [loss for loss in summary[model] if loss not in (*losses, "seconds_mean")]
        best = {
            m: max(summary[model][loss][f"test:{m}"]["mean"] for loss in losses) for m in metrics
        }
        for loss in losses:
            group = summary[model][loss]
            choice = choices.get(f"{model}/{loss}", {})
            # The grid's record of the choice names its unit, which results.csv's rows predate.
            chosen = choice.get("settings", {})
            same = {k: v for k, v in chosen.items() if k != "num_gradual_unit"} == group["settings"]
            setting = settings_text(chosen if same else group["settings"])
            if setting and choice.get("note", "").startswith("GMF's"):
                setting = f"GMF's: {setting}"
            cells = [model, display_group(loss), setting]
            for metric in metrics:
                value = group[f"test:{metric}"]
                text = mean_std(value)
                cells.append(
                    f"**{text}**" if len(losses) > 1 and value["mean"] == best[metric] else text
                )
            if "ri" in group:
                test = group["paired"][f"test:{paired}"]
                cells += [
                    percent(group["ri"]),
                    f"{percent(test['change'])}, p = {pvalue(test['p'])}",
                ]
            else:
                cells += ["", ""]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_block(files: Files, path: str, options: Mapping[str, str]) -> str:
    """A table file's rows, all or those named by ``ids=``, in its column order or ``columns=``."""
    table = lookup(files, path)
    if not isinstance(table, dict) or "columns" not in table or "rows" not in table:
        raise ValueError(f"{path} is not a table: it needs 'columns' and 'rows'.")
    columns = options["columns"].split(",") if options.get("columns") else table["columns"]
    # A row is an object keyed by column, or a list in column order.
    rows = [r if isinstance(r, dict) else dict(zip(table["columns"], r)) for r in table["rows"]]
    if options.get("ids"):
        by_id = {row.get("id"): row for row in rows}
        missing = [i for i in options["ids"].split(",") if i not in by_id]
        if missing:
            raise ValueError(f"{path} has no row with id {', '.join(missing)}: fix ids=.")
        rows = [by_id[i] for i in options["ids"].split(",")]
    for column in columns:
        if column not in table["columns"]:
            raise ValueError(f"{path} has no column {column!r}; it has {table['columns']}.")
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Setting:
    """One top-level key of a commented yaml: its default and the comment beside it."""

    key: str
    default: Any
    meaning: str


def parse_settings(text: str) -> list[tuple[str, list[Setting]]]:
    """Sections of a commented yaml: (the comment above them, their settings).

    A key's meaning is its trailing ``# ...`` comment and the indented ``# ...`` lines under it;
    a comment at column 0 after a blank line starts a section. Defaults come from yaml itself.
    """
    import yaml  # a dependency of recbole

    values = yaml.safe_load(text) or {}
    sections: list[tuple[str, list[Setting]]] = [("", [])]
    current: dict | None = None
    blank = True
    for line in text.splitlines():
        key = re.match(r"^([A-Za-z_]\w*):(.*)$", line)
        if key:
            comment = key.group(2).partition("#")[2].strip()
            current = {"key": key.group(1), "meaning": [comment] if comment else []}
            sections[-1][1].append(current)  # type: ignore[arg-type]
        elif re.match(r"^\s+#", line) and current is not None:
            current["meaning"].append(line.strip()[1:].strip())
        elif line.startswith("#"):
            current = None
            if blank:
                sections.append((line[1:].strip(), []))
            else:
                title, settings = sections[-1]
                sections[-1] = (f"{title} {line[1:].strip()}".strip(), settings)
        elif line.strip() and not line.startswith((" ", "\t")):
            raise ValueError(f"Cannot read this yaml line as a setting: {line!r}.")
        blank = not line.strip()
    return [
        (title, [Setting(s["key"], values[s["key"]], " ".join(s["meaning"])) for s in settings])
        for title, settings in sections
        if settings or title
    ]


def yaml_text(value: Any) -> str:
    """A default as a user would write it on the command line."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    return str(value)


def cell(text: str) -> str:
    """Markdown table cell text: pipes and lone asterisks escaped."""
    return text.replace("|", "\\|").replace("*", "\\*")


def recbole_defaults() -> dict:
    """RecBole's own ``overall.yaml`` (found without importing recbole), or {} without it."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "properties" / "overall.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def settings_block(files: Files, path: str, options: Mapping[str, str]) -> str:
    """Every key of a defaults yaml: type, default and meaning, section by section.

    A key that RecBole also defines says so, with RecBole's own default.
    """
    theirs = recbole_defaults()
    out: list[str] = []
    for title, settings in parse_settings(files.read(path)):
        if title:
            out += [cell(title), ""]
        if not settings:
            continue
        out += ["| Setting | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
        for setting in settings:
            kind, meaning = re.match(r"^(?:\(([^)]*)\)\s*)?(.*)$", setting.meaning).groups()
            if setting.key in theirs:
                note = f"RecBole's setting; its default: `{yaml_text(theirs[setting.key])}`."
                meaning = f"{meaning} ({note})" if meaning else note
            default = f"`{yaml_text(setting.default)}`"
            out.append(f"| `{setting.key}` | {kind or ''} | {default} | {cell(meaning)} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def output_block(files: Files, path: str, options: Mapping[str, str]) -> str:
    """A text a command printed, kept in a result file (``PATH#KEY/KEY``), as a code block."""
    return f"```text\n{lookup(files, path)}\n```\n"


BLOCKS: dict[str, Callable[[Files, str, Mapping[str, str]], str]] = {
    "compare": compare_block,
    "table": table_block,
    "settings": settings_block,
    "output": output_block,
}


# --- values ---------------------------------------------------------------------------------


def lookup(files: Files, ref: str) -> Any:
    """The value at ``PATH#KEY/KEY``: dict keys, list indexes or a list element's ``id``."""
    path, _, keys = ref.partition("#")
    value = files.read(path.strip())
    for key in filter(None, keys.split("/")):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, list) and (
            named := [v for v in value if isinstance(v, dict) and v.get("id") == key]
        ):
            value = named[0]
        else:
            raise ValueError(f"{ref}: {path} has no {key!r} there; fix the marker's key.")
    return value


# --- pages ----------------------------------------------------------------------------------


def fill(text: str, files: Files, page: str = "page") -> str:
    """``text`` with every marked block and value regenerated from its file."""

    def block(match: re.Match) -> str:
        try:
            kind, path, *rest = match["spec"].split()
            options = dict(part.split("=", 1) for part in rest)
            if kind not in BLOCKS:
                raise ValueError(f"unknown kind {kind!r}; the kinds are {', '.join(BLOCKS)}")
            body = BLOCKS[kind](files, path, options)
        except ValueError as err:
            raise ValueError(
                f"{page}:{_line(text, match.start())}: {match[1].strip()}: {err}"
            ) from err
        return match[1] + body + match[4]

    def value(match: re.Match) -> str:
        try:
            found = format_value(lookup(files, match["ref"]), match["fmt"])
        except (ValueError, TypeError) as err:
            raise ValueError(f"{page}:{_line(text, match.start())}: {match[1]}: {err}") from err
        return match[1] + found + match[5]

    return VALUE.sub(value, BLOCK.sub(block, text))


def differences(text: str, filled: str, page: str) -> list[Difference]:
    """The marked places where ``text`` and its ``filled`` version differ."""
    found = []
    for pattern in (BLOCK, VALUE):
        old, new = list(pattern.finditer(text)), list(pattern.finditer(filled))
        for a, b in zip(old, new):
            if a.group(0) != b.group(0):
                found.append(Difference(page, _line(text, a.start()), a[1].strip()))
    return sorted(found, key=lambda d: d.line)


def strays(text: str, page: str) -> list[Stray]:
    """Result-like numbers outside markers and code."""
    blanked = text
    for pattern in (BLOCK, VALUE, CODE):
        blanked = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), blanked)
    found: dict[int, Stray] = {}  # one report per line
    for match in STRAY.finditer(blanked):
        line = _line(blanked, match.start())
        found.setdefault(line, Stray(page, line, _context(text, match.start(), match.end())))
    return list(found.values())


def pages(root: Path) -> list[Path]:
    found: list[Path] = []
    for pattern in PAGES:
        found += sorted(root.glob(pattern))
    return [page for page in found if page.is_file()]


def check(root: Path = ROOT) -> list[Difference | Stray]:
    """Every place of every page that does not match its file, or that is typed by hand."""
    files, problems = Files(root), []
    for path in pages(root):
        text, name = path.read_text(encoding="utf-8"), str(path.relative_to(root))
        problems += differences(text, fill(text, files, name), name)
        problems += strays(text, name)
    return problems


def write(root: Path = ROOT) -> list[str]:
    """Refill every page from its files; the pages that changed."""
    files, changed = Files(root), []
    for path in pages(root):
        text = path.read_text(encoding="utf-8")
        filled = fill(text, files, str(path.relative_to(root)))
        if filled != text:
            path.write_text(filled, encoding="utf-8")
            changed.append(str(path.relative_to(root)))
    return changed


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _context(text: str, start: int, end: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return text[max(line_start, start - 30) : min(end + 30, line_end if line_end >= 0 else None)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python docs/fill_numbers.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 on a difference"
    )
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:  # run as a file: the package from this checkout if not installed
        sys.path.append(str(ROOT))
    try:
        if args.check:
            problems = check()
            for problem in problems:
                print(problem)
            if problems:
                print(f"{len(problems)} place(s) differ: {REFILL}.", file=sys.stderr)
            return 1 if problems else 0
        for page in write():
            print(f"refilled {page}")
        for path in pages(ROOT):
            for stray in strays(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))):
                print(stray, file=sys.stderr)
        return 0
    except ValueError as err:
        print(f"python docs/fill_numbers.py: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
