"""The statistics and the report of an experiment grid's results (``OUT/results.json``, written by
:func:`modernpatent_hf.experiments.run_grid`).

Statistics (:func:`mean_confidence_interval`, :func:`paired_difference_interval`): per metric, the mean
over seeds with a Student-t interval, and the difference to the reference paired by seed (same seed,
same data, same test patents), whose interval is the Student-t interval of the per-seed differences.
:func:`condition_statistics` gives both per condition; :func:`summarize` renders them into ``OUT/summary.md``
(:func:`summary_markdown`) with a plot of the paired differences (:func:`plot_paired_differences`).
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Dict, Sequence, Tuple

import numpy as np
from scipy import stats

from .reporting.figures import new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"
DIFFERENCES_FIGURE = "differences.png"  # next to summary.md, which embeds it

# (key in a run's all_results.json, key in the baselines' metrics or None, title, scale of the printed
# value) of the summary tables, one table each.
SUMMARY_METRICS = (
    ("test_f1@1", "f1@1", "F1@1 (%)", 100.0),
    ("test_precision@1", "precision@1", "P@1 (%)", 100.0),
    ("test_micro_f1", "micro_f1", "micro F1 (%)", 100.0),
    ("test_macro_f1", "macro_f1", "macro F1 (%)", 100.0),
    ("test_macro_precision", "macro_precision", "macro precision (%)", 100.0),
    ("test_precision@1_class", "precision@1_class", "class P@1 (%)", 100.0),
    ("test_precision@1_section", "precision@1_section", "section P@1 (%)", 100.0),
    ("train_runtime", None, "training time (s)", 1.0),
)
# The metrics of the seed's findings, plotted side by side by plot_paired_differences.
DIFFERENCE_METRICS = ("test_f1@1", "test_precision@1_section", "test_macro_f1", "test_macro_precision")


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> Tuple[float, float, float]:
    """Mean of ``values`` and its two-sided Student-t confidence interval: ``(mean, low, high)``.

    The half-width is ``t((1 + confidence) / 2, n - 1) * s / sqrt(n)`` with ``s`` the sample standard
    deviation (ddof 1). One value has no spread to estimate: its bounds are ``nan``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a non-empty list of numbers, got shape {values.shape}")
    mean = float(values.mean())
    if values.size == 1:
        return mean, math.nan, math.nan
    half_width = float(
        stats.t.ppf((1.0 + confidence) / 2.0, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    )
    return mean, mean - half_width, mean + half_width


def paired_difference_interval(
    condition_values: Sequence[float], reference_values: Sequence[float], confidence: float = 0.95
) -> Tuple[float, float, float]:
    """Mean of the paired differences ``condition - reference`` and its Student-t interval.

    Element i of both sequences must come from the same seed (same data, same test patents): pairing
    removes the variation the two runs share, so the interval is that of the per-seed differences.
    """
    condition_values = np.asarray(condition_values, dtype=float)
    reference_values = np.asarray(reference_values, dtype=float)
    if condition_values.shape != reference_values.shape:
        raise ValueError(
            f"paired values must have the same length, got {condition_values.shape} and {reference_values.shape}"
        )
    return mean_confidence_interval(condition_values - reference_values, confidence)


def _interval(mean: float, low: float, high: float, scale: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if math.isnan(low):
        return f"{mean * scale:{sign}.2f} [n/a]"
    return f"{mean * scale:{sign}.2f} [{low * scale:{sign}.2f}, {high * scale:{sign}.2f}]"


def _runs_by_condition(results: Dict) -> Dict[str, Dict[int, Dict]]:
    per_condition: Dict[str, Dict[int, Dict]] = {}
    for run in results["runs"]:
        per_condition.setdefault(run["condition"], {})[run["seed"]] = run["metrics"]
    return per_condition


def condition_statistics(results: Dict, key: str, confidence: float = 0.95) -> Dict[str, Dict]:
    """Per condition with finished runs, for metric ``key``: ``n``, ``mean`` ``(mean, low, high)`` over its seeds,
    and ``difference`` ``(mean, low, high)`` paired by seed with the reference over ``paired`` common seeds (None
    for the reference itself and for conditions with no seed in common with it)."""
    per_condition = _runs_by_condition(results)
    reference_runs = per_condition.get(results["reference"], {})
    statistics = {}
    for name in results["conditions"]:
        values = {seed: metrics[key] for seed, metrics in per_condition.get(name, {}).items() if key in metrics}
        if not values:
            continue
        common = sorted(seed for seed in values if key in reference_runs.get(seed, {}))
        difference = None
        if name != results["reference"] and common:
            difference = paired_difference_interval(
                [values[s] for s in common], [reference_runs[s][key] for s in common], confidence
            )
        statistics[name] = {
            "n": len(values),
            "mean": mean_confidence_interval(list(values.values()), confidence),
            "paired": len(common),
            "difference": difference,
        }
    return statistics


def summary_markdown(results: Dict, confidence: float = 0.95) -> str:
    """Markdown tables of ``results``: per metric, each condition's mean with its interval and its paired
    difference to the reference, then the baselines' values."""
    reference = results["reference"]
    per_condition = _runs_by_condition(results)
    level = f"{100 * confidence:g} %"
    data = results["data"]
    lines = [
        f"# Experiment grid `{os.path.basename(results['grid'])}`",
        "",
        f"Data: {data['fields']['dataset_name_or_path']} "
        f"({', '.join(f'{name} {count:,}' for name, count in data['records_per_split'].items())} records; "
        f"{data['num_labels']} labels). Every run reads these splits and the same tokenizer; only the training seed varies.",
        f"Values: test split, mean over seeds [{level} Student-t interval]; the difference to `{reference}` is paired "
        "by seed (mean of the per-seed differences [its interval]). One seed gives no interval (n/a).",
        "",
        f"![Paired differences to {reference}]({DIFFERENCES_FIGURE})",
        "",
        "| condition | seeds | description |",
        "|---|---|---|",
    ]
    for name, spec in results["conditions"].items():
        seeds = ", ".join(map(str, sorted(per_condition.get(name, {})))) or "none finished"
        lines.append(f"| {name}{' (reference)' if name == reference else ''} | {seeds} | {spec['description']} |")
    for key, baseline_key, title, scale in SUMMARY_METRICS:
        lines += [
            "",
            f"## {title}",
            "",
            f"| condition | n | mean [{level} CI] | difference to {reference} [{level} CI] |",
            "|---|---:|---:|---:|",
        ]
        statistics = condition_statistics(results, key, confidence)
        for name in results["conditions"]:
            row = f"{name} (reference)" if name == reference else name
            if name not in statistics:
                lines.append(f"| {row} | 0 | - | - |")
                continue
            entry = statistics[name]
            if name == reference:
                difference = "-"
            elif entry["difference"] is not None:
                difference = _interval(*entry["difference"], scale, signed=True) + f" (n={entry['paired']})"
            else:
                difference = "no common seed"
            lines.append(f"| {row} | {entry['n']} | {_interval(*entry['mean'], scale)} | {difference} |")
        if baseline_key is not None:
            for baseline, metrics in results["baselines"].items():
                value = f"{metrics[baseline_key] * scale:.2f}" if baseline_key in metrics else "-"
                lines.append(f"| {baseline} (baseline) | - | {value} | - |")
    return "\n".join(lines) + "\n"


def plot_paired_differences(
    results: Dict, path: str, confidence: float = 0.95, metrics: Sequence[str] = DIFFERENCE_METRICS
) -> Figure:
    """One panel per metric: each condition's paired difference to the reference with its interval (a dot alone
    where one common seed gives no interval), a line at 0. Saved as a PNG at ``path``; returns the figure."""
    chosen = [entry for entry in SUMMARY_METRICS if entry[0] in metrics]
    names = [name for name in results["conditions"] if name != results["reference"]]
    figure = new_figure(4.2 * len(chosen), 0.45 * len(names) + 1.8)
    axes = figure.subplots(1, len(chosen), sharey=True, squeeze=False)[0]
    per_metric = {key: condition_statistics(results, key, confidence) for key, *_ in chosen}
    for axis, (key, _, title, scale) in zip(axes, chosen):
        statistics = per_metric[key]
        for row, name in enumerate(names):
            difference = statistics.get(name, {}).get("difference")
            if difference is None:
                continue
            mean, low, high = (value * scale for value in difference)
            if math.isnan(low):
                axis.plot([mean], [row], "o", color="tab:gray")
            else:
                axis.errorbar(
                    [mean],
                    [row],
                    xerr=[[mean - low], [high - mean]],
                    fmt="o",
                    capsize=4,
                    color="tab:green" if low > 0 else "tab:red" if high < 0 else "tab:blue",
                )
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_title(title.replace("(%)", "").strip())
        axis.set_xlabel(
            f"difference to {results['reference']} (points)"
            if scale == 100.0
            else f"difference to {results['reference']}"
        )
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(
        range(len(names)), [f"{name} (n={per_metric[chosen[0][0]].get(name, {}).get('paired', 0)})" for name in names]
    )
    axes[0].invert_yaxis()
    figure.suptitle(
        f"Grid {os.path.basename(results['grid'])}: paired difference to {results['reference']}, "
        f"mean over seeds and {100 * confidence:g} % interval (green/red: interval excludes 0; gray: one seed)"
    )
    save_figure(figure, path)
    return figure


def summarize(out_dir: str, confidence: float = 0.95) -> str:
    """Render ``out_dir/results.json`` into ``out_dir/summary.md``; returns the markdown."""
    path = os.path.join(out_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist: run `modernpatent experiments run GRID --out {out_dir}` first"
        )
    with open(path, encoding="utf-8") as handle:
        results = json.load(handle)
    plot_paired_differences(results, os.path.join(out_dir, DIFFERENCES_FIGURE), confidence)
    text = summary_markdown(results, confidence)
    with open(os.path.join(out_dir, SUMMARY_FILE), "w", encoding="utf-8") as handle:
        handle.write(text)
    return text
