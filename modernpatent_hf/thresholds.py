"""Decision thresholds for set prediction: tuned on validation, saved with the checkpoint, used by ``predict``.

Patent offices assign several codes per patent, so a user wants a set, not only a ranking. The scores of
a multi-label classifier are per-label probabilities, and 0.5 is rarely the cut that gives the best F1
(most labels are rare). :func:`tune_thresholds` picks, on the validation split, one global threshold
(best micro F1) and, for every label with at least ``min_positives`` validation patents, its own
threshold (best F1 of that label); labels with fewer examples keep the global one, since a threshold
fitted on three examples is noise. :func:`save_thresholds` writes them next to the weights as
``thresholds.json`` (codes by name, so a reordered label space cannot misapply them), and
:func:`load_thresholds` reads them back for ``modernpatent predict --threshold auto``.

Plain numpy, like the metrics.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from .io_utils import write_json_atomically
from .metrics import f1_from_counts, set_counts

THRESHOLDS_FILE = "thresholds.json"
# Candidate cuts: fine enough that the best is within 0.025 of the optimum, coarse enough to tune in seconds.
CANDIDATES = tuple(np.round(np.arange(0.025, 0.976, 0.025), 3))
DEFAULT_MIN_POSITIVES = 10


def threshold_counts(
    probabilities: np.ndarray, truth: np.ndarray, threshold: Union[float, np.ndarray]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label true positives, false positives and false negatives ([L] each) of ``probabilities >= threshold``."""
    return set_counts(probabilities >= threshold, truth)


def threshold_scores(
    probabilities: ArrayLike, references: ArrayLike, thresholds: Union[float, ArrayLike]
) -> Dict[str, float]:
    """Micro and macro F1, micro precision and recall of the sets ``probabilities >= thresholds``.

    ``thresholds`` is one number or one per label ([L]); ``references`` are multi-hot [N, L].
    """
    probabilities, truth = np.asarray(probabilities, dtype=np.float32), np.asarray(references) > 0.5
    true_positives, false_positives, false_negatives = threshold_counts(
        probabilities, truth, np.asarray(thresholds, dtype=np.float32)
    )
    tp, fp, fn = int(true_positives.sum()), int(false_positives.sum()), int(false_negatives.sum())
    return {
        "micro_f1": float(f1_from_counts(tp, fp, fn)),
        "macro_f1": float(f1_from_counts(true_positives, false_positives, false_negatives).mean()),
        "micro_precision": tp / (tp + fp) if tp + fp else 0.0,
        "micro_recall": tp / (tp + fn) if tp + fn else 0.0,
    }


def tune_thresholds(
    probabilities: ArrayLike,
    references: ArrayLike,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    candidates: Sequence[float] = CANDIDATES,
) -> Dict[str, object]:
    """The global threshold with the best micro F1 and per-label thresholds with the best F1 of their label.

    Returns ``{"global": float, "per_label": float array [L], "tuned_labels": int}``; labels with fewer than
    ``min_positives`` positive patents in ``references`` get the global threshold. Ties go to the lower cut.
    """
    probabilities, truth = np.asarray(probabilities, dtype=np.float32), np.asarray(references) > 0.5
    if probabilities.shape != truth.shape or probabilities.ndim != 2 or len(probabilities) == 0:
        raise ValueError(
            f"probabilities {probabilities.shape} and references {truth.shape} must be the same non-empty [N, L] shape"
        )
    if min_positives < 1:
        raise ValueError(f"min_positives must be at least 1, got {min_positives}")
    candidates = np.round(np.asarray(candidates, dtype=np.float64), 6)
    per_candidate = [threshold_counts(probabilities, truth, threshold) for threshold in candidates]
    micro = [float(f1_from_counts(tp.sum(), fp.sum(), fn.sum())) for tp, fp, fn in per_candidate]
    best_global = float(candidates[int(np.argmax(micro))])
    label_f1 = np.stack([f1_from_counts(tp, fp, fn) for tp, fp, fn in per_candidate])  # [candidates, L]
    per_label = np.full(truth.shape[1], best_global, dtype=np.float64)
    enough = truth.sum(axis=0) >= min_positives
    per_label[enough] = candidates[np.argmax(label_f1[:, enough], axis=0)]
    return {"global": best_global, "per_label": per_label, "tuned_labels": int(enough.sum())}


def save_thresholds(
    directory: str, tuned: Dict[str, object], codes: Sequence[str], validation_size: int, min_positives: int
) -> str:
    """Write ``thresholds.json`` (global and per-code thresholds, how they were tuned) into ``directory``; returns its path."""
    path = os.path.join(directory, THRESHOLDS_FILE)
    write_json_atomically(
        path,
        {
            "global": tuned["global"],
            "per_label": {code: float(value) for code, value in zip(codes, tuned["per_label"])},
            "tuned_on": {
                "split": "validation",
                "patents": int(validation_size),
                "min_positives": int(min_positives),
                "labels_with_own_threshold": int(tuned["tuned_labels"]),
            },
        },
        indent=1,
    )
    return path


def load_thresholds(directory: str, codes: Sequence[str]) -> Optional[np.ndarray]:
    """Per-label thresholds [L] in the order of ``codes`` from ``directory``'s ``thresholds.json``; None without one.

    A code the file does not list gets the global threshold; a file that is not valid raises a one-line ValueError.
    """
    path = os.path.join(directory, THRESHOLDS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        per_label = saved.get("per_label", {})
        values = np.array([float(per_label.get(code, saved["global"])) for code in codes], dtype=np.float32)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{path} is not a thresholds file written by training ({type(error).__name__}: {error}); delete it or retrain"
        ) from None
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"{path} holds thresholds outside [0, 1]; delete it or retrain")
    return values
