"""The recipes' argument dataclasses: every field a recipe YAML or its command line can set.

:class:`ModelArguments` and :class:`DataArguments` (both recipes), :class:`PatentTrainingArguments`
(fine-tuning), :class:`PretrainArguments` and :class:`PretrainTrainingArguments` (MLM pretraining). The
training scripts (``modernpatent_hf/scripts/``) parse them from ``--config YAML`` and ``--field value``
with :mod:`modernpatent_hf.recipe_parser`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from transformers import TrainingArguments

from .data.prepare_config import BAD_ROW_POLICIES, SPLIT_SEED, VALIDATION_FRACTION
from .io_utils import check_max_length
from .model_factory import check_model_config


@dataclass
class ModelArguments:
    """Which encoder to start from, how to tokenize, and the classification head and loss settings."""

    model_name_or_path: Optional[str] = field(
        default="answerdotai/ModernBERT-base",
        metadata={
            "help": "Hub id or local directory of a ModernBERT or BERT checkpoint (stock MLM, our MLM "
            "pretraining output, or a fine-tuned patent classifier). null builds a new randomly "
            "initialized model from `model_config`."
        },
    )
    model_config: Optional[dict] = field(
        default=None,
        metadata={
            "help": "Architecture of a new random model when model_name_or_path is null: config fields "
            "such as hidden_size, num_hidden_layers, num_attention_heads, intermediate_size."
        },
    )
    architecture: str = field(
        default="modernbert",
        metadata={
            "help": "Encoder family of a new random model: 'modernbert' or 'bert'.",
            "choices": ["modernbert", "bert"],
        },
    )
    tokenizer_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "Hub id or local directory of the tokenizer (default: the model's). 'train' trains a "
            "new tokenizer on the training texts (the embedded default: no tokenizer can be downloaded offline)."
        },
    )
    tokenizer_vocab_size: int = field(
        default=8000, metadata={"help": "Vocabulary size when tokenizer_name_or_path is 'train'."}
    )
    loss_type: str = field(
        default="hierarchical",
        metadata={
            "help": "'bce', 'hierarchical' (BCE + differentiable expected hierarchical distance) or "
            "'upstream_hierarchical' (the seed's gradient-free penalty, for reproduction).",
            "choices": ["bce", "hierarchical", "upstream_hierarchical"],
        },
    )
    hierarchy_weight: Optional[float] = field(
        default=None, metadata={"help": "Weight of the hierarchical term (default: the config's)."}
    )
    init_bias_from_prior: bool = field(
        default=True,
        metadata={
            "help": "Start a new classifier's bias at each label's log-odds in the training split, so "
            "training does not spend its first steps learning the label prior (a loaded classifier keeps its own)."
        },
    )
    class_weighting: str = field(
        default="none",
        metadata={
            "help": "'balanced': per-label BCE weights total/(K*count_c) from the training split, capped "
            "at class_weight_cap; 'none': unweighted.",
            "choices": ["none", "balanced"],
        },
    )
    class_weight_cap: float = field(
        default=5.0, metadata={"help": "Upper bound of balanced class weights (upstream: 5)."}
    )
    pooling: str = field(
        default="mean", metadata={"help": "'mean' over tokens (upstream) or 'cls'.", "choices": ["mean", "cls"]}
    )
    classifier_dropout: float = field(default=0.0, metadata={"help": "Dropout before the classifier layer."})
    attn_implementation: Optional[str] = field(
        default=None, metadata={"help": "'sdpa', 'eager' or 'flash_attention_2' (default: transformers' choice)."}
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters (peft) instead of the whole encoder; head and classifier are trained in full."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: List[str] = field(
        default_factory=lambda: ["Wqkv", "Wo", "Wi"],
        metadata={
            "help": "Encoder linear layers that get adapters (ModernBERT: Wqkv, Wo, Wi; BERT: query, key, value, dense)."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code from the checkpoint's repository."})
    allow_pickle: bool = field(
        default=False,
        metadata={
            "help": "Allow loading a checkpoint whose weights are pickled (pytorch_model.bin) rather than "
            "safetensors. Only for checkpoints you trust: unpickling can run code."
        },
    )

    def __post_init__(self):
        if self.model_config is not None:
            check_model_config(self.model_config, self.architecture)


@dataclass
class DataArguments:
    """Where patents come from, how they are split, and how they are turned into model inputs."""

    dataset_name_or_path: str = field(
        default="MalavP/USPTO-3M",
        metadata={
            "help": "Hub id (MalavP/USPTO-3M), a local copy of its Parquet layout, a directory written by "
            "`modernpatent prepare`/`synth`, JSON Lines or TSV files, or 'synthetic' for the embedded corpus."
        },
    )
    text_fields: Optional[str] = field(
        default=None,
        metadata={"help": "Comma-separated fields joined into the text, e.g. 'title,abstract' (default: per source)."},
    )
    max_length: int = field(default=1024, metadata={"help": "Maximum tokens per patent; longer texts are truncated."})
    validation_fraction: float = field(
        default=VALIDATION_FRACTION, metadata={"help": "Share of train held out for validation (upstream: 0.005)."}
    )
    test_fraction: float = field(default=0.0, metadata={"help": "Share of the data held out as a random test split."})
    test_dataset_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "A separate test set, used as the test split instead of one cut from dataset_name_or_path: "
            "a Hub id (the seed work's 0zo/google_patentsview_claims_2016 or _2017-B, in USPTO-3M's columns) "
            "or local files. Training records that share an id or a text with it are removed."
        },
    )
    test_year: Optional[int] = field(
        default=None,
        metadata={
            "help": "Grant year of dataset_name_or_path that forms the test split (without a separate test set)."
        },
    )
    test_size: Optional[int] = field(
        default=None, metadata={"help": "Patents sampled (seeded) from the test set or test_year."}
    )
    split_seed: int = field(default=SPLIT_SEED, metadata={"help": "Seed of the split shuffles (upstream: 42)."})
    min_label_count: int = field(
        default=1, metadata={"help": "Keep subclasses with at least this many training occurrences."}
    )
    on_bad_row: str = field(
        default="skip",
        metadata={
            "help": "A row without a usable id, date or JSON: 'skip' counts it (bad_rows in the data's stats.json) "
            "and goes on, 'raise' stops the run at it.",
            "choices": BAD_ROW_POLICIES,
        },
    )
    max_train_samples: Optional[int] = field(
        default=None, metadata={"help": "Truncate the training split (debugging, quick runs)."}
    )
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Truncate the validation split."})
    max_test_samples: Optional[int] = field(default=None, metadata={"help": "Truncate the test split."})
    synthetic_num_records: int = field(
        default=20000, metadata={"help": "Size of the embedded corpus when dataset_name_or_path is 'synthetic'."}
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the embedded corpus."})
    titles_path: Optional[str] = field(
        default=None, metadata={"help": "code<TAB>title TSV whose titles are stored with the label space."}
    )
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for tokenization."})
    compare_baselines: bool = field(
        default=False,
        metadata={
            "help": "Also score the most-frequent-label and TF-IDF linear predictors on the test split and print them beside the model."
        },
    )
    compare_frozen_encoder: bool = field(
        default=False,
        metadata={
            "help": "With compare_baselines: also embed train and test once with the frozen starting checkpoint "
            "(model_name_or_path, mean pooling) and fit a linear head on the embeddings, a baseline for fine-tuning."
        },
    )
    knn_evidence: bool = field(
        default=False,
        metadata={
            "help": "After training: index the training split with the model's embeddings, choose the kNN vote and "
            "its fusing weight on validation (knn_scores.json, used by predict --index), and compare the classifier, "
            "the vote and the fused scores on the test split (paired bootstrap intervals). Embeds every split once."
        },
    )
    allow_split_overlap: bool = field(
        default=False,
        metadata={
            "help": "Train even when the splits share ids or texts (normalized: casefolded, whitespace "
            "collapsed); by default such a layout is refused, since its evaluation scores training data."
        },
    )

    def __post_init__(self):
        check_max_length(self.max_length)


def needs_cpu_process_group() -> bool:
    """Whether this is one of several processes (``WORLD_SIZE`` > 1) on a machine without an accelerator.

    Such processes must join one gloo group on the CPU (``use_cpu=True``): without it, accelerate gives
    each of them a world of one and they silently train alone. This holds under DeepSpeed too, whose
    engine then runs ZeRO over that gloo group (tests/test_deepspeed.py).
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()


