"""Streaming F1@k evaluation for the Trainer: :class:`PatentMetricsComputer`, the ``compute_metrics`` of
:class:`~modernpatent_hf.trainer.PatentTrainer`.

Evaluation runs with ``batch_eval_metrics``: each gathered batch updates a
:class:`~modernpatent_hf.metrics.MultilabelMetricsAccumulator` and is dropped, so N x L logits never
sit in memory and several processes give the same figures as one (``gather_for_metrics`` drops the
padding of uneven last batches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from .metrics import MultilabelMetricsAccumulator, f1_from_counts
from .thresholds import threshold_counts

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from .cpc import CpcLabelSpace


class PatentMetricsComputer:
    """``compute_metrics`` for ``batch_eval_metrics=True``: accumulates per batch, reports at the last one.

    With ``tuned_thresholds`` (one per label, tuned on validation), micro and macro F1 at them are reported too
    (``micro_f1_tuned``, ``macro_f1_tuned``).
    """

    def __init__(
        self,
        label_space: CpcLabelSpace,
        k: Sequence[int] = (1, 5),
        threshold: float = 0.5,
        tuned_thresholds: Optional[np.ndarray] = None,
    ):
        self.label_space = label_space
        self.k = tuple(k)
        self.threshold = threshold
        self.tuned_thresholds = tuned_thresholds
        self._accumulator = None
        self._tuned_counts = None

    @classmethod
    def from_training_args(
        cls,
        label_space: CpcLabelSpace,
        args: Optional[TrainingArguments],
        tuned_thresholds: Optional[np.ndarray] = None,
    ) -> "PatentMetricsComputer":
        """The metrics of a :class:`PatentTrainer`: F1@k at ``args.top_k``, micro/macro at ``args.eval_threshold``.

        Arguments without those fields (a plain ``TrainingArguments``, or None) give k = 1 and 5 and threshold 0.5.
        """
        return cls(
            label_space,
            k=getattr(args, "top_k", (1, 5)),
            threshold=getattr(args, "eval_threshold", 0.5),
            tuned_thresholds=tuned_thresholds,
        )

    def _new_accumulator(self):
        return MultilabelMetricsAccumulator(
            len(self.label_space), k=self.k, label_names=list(self.label_space.codes), threshold=self.threshold
        )

    def __call__(self, eval_pred, compute_result: bool = True):
        if self._accumulator is None:
            self._accumulator = self._new_accumulator()
        logits = eval_pred.predictions
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits
        references = eval_pred.label_ids
        probabilities = torch.sigmoid(torch.as_tensor(logits).float()).cpu().numpy()
        references = torch.as_tensor(references).cpu().numpy()
        truth = references > 0.5
        self._accumulator.update(probabilities, truth.astype(np.int32))
        if self.tuned_thresholds is not None:
            counts = threshold_counts(probabilities, truth, self.tuned_thresholds)
            self._tuned_counts = (
                counts if self._tuned_counts is None else tuple(a + b for a, b in zip(self._tuned_counts, counts))
            )
        if not compute_result:
            return {}
        accumulator, self._accumulator = self._accumulator, None
        self.last_per_label = accumulator.per_label()
        results = accumulator.compute()
        if self._tuned_counts is not None:
            (true_positives, false_positives, false_negatives), self._tuned_counts = self._tuned_counts, None
            results["micro_f1_tuned"] = float(
                f1_from_counts(true_positives.sum(), false_positives.sum(), false_negatives.sum())
            )
            results["macro_f1_tuned"] = float(f1_from_counts(true_positives, false_positives, false_negatives).mean())
        return results
