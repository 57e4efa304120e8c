"""Continued masked-language-model (MLM) pretraining of ModernBERT (or BERT) on patent text.

The pieces of ``recipes/pretrain_mlm.py`` (its arguments are in :mod:`modernpatent_hf.configs`): the
tokenization (one document per sequence, or documents packed into fixed-length blocks), the masked-LM model
(new, or a checkpoint to continue), a masking collator that owns its randomness (masks depend on the batch and the seed only), and a `Trainer` that
reports perplexity. The output is a stock ``ModernBertForMaskedLM`` checkpoint (config, safetensors,
tokenizer) that ``recipes/finetune.py`` takes as ``model_name_or_path``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from transformers import AutoModelForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_utils import EvalLoopOutput

from .configs import ModelArguments
from .configuration_modernpatent import HierarchicalPatentConfigMixin
from .model_factory import load_checkpoint_config, load_pretrained_weights, new_model_config
from .trainer import ResumableTrainer

if TYPE_CHECKING:
    from datasets import Dataset
    from torch.utils.data import DataLoader

# Encoder families an MLM run can start from (a fine-tuned patent classifier has no masked-LM head).
MLM_MODEL_TYPES = ("modernbert", "bert")


def as_int_list(values: Union[Sequence[int], np.ndarray, torch.Tensor]) -> list:
    """A list of ints from a list, numpy array or tensor of token ids or mask values."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


