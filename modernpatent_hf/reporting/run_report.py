"""The training-run part of a report: evaluation curves, final metrics, top-1 precision per CPC level, per-label F1.

Runs are Trainer output directories (or their ``checkpoint-N`` folders); :func:`per_label_metrics`
re-evaluates a run's saved model on its data for the per-label figures.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from matplotlib.ticker import LogFormatter, MaxNLocator
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..checkpoints import latest_metrics
from ..configs import PatentTrainingArguments
from ..cpc import LABEL_SPACE_FILE, CpcLabelSpace
from ..data.records import is_prepared_dir, load_dataset_dir
from ..io_utils import write_text_atomically
from ..model_factory import load_pretrained_weights
from ..trainer import PatentTrainer
from ..training_data import tokenize_patent_dataset
from .figures import new_figure, save_figure
from .tables import RUN_COLUMNS, markdown_table, metrics_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# (subplot title, metric key) of the evaluation curves; the Trainer logs them as ``eval_<key>``.
CURVE_METRICS = (
    ("F1@1", "f1@1"),
    ("micro F1 (threshold 0.5)", "micro_f1"),
    ("macro F1 (threshold 0.5)", "macro_f1"),
    ("macro precision (threshold 0.5)", "macro_precision"),
)
# (level name, metric key) of top-1 precision at each level of the CPC tree.
LEVEL_PRECISION = (("subclass", "precision@1"), ("class", "precision@1_class"), ("section", "precision@1_section"))


@dataclass
class TrainingRun:
    """What a Trainer output directory says about its run: the log history and the final metrics."""

    name: str
    path: str
    log_history: List[Dict]
    metrics: Dict[str, float]


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}); was the run interrupted while writing it?"
        ) from None


def read_run(path: str, name: Optional[str] = None) -> TrainingRun:
    """Read a Trainer output directory (or one of its ``checkpoint-N`` folders).

    The metrics are the latest ``eval_*``/``test_*`` values of the log history, overridden by
    ``eval_results.json``, ``test_results.json`` and ``all_results.json`` when present.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"run directory {path!r} does not exist; give the output_dir of a training run")
    state_file = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state_file):
        raise FileNotFoundError(
            f"{path} has no trainer_state.json; give a Trainer output directory (a run's output_dir or one of its checkpoint-N folders)"
        )

    log_history = _read_json(state_file).get("log_history", [])
    metrics = latest_metrics(log_history)
    for results in ("eval_results.json", "test_results.json", "all_results.json"):
        if os.path.isfile(os.path.join(path, results)):
            metrics.update(_read_json(os.path.join(path, results)))
    return TrainingRun(name or os.path.basename(os.path.abspath(path)), path, log_history, metrics)


def run_names(paths: Sequence[str]) -> List[str]:
    """A legend name per run directory: its basename, ``parent/basename`` where basenames repeat, else the path."""
    absolute = [os.path.abspath(path) for path in paths]
    basenames = [os.path.basename(path) for path in absolute]
    with_parent = [os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path)) for path in absolute]
    names = []
    for path, base, parent in zip(absolute, basenames, with_parent):
        if basenames.count(base) == 1:
            names.append(base)
        elif with_parent.count(parent) == 1:
            names.append(parent)
        else:
            names.append(path)
    return names


def metric_curve(log_history: Sequence[Mapping], key: str, prefix: str = "eval_") -> Tuple[List[int], List[float]]:
    """``(steps, values)`` of ``prefix + key`` in a Trainer log history; a step logged twice keeps its last value."""
    by_step = {
        entry["step"]: entry[prefix + key] for entry in log_history if prefix + key in entry and "step" in entry
    }
    steps = sorted(by_step)
    return steps, [by_step[step] for step in steps]


