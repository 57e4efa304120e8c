"""A fine-tuning run's training rows and batches: patents tokenized with label-space indices, multi-hot collation.

:func:`tokenize_patent_dataset` stores each patent's labels as label-space *indices* (a few ints per row, not
665 floats), and :class:`MultiLabelCollator` builds the multi-hot float targets per batch (:func:`multi_hot`).
:class:`~modernpatent_hf.trainer.PatentTrainer` uses this collator when it is given none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from .cpc import CpcLabelSpace


def multi_hot(label_ids: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """[N, num_labels] float32 multi-hot rows from each row's label indices (the tokenized ``label_ids``)."""
    matrix = np.zeros((len(label_ids), num_labels), dtype=np.float32)
    for row, ids in enumerate(label_ids):
        matrix[row, list(ids)] = 1.0
    return matrix


@dataclass
class MultiLabelCollator:
    """Pads token inputs dynamically and turns each row's ``label_ids`` into a multi-hot ``labels`` row."""

    tokenizer: object
    num_labels: int
    pad_to_multiple_of: Optional[int] = None

    def __call__(self, features: List[Dict]) -> Dict[str, torch.Tensor]:
        label_ids = [feature.get("label_ids") for feature in features]
        inputs = [{k: feature[k] for k in ("input_ids", "attention_mask") if k in feature} for feature in features]
        batch = self.tokenizer.pad(
            inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"
        )
        if all(ids is not None for ids in label_ids):
            batch["labels"] = torch.from_numpy(multi_hot(label_ids, self.num_labels))
        return batch


def tokenize_patent_dataset(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    label_space: CpcLabelSpace,
    max_length: int,
    num_proc: Optional[int] = None,
    desc: str = "tokenizing",
) -> Tuple[Dataset, int]:
    """Tokenize ``text`` and map ``labels`` to label-space indices; keeps ``id`` and adds ``length``.

    Codes outside the label space (rare codes seen only outside train) are left out of ``label_ids``;
    the number left out is returned so callers can report it.
    """
    left_out = sum(len(label_space.split_known(labels)[1]) for labels in dataset["labels"])

    def encode(batch: Dict[str, list]) -> Dict[str, list]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        encoded["label_ids"] = [
            [label_space.label2id[c] for c in labels if c in label_space.label2id] for labels in batch["labels"]
        ]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        encoded.pop("token_type_ids", None)
        return encoded

    keep = {"id"}
    tokenized = dataset.map(
        encode,
        batched=True,
        num_proc=num_proc,
        desc=desc,
        remove_columns=[c for c in dataset.column_names if c not in keep],
    )
    return tokenized, left_out
