"""Reports: metric tables beside the reference predictors, and dataset / training-run reports with plots.

:func:`write_report` is what ``modernpatent report`` runs. From a dataset it writes label statistics,
the head of the label distribution (top-30 subclasses and their share of label occurrences), the long
tail (label frequency against rank on log-log axes with the fitted power-law slope) and section- and
class-level tables. From Trainer output directories it writes evaluation curves overlaid across runs,
the final metrics, top-1 precision per CPC level and, on request, per-label F1 against label frequency.
Everything lands in one directory as PNG files plus a ``report.md`` that embeds them.

The modules:

- :mod:`.tables`: markdown tables, the metrics-table columns, the reference predictors' metrics and
  :func:`~.tables.compare_with_baselines` (what the training recipe needs; no matplotlib).
- :mod:`.figures`: the reports' DPI, :func:`~.figures.new_figure` and :func:`~.figures.save_figure`.
- :mod:`.dataset_report`: label tallies, the imbalance plots and :func:`~.dataset_report.dataset_report`.
- :mod:`.run_report`: training runs, their curves and final metrics, per-label re-evaluation and
  :func:`~.run_report.runs_report`.

Figures are drawn on ``matplotlib.figure.Figure`` objects, which render with the Agg backend without
touching pyplot's global state: reports work headless and inside other programs.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Union

from ..io_utils import write_text_atomically
from .dataset_report import dataset_report
from .run_report import runs_report

REPORT_FILE = "report.md"


def write_report(out_dir: str, data: Optional[str] = None, runs: Sequence[str] = (), text_fields: Union[str, Sequence[str], None] = None,
                 titles: Optional[str] = None, per_label: bool = False, per_label_split: Optional[str] = None,
                 allow_pickle: bool = False) -> Dict:
    """Write a report on a dataset (``data``), on training runs (``runs``), or both, into ``out_dir``.

    Produces PNG figures and ``report.md``, which embeds them with relative links; every file is
    written atomically and ``report.md`` last. Returns ``report`` (its path), ``figures``, ``notes``
    and the summaries of :func:`dataset_report` (``data``) and :func:`runs_report` (``runs``). ``allow_pickle``
    lets ``per_label`` read a run's pickled weights (``pytorch_model.bin``).
    """
    if data is None and not runs:
        raise ValueError("nothing to report on: give --data INPUT, --runs RUN_DIR [RUN_DIR ...], or both")
    os.makedirs(out_dir, exist_ok=True)
    sections, summary = ["# modernpatent report", ""], {"figures": [], "notes": []}
    # Runs first, so that a bad run directory fails fast rather than after a pass over a large dataset.
    runs_markdown = ""
    if runs:
        runs_markdown, summary["runs"] = runs_report(runs, out_dir, per_label=per_label, per_label_split=per_label_split,
                                                    allow_pickle=allow_pickle)
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
    write_text_atomically(summary["report"], "\n".join(sections))
    return summary