@dataclass
class RecipeTrainingArguments(TrainingArguments):
    r"""`TrainingArguments` shared by both recipes.

    Changed defaults (compared with `transformers.TrainingArguments`):
        report_to: ``"tensorboard"``.
        use_cpu: set when several processes run on a machine without an accelerator (see
            :func:`needs_cpu_process_group`).
    """

    report_to: Optional[str] = field(
        default="tensorboard", metadata={"help": "Trackers to log to: 'tensorboard', 'wandb', 'none', ..."}
    )

    def __post_init__(self):
        self.use_cpu = self.use_cpu or needs_cpu_process_group()
        super().__post_init__()


@dataclass
class PatentTrainingArguments(RecipeTrainingArguments):
    r"""`TrainingArguments` for CPC patent classification.

    Changed defaults (besides :class:`RecipeTrainingArguments`'):
        metric_for_best_model: ``"f1@1"`` (the figure the seed and PatentBERT report), greater_is_better ``True``.
        train_sampling_strategy: ``"group_by_length"`` (patents vary from 20 to thousands of tokens; grouping
            similar lengths wastes less compute on padding).
        batch_eval_metrics: ``True`` (streaming evaluation, see :mod:`modernpatent_hf.eval_metrics`).
        remove_unused_columns: ``False`` (the collator needs ``label_ids``, which is not a forward argument).
        label_names: ``["labels"]``.

    New parameters:
        top_k: the k of precision/recall/F1@k reported at evaluation.
        eval_threshold: probability threshold of the micro/macro/exact-match metrics.
        head_learning_rate: learning rate of the head and classifier (no weight decay); default learning_rate.
        threshold_min_positives: validation patents a label needs for its own tuned threshold.
        packing: packed (unpadded) batches, see :mod:`modernpatent_hf.packing`.
    """

    metric_for_best_model: Optional[str] = field(
        default="f1@1", metadata={"help": "Metric that selects the best checkpoint."}
    )
    greater_is_better: Optional[bool] = field(
        default=True, metadata={"help": "Whether a larger metric_for_best_model is better."}
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Sampler for training: 'group_by_length' (default here), 'random', 'sequential' or 'batch_rebalance'.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    batch_eval_metrics: bool = field(default=True, metadata={"help": "Compute metrics batch by batch (streaming)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep label_ids for the collator."})
    label_names: Optional[List[str]] = field(
        default_factory=lambda: ["labels"], metadata={"help": "Input keys holding the targets."}
    )
    top_k: List[int] = field(
        default_factory=lambda: [1, 5], metadata={"help": "k values of P/R/F1@k reported at evaluation."}
    )
    eval_threshold: float = field(default=0.5, metadata={"help": "Probability threshold of the micro/macro metrics."})
    threshold_min_positives: int = field(
        default=10,
        metadata={
            "help": "Labels with at least this many validation patents get their own tuned decision threshold "
            "(thresholds.json, used by `predict --threshold auto`); the others share the global one."
        },
    )
    head_learning_rate: Optional[float] = field(
        default=None,
        metadata={
            "help": "Learning rate of the head and classifier (new weights), which also get no weight decay; "
            "the encoder keeps learning_rate. Default: learning_rate for all."
        },
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "Train and evaluate on packed batches: each batch's patents concatenated into one row "
            "without padding (positions restart per patent; attention stays within each patent, "
            "modernpatent_hf.packing). Same losses and metrics as padded batches, less compute; pays on GPUs."
        },
    )