def plot_metric_curves(
    runs: Sequence[TrainingRun], path: str, metrics: Sequence[Tuple[str, str]] = CURVE_METRICS
) -> Figure:
    """One subplot per metric of ``metrics`` (values in %, against the training step), runs overlaid.

    Saves a PNG at ``path`` and returns the figure.
    """
    figure = new_figure(11, 7.5)
    grid = figure.subplots(2, (len(metrics) + 1) // 2, squeeze=False).ravel()
    for axes, (title, key) in zip(grid, metrics):
        for index, run in enumerate(runs):
            steps, values = metric_curve(run.log_history, key)
            axes.plot(steps, [100 * v for v in values], marker="o", markersize=4, color=f"C{index}", label=run.name)
        axes.set_title(title)
        axes.set_xlabel("training step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(f"{title.split(' (')[0]} on validation (%)")
        axes.grid(alpha=0.3)
    for axes in grid[len(metrics) :]:
        axes.set_visible(False)
    handles, labels = grid[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(runs), 3), title="run")
    figure.suptitle("Validation metrics during training")
    save_figure(figure, path)
    return figure


def _final_split(runs: Sequence[TrainingRun]) -> Tuple[str, str]:
    """(name, key prefix) of the split whose final metrics the figures show: test when every run has it."""
    if all(any(key.startswith("test_") for key in run.metrics) for run in runs):
        return "test", "test_"
    return "validation", "eval_"


def plot_level_precision(runs: Sequence[TrainingRun], path: str) -> Figure:
    """Grouped bars of top-1 precision at subclass, class and section level, one bar colour per run.

    Uses the test metrics when every run has them, else the validation metrics. Saves a PNG at ``path``
    and returns the figure.
    """
    split, prefix = _final_split(runs)
    figure = new_figure(max(6.5, 2.2 + 1.2 * len(runs) * len(LEVEL_PRECISION) / 2), 4.8)
    axes = figure.subplots()
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        values = [100 * run.metrics.get(prefix + key, np.nan) for _, key in LEVEL_PRECISION]
        positions = np.arange(len(LEVEL_PRECISION)) + (index - (len(runs) - 1) / 2) * width
        bars = axes.bar(positions, values, width=width * 0.95, color=f"C{index}", label=run.name)
        axes.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    axes.set_xticks(range(len(LEVEL_PRECISION)), [f"{level} P@1" for level, _ in LEVEL_PRECISION])
    axes.set_ylim(0, 110)
    axes.set_xlabel("level of the CPC tree at which the top-1 prediction is judged")
    axes.set_ylabel(f"top-1 precision on {split} (%)")
    axes.set_title(f"Top-1 precision by CPC level ({split} split)")
    axes.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=min(len(runs), 3), title="run")
    save_figure(figure, path)
    return figure


