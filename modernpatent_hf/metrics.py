"""Multi-label metrics for CPC subclass prediction: P/R/F1@k, threshold micro/macro scores, per level.

The implementation lives in the ``f1_at_k`` ``evaluate`` metric's folder,
:mod:`modernpatent_hf.metrics_hub.f1_at_k.multilabel_metrics` (numpy only, so a copy of the folder
loads without this package); its module docstring states the conventions.
This module re-exports :class:`MultilabelMetricsAccumulator`, :func:`top_k_indices`, :func:`set_counts` and
:func:`f1_from_counts` as they are,
and :func:`compute_multilabel_metrics` with a tqdm progress bar over the row chunks.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Union

from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from .metrics_hub.f1_at_k import multilabel_metrics as _multilabel_metrics
from .metrics_hub.f1_at_k.multilabel_metrics import (
    KInput,
    MultilabelMetricsAccumulator,
    f1_from_counts,
    set_counts,
    top_k_indices,
)

F1_AT_K_METRIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics_hub", "f1_at_k")
"""Directory of the ``evaluate`` module: ``evaluate.load(F1_AT_K_METRIC)`` works offline."""

__all__ = [
    "F1_AT_K_METRIC",
    "MultilabelMetricsAccumulator",
    "compute_multilabel_metrics",
    "f1_from_counts",
    "set_counts",
    "top_k_indices",
]


def _progress_bar(starts: range):
    """A tqdm bar over the chunks of a one-shot evaluation, shown only when there are two or more."""
    return tqdm(starts, desc="metrics", unit="chunk", disable=len(starts) < 2)


def compute_multilabel_metrics(
    predictions: ArrayLike,
    references: ArrayLike,
    k: KInput = (1, 5),
    label_names: Optional[Sequence[str]] = None,
    threshold: float = 0.5,
) -> Dict[str, Union[float, int]]:
    """All metrics at once for ``predictions`` [N, L] (probabilities) and multi-hot ``references`` [N, L].

    :func:`multilabel_metrics.compute_multilabel_metrics <modernpatent_hf.metrics_hub.f1_at_k.multilabel_metrics.compute_multilabel_metrics>`
    (the one implementation, also behind the ``evaluate`` metric) with a progress bar over its row chunks.
    ``label_names`` (the L subclass codes, in column order) adds the class- and section-level top-1 precision.
    """
    return _multilabel_metrics.compute_multilabel_metrics(
        predictions, references, k=k, label_names=label_names, threshold=threshold, progress=_progress_bar
    )
