"""Markdown tables of an experiment: the comparison shaped like the paper's Table 3, and the
grid search's validation-selected settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from recbole_adt.experiments.results import (
    OK,
    TEST,
    VALID,
    display_loss,
    display_metric,
    format_mean_std,
    format_percent,
    format_pvalue,
    metric_names,
    metrics_of,
)
from recbole_adt.experiments.runner import BASELINE, COLLIDING, PLAIN, RunSpec
from recbole_adt.experiments.stats import (
    mean,
    mean_relative_improvement,
    paired_t_test,
    relative_improvement,
    sample_std,
)

Row = Mapping[str, str]
_BASELINE_NOTE = " (a baseline such as NMTR: over the first model's)"
PAIRED_TEST_NOTE = (
    "Paired test: two-sided paired t-test (`scipy.stats.ttest_rel`) of each metric against CE "
    "of the same model, over the seeds where both runs finished (same split and clean test); "
    "each cell is the relative change of the means and its p-value; n/a with fewer than 2 "
    "pairs. Not corrected for multiple comparisons."
)


@dataclass(eq=False)  # one group per table row: compared and hashed by identity
class Group:
    """The runs of one table row: a model under one loss (and one set of run settings)."""

    model: str
    loss: str
    rows: list[Row]
    settings: dict = field(default_factory=dict)
    strategy: str = ""  # compare --strategies: "" is none

    @property
    def ok(self) -> list[Row]:
        return [row for row in self.rows if row.get("status") == OK]

    def by_seed(self, split: str) -> dict[int, dict[str, float]]:
        return {int(row["seed"]): metrics_of(row, split) for row in self.ok}

    def summary(self, split: str) -> dict[str, tuple[float, float]]:
        """metric -> (mean, sample std) over the finished runs."""
        runs = [metrics_of(row, split) for row in self.ok]
        names = metric_names(self.ok, split)
        return {
            m: (mean([r[m] for r in runs if m in r]), sample_std([r[m] for r in runs if m in r]))
            for m in names
        }

    @property
    def label(self) -> str:
        return "(own loss)" if self.loss == BASELINE else display_loss(self.loss)

    @property
    def strategy_label(self) -> str:
        return self.strategy or "none"

    def group_metrics(self, variant: str, name: str) -> dict[int, dict[str, float]]:
        """seed -> metric -> value of one test group (``variant`` plain or colliding)."""
        prefix = f"{variant}[{name}]:"
        return {
            int(row["seed"]): {
                column[len(prefix) :]: float(value)
                for column, value in row.items()
                if column.startswith(prefix) and value not in ("", None)
            }
            for row in self.ok
        }


def group_runs(specs: Sequence[RunSpec], rows: Mapping[str, Row]) -> list[Group]:
    """One group per (model, loss, run settings), in the order of ``specs``."""
    groups: dict[tuple, Group] = {}
    for spec in specs:
        key = (spec.model, spec.loss, spec.settings, spec.strategy)
        group = groups.setdefault(
            key, Group(spec.model, spec.loss, [], spec.settings_dict, spec.strategy)
        )
        group.rows.append(rows[spec.run_id])
    return list(groups.values())


def compare_markdown(
    groups: Sequence[Group],
    *,
    title: str,
    checkpoint_rule: str,
    command: str | None = None,
    plots: Sequence[str] = (),
    strategies: bool = False,
    colliding: bool = False,
) -> str:
    """The comparison: test and validation tables, RI over CE, paired tests, failed runs.

    ``strategies`` (Table 4): a Strategy column, and RI and paired tests against plain
    training (CE, strategy none) of the same model, or of the first model for a baseline
    such as NMTR. ``colliding`` (Table 5): each test group's warm-up and warm-up + colliding
    inference results (:func:`colliding_markdown`)."""
    rows = [row for group in groups for row in group.rows]
    test_metrics = metric_names([r for g in groups for r in g.ok], TEST)
    valid_metrics = metric_names([r for g in groups for r in g.ok], VALID)
    lines = [f"# {title}", ""]
    if command:
        lines += ["```", command, "```", ""]
    with_settings = any(group.settings for group in groups)
    references = _references(groups, strategies)
    columns = _Columns(with_settings, strategies)
    reference = "plain training (CE, strategy none)" if strategies else "CE"
    lines += [
        "## Test (true positives only, unless clean_test is off)",
        "",
        *_summary_table(groups, TEST, test_metrics, columns, references),
        "",
        f"Mean ± sample std over the seeds that finished (n). RI: relative improvement over "
        f"{reference} of the same model{_BASELINE_NOTE if strategies else ''}, averaged over "
        "the metrics as in the paper's Table 3, RI = (1/M) Σ_m (x̄_m − x̄_m^CE) / x̄_m^CE. "
        "Bold: the best mean of each model.",
        "",
    ]
    if colliding:
        lines += [colliding_markdown(groups)]
    paired = _paired_table(groups, test_metrics, columns, references)
    if paired:
        note = PAIRED_TEST_NOTE
        if strategies:
            note = note.replace("against CE of the same model", f"against {reference}")
        lines += [f"## Paired test against {reference}", "", *paired, "", note, ""]
    lines += [
        f"## Validation (at the checkpoint chosen by `{checkpoint_rule}`)",
        "",
        *_summary_table(groups, VALID, valid_metrics, columns, None),
        "",
    ]
    lines += _runs_section(rows)
    if plots:
        lines += ["## Plots", "", *(f"![{name}]({name})" for name in plots), ""]
    return "\n".join(lines)


def grid_markdown(
    model: str,
    loss: str,
    groups: Sequence[Group],
    chosen: Group | None,
    *,
    selection_metric: str,
    final: Group | None = None,
) -> str:
    """One grid: each setting's validation and test means, the validation-selected one."""
    metric = display_metric(selection_metric)
    lines = [
        f"## {model} + {display_loss(loss)}",
        "",
        f"| Setting | n | valid {metric} | test {metric} |",
        "| --- | --- | --- | --- |",
    ]
    for group in groups:
        setting = _settings_text(group)
        valid = _mean_of(group, VALID, selection_metric)
        test = _mean_of(group, TEST, selection_metric)
        mark = "**" if group is chosen else ""
        lines.append(
            f"| {mark}{setting}{mark} | {len(group.ok)} | {mark}{_fmt(valid)}{mark} | "
            f"{_fmt(test)} |"
        )
    lines.append("")
    if chosen is None:
        lines += ["No setting finished: nothing chosen.", ""]
        return "\n".join(lines)
    lines += [
        f"Chosen on validation {metric} (mean over the search seeds; the test column is "
        f"shown, never used): **{_settings_text(chosen)}**.",
        "",
    ]
    if final is not None and final.ok:
        seeds = ", ".join(str(s) for s in sorted(final.by_seed(TEST)))
        lines += [
            f"Chosen setting over seeds {seeds} (mean ± sample std):",
            "",
            *_summary_table(
                [final], TEST, metric_names(final.ok, TEST), _Columns(False, False), None
            ),
            "",
        ]
    return "\n".join(lines)


