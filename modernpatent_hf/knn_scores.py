"""Scores from the nearest labelled patents: the k-nearest-neighbour vote per code, its fusion with the classifier's
probabilities, and the choice of the vote's settings on the validation split, saved with the checkpoint.

Vote. A patent's K nearest labelled patents (:meth:`EvidenceIndex.search
<modernpatent_hf.evidence_index.EvidenceIndex.search>`, cosine similarities s_1..s_K) vote for the codes they
carry, each with weight max(s_j, 0) ** p::

    knn_vote[c] = sum_j w_j [neighbour j carries c] / sum_j w_j,     w_j = max(s_j, 0) ** p

the weighted share of the neighbours that carry code c, in [0, 1] like a probability (0 for every code when no
neighbour has a positive similarity). A larger p lets the closest neighbours outvote the rest.

Fusion. ``fused = w * p_classifier + (1 - w) * knn_vote`` per code: w = 1 is the classifier alone, w = 0 the vote
alone. :func:`tune_knn_scoring` picks K, p and w on the validation split by the best F1@1 (ties: the larger w,
then the smaller K and p: the simpler model), and :func:`save_knn_scoring` writes them next to the weights as
``knn_scores.json`` (as :mod:`~modernpatent_hf.thresholds` writes the tuned thresholds); :func:`load_knn_scoring`
reads them back. Plain numpy, like the metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from .io_utils import write_json_atomically
from .metrics import MultilabelMetricsAccumulator

KNN_SCORES_FILE = "knn_scores.json"
# The grid of the tuning: the probe of issue 29 found the gain for 10 and 30 neighbours, p = 4, w from 0.5 to 0.85.
NEIGHBOUR_GRID = (5, 10, 20, 30)
POWER_GRID = (1.0, 2.0, 4.0, 8.0)
WEIGHT_GRID = tuple(np.round(np.arange(0.0, 1.0001, 0.05), 2))
CRITERION = "f1@1"


@dataclass(frozen=True)
class KnnScoring:
    """How a checkpoint fuses its probabilities with the vote of the nearest labelled patents (module docstring)."""

    neighbours: int = field(default=10, metadata={"help": "K: the nearest labelled patents that vote"})
    power: float = field(default=4.0, metadata={"help": "p: a neighbour's vote weighs its similarity ** p"})
    weight: float = field(default=0.5, metadata={"help": "w: fused = w * p_classifier + (1 - w) * knn_vote"})
    criterion: str = field(default=CRITERION, metadata={"help": "the validation metric the settings maximize"})
    threshold: Optional[float] = field(
        default=None,
        metadata={"help": "the decision threshold of the fused scores tuned on validation (best micro F1), if tuned"},
    )
    validation: Dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "the criterion on the validation split: classifier, knn (vote alone), fused; and patents"},
    )

    def __post_init__(self):
        if not isinstance(self.neighbours, int) or self.neighbours < 1:
            raise ValueError(f"neighbours must be a positive integer, got {self.neighbours!r}")
        if not self.power >= 0:
            raise ValueError(f"power must be at least 0, got {self.power!r}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {self.weight!r}")

    def scores(self, probabilities: ArrayLike, similarities: ArrayLike, neighbour_labels: ArrayLike) -> np.ndarray:
        """The fused scores [N, L] of these settings (:func:`knn_vote`, :func:`fused_scores`)."""
        votes = knn_vote(similarities, neighbour_labels, self.neighbours, self.power)
        return fused_scores(probabilities, votes, self.weight)


def knn_vote(
    similarities: ArrayLike, neighbour_labels: ArrayLike, neighbours: Optional[int] = None, power: float = 1.0
) -> np.ndarray:
    """The vote [N, L] of the first ``neighbours`` (all when None) of each row (module docstring).

    ``similarities`` [N, K] are the neighbours' cosine similarities, nearest first; ``neighbour_labels`` [N, K, L]
    their multi-hot codes (:meth:`EvidenceIndex.label_matrix`).
    """
    similarities = np.asarray(similarities, dtype=np.float32)
    labels = np.asarray(neighbour_labels)
    if similarities.ndim != 2 or labels.ndim != 3 or labels.shape[:2] != similarities.shape:
        raise ValueError(
            f"similarities [N, K] and neighbour_labels [N, K, L] must agree, got {similarities.shape} and {labels.shape}"
        )
    count = similarities.shape[1] if neighbours is None else neighbours
    if count < 1:
        raise ValueError(f"neighbours must be at least 1, got {count}")
    weights = np.maximum(similarities[:, :count], 0.0) ** np.float32(power)
    # 0 ** 0 is 1 in numpy: with p = 0 a neighbour of similarity 0 (or a missing one) would still vote.
    weights[similarities[:, :count] <= 0] = 0.0
    totals = weights.sum(axis=1, keepdims=True)
    # One neighbour rank at a time: [N, L] of float32 at once, never the [N, K, L] labels as floats (4 bytes a code).
    votes = np.zeros((labels.shape[0], labels.shape[2]), dtype=np.float32)
    for rank in range(min(count, labels.shape[1])):
        votes += weights[:, rank, None] * labels[:, rank]
    votes = np.divide(votes, totals, out=np.zeros_like(votes), where=totals > 0)
    return np.minimum(votes, 1.0, out=votes)  # a share: float rounding must not push it past 1


def fused_scores(probabilities: ArrayLike, votes: ArrayLike, weight: float) -> np.ndarray:
    """``weight * probabilities + (1 - weight) * votes`` ([N, L] each)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    votes = np.asarray(votes, dtype=np.float32)
    if probabilities.shape != votes.shape:
        raise ValueError(f"probabilities {probabilities.shape} and votes {votes.shape} must have the same shape")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    fused = np.float32(weight) * probabilities + np.float32(1.0 - weight) * votes
    return np.minimum(fused, 1.0, out=fused)  # a mean of two scores in [0, 1]: float rounding must not leave it


