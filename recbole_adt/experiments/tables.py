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
from recbole_adt.experiments.runner import BASELINE, RunSpec
from recbole_adt.experiments.stats import (
    mean,
    mean_relative_improvement,
    paired_t_test,
    relative_improvement,
    sample_std,
)

Row = Mapping[str, str]
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


def group_runs(specs: Sequence[RunSpec], rows: Mapping[str, Row]) -> list[Group]:
    """One group per (model, loss, run settings), in the order of ``specs``."""
    groups: dict[tuple, Group] = {}
    for spec in specs:
        key = (spec.model, spec.loss, spec.settings)
        group = groups.setdefault(key, Group(spec.model, spec.loss, [], spec.settings_dict))
        group.rows.append(rows[spec.run_id])
    return list(groups.values())


def compare_markdown(
    groups: Sequence[Group],
    *,
    title: str,
    checkpoint_rule: str,
    command: str | None = None,
    plots: Sequence[str] = (),
) -> str:
    """The comparison: test and validation tables, RI over CE, paired tests, failed runs."""
    rows = [row for group in groups for row in group.rows]
    test_metrics = metric_names([r for g in groups for r in g.ok], TEST)
    valid_metrics = metric_names([r for g in groups for r in g.ok], VALID)
    lines = [f"# {title}", ""]
    if command:
        lines += ["```", command, "```", ""]
    with_settings = any(group.settings for group in groups)
    lines += [
        "## Test (true positives only, unless clean_test is off)",
        "",
        *_summary_table(groups, TEST, test_metrics, with_settings, relative=True),
        "",
        "Mean ± sample std over the seeds that finished (n). RI: relative improvement over CE "
        "of the same model, averaged over the metrics as in the paper's Table 3, "
        "RI = (1/M) Σ_m (x̄_m − x̄_m^CE) / x̄_m^CE. Bold: the best mean of each model.",
        "",
    ]
    paired = _paired_table(groups, test_metrics, with_settings)
    if paired:
        lines += ["## Paired test against CE", "", *paired, "", PAIRED_TEST_NOTE, ""]
    lines += [
        f"## Validation (at the checkpoint chosen by `{checkpoint_rule}`)",
        "",
        *_summary_table(groups, VALID, valid_metrics, with_settings, relative=False),
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
            *_summary_table([final], TEST, metric_names(final.ok, TEST), False, relative=False),
            "",
        ]
    return "\n".join(lines)


def selection_value(group: Group, metric: str) -> float:
    """The validation value a grid selects on: the mean over finished seeds; NaN if none."""
    values = [metrics_of(r, VALID).get(metric) for r in group.ok]
    values = [v for v in values if v is not None]
    return mean(values) if values else math.nan


def _summary_table(
    groups: Sequence[Group], split: str, metrics: list[str], with_settings: bool, *, relative
) -> list[str]:
    ce: dict[str, dict] = {}
    for group in groups:
        if group.loss == "ce" and group.ok:
            ce.setdefault(group.model, group.summary(split))
    head = ["Model", "Loss", *(["Settings"] if with_settings else []), "n"]
    head += [display_metric(m) for m in metrics]
    if split == VALID:
        head.append("Best epoch")
    if relative:
        head.append("RI")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    best = _best_means(groups, split, metrics)
    for group in groups:
        summary = group.summary(split)
        cells = [group.model, group.label]
        if with_settings:
            cells.append(_settings_text(group))
        cells.append(str(len(group.ok)))
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
        if relative:
            reference = ce.get(group.model)
            if group.loss in ("ce", BASELINE) or reference is None or not summary:
                cells.append("")
            else:
                means = {m: v[0] for m, v in summary.items()}
                cells.append(format_percent(mean_relative_improvement(means, _means(reference))))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _paired_table(groups: Sequence[Group], metrics: list[str], with_settings: bool) -> list[str]:
    ce: dict[str, Group] = {}
    for group in groups:
        if group.loss == "ce":
            ce.setdefault(group.model, group)
    compared = [g for g in groups if g.loss not in ("ce", BASELINE) and g.model in ce]
    if not compared:
        return []
    head = ["Model", "Loss", *(["Settings"] if with_settings else []), "Pairs"]
    head += [display_metric(m) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for group in compared:
        ours, reference = group.by_seed(TEST), ce[group.model].by_seed(TEST)
        seeds = sorted(set(ours) & set(reference))
        cells = [group.model, group.label]
        if with_settings:
            cells.append(_settings_text(group))
        cells.append(str(len(seeds)))
        for metric in metrics:
            pairs = [s for s in seeds if metric in ours[s] and metric in reference[s]]
            a, b = [ours[s][metric] for s in pairs], [reference[s][metric] for s in pairs]
            test = paired_t_test(a, b)
            change = format_percent(relative_improvement(mean(a), mean(b))) if pairs else "n/a"
            cells.append(f"{change} (p = {format_pvalue(test.pvalue) if test else 'n/a'})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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