def selection_value(group: Group, metric: str) -> float:
    """The validation value a grid selects on: the mean over finished seeds; NaN if none."""
    values = [metrics_of(r, VALID).get(metric) for r in group.ok]
    values = [v for v in values if v is not None]
    return mean(values) if values else math.nan


@dataclass(frozen=True)
class _Columns:
    """The optional columns of a comparison table."""

    settings: bool
    strategy: bool

    def head(self, last: str) -> list[str]:
        return [
            "Model",
            "Loss",
            *(["Strategy"] if self.strategy else []),
            *(["Settings"] if self.settings else []),
            last,
        ]

    def cells(self, group: Group) -> list[str]:
        cells = [group.model, group.label]
        if self.strategy:
            cells.append(group.strategy_label)
        if self.settings:
            cells.append(_settings_text(group))
        return cells


def _references(groups: Sequence[Group], strategies: bool) -> dict[Group, Group]:
    """Each group's reference for RI and paired tests (groups without one are left out).

    Without strategies (Table 3): the model's first CE group, for every non-CE loss of an
    adt_loss. With strategies (Table 4): the model's plain group (CE, strategy none), or the
    first plain group for a model without one (a baseline, NMTR), for every other group."""
    plain: dict[str, Group] = {}
    for group in groups:
        if group.loss == "ce" and (not strategies or not group.strategy):
            plain.setdefault(group.model, group)
    if not strategies:
        return {
            g: plain[g.model] for g in groups if g.loss not in ("ce", BASELINE) and g.model in plain
        }
    first = next(iter(plain.values()), None)
    found = {g: plain.get(g.model, first) for g in groups}
    return {g: ref for g, ref in found.items() if ref is not None and ref is not g}


