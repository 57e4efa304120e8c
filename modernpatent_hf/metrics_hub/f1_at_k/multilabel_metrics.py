"""Multi-label metrics for CPC subclass prediction: P/R/F1@k, threshold micro/macro scores, per level.

This module is the one implementation of the numbers behind the ``f1_at_k`` ``evaluate`` metric next
to it and the ``metrics`` module of the modernpatent-hf package, which imports from here. It needs only
numpy and the standard library, so a copy of this folder loads with ``evaluate.load(folder)`` where the
package is not installed.

Everything is computed by :class:`MultilabelMetricsAccumulator`, which keeps only small additive counts
(top-k hits, per-label TP/FP/FN, exact matches), so an evaluation over millions of patents is fed batch
by batch and never holds the N x L score matrix. :func:`compute_multilabel_metrics` is the one-shot form
and runs through the same accumulator.

Conventions:

* Top-k ranks labels by score, highest first; equal scores are ordered by label index, lower first
  (the order of a stable sort), so results never depend on the sorting algorithm.
* ``precision@k`` = hits / (N * k) over all N patents. When k exceeds the number of labels L, the
  top-k holds all L labels and the denominator stays N * k.
* ``recall@k`` = mean over patents of hits_i / |Y_i| (the seed's convention, ~10 points above the
  micro form); ``recall@k_micro`` = hits / all true labels. ``f1@k`` and ``f1@k_micro`` are
  2PR / (P + R) of the aggregated P and R.
* Patents with no true label in the label space (an all-zero reference row) cannot be recalled: they
  are left out of ``recall@k``, counted in ``num_patents_without_labels``, and still count in every
  precision and threshold figure.
* Threshold figures predict label j when its probability is ``>= threshold`` (as
  :meth:`CpcLabelSpace.decode`) and follow scikit-learn with ``zero_division=0``.
* ``precision@1_class`` / ``precision@1_section``: the top-1 subclass's class / section is the class /
  section of some true label; reported only when ``label_names`` are given.
* ``label_names`` are read by :func:`subclass_code`, which accepts the spellings the package's CPC
  parser accepts for one symbol (case and surrounding spaces ignored, an optional group such as
  ``1/00``, version date ``(2006.01)`` or 8-digit date suffix: ``'a01b'``, ``'A01B 1/00 (2006.01)'``);
  anything else raises a one-line ``ValueError`` naming the value. The class of a subclass code such
  as ``H01L`` is its first three characters (``H01``), the section its first (``H``).
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

# One CPC (or IPC) symbol: subclass, optional main group / subgroup, optional version date "(2006.01)"
# or BigQuery-style date suffix. Spaces between the parts are optional, as in the wild. Digits are [0-9],
# not \d: \d also matches Arabic-Indic and full-width digits, which would give codes like 'A٠١B'. The one
# definition: the package's CPC parser (cpc.normalize_subclass) imports it from here, so this folder stays
# free of package imports.
CPC_SYMBOL = re.compile(
    r"""^(?P<section>[A-HY])\s*(?P<cls>[0-9]{2})\s*(?P<subclass>[A-Z])
        (?:\s*(?P<group>[0-9]{1,4})\s*(?:/\s*(?P<subgroup>[0-9]{1,6}))?)?
        (?:\s*\(\s*[0-9]{4}[.\-][0-9]{2}(?:[.\-][0-9]{2})?\s*\))?
        (?:\s+[0-9]{8})?$""",
    re.VERBOSE,
)


def subclass_code(value: object) -> str:
    """The four-character CPC subclass code of one label name: ``'a01b'``, ``'A01B 1/00'`` -> ``'A01B'``.

    Raises a one-line ``ValueError`` naming ``value`` for anything that is not a CPC symbol.
    """
    if not isinstance(value, str):
        # The words of io_utils.value_kind for the common case; this module cannot import the package.
        kind = (
            "a number"
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else f"a {type(value).__name__}"
        )
        reason = f" ({kind}, not a string)"
        match = None
    else:
        reason = ""
        match = CPC_SYMBOL.match(value.strip().upper())
    if match is None:
        raise ValueError(
            f"invalid CPC code {value!r} in label_names{reason}: expected a CPC subclass code such as 'A01B' or 'H01L'"
        )
    return match.group("section") + match.group("cls") + match.group("subclass")


def _class_of(code: str) -> str:
    """``'A01B'`` -> ``'A01'``."""
    return code[:3]


def _section_of(code: str) -> str:
    """``'A01B'`` -> ``'A'``."""
    return code[0]


# Rows per accumulator update in the one-shot function: ~44 MB of float32 scores at 665 labels.
ONE_SHOT_CHUNK_ROWS = 16384

KInput = Union[int, Sequence[int]]


def _validate_ks(k: KInput) -> tuple:
    ks = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in ks):
        raise ValueError(f"k must be one or more integers >= 1 such as [1, 5], got {k!r}")
    return tuple(dict.fromkeys(int(v) for v in ks))


def _as_matrix(values, name: str) -> np.ndarray:
    """``values`` as a numeric numpy array, or a one-line error naming ``name`` (ragged rows, strings)."""
    try:
        array = np.asarray(values)
    except ValueError:
        raise ValueError(
            f"{name} must be a rectangular [patents, labels] array, but its rows have different lengths"
        ) from None
    if array.dtype == object:
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numbers, got values such as {array.flat[0]!r}") from None
    if array.size and not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got {array.dtype} values such as {array.flat[0]!r}")
    return array


def _check_shapes(predictions: np.ndarray, references: np.ndarray, num_labels: Optional[int] = None) -> None:
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be a 2-D array [patents, labels], got shape {predictions.shape}")
    if predictions.shape != references.shape:
        raise ValueError(
            f"predictions and references must have the same shape, got {predictions.shape} and {references.shape}"
        )
    if num_labels is not None and predictions.shape[1] != num_labels:
        raise ValueError(f"expected {num_labels} label columns, got shape {predictions.shape}")


def _counts(shape=()) -> np.ndarray:
    return np.zeros(shape, dtype=np.int64)


def set_counts(predicted: np.ndarray, truth: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label true positives, false positives and false negatives ([L] each) of boolean [N, L] predicted sets."""
    true_positives = (predicted & truth).sum(axis=0)
    return true_positives, predicted.sum(axis=0) - true_positives, truth.sum(axis=0) - true_positives


