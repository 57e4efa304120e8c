"""Reports: metric tables beside the reference predictors, and dataset / training-run reports with plots.

:func:`write_report` is what ``modernpatent report`` runs. From a dataset it writes label statistics,
the head of the label distribution (top-30 subclasses and their share of label occurrences), the long
tail (label frequency against rank on log-log axes with the fitted power-law slope) and section- and
class-level tables. From Trainer output directories it writes evaluation curves overlaid across runs,
the final metrics, top-1 precision per CPC level and, on request, per-label F1 against label frequency.
Everything lands in one directory as PNG files plus a ``report.md`` that embeds them.

Figures are drawn on ``matplotlib.figure.Figure`` objects, which render with the Agg backend without
touching pyplot's global state: reports work headless and inside other programs.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .baselines import most_frequent_label_scores, tfidf_linear_scores
from .cpc import LABEL_SPACE_FILE, SECTIONS, CpcLabelSpace, class_of, read_titles_tsv, section_of
from .data.readers import iter_records
from .data.records import format_label_statistics, is_prepared_dir, label_statistics, load_dataset_dir
from .io_utils import replace_atomically
from .metrics import compute_multilabel_metrics
from .trainer import PatentTrainer, PatentTrainingArguments, latest_metrics, tokenize_patent_dataset

# (column title, metric key) of the summary table the demo and the docs print.
SUMMARY_COLUMNS = (
    ("P@1", "precision@1"),
    ("R@1", "recall@1"),
    ("F1@1", "f1@1"),
    ("R@1 micro", "recall@1_micro"),
    ("class P@1", "precision@1_class"),
    ("section P@1", "precision@1_section"),
    ("macro F1", "macro_f1"),
)
# Columns of the final-metrics table of training runs.
RUN_COLUMNS = (
    ("F1@1", "f1@1"),
    ("P@1", "precision@1"),
    ("R@1", "recall@1"),
    ("F1@5", "f1@5"),
    ("micro F1", "micro_f1"),
    ("macro F1", "macro_f1"),
    ("macro precision", "macro_precision"),
    ("class P@1", "precision@1_class"),
    ("section P@1", "precision@1_section"),
)
# (subplot title, metric key) of the evaluation curves; the Trainer logs them as ``eval_<key>``.
CURVE_METRICS = (
    ("F1@1", "f1@1"),
    ("micro F1 (threshold 0.5)", "micro_f1"),
    ("macro F1 (threshold 0.5)", "macro_f1"),
    ("macro precision (threshold 0.5)", "macro_precision"),
)
# (level name, metric key) of top-1 precision at each level of the CPC tree.
LEVEL_PRECISION = (("subclass", "precision@1"), ("class", "precision@1_class"), ("section", "precision@1_section"))
SECTION_TITLES = {
    "A": "Human necessities",
    "B": "Performing operations; transporting",
    "C": "Chemistry; metallurgy",
    "D": "Textiles; paper",
    "E": "Fixed constructions",
    "F": "Mechanical engineering; lighting; heating; weapons; blasting",
    "G": "Physics",
    "H": "Electricity",
    "Y": "General tagging of new technological developments",
}
REPORT_FILE = "report.md"
TITLE_WIDTH = 80  # characters of a subclass title in tables; CPC titles run to several hundred
DPI = 120


def metrics_table(rows: Mapping[str, Mapping[str, float]], columns=SUMMARY_COLUMNS) -> str:
    """A markdown table, one row per predictor, values in percent."""
    header = "| predictor | " + " | ".join(title for title, _ in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for name, metrics in rows.items():
        cells = [f"{100 * metrics[key]:.2f}" if key in metrics else "-" for _, key in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baseline_metrics(train_split, test_split, label_space: CpcLabelSpace, k: Sequence[int] = (1, 5)) -> Dict[str, Dict[str, float]]:
    """Metrics of the most-frequent-label and TF-IDF linear predictors on ``test_split``."""
    references = label_space.encode_batch(test_split["labels"])
    names = list(label_space.codes)
    majority = most_frequent_label_scores(train_split["labels"], label_space, len(test_split))
    tfidf = tfidf_linear_scores(train_split["text"], train_split["labels"], test_split["text"], label_space)
    return {
        "most frequent label": compute_multilabel_metrics(majority, references, k=k, label_names=names),
        "TF-IDF + one-vs-rest logistic regression": compute_multilabel_metrics(tfidf, references, k=k, label_names=names),
    }


def compare_with_baselines(model_metrics: Mapping[str, float], train_split, test_split, label_space: CpcLabelSpace,
                           k: Sequence[int] = (1, 5), model_name: str = "this model", prefix: str = "test_") -> str:
    """The summary table of the model's ``test_*`` metrics beside the reference predictors'."""
    rows = {model_name: {key[len(prefix):]: value for key, value in model_metrics.items() if key.startswith(prefix)}}
    rows.update(baseline_metrics(train_split, test_split, label_space, k))
    return f"Test split ({len(test_split):,} patents, {len(label_space)} labels), values in %:\n\n" + metrics_table(rows)


# ------------------------------------------------------------------------------ files and figures
def new_figure(width: float, height: float):
    """A matplotlib Figure of this size (inches) at the reports' DPI, laid out without clipping; no pyplot state."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(figure, path: str) -> None:
    """Save ``figure`` as a PNG at ``path`` atomically."""
    replace_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    replace_atomically(path, write)


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: str = "") -> str:
    """A markdown table; ``align`` holds one ``l``/``r`` per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ dataset report
@dataclass
class LabelTallies:
    """Counts gathered in one pass over the label lists: per subclass, and per class / section."""

    subclasses: Counter = field(default_factory=Counter)
    occurrences: Dict[str, Counter] = field(default_factory=lambda: {"class": Counter(), "section": Counter()})
    patents: Dict[str, Counter] = field(default_factory=lambda: {"class": Counter(), "section": Counter()})

    def add(self, labels: Sequence[str]) -> None:
        self.subclasses.update(labels)
        for level, level_of in (("class", class_of), ("section", section_of)):
            levels = [level_of(code) for code in labels]
            self.occurrences[level].update(levels)
            self.patents[level].update(set(levels))

    def counting(self, label_lists: Iterable[Sequence[str]]) -> Iterator[Sequence[str]]:
        """Pass ``label_lists`` through, tallying each list on the way (so other consumers share the pass)."""
        for labels in label_lists:
            self.add(labels)
            yield labels


def read_label_lists(source: str, text_fields=None) -> Tuple[Iterable[Sequence[str]], Optional[CpcLabelSpace], Dict[str, int]]:
    """The label lists of a dataset, streamed, with its label space (when it has one) and its rows per split.

    ``source`` is a directory written by ``modernpatent prepare``/``synth`` (all splits are read) or any
    file ``data.readers.iter_records`` reads (JSON Lines, Parquet, TSV), whose ``text_fields`` decide
    which records have a text (records without one are dropped, as ``prepare`` does).
    """
    from tqdm.auto import tqdm

    source = os.fspath(source)
    if is_prepared_dir(source):
        if text_fields:
            raise ValueError(
                f"--text-fields applies to raw records; {source} is a prepared dataset whose texts are already chosen"
            )

        splits = load_dataset_dir(source)
        rows = {name: len(split) for name, split in splits.items() if len(split)}
        label_lists = (labels for split in splits.values() for labels in split["labels"])
        return tqdm(label_lists, total=sum(rows.values()), desc="reading labels", unit=" records"), CpcLabelSpace.load(source), rows

    records = iter_records(source, text_fields=text_fields)
    return (record["labels"] for record in tqdm(records, desc=f"reading {os.path.basename(source)}", unit=" records")), None, {}


def fit_power_law(frequencies: Sequence[float]) -> Tuple[float, float]:
    """Least-squares line through ``(log10 rank, log10 frequency)``: returns ``(slope, intercept)``.

    ``frequencies`` are sorted in decreasing order first; ranks start at 1 and zeros are left out.
    A frequency proportional to ``rank ** -a`` gives ``slope == -a``.
    """
    ranked = np.sort(np.asarray(frequencies, dtype=np.float64))[::-1]
    ranked = ranked[ranked > 0]
    if len(ranked) < 2:
        raise ValueError(f"a power-law fit needs at least 2 labels with a count above 0, got {len(ranked)}")
    slope, intercept = np.polyfit(np.log10(np.arange(1, len(ranked) + 1)), np.log10(ranked), deg=1)
    return float(slope), float(intercept)


def plot_top_subclasses(stats: Mapping, path: str, top_n: int = 30):
    """Bars of the ``top_n`` most frequent subclasses' shares of label occurrences (``label_statistics`` output).

    The title gives their cumulative share. Saves a PNG at ``path`` and returns the figure.
    """
    top = stats[f"top{top_n}"]
    total = stats["label_occurrences"]
    codes = [code for code, _ in top]
    shares = [100 * n / total for _, n in top]
    figure = new_figure(11, 4.8)
    axes = figure.subplots()
    axes.bar(range(len(codes)), shares, color="C0")
    axes.set_xticks(range(len(codes)), codes, rotation=60, ha="right", rotation_mode="anchor", fontsize=9, family="monospace")
    axes.set_xlim(-0.7, len(codes) - 0.3)
    axes.set_xlabel("CPC subclass (most frequent first)")
    axes.set_ylabel("share of label occurrences (%)")
    axes.grid(axis="y", alpha=0.3)
    axes.set_title(
        f"Top {len(codes)} of {stats['subclasses']} subclasses: {100 * stats[f'top{top_n}_share']:.1f} % of "
        f"{total:,} label occurrences ({stats['records']:,} patents)"
    )
    save_figure(figure, path)
    return figure


def plot_rank_frequency(counts: Mapping[str, int], path: str) -> Tuple[object, float]:
    """Label frequency against rank on log-log axes, with the least-squares power-law fit in the legend.

    Saves a PNG at ``path``; returns ``(figure, slope)``.
    """
    frequencies = np.sort(np.fromiter(counts.values(), dtype=np.float64))[::-1]
    slope, intercept = fit_power_law(frequencies)
    ranks = np.arange(1, len(frequencies) + 1)
    figure = new_figure(7.5, 5)
    axes = figure.subplots()
    axes.loglog(ranks, frequencies, "o", markersize=3.5, alpha=0.7, color="C0", label=f"{len(ranks)} subclasses")
    axes.loglog(ranks, 10 ** intercept * ranks ** slope, "-", color="C3", linewidth=1.5,
                label=f"least-squares fit: count ∝ rank$^{{{slope:.2f}}}$")
    axes.set_xlabel("rank of the subclass (1 = most frequent, log scale)")
    axes.set_ylabel("number of patents with the subclass (log scale)")
    axes.set_title("Label frequency against rank")
    axes.grid(which="major", alpha=0.3)
    axes.legend()
    save_figure(figure, path)
    return figure, slope


def _section_table(tallies: LabelTallies, n_records: int) -> str:
    occurrences, patents = tallies.occurrences["section"], tallies.patents["section"]
    total = sum(occurrences.values())
    subclasses = Counter(section_of(code) for code in tallies.subclasses)
    rows = [
        (section, SECTION_TITLES[section], f"{occurrences[section]:,}", f"{100 * occurrences[section] / total:.1f}",
         f"{patents[section]:,}", f"{100 * patents[section] / n_records:.1f}", subclasses[section])
        for section in SECTIONS
    ]
    header = ("section", "title", "label occurrences", "share of label occurrences (%)", "patents",
              "share of patents (%)", "subclasses")
    return _markdown_table(header, rows, align="llrrrrr")


def _class_table(tallies: LabelTallies, n_records: int, top: int = 10) -> str:
    occurrences, patents = tallies.occurrences["class"], tallies.patents["class"]
    total = sum(occurrences.values())
    subclasses = Counter(class_of(code) for code in tallies.subclasses)
    rows = [
        (cls, SECTION_TITLES[section_of(cls)], f"{n:,}", f"{100 * n / total:.1f}", f"{100 * patents[cls] / n_records:.1f}",
         subclasses[cls])
        for cls, n in occurrences.most_common(top)
    ]
    header = ("class", "section", "label occurrences", "share of label occurrences (%)", "share of patents (%)", "subclasses")
    return _markdown_table(header, rows, align="llrrrr")


def _top_subclass_table(stats: Mapping, top_n: int, titles: Mapping[str, str]) -> str:
    total, cumulative, rows = stats["label_occurrences"], 0, []
    for rank, (code, n) in enumerate(stats[f"top{top_n}"], start=1):
        cumulative += n
        title = titles.get(code, "")
        title = title if len(title) <= TITLE_WIDTH else title[: TITLE_WIDTH - 1].rstrip() + "…"
        rows.append((rank, f"`{code}`", title, f"{n:,}", f"{100 * n / total:.2f}", f"{100 * cumulative / total:.1f}"))
    header = ("rank", "subclass", "title", "patents", "share of label occurrences (%)", "cumulative share (%)")
    return _markdown_table(header, rows, align="rllrrr")


def dataset_report(source: str, out_dir: str, text_fields=None, titles: Optional[str] = None, top_n: int = 30) -> Tuple[str, Dict]:
    """Label statistics, the two imbalance plots and section/class tables of a dataset.

    Writes ``data_top_subclasses.png`` and ``data_rank_frequency.png`` into ``out_dir``; returns the
    markdown section and a summary (``stats`` from ``label_statistics``, ``power_law_slope``, ``figures``).
    ``titles`` is a ``code<TAB>title`` TSV; without it a prepared dataset's label-space titles are used.
    """
    label_lists, label_space, rows_per_split = read_label_lists(source, text_fields)
    subclass_titles = read_titles_tsv(titles) if titles else (label_space.titles if label_space else {})
    tallies = LabelTallies()
    stats = label_statistics(tallies.counting(label_lists), top_n=top_n)
    if not stats["label_occurrences"]:
        raise ValueError(f"{source} has no labelled records to report on")
    n_records = stats["records"]
    figures = ["data_top_subclasses.png", "data_rank_frequency.png"]
    plot_top_subclasses(stats, os.path.join(out_dir, figures[0]), top_n=top_n)
    _, slope = plot_rank_frequency(tallies.subclasses, os.path.join(out_dir, figures[1]))

    splits = ", ".join(f"{name} {n:,}" for name, n in rows_per_split.items())
    lines = [
        f"## Dataset: `{source}`",
        "",
        *([f"Splits (all pooled below): {splits}.", ""] if splits else []),
        "```text",
        format_label_statistics(stats, title=f"Label statistics of {os.path.basename(os.path.normpath(source))}"),
        "```",
        "",
        "### Imbalance",
        "",
        f"The top {top_n} subclasses hold {100 * stats[f'top{top_n}_share']:.1f} % of the label occurrences.",
        "",
        f"![top {top_n} subclasses]({figures[0]})",
        "",
        f"A least-squares line through log(count) against log(rank) has slope {slope:.2f} "
        f"(count ∝ rank^{slope:.2f}) over all {stats['subclasses']} subclasses.",
        "",
        f"![label frequency against rank]({figures[1]})",
        "",
        "### Sections",
        "",
        _section_table(tallies, n_records),
        "",
        "### Classes",
        "",
        f"{stats['classes']} classes occur; the most frequent:",
        "",
        _class_table(tallies, n_records),
        "",
        f"### Top {top_n} subclasses",
        "",
        _top_subclass_table(stats, top_n, subclass_titles),
        "",
    ]
    return "\n".join(lines), {"stats": stats, "power_law_slope": slope, "figures": figures}


# ------------------------------------------------------------------------------ training runs
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
        raise ValueError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); was the run interrupted while writing it?") from None


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
    by_step = {entry["step"]: entry[prefix + key] for entry in log_history if prefix + key in entry and "step" in entry}
    steps = sorted(by_step)
    return steps, [by_step[step] for step in steps]


def plot_metric_curves(runs: Sequence[TrainingRun], path: str, metrics=CURVE_METRICS):
    """One subplot per metric of ``metrics`` (values in %, against the training step), runs overlaid.

    Saves a PNG at ``path`` and returns the figure.
    """
    from matplotlib.ticker import MaxNLocator

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
    for axes in grid[len(metrics):]:
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


def plot_level_precision(runs: Sequence[TrainingRun], path: str):
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


def per_label_metrics(run_dir: str, split: Optional[str] = None, batch_size: int = 32) -> Dict:
    """Predict a split of a run's data with its saved model and return per-label threshold metrics.

    The model, tokenizer and label space come from ``run_dir``; the data from the run's prepared
    ``data/`` directory (or the prepared dataset its ``run_config.json`` names), with the run's
    ``max_length`` and sample limits. ``split`` defaults to test, or validation when test is empty.
    Returns ``codes``, ``train_counts`` (label occurrences in training), ``split``, the per-label arrays
    of ``MultilabelMetricsAccumulator.per_label()`` (``precision``, ``recall``, ``f1``, ``support``) and
    the split's overall ``metrics``. Raises ValueError / FileNotFoundError when the run lacks a piece.
    """
    import tempfile

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

    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    label_space = CpcLabelSpace.load(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    max_length = data_args.get("max_length") or getattr(AutoConfig.from_pretrained(run_dir), "max_position_embeddings", 512)
    tokenized, _ = tokenize_patent_dataset(rows, tokenizer, label_space, max_length, desc=f"tokenizing {split}")
    with tempfile.TemporaryDirectory() as scratch:
        trainer = PatentTrainer(
            model=AutoModelForSequenceClassification.from_pretrained(run_dir),
            args=PatentTrainingArguments(output_dir=scratch, per_device_eval_batch_size=batch_size, report_to="none",
                                         dataloader_pin_memory=False),
            label_space=label_space, processing_class=tokenizer,
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
        lines.append("\t".join([
            code, per_label["titles"].get(code, ""), str(per_label["train_counts"][i]), str(per_label["support"][i]),
            *(f"{per_label[key][i]:.4f}" for key in ("precision", "recall", "f1")),
        ]))
    _write_text(path, "\n".join(lines) + "\n")


def plot_per_label_f1(per_label_by_run: Mapping[str, Mapping], path: str, bins: int = 8):
    """Per-label F1 against the label's training frequency (log x), runs overlaid, with the mean F1 per log bin.

    Labels absent from the evaluated split (support 0) have no defined F1 and are left out.
    Saves a PNG at ``path`` and returns the figure.
    """
    from matplotlib.ticker import LogFormatter

    figure = new_figure(8.5, 5.2)
    axes = figure.subplots()
    for index, (name, per_label) in enumerate(per_label_by_run.items()):
        present = (per_label["support"] > 0) & (per_label["train_counts"] > 0)
        counts, f1 = per_label["train_counts"][present], 100 * per_label["f1"][present]
        axes.scatter(counts, f1, s=14, alpha=0.45, color=f"C{index}", edgecolors="none",
                     label=f"{name}: {present.sum()} labels ({per_label['split']})")
        edges = np.logspace(np.log10(counts.min()), np.log10(counts.max() + 1), bins + 1)
        which = np.clip(np.digitize(counts, edges) - 1, 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        centers = [np.sqrt(edges[b] * edges[b + 1]) for b in filled]
        axes.plot(centers, [f1[which == b].mean() for b in filled], "-", marker="s", markersize=5, color=f"C{index}", linewidth=2)
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


def runs_report(run_dirs: Sequence[str], out_dir: str, per_label: bool = False, per_label_split: Optional[str] = None) -> Tuple[str, Dict]:
    """Evaluation curves, final-metrics tables and top-1 precision per CPC level of training runs.

    With ``per_label`` each run's saved model predicts its data (:func:`per_label_metrics`) for the
    per-label F1 plot; a run where that is impossible is left out of that plot with a note. Writes the
    PNGs into ``out_dir``; returns the markdown section and a summary (``runs``, ``figures``, ``notes``).
    """
    runs = [read_run(path, name) for path, name in zip(run_dirs, run_names(run_dirs))]
    figures, notes = [], []
    lines = ["## Training runs", "", _markdown_table(("run", "directory"), [(run.name, f"`{run.path}`") for run in runs], align="ll"), ""]

    silent = [run.name for run in runs if not metric_curve(run.log_history, CURVE_METRICS[0][1])[0]]
    notes += [f"{name!r} logged no evaluation during training (eval_strategy 'no'?): it has no curve" for name in silent]
    lines += ["### Validation metrics during training", ""]
    if len(silent) < len(runs):
        figures.append("runs_eval_curves.png")
        plot_metric_curves(runs, os.path.join(out_dir, figures[-1]))
        lines += [f"![validation metrics during training]({figures[-1]})", ""]
    else:
        lines += ["No run logged an evaluation during training.", ""]

    lines += ["### Final metrics (values in %)", ""]
    for split, prefix in (("validation", "eval_"), ("test", "test_")):
        rows = {run.name: {key[len(prefix):]: value for key, value in run.metrics.items() if key.startswith(prefix)} for run in runs}
        rows = {name: metrics for name, metrics in rows.items() if metrics}
        if rows:
            lines += [f"{split.capitalize()} split:", "", metrics_table(rows, RUN_COLUMNS).replace("| predictor |", "| run |", 1), ""]
    if any(run.metrics for run in runs):
        split, _ = _final_split(runs)
        figures.append("runs_level_precision.png")
        plot_level_precision(runs, os.path.join(out_dir, figures[-1]))
        lines += ["### Top-1 precision by CPC level", "",
                  f"The top-1 subclass judged at subclass, class and section level ({split} split).", "",
                  f"![top-1 precision by CPC level]({figures[-1]})", ""]

    lines += ["### Per-label F1", ""]
    per_label_by_run = {}
    if per_label:
        for run in runs:
            try:
                per_label_by_run[run.name] = per_label_metrics(run.path, per_label_split)
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


# ------------------------------------------------------------------------------ the report
def write_report(out_dir: str, data: Optional[str] = None, runs: Sequence[str] = (), text_fields=None,
                 titles: Optional[str] = None, per_label: bool = False, per_label_split: Optional[str] = None) -> Dict:
    """Write a report on a dataset (``data``), on training runs (``runs``), or both, into ``out_dir``.

    Produces PNG figures and ``report.md``, which embeds them with relative links; every file is
    written atomically and ``report.md`` last. Returns ``report`` (its path), ``figures``, ``notes``
    and the summaries of :func:`dataset_report` (``data``) and :func:`runs_report` (``runs``).
    """
    if data is None and not runs:
        raise ValueError("nothing to report on: give --data INPUT, --runs RUN_DIR [RUN_DIR ...], or both")
    os.makedirs(out_dir, exist_ok=True)
    sections, summary = ["# modernpatent report", ""], {"figures": [], "notes": []}
    # Runs first, so that a bad run directory fails fast rather than after a pass over a large dataset.
    runs_markdown = ""
    if runs:
        runs_markdown, summary["runs"] = runs_report(runs, out_dir, per_label=per_label, per_label_split=per_label_split)
    if data is not None:
        markdown, summary["data"] = dataset_report(data, out_dir, text_fields=text_fields, titles=titles)
        sections.append(markdown)
        summary["figures"] += summary["data"]["figures"]
    if runs:
        sections.append(runs_markdown)
        summary["figures"] += summary["runs"]["figures"]
        summary["notes"] += summary["runs"]["notes"]
    if summary["notes"]:
        sections += ["## Notes", "", *[f"- {note}" for note in summary["notes"]], ""]
    summary["report"] = os.path.join(out_dir, REPORT_FILE)
    _write_text(summary["report"], "\n".join(sections))
    return summary
