"""F1@k for multi-label patent classification: P/R/F1 of the top-k labels, threshold micro/macro scores.

Self-contained: the numbers come from ``multilabel_metrics.py`` next to this file (numpy only), which
``evaluate`` copies along with this script, so the folder loads with ``evaluate.load(folder)`` anywhere.
"""

import datasets
import evaluate

from .multilabel_metrics import compute_multilabel_metrics

_DESCRIPTION = """
Multi-label metrics for CPC subclass classification. For each k: precision@k (hits / (N * k)),
recall@k (mean over patents of hits_i / |Y_i|), f1@k (2PR / (P + R) of those), recall@k_micro
(hits / all true labels) and f1@k_micro. At a probability threshold: micro/macro precision, recall and
F1 and exact match, with scikit-learn semantics (zero_division=0). With label_names, the top-1
precision at CPC class and section level. Top-k ties go to the lower label index.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): probabilities per patent and label (sigmoid applied), N x L.
    references (`list` of `list` of `int`): multi-hot true labels, N x L.
    k (`list` of `int`): the cut-offs of the top-k figures. Defaults to [1, 5]. A k above L keeps all L
        labels in the top-k and still divides precision by N * k.
    label_names (`list` of `str`): the L CPC subclass codes in column order; adds precision@1_class and
        precision@1_section. Defaults to None (those two are left out).
    threshold (`float`): a label is predicted when its probability is >= threshold. Defaults to 0.5.

Returns:
    for each k: `precision@k`, `recall@k`, `f1@k`, `recall@k_micro`, `f1@k_micro`;
    `micro_f1`, `macro_f1`, `micro_precision`, `macro_precision`, `micro_recall`, `macro_recall`,
    `exact_match`; with label_names `precision@1_class`, `precision@1_section`; and the counts
    `num_patents`, `num_patents_without_labels` (patents with no true label, left out of recall@k).
    Scores lie in [0, 1], higher is better.

Examples:
    >>> f1_at_k = evaluate.load("path/to/f1_at_k")  # this folder, or a copy of it on the Hub
    >>> results = f1_at_k.compute(
    ...     predictions=[[0.9, 0.6, 0.1], [0.2, 0.3, 0.8]],
    ...     references=[[1, 0, 1], [0, 0, 1]],
    ...     k=[1, 2],
    ...     label_names=["A01B", "A01C", "H04L"],
    ... )
    >>> print(results["precision@1"], results["recall@1"], round(results["f1@1"], 4))
    1.0 0.75 0.8571
"""

_CITATION = """
@article{lee2020patentbert,
    title={Patent classification by fine-tuning {BERT} language model},
    author={Lee, Jieh-Sheng and Hsiang, Jieh},
    journal={World Patent Information},
    volume={61},
    pages={101965},
    year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1AtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 5), label_names=None, threshold=0.5):
        # Lists go through as they are: compute_multilabel_metrics names ragged or non-numeric input.
        return compute_multilabel_metrics(
            predictions,
            references,
            k=k,
            label_names=label_names,
            threshold=threshold,
        )