def f1_from_counts(true_positives: ArrayLike, false_positives: ArrayLike, false_negatives: ArrayLike) -> np.ndarray:
    """F1 = 2 TP / (2 TP + FP + FN), elementwise, 0 where there is nothing to score."""
    true_positives = np.asarray(true_positives)
    return _ratio(2 * true_positives, 2 * true_positives + np.asarray(false_positives) + np.asarray(false_negatives))


def _ratio(numerator, denominator):
    """``numerator / denominator`` elementwise, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    zeros = np.zeros(np.broadcast(numerator, denominator).shape)
    return np.divide(numerator, denominator, out=zeros, where=denominator != 0)


def _harmonic_mean(precision: float, recall: float) -> float:
    return float(_ratio(2 * precision * recall, precision + recall))


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``min(k, L)`` highest scores of each row, best first; equal scores go to the lower index.

    Same result as ``np.argsort(-scores, axis=1, kind="stable")[:, :k]`` at about a third of the cost:
    a partition finds each row's k-th score, and only rows with ties across that score are sorted.
    """
    k = min(k, scores.shape[1])
    kth_score = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    selected = scores >= kth_score
    tied_rows = np.flatnonzero(selected.sum(axis=1) > k)
    if tied_rows.size:
        selected[tied_rows] = False
        stable_top = np.argsort(-scores[tied_rows], axis=1, kind="stable")[:, :k]
        selected[tied_rows[:, None], stable_top] = True
    indices = np.nonzero(selected)[1].reshape(len(scores), k)  # ascending label index within each row
    best_first = np.argsort(-np.take_along_axis(scores, indices, axis=1), axis=1, kind="stable")
    return np.take_along_axis(indices, best_first, axis=1)