def _summary_table(
    groups: Sequence[Group],
    split: str,
    metrics: list[str],
    columns: _Columns,
    references: Mapping[Group, Group] | None,
) -> list[str]:
    """Mean ± std per group; an RI column when ``references`` are given."""
    head = [*columns.head("n"), *(display_metric(m) for m in metrics)]
    if split == VALID:
        head.append("Best epoch")
    if references is not None:
        head.append("RI")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    best = _best_means(groups, split, metrics)
    for group in groups:
        summary = group.summary(split)
        cells = [*columns.cells(group), str(len(group.ok))]
        for metric in metrics:
            if metric not in summary:
                cells.append("n/a")
                continue
            text = format_mean_std(*summary[metric])
            bold = best.get((group.model, metric)) == summary[metric][0] and len(group.ok)
            cells.append(f"**{text}**" if bold else text)
        if split == VALID:
            epochs = [float(r["best_epoch"]) for r in group.ok if r.get("best_epoch")]
            cells.append(f"{mean(epochs):.1f}" if epochs else "n/a")
        if references is not None:
            reference = references.get(group)
            if reference is None or not reference.ok or not summary:
                cells.append("")
            else:
                means = {m: v[0] for m, v in summary.items()}
                ratio = mean_relative_improvement(means, _means(reference.summary(split)))
                cells.append(format_percent(ratio))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _paired_table(
    groups: Sequence[Group],
    metrics: list[str],
    columns: _Columns,
    references: Mapping[Group, Group],
) -> list[str]:
    compared = [g for g in groups if g in references]
    if not compared:
        return []
    head = [*columns.head("Pairs"), *(display_metric(m) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for group in compared:
        ours, reference = group.by_seed(TEST), references[group].by_seed(TEST)
        seeds = sorted(set(ours) & set(reference))
        cells = [*columns.cells(group), str(len(seeds))]
        cells += [_paired_cell(ours, reference, seeds, metric) for metric in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _paired_cell(ours: Mapping, reference: Mapping, seeds: Sequence[int], metric: str) -> str:
    """``+1.23% (p = 0.045)``: the relative change of the means over the seeds both have."""
    pairs = [s for s in seeds if metric in ours[s] and metric in reference[s]]
    a, b = [ours[s][metric] for s in pairs], [reference[s][metric] for s in pairs]
    test = paired_t_test(a, b)
    change = format_percent(relative_improvement(mean(a), mean(b))) if pairs else "n/a"
    return f"{change} (p = {format_pvalue(test.pvalue) if test else 'n/a'})"


def colliding_markdown(groups: Sequence[Group]) -> str:
    """Table 5: per (model, loss) and test group (``ratio < t``, then every user), the
    warm-up result and the warm-up + colliding inference result of the same runs, mean ±
    std over seeds, and a paired test of colliding against warm-up."""
    lines = ["## Colliding inference per user group (Table 5)", ""]
    body: list[str] = []
    metrics: list[str] = []
    for group in groups:
        names = _test_groups(group)
        for name in names:
            plain, mixed = group.group_metrics(PLAIN, name), group.group_metrics(COLLIDING, name)
            for seeds in (plain, mixed):
                for values in seeds.values():
                    metrics += [m for m in values if m not in metrics]
    if not metrics:
        lines += [
            "No run has per-group results: they need D* (a warmup phase) and colliding "
            "inference, recorded by this version (a rerun in a new --output adds them).",
            "",
        ]
        return "\n".join(lines)
    head = ["Model", "Loss", "Users", "Method", "n", *(display_metric(m) for m in metrics)]
    body = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    paired = ["| " + " | ".join([*head[:3], "Pairs", *head[5:]]) + " |"]
    paired.append("|" + " --- |" * (len(head) - 1))
    for group in groups:
        for name in _test_groups(group):
            plain, mixed = group.group_metrics(PLAIN, name), group.group_metrics(COLLIDING, name)
            users = "all users" if name == "overall" else name
            for method, seeds in (("warm-up", plain), ("warm-up + colliding", mixed)):
                cells = [group.model, group.label, users, method, str(len(seeds))]
                for metric in metrics:
                    values = [v[metric] for v in seeds.values() if metric in v]
                    cells.append(
                        format_mean_std(mean(values), sample_std(values)) if values else "n/a"
                    )
                body.append("| " + " | ".join(cells) + " |")
            both = sorted(set(plain) & set(mixed))
            cells = [group.model, group.label, users, str(len(both))]
            cells += [_paired_cell(mixed, plain, both, metric) for metric in metrics]
            paired.append("| " + " | ".join(cells) + " |")
    lines += body
    lines += [
        "",
        "Each run tests twice on the same checkpoint: plain (warm-up) and with Eq. 8 "
        "(warm-up + colliding inference; |N_u| and λ chosen on validation). A `ratio < t` row "
        "holds the test users whose |D*_u| / |D_u| is below t, each mixed at its own "
        "threshold; *all users* mixes those below `colliding_ratio_threshold`. Mean ± sample "
        "std over the seeds (n).",
        "",
        "### Paired test: colliding inference against warm-up",
        "",
        *paired,
        "",
        "Two-sided paired t-test over the seeds (the same runs); each cell is the relative "
        "change of the means and its p-value.",
        "",
    ]
    return "\n".join(lines)


def _test_groups(group: Group) -> list[str]:
    """The test groups the group's runs recorded, ``ratio < t`` first, ``overall`` last."""
    names: list[str] = []
    for row in group.ok:
        for column in row:
            variant, bracket, rest = column.partition("[")
            if bracket and variant in (PLAIN, COLLIDING) and "]:" in rest:
                name = rest.rsplit("]:", 1)[0]
                if name not in names:
                    names.append(name)
    return sorted(names, key=lambda name: name == "overall")


def _runs_section(rows: Sequence[Row]) -> list[str]:
    failed = [row for row in rows if row.get("status") != OK]
    lines = ["## Runs", "", f"{len(rows) - len(failed)} of {len(rows)} runs finished."]
    if failed:
        lines += ["", "Failed (rerun the same command to retry them):", ""]
        lines += [f"- `{row['run_id']}`: {row.get('error') or 'no result'}" for row in failed]
    return [*lines, ""]


def _best_means(groups, split, metrics) -> dict[tuple[str, str], float]:
    """(model, metric) -> the best mean among the model's rows, for models with several."""
    best: dict[tuple[str, str], float] = {}
    counts: dict[str, int] = {}
    for group in groups:
        counts[group.model] = counts.get(group.model, 0) + 1
    for group in groups:
        if counts[group.model] < 2:
            continue
        for metric, (value, _) in group.summary(split).items():
            key, bigger = (group.model, metric), not _smaller_is_better(metric)
            if key not in best or (value > best[key] if bigger else value < best[key]):
                best[key] = value
    return best


def _smaller_is_better(metric: str) -> bool:
    """Losses and RecBole's error metrics; its ranking metrics are all bigger-is-better."""
    return "loss" in metric or metric in ("mae", "rmse")


def _means(summary: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    return {metric: value[0] for metric, value in summary.items()}


def _mean_of(group: Group, split: str, metric: str) -> tuple[float, float] | None:
    values = [metrics_of(r, split).get(metric) for r in group.ok]
    values = [v for v in values if v is not None]
    return (mean(values), sample_std(values)) if values else None


def _fmt(value: tuple[float, float] | None) -> str:
    if value is None:
        return "n/a"
    return format_mean_std(*value) if not math.isnan(value[1]) else f"{value[0]:.4f}"


def _settings_text(group: Group) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.settings.items()) or "defaults"
