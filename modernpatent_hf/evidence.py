"""Predictions with evidence: the nearest labelled patents behind a prediction, and scores that use them.

A classifier's probabilities are set beside the codes of the patent's nearest labelled neighbours in an index
(:mod:`~modernpatent_hf.evidence_index`). :func:`neighbour_scores` gives both for a split; :func:`tune_on_validation`
chooses the kNN vote and the fusing weight (:func:`~modernpatent_hf.knn_scores.tune_knn_scoring`) and the decision
thresholds of the fused scores on the validation split; :func:`compare_scorers` scores the classifier, the vote
alone and the fused scores on a test split, with the fused-minus-classifier differences and their paired bootstrap
intervals over the test patents. The fine-tuning recipe runs the three at the end of training
(``knn_evidence: true``) and saves the settings with the checkpoint (``knn_scores.json``).

A patent never counts as its own evidence: every search leaves out the index rows with the patent's id and those
whose text is a near duplicate of its text (:mod:`~modernpatent_hf.data.leakage`'s keys).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

from .evidence_index import BATCH_ROWS, EvidenceIndex, index_batches, supporting_neighbours, write_index
from .knn_scores import NEIGHBOUR_GRID, KnnScoring, fused_scores, knn_vote, tune_knn_scoring
from .predictor import PatentClassifier, top_labels
from .thresholds import tune_thresholds

# Predictions with an index use the fused scores when the checkpoint has tuned kNN settings: on three seeds of
# `make real-patents` their paired gain over the classifier has intervals above zero (docs/results.md).
FUSE_BY_DEFAULT = True
# Neighbours searched per patent when tuning: the largest count the tuning grid tries.
TUNING_NEIGHBOURS = max(NEIGHBOUR_GRID)
# The figures compared between scorers (compute_multilabel_metrics names).
COMPARED_METRICS = ("precision@1", "f1@1", "macro_f1")
# Rows of a prediction scored with their neighbours at a time: the neighbours' codes over the label space take
# rows x K x labels bytes (10,000 x 30 x 665 = 200 MB for a whole chunk; 20 MB for 1,000 rows).
EVIDENCE_BATCH_ROWS = 1000
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass
class LabelledTexts:
    """Patents of one split: ids, texts and CPC codes (lists of subclass codes), row for row."""

    ids: List[str]
    texts: List[str]
    codes: List[List[str]]

    @classmethod
    def from_records(cls, records) -> "LabelledTexts":
        """From a split of normalized records (a ``datasets.Dataset`` or rows with ``id``, ``text``, ``labels``)."""
        if hasattr(records, "column_names"):  # a datasets.Dataset: whole columns at once
            return cls([str(value) for value in records["id"]], list(records["text"]), list(records["labels"]))
        return cls(
            [str(row["id"]) for row in records], [row["text"] for row in records], [row["labels"] for row in records]
        )

    def references(self, label_codes: Sequence[str]) -> np.ndarray:
        """Multi-hot [N, L] of the codes over ``label_codes`` (codes outside it are left out)."""
        column = {code: index for index, code in enumerate(label_codes)}
        matrix = np.zeros((len(self.ids), len(label_codes)), dtype=bool)
        for row, codes in enumerate(self.codes):
            for code in codes:
                if code in column:
                    matrix[row, column[code]] = True
        return matrix


@dataclass
class SplitScores:
    """A split scored by the classifier and searched in the index: probabilities [N, L], the neighbours'
    similarities [N, K] and codes [N, K, L] (over the classifier's label space), the references [N, L]."""

    probabilities: np.ndarray
    similarities: np.ndarray
    neighbour_labels: np.ndarray
    references: np.ndarray


def probabilities_of(logits: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities (float32) of logits, computed in float64: what both scorers' probabilities are."""
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)


def build_index_of(
    classifier: PatentClassifier, rows: LabelledTexts, out_dir: str, kind: str = "flat", progress: bool = True
) -> EvidenceIndex:
    """Embed ``rows`` with ``classifier`` and write them as an index into ``out_dir`` (new or empty); loaded.
    The rows are embedded and written a batch at a time: memory holds one batch's tokens and vectors."""

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(rows.ids), BATCH_ROWS):
            part = slice(start, start + BATCH_ROWS)
            texts = rows.texts[part]
            yield from index_batches(rows.ids[part], rows.codes[part], classifier.embed(texts), texts)

    write_index(batches(), out_dir, kind=kind, progress=progress)
    return EvidenceIndex.load(out_dir)


