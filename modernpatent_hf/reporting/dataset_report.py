"""The dataset part of a report: label statistics, the imbalance plots and section / class / subclass tables.

The head of the label distribution (top-30 subclasses and their share of label occurrences), the long
tail (label frequency against rank on log-log axes with the fitted power-law slope) and section- and
class-level tables, from a prepared dataset or a raw records file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from ..cpc import SECTIONS, CpcLabelSpace, class_of, read_titles_tsv, section_of
from ..data.readers import iter_records
from ..data.records import format_label_statistics, is_prepared_dir, label_statistics, load_dataset_dir
from .figures import new_figure, save_figure
from .tables import markdown_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
TITLE_WIDTH = 80  # characters of a subclass title in tables; CPC titles run to several hundred


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


def read_label_lists(
    source: str, text_fields: Union[str, Sequence[str], None] = None
) -> Tuple[Iterable[Sequence[str]], Optional[CpcLabelSpace], Dict[str, int]]:
    """The label lists of a dataset, streamed, with its label space (when it has one) and its rows per split.

    ``source`` is a directory written by ``modernpatent prepare``/``synth`` (all splits are read) or any
    file ``data.readers.iter_records`` reads (JSON Lines, Parquet, TSV), whose ``text_fields`` decide
    which records have a text (records without one are dropped, as ``prepare`` does).
    """
    source = os.fspath(source)
    if is_prepared_dir(source):
        if text_fields:
            raise ValueError(
                f"--text-fields applies to raw records; {source} is a prepared dataset whose texts are already chosen"
            )

        splits = load_dataset_dir(source)
        rows = {name: len(split) for name, split in splits.items() if len(split)}
        label_lists = (labels for split in splits.values() for labels in split["labels"])
        return (
            tqdm(label_lists, total=sum(rows.values()), desc="reading labels", unit=" records"),
            CpcLabelSpace.load(source),
            rows,
        )

    records = iter_records(source, text_fields=text_fields)
    return (
        (record["labels"] for record in tqdm(records, desc=f"reading {os.path.basename(source)}", unit=" records")),
        None,
        {},
    )


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


def plot_top_subclasses(stats: Mapping, path: str, top_n: int = 30) -> Figure:
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
    axes.set_xticks(
        range(len(codes)), codes, rotation=60, ha="right", rotation_mode="anchor", fontsize=9, family="monospace"
    )
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
    axes.loglog(
        ranks,
        10**intercept * ranks**slope,
        "-",
        color="C3",
        linewidth=1.5,
        label=f"least-squares fit: count ∝ rank$^{{{slope:.2f}}}$",
    )
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
        (
            section,
            SECTION_TITLES[section],
            f"{occurrences[section]:,}",
            f"{100 * occurrences[section] / total:.1f}",
            f"{patents[section]:,}",
            f"{100 * patents[section] / n_records:.1f}",
            subclasses[section],
        )
        for section in SECTIONS
    ]
    header = (
        "section",
        "title",
        "label occurrences",
        "share of label occurrences (%)",
        "patents",
        "share of patents (%)",
        "subclasses",
    )
    return markdown_table(header, rows, align="llrrrrr")


def _class_table(tallies: LabelTallies, n_records: int, top: int = 10) -> str:
    occurrences, patents = tallies.occurrences["class"], tallies.patents["class"]
    total = sum(occurrences.values())
    subclasses = Counter(class_of(code) for code in tallies.subclasses)
    rows = [
        (
            cls,
            SECTION_TITLES[section_of(cls)],
            f"{n:,}",
            f"{100 * n / total:.1f}",
            f"{100 * patents[cls] / n_records:.1f}",
            subclasses[cls],
        )
        for cls, n in occurrences.most_common(top)
    ]
    header = (
        "class",
        "section",
        "label occurrences",
        "share of label occurrences (%)",
        "share of patents (%)",
        "subclasses",
    )
    return markdown_table(header, rows, align="llrrrr")


def _top_subclass_table(stats: Mapping, top_n: int, titles: Mapping[str, str]) -> str:
    total, cumulative, rows = stats["label_occurrences"], 0, []
    for rank, (code, n) in enumerate(stats[f"top{top_n}"], start=1):
        cumulative += n
        title = titles.get(code, "")
        title = title if len(title) <= TITLE_WIDTH else title[: TITLE_WIDTH - 1].rstrip() + "…"
        rows.append((rank, f"`{code}`", title, f"{n:,}", f"{100 * n / total:.2f}", f"{100 * cumulative / total:.1f}"))
    header = ("rank", "subclass", "title", "patents", "share of label occurrences (%)", "cumulative share (%)")
    return markdown_table(header, rows, align="rllrrr")


def dataset_report(
    source: str,
    out_dir: str,
    text_fields: Union[str, Sequence[str], None] = None,
    titles: Optional[str] = None,
    top_n: int = 30,
) -> Tuple[str, Dict]:
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