class MultilabelMetricsAccumulator:
    """Accumulates multi-label metrics batch by batch; see the module docstring for the definitions.

    ``update(probabilities, references)`` takes one batch ([B, L] probabilities after the sigmoid and
    [B, L] multi-hot references); ``compute()`` returns the metric dict; ``per_label()`` the per-label
    threshold scores. The whole state is :attr:`state`, a small dict of numpy arrays that are all
    additive: accumulators of several processes combine with :meth:`merge`, or by summing each array
    (e.g. an all-reduce) in place.
    """

    def __init__(
        self,
        num_labels: int,
        k: KInput = (1, 5),
        label_names: Optional[Sequence[str]] = None,
        threshold: float = 0.5,
    ):
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        if not 0.0 <= threshold <= 1.0:  # also refuses NaN, which would silently predict nothing
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        self.num_labels = int(num_labels)
        self.ks = _validate_ks(k)
        self.threshold = float(threshold)
        self.label_names = None if label_names is None else tuple(label_names)
        if self.label_names is not None:
            if len(self.label_names) != num_labels:
                raise ValueError(f"label_names has {len(self.label_names)} codes but there are {num_labels} labels")
            subclasses = [subclass_code(name) for name in self.label_names]
            # Integer ids of each label's class and section, so level hits are array comparisons.
            self._label_class = np.unique([_class_of(code) for code in subclasses], return_inverse=True)[1]
            self._label_section = np.unique([_section_of(code) for code in subclasses], return_inverse=True)[1]
        self.state: Dict[str, np.ndarray] = {
            "num_patents": _counts(),
            "num_patents_without_labels": _counts(),
            "num_true_labels": _counts(),
            "exact_matches": _counts(),
            "hits_at_k": _counts(len(self.ks)),
            "recall_sum_at_k": np.zeros(len(self.ks), dtype=np.float64),
            "true_positives": _counts(self.num_labels),
            "false_positives": _counts(self.num_labels),
            "false_negatives": _counts(self.num_labels),
        }
        if self.label_names is not None:
            self.state["class_hits_at_1"] = _counts()
            self.state["section_hits_at_1"] = _counts()

    def _settings(self) -> tuple:
        return (self.num_labels, self.ks, self.label_names, self.threshold)

    def update(self, probabilities: ArrayLike, references: ArrayLike) -> None:
        """Add one batch: ``probabilities`` [B, L] in [0, 1] and multi-hot ``references`` [B, L]."""
        probabilities = _as_matrix(probabilities, "predictions")
        if not np.issubdtype(probabilities.dtype, np.floating):  # bool/int scores cannot be negated for ranking
            probabilities = probabilities.astype(np.float32)
        references = _as_matrix(references, "references")
        _check_shapes(probabilities, references, self.num_labels)
        if np.isnan(probabilities).any():
            raise ValueError("predictions contain NaN scores; check the model outputs (e.g. a diverged loss)")
        if probabilities.size and (probabilities.min() < 0 or probabilities.max() > 1):
            raise ValueError(
                f"predictions must be probabilities in [0, 1] (apply a sigmoid to logits first), "
                f"got values from {probabilities.min()} to {probabilities.max()}"
            )
        if not ((references == 0) | (references == 1)).all():
            raise ValueError(f"references must be multi-hot 0/1, got values {np.unique(references)[:10].tolist()}")
        truth = references.astype(bool)
        state = self.state

        true_count = truth.sum(axis=1)
        has_labels = true_count > 0
        state["num_patents"] += len(truth)
        state["num_patents_without_labels"] += int((~has_labels).sum())
        state["num_true_labels"] += int(true_count.sum())

        top = top_k_indices(probabilities, max(self.ks))
        hits_by_rank = np.cumsum(np.take_along_axis(truth, top, axis=1), axis=1)
        for i, k in enumerate(self.ks):
            hits = hits_by_rank[:, min(k, self.num_labels) - 1]
            state["hits_at_k"][i] += int(hits.sum())
            state["recall_sum_at_k"][i] += float((hits[has_labels] / true_count[has_labels]).sum())

        predicted = probabilities >= self.threshold
        true_positives, false_positives, false_negatives = set_counts(predicted, truth)
        state["true_positives"] += true_positives
        state["false_positives"] += false_positives
        state["false_negatives"] += false_negatives
        state["exact_matches"] += int((predicted == truth).all(axis=1).sum())

        if self.label_names is not None:
            top1 = top[:, 0]
            for key, level in (("class_hits_at_1", self._label_class), ("section_hits_at_1", self._label_section)):
                same_level = level[top1][:, None] == level[None, :]
                state[key] += int((same_level & truth).any(axis=1).sum())

    def merge(self, other: "MultilabelMetricsAccumulator") -> "MultilabelMetricsAccumulator":
        """Add the counts of ``other`` (e.g. another process's accumulator) into this one; returns self."""
        if other._settings() != self._settings():
            raise ValueError(
                f"cannot merge accumulators with different settings: {self.num_labels} labels, k={self.ks}, "
                f"threshold={self.threshold} vs {other.num_labels} labels, k={other.ks}, threshold={other.threshold} "
                "(label_names must match too)"
            )
        for key, array in self.state.items():
            array += other.state[key]
        return self

    def per_label(self) -> Dict[str, np.ndarray]:
        """Per-label threshold scores: ``precision``, ``recall``, ``f1`` (zero_division=0) and ``support``."""
        tp, fp, fn = (self.state[key] for key in ("true_positives", "false_positives", "false_negatives"))
        return {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": f1_from_counts(tp, fp, fn),
            "support": tp + fn,
        }

    def compute(self) -> Dict[str, Union[float, int]]:
        """The metric dict (keys in the module docstring). Raises ValueError before any patent was added."""
        state = self.state
        num_patents = int(state["num_patents"])
        if num_patents == 0:
            raise ValueError("no patents to evaluate: call update() with at least one row first")
        num_with_labels = num_patents - int(state["num_patents_without_labels"])
        results: Dict[str, Union[float, int]] = {}
        for i, k in enumerate(self.ks):
            hits = state["hits_at_k"][i]
            precision = float(hits / (num_patents * k))
            recall = float(_ratio(state["recall_sum_at_k"][i], num_with_labels))
            recall_micro = float(_ratio(hits, state["num_true_labels"]))
            results[f"precision@{k}"] = precision
            results[f"recall@{k}"] = recall
            results[f"f1@{k}"] = _harmonic_mean(precision, recall)
            results[f"recall@{k}_micro"] = recall_micro
            results[f"f1@{k}_micro"] = _harmonic_mean(precision, recall_micro)

        tp, fp, fn = (int(state[key].sum()) for key in ("true_positives", "false_positives", "false_negatives"))
        per_label = self.per_label()
        results["micro_f1"] = float(f1_from_counts(tp, fp, fn))
        results["macro_f1"] = float(per_label["f1"].mean())
        results["micro_precision"] = float(_ratio(tp, tp + fp))
        results["macro_precision"] = float(per_label["precision"].mean())
        results["micro_recall"] = float(_ratio(tp, tp + fn))
        results["macro_recall"] = float(per_label["recall"].mean())
        results["exact_match"] = float(state["exact_matches"] / num_patents)

        if self.label_names is not None:
            results["precision@1_class"] = float(state["class_hits_at_1"] / num_patents)
            results["precision@1_section"] = float(state["section_hits_at_1"] / num_patents)
        results["num_patents"] = num_patents
        results["num_patents_without_labels"] = int(state["num_patents_without_labels"])
        return results


