"""Markdown tables of the reports and the summary table of a model beside the reference predictors.

What the training recipe (``scripts/finetune.py``) and ``experiments`` need from the reports; this module
draws nothing, so it does not import matplotlib, and it imports the reference predictors (scikit-learn, the
optional ``reports`` extra) only when their scores are asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from ..cpc import CpcLabelSpace
from ..metrics import compute_multilabel_metrics

if TYPE_CHECKING:
    from datasets import Dataset

# (column title, metric key) of the summary table the demo and the docs print.
SUMMARY_COLUMNS = (
    ("P@1", "precision@1"),
    ("R@1", "recall@1"),
    ("F1@1", "f1@1"),
    ("R@1 micro", "recall@1_micro"),
    ("class P@1", "precision@1_class"),
    ("section P@1", "precision@1_section"),
    ("macro F1", "macro_f1"),
)
# Columns of the final-metrics table of training runs.
RUN_COLUMNS = (
    ("F1@1", "f1@1"),
    ("P@1", "precision@1"),
    ("R@1", "recall@1"),
    ("F1@5", "f1@5"),
    ("micro F1", "micro_f1"),
    ("macro F1", "macro_f1"),
    ("macro precision", "macro_precision"),
    ("class P@1", "precision@1_class"),
    ("section P@1", "precision@1_section"),
)


def metrics_table(
    rows: Mapping[str, Mapping[str, float]], columns: Sequence[Tuple[str, str]] = SUMMARY_COLUMNS
) -> str:
    """A markdown table, one row per predictor, values in percent."""
    header = "| predictor | " + " | ".join(title for title, _ in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for name, metrics in rows.items():
        cells = [f"{100 * metrics[key]:.2f}" if key in metrics else "-" for _, key in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baseline_metrics(
    train_split: Dataset,
    test_split: Dataset,
    label_space: CpcLabelSpace,
    k: Sequence[int] = (1, 5),
    frozen_encoder: Optional[str] = None,
    max_length: int = 128,
) -> Dict[str, Dict[str, float]]:
    """Metrics of the most-frequent-label and TF-IDF linear predictors on ``test_split``, and with
    ``frozen_encoder`` (a pretrained checkpoint) those of its frozen embeddings + a linear head."""
    # The optional `reports` extra (scikit-learn): imported here so that training without baselines needs none.
    from ..baselines import frozen_encoder_linear_scores, most_frequent_label_scores, tfidf_linear_scores

    references = label_space.encode_batch(test_split["labels"])
    names = list(label_space.codes)
    majority = most_frequent_label_scores(train_split["labels"], label_space, len(test_split))
    tfidf = tfidf_linear_scores(train_split["text"], train_split["labels"], test_split["text"], label_space)
    rows = {
        "most frequent label": compute_multilabel_metrics(majority, references, k=k, label_names=names),
        "TF-IDF + one-vs-rest logistic regression": compute_multilabel_metrics(
            tfidf, references, k=k, label_names=names
        ),
    }
    if frozen_encoder:
        frozen = frozen_encoder_linear_scores(
            frozen_encoder, train_split["text"], train_split["labels"], test_split["text"], label_space, max_length
        )
        rows["frozen encoder + linear head"] = compute_multilabel_metrics(frozen, references, k=k, label_names=names)
    return rows


def compare_with_baselines(
    model_metrics: Mapping[str, float],
    train_split: Dataset,
    test_split: Dataset,
    label_space: CpcLabelSpace,
    k: Sequence[int] = (1, 5),
    model_name: str = "this model",
    prefix: str = "test_",
    frozen_encoder: Optional[str] = None,
    max_length: int = 128,
) -> str:
    """The summary table of the model's ``test_*`` metrics beside the reference predictors' (see :func:`baseline_metrics`)."""
    rows = {model_name: {key[len(prefix) :]: value for key, value in model_metrics.items() if key.startswith(prefix)}}
    rows.update(baseline_metrics(train_split, test_split, label_space, k, frozen_encoder, max_length))
    return f"Test split ({len(test_split):,} patents, {len(label_space)} labels), values in %:\n\n" + metrics_table(
        rows
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: str = "") -> str:
    """A markdown table; ``align`` holds one ``l``/``r`` per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