def neighbour_scores(
    classifier: PatentClassifier, index: EvidenceIndex, rows: LabelledTexts, neighbours: int = TUNING_NEIGHBOURS
) -> SplitScores:
    """The classifier's probabilities and the ``neighbours`` nearest labelled patents of every row (never the
    patent itself or a near duplicate of its text)."""
    codes = classifier.label_space.codes
    logits, vectors = classifier.logits_and_embeddings_from_ids(classifier.encode(rows.texts))
    found = index.search(vectors, neighbours, exclude_ids=rows.ids, exclude_texts=rows.texts)
    return SplitScores(
        probabilities=probabilities_of(logits),
        similarities=found.similarities,
        neighbour_labels=index.label_matrix(found, codes),
        references=rows.references(codes),
    )


@dataclass
class TunedEvidence:
    """What validation chose: the vote and fusing settings, and the global decision threshold of each scorer."""

    scoring: KnnScoring
    thresholds: Dict[str, float]


def scorer_outputs(scores: SplitScores, scoring: KnnScoring) -> Dict[str, np.ndarray]:
    """The [N, L] scores of the three scorers: the classifier, the kNN vote alone, and the fused scores."""
    votes = knn_vote(scores.similarities, scores.neighbour_labels, scoring.neighbours, scoring.power)
    return {
        "classifier": scores.probabilities,
        "knn": votes,
        "fused": fused_scores(scores.probabilities, votes, scoring.weight),
    }


def tune_on_validation(validation: SplitScores, progress: bool = True) -> TunedEvidence:
    """K, p and w chosen on ``validation`` (the F1@1 of the fused scores), and each scorer's global threshold
    (the best micro F1 on validation), so that sets of codes are compared at their own best cut."""
    scoring = tune_knn_scoring(
        validation.probabilities,
        validation.similarities,
        validation.neighbour_labels,
        validation.references,
        progress=progress,
    )
    thresholds = {
        name: float(tune_thresholds(scores, validation.references)["global"])
        for name, scores in scorer_outputs(validation, scoring).items()
    }
    return TunedEvidence(dataclasses.replace(scoring, threshold=thresholds["fused"]), thresholds)


def patent_metrics(scores: np.ndarray, references: np.ndarray, threshold: float) -> Dict[str, np.ndarray]:
    """Per test patent, what the figures average: ``hit`` (the top code is right), ``recall`` (hit / its number of
    codes; NaN for a patent without codes, left out of R@1 as in the metrics); and the set decisions [N, L] at
    ``threshold`` (``scores >= threshold``, as the metrics decide) for macro F1."""
    top = np.argmax(scores, axis=1)
    hit = references[np.arange(len(top)), top].astype(np.float64)
    positives = references.sum(axis=1)
    recall = np.where(positives > 0, hit / np.maximum(positives, 1), np.nan)
    return {"hit": hit, "recall": recall, "decided": scores >= threshold}


def macro_f1_of(decided: np.ndarray, references: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro F1 over all labels (0 for a label without true or predicted patents, as the metrics count it), for each
    row of patent ``weights`` [B, N] (a bootstrap resample's counts; one row of ones is the split itself)."""
    true_positive = weights @ (decided & references)
    false_positive = weights @ (decided & ~references)
    false_negative = weights @ (~decided & references)
    denominator = 2 * true_positive + false_positive + false_negative
    return np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1e-12), 0.0).mean(axis=1)