def compute_multilabel_metrics(
    predictions: ArrayLike,
    references: ArrayLike,
    k: KInput = (1, 5),
    label_names: Optional[Sequence[str]] = None,
    threshold: float = 0.5,
    progress: Optional[Callable[[range], Iterable[int]]] = None,
) -> Dict[str, Union[float, int]]:
    """All metrics at once for ``predictions`` [N, L] (probabilities) and multi-hot ``references`` [N, L].

    Runs :class:`MultilabelMetricsAccumulator` over chunks of :data:`ONE_SHOT_CHUNK_ROWS` rows, so it
    gives exactly what streaming the same rows batch by batch gives. ``label_names`` (the L subclass
    codes, in column order) adds the class- and section-level top-1 precision. ``progress``, if given,
    is called once with the ``range`` of chunk start rows and the chunks follow what it returns (e.g. a
    progress bar such as ``lambda starts: tqdm(starts)``); it must yield the same starts.
    """
    predictions = _as_matrix(predictions, "predictions")
    references = _as_matrix(references, "references")
    if predictions.size == 0 and references.size == 0:
        raise ValueError(f"no patents to evaluate: predictions and references are empty (shape {predictions.shape})")
    _check_shapes(predictions, references)
    accumulator = MultilabelMetricsAccumulator(predictions.shape[1], k=k, label_names=label_names, threshold=threshold)
    starts = range(0, len(predictions), ONE_SHOT_CHUNK_ROWS)
    for start in starts if progress is None else progress(starts):
        stop = start + ONE_SHOT_CHUNK_ROWS
        accumulator.update(predictions[start:stop], references[start:stop])
    return accumulator.compute()