@dataclass
class PretrainArguments:
    """How tokens are masked and how documents become sequences."""

    mlm_probability: float = field(
        default=0.30,
        metadata={"help": "Share of non-special tokens selected for prediction (upstream and ModernBERT: 0.30)."},
    )
    mask_replace_prob: float = field(
        default=0.8, metadata={"help": "Share of the selected tokens replaced by [MASK]."}
    )
    random_replace_prob: float = field(
        default=0.1,
        metadata={
            "help": "Share of the selected tokens replaced by a random token; the rest (default 10 %) stay unchanged."
        },
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "False: one document per sequence, truncated to max_length. True: documents joined by [SEP] and "
            "cut into blocks of max_length tokens (no padding, no truncation; attention spans the documents of a block)."
        },
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Concatenate each batch's sequences into one row without padding (positions restart per "
            "sequence; attention stays within each sequence, modernpatent_hf.packing): the same loss as padded "
            "batches with less compute. Independent of packing, which decides what a sequence is."
        },
    )


@dataclass
class PretrainTrainingArguments(RecipeTrainingArguments):
    r"""`TrainingArguments` for MLM pretraining.

    Changed defaults (besides :class:`RecipeTrainingArguments`'):
        remove_unused_columns: ``False`` (the collator reads ``special_tokens_mask``, which is not a forward argument).
    """

    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep special_tokens_mask for the collator."})