def compare_scorers(
    test: SplitScores,
    tuned: TunedEvidence,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> Dict[str, Dict[str, float]]:
    """Test P@1, F1@1 and macro F1 (at each scorer's validation threshold) of the classifier, the vote alone and
    the fused scores, in %, and for knn and fused their difference to the classifier with a paired bootstrap
    interval over the test patents (the same resampled patents for both scorers)."""
    references = test.references
    outputs = scorer_outputs(test, tuned.scoring)
    per_patent = {name: patent_metrics(scores, references, tuned.thresholds[name]) for name, scores in outputs.items()}
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(references), np.full(len(references), 1 / len(references)), size=samples)
    weights = weights.astype(np.float64)
    ones = np.ones((1, len(references)))
    low, high = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def figures(name: str, sample_weights: np.ndarray) -> Dict[str, np.ndarray]:
        # As the metrics define them: P@1 and R@1 are means over patents, F1@1 their harmonic mean.
        values = per_patent[name]
        labelled = ~np.isnan(values["recall"])
        precision = sample_weights @ values["hit"] / sample_weights.sum(axis=1)
        recall = sample_weights[:, labelled] @ values["recall"][labelled] / sample_weights[:, labelled].sum(axis=1)
        return {
            "precision@1": precision,
            "f1@1": np.where(
                precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0
            ),
            "macro_f1": macro_f1_of(values["decided"], references, sample_weights),
        }

    reference = figures("classifier", weights)
    result: Dict[str, Dict[str, float]] = {}
    for name in outputs:
        point = figures(name, ones)
        row = {metric: 100 * float(point[metric][0]) for metric in COMPARED_METRICS}
        row["threshold"] = tuned.thresholds[name]
        result[name] = row
    for name in ("knn", "fused"):
        resampled = figures(name, weights)
        for metric in COMPARED_METRICS:
            difference = 100 * (resampled[metric] - reference[metric])
            result[name][f"{metric}_difference"] = result[name][metric] - result["classifier"][metric]
            result[name][f"{metric}_interval"] = [
                float(np.percentile(difference, low)),
                float(np.percentile(difference, high)),
            ]
    result["patents"] = {"test": int(len(references))}
    return result


def evaluate_evidence(
    classifier: PatentClassifier,
    train: LabelledTexts,
    validation: LabelledTexts,
    test: Optional[LabelledTexts],
    work_dir: Optional[str] = None,
    progress: bool = True,
) -> Dict[str, object]:
    """Index ``train``, tune on ``validation``, compare on ``test``: what the recipe runs at the end of training.

    Returns ``{"tuned": TunedEvidence, "comparison": compare_scorers(...) or None}``. The index is written into
    ``work_dir`` (a temporary directory by default, removed at the end).
    """
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        index = build_index_of(classifier, train, os.path.join(scratch, "index"), progress=progress)
        tuned = tune_on_validation(neighbour_scores(classifier, index, validation), progress=progress)
        comparison = compare_scorers(neighbour_scores(classifier, index, test), tuned) if test else None
        del index  # its memory map closes before the directory goes
    return {"tuned": tuned, "comparison": comparison}