# ------------------------------------------------------------------------------ per-label metrics of a run
def _run_dir_with(run_dir: str, name: str) -> Optional[str]:
    """``run_dir/name`` or, for a ``checkpoint-N`` folder, ``run_dir/../name``; None when neither exists."""
    for directory in (run_dir, os.path.dirname(os.path.abspath(run_dir))):
        if os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def per_label_metrics(
    run_dir: str, split: Optional[str] = None, batch_size: int = 32, allow_pickle: bool = False
) -> Dict:
    """Predict a split of a run's data with its saved model and return per-label threshold metrics.

    The model, tokenizer and label space come from ``run_dir``; the data from the run's prepared
    ``data/`` directory (or the prepared dataset its ``run_config.json`` names), with the run's
    ``max_length`` and sample limits. ``split`` defaults to test, or validation when test is empty.
    Returns ``codes``, ``train_counts`` (label occurrences in training), ``split``, the per-label arrays
    of ``MultilabelMetricsAccumulator.per_label()`` (``precision``, ``recall``, ``f1``, ``support``) and
    the split's overall ``metrics``. Raises ValueError / FileNotFoundError when the run lacks a piece, and
    OSError when its weights are pickled (``pytorch_model.bin``) and ``allow_pickle`` is not set.
    """
    for needed in ("config.json", LABEL_SPACE_FILE, "tokenizer_config.json"):
        if not os.path.isfile(os.path.join(run_dir, needed)):
            raise FileNotFoundError(f"{run_dir} has no saved model to predict with (no {needed})")
    config_path = _run_dir_with(run_dir, "run_config.json")
    data_args = _read_json(config_path).get("DataArguments", {}) if config_path else {}
    data_dir = _run_dir_with(run_dir, "data")
    if not (data_dir and is_prepared_dir(data_dir)):
        data_dir = data_args.get("dataset_name_or_path")
        if not (data_dir and is_prepared_dir(data_dir)):
            raise FileNotFoundError(f"{run_dir} has no prepared data/ directory and its run_config.json names none")
    splits = load_dataset_dir(data_dir)
    split = split or ("test" if len(splits["test"]) else "validation")
    if split not in splits or not len(splits[split]):
        raise ValueError(f"the data of {run_dir} ({data_dir}) has no {split!r} records to predict")
    rows = splits[split]
    # The recipe's max_test_samples / max_eval_samples, so that the figures are those of the run's own evaluation.
    limit = data_args.get("max_test_samples" if split == "test" else "max_eval_samples")
    if limit is not None and limit < len(rows):
        rows = rows.select(range(limit))

    label_space = CpcLabelSpace.load(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    max_length = data_args.get("max_length") or getattr(
        AutoConfig.from_pretrained(run_dir), "max_position_embeddings", 512
    )
    tokenized, _ = tokenize_patent_dataset(rows, tokenizer, label_space, max_length, desc=f"tokenizing {split}")
    with tempfile.TemporaryDirectory() as scratch:
        trainer = PatentTrainer(
            model=load_pretrained_weights(AutoModelForSequenceClassification, run_dir, allow_pickle=allow_pickle),
            args=PatentTrainingArguments(
                output_dir=scratch,
                per_device_eval_batch_size=batch_size,
                report_to="none",
                dataloader_pin_memory=False,
            ),
            label_space=label_space,
            processing_class=tokenizer,
        )
        metrics = trainer.evaluate(tokenized, metric_key_prefix=split)
    counts = label_space.counts
    if counts is None:
        counts = Counter(code for labels in splits["train"]["labels"] for code in labels)
    return {
        "codes": list(label_space.codes),
        "train_counts": np.array([counts.get(code, 0) for code in label_space.codes], dtype=np.int64),
        "titles": label_space.titles,
        "split": split,
        "metrics": metrics,
        **trainer.compute_metrics.last_per_label,
    }


def write_per_label_tsv(per_label: Mapping, path: str) -> None:
    """The per-label results of :func:`per_label_metrics` as a TSV, most frequent label first."""
    lines = ["code\ttitle\ttrain_count\tsupport\tprecision\trecall\tf1"]
    for i in np.argsort(-per_label["train_counts"], kind="stable"):
        code = per_label["codes"][i]
        lines.append(
            "\t".join(
                [
                    code,
                    per_label["titles"].get(code, ""),
                    str(per_label["train_counts"][i]),
                    str(per_label["support"][i]),
                    *(f"{per_label[key][i]:.4f}" for key in ("precision", "recall", "f1")),
                ]
            )
        )
    write_text_atomically(path, "\n".join(lines) + "\n")


def plot_per_label_f1(per_label_by_run: Mapping[str, Mapping], path: str, bins: int = 8) -> Figure:
    """Per-label F1 against the label's training frequency (log x), runs overlaid, with the mean F1 per log bin.

    Labels absent from the evaluated split (support 0) have no defined F1 and are left out.
    Saves a PNG at ``path`` and returns the figure.
    """
    figure = new_figure(8.5, 5.2)
    axes = figure.subplots()
    for index, (name, per_label) in enumerate(per_label_by_run.items()):
        present = (per_label["support"] > 0) & (per_label["train_counts"] > 0)
        counts, f1 = per_label["train_counts"][present], 100 * per_label["f1"][present]
        axes.scatter(
            counts,
            f1,
            s=14,
            alpha=0.45,
            color=f"C{index}",
            edgecolors="none",
            label=f"{name}: {present.sum()} labels ({per_label['split']})",
        )
        edges = np.logspace(np.log10(counts.min()), np.log10(counts.max() + 1), bins + 1)
        which = np.clip(np.digitize(counts, edges) - 1, 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        centers = [np.sqrt(edges[b] * edges[b + 1]) for b in filled]
        axes.plot(
            centers,
            [f1[which == b].mean() for b in filled],
            "-",
            marker="s",
            markersize=5,
            color=f"C{index}",
            linewidth=2,
        )
    axes.set_xscale("log")
    # Plain numbers ("20", "1000") rather than 2×10^1 for a count of patents; minor ticks labelled on short ranges only.
    axes.xaxis.set_major_formatter(LogFormatter())
    axes.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    axes.set_ylim(-3, 103)
    axes.set_xlabel("label occurrences in the training split (number of patents, log scale)")
    axes.set_ylabel("F1 of the label at threshold 0.5 (%)")
    axes.set_title("Per-label F1 against label frequency (lines: mean F1 per log-frequency bin)")
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=min(len(per_label_by_run), 3), fontsize=9, markerscale=1.8)
    save_figure(figure, path)
    return figure


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def runs_report(
    run_dirs: Sequence[str],
    out_dir: str,
    per_label: bool = False,
    per_label_split: Optional[str] = None,
    allow_pickle: bool = False,
) -> Tuple[str, Dict]:
    """Evaluation curves, final-metrics tables and top-1 precision per CPC level of training runs.

    With ``per_label`` each run's saved model predicts its data (:func:`per_label_metrics`) for the
    per-label F1 plot (pickled weights only with ``allow_pickle``); a run where that is impossible is left out of
    that plot with a note. Writes the
    PNGs into ``out_dir``; returns the markdown section and a summary (``runs``, ``figures``, ``notes``).
    """
    runs = [read_run(path, name) for path, name in zip(run_dirs, run_names(run_dirs))]
    figures, notes = [], []
    lines = [
        "## Training runs",
        "",
        markdown_table(("run", "directory"), [(run.name, f"`{run.path}`") for run in runs], align="ll"),
        "",
    ]

    silent = [run.name for run in runs if not metric_curve(run.log_history, CURVE_METRICS[0][1])[0]]
    notes += [
        f"{name!r} logged no evaluation during training (eval_strategy 'no'?): it has no curve" for name in silent
    ]
    lines += ["### Validation metrics during training", ""]
    if len(silent) < len(runs):
        figures.append("runs_eval_curves.png")
        plot_metric_curves(runs, os.path.join(out_dir, figures[-1]))
        lines += [f"![validation metrics during training]({figures[-1]})", ""]
    else:
        lines += ["No run logged an evaluation during training.", ""]

    lines += ["### Final metrics (values in %)", ""]
    for split, prefix in (("validation", "eval_"), ("test", "test_")):
        rows = {
            run.name: {key[len(prefix) :]: value for key, value in run.metrics.items() if key.startswith(prefix)}
            for run in runs
        }
        rows = {name: metrics for name, metrics in rows.items() if metrics}
        if rows:
            lines += [
                f"{split.capitalize()} split:",
                "",
                metrics_table(rows, RUN_COLUMNS).replace("| predictor |", "| run |", 1),
                "",
            ]
    if any(run.metrics for run in runs):
        split, _ = _final_split(runs)
        figures.append("runs_level_precision.png")
        plot_level_precision(runs, os.path.join(out_dir, figures[-1]))
        lines += [
            "### Top-1 precision by CPC level",
            "",
            f"The top-1 subclass judged at subclass, class and section level ({split} split).",
            "",
            f"![top-1 precision by CPC level]({figures[-1]})",
            "",
        ]

    lines += ["### Per-label F1", ""]
    per_label_by_run = {}
    if per_label:
        for run in runs:
            try:
                per_label_by_run[run.name] = per_label_metrics(run.path, per_label_split, allow_pickle=allow_pickle)
            except (ValueError, OSError) as error:
                notes.append(f"per-label F1 of {run.name!r} skipped: {error}")
    if per_label_by_run:
        figures.append("runs_per_label_f1.png")
        plot_per_label_f1(per_label_by_run, os.path.join(out_dir, figures[-1]))
        lines += [f"![per-label F1 against label frequency]({figures[-1]})", ""]
        for name, results in per_label_by_run.items():
            tsv = f"per_label_{_file_stem(name)}.tsv"
            write_per_label_tsv(results, os.path.join(out_dir, tsv))
            present = results["support"] > 0
            lines.append(
                f"- {name} ({results['split']} split, {results['metrics'][results['split'] + '_num_patents']:,} patents): "
                f"{(results['f1'][present] == 0).sum()} of {present.sum()} labels present have F1 = 0; "
                f"per-label figures in [{tsv}]({tsv})."
            )
        lines.append("")
    elif not per_label:
        lines += ["Not computed: pass `--per-label` to predict each run's test split with its saved model.", ""]
    else:
        lines += ["No run could be predicted (see the notes).", ""]
    return "\n".join(lines), {"runs": runs, "figures": figures, "notes": notes, "per_label": per_label_by_run}
