"""Reports: metric tables beside the reference predictors, and dataset / training-run reports with plots.

:func:`write_report` is what ``modernpatent report`` runs. From a dataset it writes label statistics,
the head of the label distribution (top-30 subclasses and their share of label occurrences), the long
tail (label frequency against rank on log-log axes with the fitted power-law slope) and section- and
class-level tables. From Trainer output directories it writes evaluation curves overlaid across runs,
the final metrics, top-1 precision per CPC level and, on request, per-label F1 against label frequency.
Everything lands in one directory as PNG files plus a ``report.md`` that embeds them.

The modules (the package loads them on first use: the tables that training prints need neither matplotlib
nor scikit-learn, the optional ``reports`` extra):

- :mod:`.tables`: markdown tables, the metrics-table columns, the reference predictors' metrics and
  :func:`~.tables.compare_with_baselines` (what the training recipe needs; no matplotlib).
- :mod:`.figures`: the reports' DPI, :func:`~.figures.new_figure` and :func:`~.figures.save_figure`.
- :mod:`.dataset_report`: label tallies, the imbalance plots and :func:`~.dataset_report.dataset_report`.
- :mod:`.run_report`: training runs, their curves and final metrics, per-label re-evaluation and
  :func:`~.run_report.runs_report`.
- :mod:`.report`: :func:`~.report.write_report`, all of it in one directory.

Figures are drawn on ``matplotlib.figure.Figure`` objects, which render with the Agg backend without
touching pyplot's global state: reports work headless and inside other programs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {"REPORT_FILE": "report", "write_report": "report"}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .report import REPORT_FILE, write_report
