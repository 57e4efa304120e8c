"""``modernpatent report``: a dataset report, training-run reports, or both, in one directory with ``report.md``."""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Union

from ..io_utils import write_text_atomically
from .dataset_report import dataset_report
from .run_report import runs_report

REPORT_FILE = "report.md"


def write_report(
    out_dir: str,
    data: Optional[str] = None,
    runs: Sequence[str] = (),
    text_fields: Union[str, Sequence[str], None] = None,
    titles: Optional[str] = None,
    per_label: bool = False,
    per_label_split: Optional[str] = None,
    allow_pickle: bool = False,
) -> Dict:
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
        runs_markdown, summary["runs"] = runs_report(
            runs, out_dir, per_label=per_label, per_label_split=per_label_split, allow_pickle=allow_pickle
        )
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