@dataclass
class SeededMLMCollator:
    """Pads MLM examples and masks them with randomness of its own: the masks are a function of the batch and ``seed``.

    A stock collator draws masks from a generator whose state at a given batch depends on everything drawn
    before: a resumed run skips batches without collating them and the dataloader collates one batch ahead,
    so it would mask differently from the run it continues. Here each batch gets a fresh generator seeded by
    ``seed`` and the batch's token ids, created and used only in this class: a resumed run masks exactly like
    an uninterrupted one, every evaluation masks the evaluation set the same way (eval losses are comparable
    across steps), and dataloader workers need no seeding. Shuffling still gives a document new masks in
    every epoch, since its batch changes.

    The masking rule is BERT's: each ordinary token is selected with ``mlm_probability``; a selected token
    becomes ``[MASK]`` with ``mask_replace_prob``, a random token with ``random_replace_prob`` and stays as it
    is otherwise. Special tokens and padding are never selected. Unselected positions get label -100.
    """

    tokenizer: PreTrainedTokenizerBase
    mlm_probability: float = 0.30
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    seed: int = 0
    pad_to_multiple_of: Optional[int] = None

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must lie between 0 and 1 (exclusive), got {self.mlm_probability}")
        if (
            self.mask_replace_prob < 0
            or self.random_replace_prob < 0
            or self.mask_replace_prob + self.random_replace_prob > 1
        ):
            raise ValueError(
                f"mask_replace_prob ({self.mask_replace_prob}) and random_replace_prob ({self.random_replace_prob}) "
                "must be non-negative and add up to at most 1"
            )
        if self.tokenizer.mask_token_id is None or self.tokenizer.pad_token_id is None:
            raise ValueError("MLM needs a tokenizer with a mask token and a pad token")

    def batch_generator(self, examples: Sequence[Sequence[int]]) -> torch.Generator:
        """A generator seeded by ``seed`` and the token ids of the batch, in order."""
        digest = hashlib.blake2b(str(self.seed).encode(), digest_size=8)
        for ids in examples:
            digest.update(np.asarray(ids, dtype=np.int64).tobytes())
        return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & (2**63 - 1))

    def pad(self, examples: Sequence[Mapping]) -> dict:
        """``input_ids``, ``attention_mask`` and ``special_tokens_mask`` padded to one length (padding is special)."""
        longest = max(len(example["input_ids"]) for example in examples)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        left = self.tokenizer.padding_side == "left"
        special_ids = set(self.tokenizer.all_special_ids)
        columns = {"input_ids": [], "attention_mask": [], "special_tokens_mask": []}
        for example in examples:
            ids = as_int_list(example["input_ids"])
            attention = (
                as_int_list(example["attention_mask"]) if example.get("attention_mask") is not None else [1] * len(ids)
            )
            special = (
                as_int_list(example["special_tokens_mask"])
                if example.get("special_tokens_mask") is not None
                else [int(token in special_ids) for token in ids]
            )
            fill = longest - len(ids)
            for name, values, pad_value in (
                ("input_ids", ids, self.tokenizer.pad_token_id),
                ("attention_mask", attention, 0),
                ("special_tokens_mask", special, 1),
            ):
                columns[name].append([pad_value] * fill + values if left else values + [pad_value] * fill)
        return {name: torch.tensor(rows, dtype=torch.long) for name, rows in columns.items()}

    def mask_tokens(
        self, input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, generator: torch.Generator
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids, labels) by the 80/10/10 rule; ``input_ids`` is left unchanged."""
        never = special_tokens_mask.bool() | torch.isin(input_ids, torch.tensor(self.tokenizer.all_special_ids))
        selection_prob = torch.full(input_ids.shape, self.mlm_probability).masked_fill_(never, 0.0)
        selected = torch.bernoulli(selection_prob, generator=generator).bool()
        labels = input_ids.masked_fill(~selected, -100)
        inputs = input_ids.clone()
        to_mask = (
            torch.bernoulli(torch.full(input_ids.shape, self.mask_replace_prob), generator=generator).bool() & selected
        )
        inputs[to_mask] = self.tokenizer.mask_token_id
        remaining = 1.0 - self.mask_replace_prob
        if self.random_replace_prob > 0 and remaining > 0:
            # Of the selected tokens not masked, this share is replaced, so that random_replace_prob of all are.
            share = min(1.0, self.random_replace_prob / remaining)
            to_replace = (
                torch.bernoulli(torch.full(input_ids.shape, share), generator=generator).bool() & selected & ~to_mask
            )
            random_ids = torch.randint(len(self.tokenizer), input_ids.shape, dtype=torch.long, generator=generator)
            inputs[to_replace] = random_ids[to_replace]
        return inputs, labels

    def __call__(self, examples: Sequence[Mapping]) -> dict:
        if not examples:
            raise ValueError("cannot collate an empty batch")
        batch = self.pad(examples)
        generator = self.batch_generator([example["input_ids"] for example in examples])
        batch["input_ids"], batch["labels"] = self.mask_tokens(
            batch["input_ids"], batch.pop("special_tokens_mask"), generator
        )
        return batch


def tokenize_for_mlm(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    packing: bool = False,
    num_proc: Optional[int] = None,
    desc: str = "tokenizing",
) -> Dataset:
    """Turn a dataset with a ``text`` column into MLM inputs: ``input_ids``, ``attention_mask``, ``special_tokens_mask``.

    Without packing, each document is one ``[CLS] text [SEP]`` sequence truncated to ``max_length``. With packing,
    the documents of each map batch (1,000 documents) form the stream ``doc [SEP] doc [SEP] ...``, cut into blocks
    of ``[CLS]`` + ``max_length - 1`` stream tokens: no token is lost and every block is full except the last
    of each map batch. Other columns are dropped.
    """
    if max_length < 2:
        raise ValueError(
            f"max_length={max_length} is too small for MLM: a sequence needs [CLS] and at least one token"
        )
    special_ids = set(tokenizer.all_special_ids)

    def encode(batch: Mapping[str, List[str]]) -> Dict[str, List[List[int]]]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length, return_special_tokens_mask=True)
        return {key: encoded[key] for key in ("input_ids", "attention_mask", "special_tokens_mask")}

    def encode_packed(batch: Mapping[str, List[str]]) -> Dict[str, List[List[int]]]:
        stream = []
        for ids in tokenizer(batch["text"], add_special_tokens=False)["input_ids"]:
            if ids:
                stream.extend(ids)
                stream.append(tokenizer.sep_token_id)
        body = max_length - 1
        blocks = [[tokenizer.cls_token_id, *stream[start : start + body]] for start in range(0, len(stream), body)]
        return {
            "input_ids": blocks,
            "attention_mask": [[1] * len(block) for block in blocks],
            "special_tokens_mask": [[int(token in special_ids) for token in block] for block in blocks],
        }

    return dataset.map(
        encode_packed if packing else encode,
        batched=True,
        num_proc=num_proc,
        desc=desc,
        remove_columns=dataset.column_names,
    )


def build_masked_lm(model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The masked-LM model of a run: ``model_name_or_path`` continued, or a new random one from ``model_config``."""
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    name = model_args.model_name_or_path
    if name:
        config = load_checkpoint_config(name)
        # A patent classifier says model_type "modernbert" too (it is saved as a stock classifier), but has no MLM head.
        is_classifier = isinstance(config, HierarchicalPatentConfigMixin)
        if is_classifier or config.model_type not in MLM_MODEL_TYPES:
            kind = "patent classifier" if is_classifier else repr(config.model_type)
            raise ValueError(
                f"{name} is a {kind} checkpoint: MLM pretraining continues a ModernBERT or BERT encoder "
                "(e.g. answerdotai/ModernBERT-base or an earlier pretraining output) or starts a new one (model_name_or_path: null)"
            )
        model = load_pretrained_weights(
            AutoModelForMaskedLM, name, allow_pickle=model_args.allow_pickle, config=config, **extra
        )
    else:
        model = AutoModelForMaskedLM.from_config(new_model_config(model_args, tokenizer), **extra)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only {model.config.vocab_size}; "
            "use the tokenizer the model was trained with"
        )
    return model


def perplexity(loss: float) -> float:
    """exp(mean masked-token cross-entropy); infinite when it overflows (a diverged run)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class MLMTrainer(ResumableTrainer):
    """A `Trainer` whose evaluations also report ``{prefix}_perplexity`` (logged, and returned by evaluate/predict)."""

    def evaluation_loop(
        self,
        dataloader: DataLoader,
        description: str,
        prediction_loss_only: Optional[bool] = None,
        ignore_keys: Optional[List[str]] = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        loss = output.metrics.get(f"{metric_key_prefix}_loss")
        if loss is not None:
            output.metrics[f"{metric_key_prefix}_perplexity"] = perplexity(loss)
        return output