def format_comparison(comparison: Dict[str, Dict[str, float]]) -> str:
    """A Markdown table of :func:`compare_scorers`' figures."""
    lines = [
        "| scorer | P@1 | F1@1 | macro F1 | P@1 diff [95 % CI] | F1@1 diff [95 % CI] | macro F1 diff [95 % CI] |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name in ("classifier", "knn", "fused"):
        row = comparison[name]
        cells = [f"{row[metric]:.2f}" for metric in COMPARED_METRICS]
        for metric in COMPARED_METRICS:
            if f"{metric}_interval" in row:
                low, high = row[f"{metric}_interval"]
                cells.append(f"{row[f'{metric}_difference']:+.2f} [{low:+.2f}, {high:+.2f}]")
            else:
                cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def attach_index(
    classifier: PatentClassifier, index: Union[str, os.PathLike, EvidenceIndex], fuse: Optional[bool] = None
) -> PatentClassifier:
    """Give ``classifier.predict(..., evidence=K)`` the nearest labelled patents of ``index`` (``modernpatent index``;
    a path or an :class:`~modernpatent_hf.evidence_index.EvidenceIndex`). ``fuse``: score codes with the fused score
    of the checkpoint's tuned kNN settings (``knn_scores.json``); default :data:`FUSE_BY_DEFAULT`. Returns the
    classifier."""
    classifier.evidence = EvidenceScorer(classifier, index, fuse=fuse)
    return classifier


class EvidenceScorer:
    """A classifier's predictions with the evidence of an index of labelled patents, and, when asked (``fuse``) and
    the checkpoint has tuned kNN settings (``classifier.knn_scoring``), scored by the fused score.

    A row of :meth:`rows_from_ids`: ``{"predictions": [...], "neighbours": [...]}``. ``neighbours``: the K nearest
    labelled patents, nearest first, ``{"id", "similarity" (cosine), "codes"}``. Each prediction:
    ``{"code", "score", "class", "section", ("title"), "evidence": [ids of those neighbours carrying the code]}``;
    with fused scores ``score`` is the fused score, and ``classifier_score`` and ``knn_vote`` are added.
    """

    def __init__(
        self, classifier: PatentClassifier, index: Union[str, os.PathLike, EvidenceIndex], fuse: Optional[bool] = None
    ):
        self.classifier = classifier
        self.index = index if isinstance(index, EvidenceIndex) else EvidenceIndex.load(index)
        scoring = classifier.knn_scoring
        if fuse and scoring is None:
            raise ValueError(
                f"fused scores need the tuned kNN settings of the checkpoint (knn_scores.json), which "
                f"{classifier.source or 'this model'} lacks: train with knn_evidence: true, or run modernpatent tune-knn"
            )
        self.fuse = (FUSE_BY_DEFAULT if fuse is None else bool(fuse)) and scoring is not None
        if self.index.dim != classifier.model.config.hidden_size:
            raise ValueError(
                f"the index holds {self.index.dim}-dimensional vectors but the model embeds in "
                f"{classifier.model.config.hidden_size}: build the index with this checkpoint (modernpatent index)"
            )

    def cuts(self, threshold: Union[float, str, None]) -> Optional[np.ndarray]:
        """Per-label cuts of the scores used: the classifier's (``label_thresholds``), or for fused scores a number
        or, for ``"auto"``, the fused threshold tuned on validation."""
        if not self.fuse or threshold != "auto":
            return self.classifier.label_thresholds(threshold)
        tuned = self.classifier.knn_scoring.threshold
        if tuned is None:
            raise ValueError(
                "threshold 'auto' with fused scores needs knn_scores.json's tuned threshold; give a number"
            )
        return np.full(len(self.classifier.label_space), tuned, dtype=np.float32)

    def rows_from_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        texts: Optional[Sequence[str]],
        ids: Optional[Sequence[str]],
        top_k: int,
        threshold: Union[float, str, None],
        evidence: int,
    ) -> List[dict]:
        """One row per text (class docstring) from its token ids; ``texts`` and ``ids`` keep each patent and the
        near duplicates of its text out of its own neighbours."""
        if evidence < 1:
            raise ValueError(f"evidence must be at least 1 neighbour, got {evidence}")
        cuts = self.cuts(threshold)
        logits, vectors = self.classifier.logits_and_embeddings_from_ids(input_ids)
        probabilities = probabilities_of(logits)
        rows: List[dict] = []
        # The neighbours' codes over the label space ([rows, K, labels]) are built a slice of rows at a time.
        for start in range(0, len(input_ids), EVIDENCE_BATCH_ROWS):
            part = slice(start, start + EVIDENCE_BATCH_ROWS)
            rows.extend(
                self._rows(
                    probabilities[part],
                    vectors[part],
                    None if texts is None else texts[part],
                    None if ids is None else ids[part],
                    top_k,
                    cuts,
                    evidence,
                )
            )
        return rows

    def _rows(
        self,
        probabilities: np.ndarray,
        vectors: np.ndarray,
        texts: Optional[Sequence[str]],
        ids: Optional[Sequence[str]],
        top_k: int,
        cuts: Optional[np.ndarray],
        evidence: int,
    ) -> List[dict]:
        classifier, scoring = self.classifier, self.classifier.knn_scoring
        searched = max(evidence, scoring.neighbours if self.fuse else 0)
        found = self.index.search(vectors, searched, exclude_ids=ids, exclude_texts=texts)
        neighbours = self.index.evidence(found)
        scores, votes = probabilities, None
        if self.fuse:
            labels = self.index.label_matrix(found, classifier.label_space.codes)
            votes = knn_vote(found.similarities, labels, scoring.neighbours, scoring.power)
            scores = fused_scores(probabilities, votes, scoring.weight)
        rows = []
        for row, kept in enumerate(top_labels(scores, top_k, cuts)):
            shown = neighbours[row][:evidence]
            supporting = supporting_neighbours(shown, [classifier.label_space.codes[index] for index in kept])
            predictions = []
            for index in kept:
                entry = classifier.prediction(index, float(scores[row, index]))
                if votes is not None:
                    entry["classifier_score"] = float(probabilities[row, index])
                    entry["knn_vote"] = float(votes[row, index])
                entry["evidence"] = supporting[entry["code"]]
                predictions.append(entry)
            rows.append({"predictions": predictions, "neighbours": shown})
        return rows
