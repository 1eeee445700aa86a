"""The results file of an experiment: one CSV row per run, written atomically.

Every cell is a string, as read back from the CSV. Metric columns are named ``valid:<metric>``
(the validation result at the checkpoint the run's checkpoint rule chose) and ``test:<metric>``
(the clean test result of that checkpoint), with RecBole's metric names (``ndcg@20``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from recbole_adt.denoisers import ADT_LOSS_NAMES
from recbole_adt.files import atomic_file

RESULTS_FILE = "results.csv"
OK, FAILED = "ok", "failed"
INTERRUPTED = "interrupted"  # stopped by a signal: run again by the same command
VALID, TEST = "valid", "test"

# Fixed columns, in order; the metric columns follow.
COLUMNS = (
    "run_id",
    "model",
    "loss",
    "strategy",
    "seed",
    "settings",
    "status",
    "error",
    "best_epoch",
    "checkpoint_rule",
    "selection_metric",
    "bigger_is_better",
    "best_valid_score",
    "seconds",
    "colliding",
    "fingerprint",
    "diagnostics_dir",
    "model_file",
)

# Display names of RecBole's metric names, as in the paper's tables.
_METRIC_NAMES = {
    "recall": "Recall",
    "ndcg": "NDCG",
    "mrr": "MRR",
    "hit": "Hit",
    "precision": "Precision",
    "map": "MAP",
}
# Display names of our losses (lower case, as experiments name them), from the denoisers.
_LOSS_NAMES = {name.lower(): loss.display for name, loss in ADT_LOSS_NAMES.items()}


def metric_column(split: str, metric: str) -> str:
    return f"{split}:{metric}"


def metrics_of(row: Mapping[str, str], split: str) -> dict[str, float]:
    """metric -> value of one split (``valid`` or ``test``) in a row; empty cells left out."""
    prefix = f"{split}:"
    return {
        column[len(prefix) :]: float(value)
        for column, value in row.items()
        if column.startswith(prefix) and value not in ("", None)
    }


def metric_names(rows: Iterable[Mapping[str, str]], split: str) -> list[str]:
    """The metrics of a split, in the order they first appear."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(metrics_of(row, split)))
    return list(names)


def settings_of(row: Mapping[str, str]) -> dict:
    return json.loads(row.get("settings") or "{}")


def cell(value) -> str:
    """A CSV cell: empty for None, repr for floats (no precision lost), JSON for containers."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def display_metric(metric: str) -> str:
    name, at, k = metric.partition("@")
    return _METRIC_NAMES.get(name, name) + at + k


def display_loss(loss: str) -> str:
    return _LOSS_NAMES.get(loss, loss)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a results file; none when it does not exist."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None:
            return []
        if "run_id" not in reader.fieldnames or "fingerprint" not in reader.fieldnames:
            raise ValueError(
                f"{path} is not a results file of recbole_adt.experiments (it has no run_id or "
                "fingerprint column): give another --output folder, or move that file away."
            )
        # a cell beyond the header (key None) is left out: the file was edited by hand
        return [
            {key: value or "" for key, value in row.items() if key is not None} for row in reader
        ]


def write_rows(path: Path, rows: Iterable[Mapping[str, str]]) -> None:
    """Write the results file atomically: the fixed columns, then every metric column seen."""
    rows = list(rows)
    extra: dict[str, None] = {}
    for split in (VALID, TEST):
        extra.update(dict.fromkeys(metric_column(split, m) for m in metric_names(rows, split)))
    for row in rows:  # columns a later version added: kept, after ours
        extra.update(dict.fromkeys(c for c in row if c not in COLUMNS and c not in extra))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, *extra], restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole, with the mode of the user's umask
    (:func:`recbole_adt.files.atomic_file`): an interrupted write leaves the old file (or
    none), never half of the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "w", encoding="utf-8", newline="") as file:
        file.write(text)


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(std):
        return f"{mean:.{digits}f} ± n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_percent(fraction: float) -> str:
    return "n/a" if math.isnan(fraction) else f"{100 * fraction:+.2f}%"


def format_pvalue(pvalue: float) -> str:
    if math.isnan(pvalue):
        return "n/a"
    return "< 0.001" if pvalue < 0.001 else f"{pvalue:.3f}"