def criterion_score(scores: np.ndarray, references: np.ndarray, criterion: str = CRITERION) -> float:
    """``criterion`` (a key of the multi-label metrics, e.g. ``f1@1``, ``precision@1``) of ``scores`` [N, L]."""
    k = int(criterion.split("@", 1)[1].split("_", 1)[0]) if "@" in criterion else 1
    accumulator = MultilabelMetricsAccumulator(scores.shape[1], k=(k,))
    accumulator.update(scores, references)
    results = accumulator.compute()
    if criterion not in results:
        raise ValueError(f"unknown criterion {criterion!r}: choose a metric such as f1@1, precision@1, micro_f1")
    return float(results[criterion])


def tune_knn_scoring(
    probabilities: ArrayLike,
    similarities: ArrayLike,
    neighbour_labels: ArrayLike,
    references: ArrayLike,
    neighbour_grid: Sequence[int] = NEIGHBOUR_GRID,
    power_grid: Sequence[float] = POWER_GRID,
    weight_grid: Sequence[float] = WEIGHT_GRID,
    criterion: str = CRITERION,
    progress: bool = True,
) -> KnnScoring:
    """The K, p and w of the grids with the best ``criterion`` of the fused scores on a validation split.

    ``probabilities`` [N, L] are the classifier's, ``similarities`` [N, K] and ``neighbour_labels`` [N, K, L] the
    validation patents' neighbours (searched with their own ids and texts excluded, K at least the largest of
    ``neighbour_grid``), ``references`` [N, L] their multi-hot codes. Ties go to the larger w, then the smaller K
    and p. The result records the criterion of the classifier alone, the vote alone and the fused scores.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    references = np.asarray(references) > 0.5
    similarities = np.asarray(similarities, dtype=np.float32)
    if probabilities.shape != references.shape or probabilities.ndim != 2 or len(probabilities) == 0:
        raise ValueError(
            f"probabilities {probabilities.shape} and references {references.shape} must be the same non-empty [N, L]"
        )
    if similarities.shape[0] != len(probabilities) or max(neighbour_grid) > similarities.shape[1]:
        raise ValueError(
            f"the neighbours {similarities.shape} must give each of the {len(probabilities)} patents at least "
            f"{max(neighbour_grid)} neighbours (the largest of neighbour_grid)"
        )
    classifier = criterion_score(probabilities, references, criterion)
    best = None  # (score, weight, -neighbours, -power), larger is better
    grid = [(count, power) for count in sorted(neighbour_grid) for power in sorted(power_grid)]
    for count, power in tqdm(grid, desc="tuning the kNN vote", unit=" settings", disable=not progress):
        votes = knn_vote(similarities, neighbour_labels, count, power)
        for weight in sorted(weight_grid, reverse=True):
            score = criterion_score(fused_scores(probabilities, votes, float(weight)), references, criterion)
            key = (score, float(weight), -count, -float(power))
            if best is None or key > best[0]:
                best = (key, votes)
    (score, weight, count, power), votes = best
    return KnnScoring(
        neighbours=-count,
        power=-power,
        weight=weight,
        criterion=criterion,
        validation={
            "classifier": classifier,
            "knn": criterion_score(votes, references, criterion),
            "fused": score,
            "patents": int(len(probabilities)),
        },
    )


def save_knn_scoring(directory: str, scoring: KnnScoring) -> str:
    """Write ``knn_scores.json`` (the settings and how they scored on validation) into ``directory``; returns its path."""
    path = os.path.join(directory, KNN_SCORES_FILE)
    write_json_atomically(path, dataclasses.asdict(scoring), indent=1)
    return path


def load_knn_scoring(directory: str) -> Optional[KnnScoring]:
    """The :class:`KnnScoring` of ``directory``'s ``knn_scores.json``; None without one. A file that is not valid
    raises a one-line ValueError."""
    path = os.path.join(directory, KNN_SCORES_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        known = {item.name for item in dataclasses.fields(KnnScoring)}
        return KnnScoring(**{key: value for key, value in saved.items() if key in known})
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{path} is not a kNN scoring file written by training ({type(error).__name__}: {error}); delete it or retrain"
        ) from None
