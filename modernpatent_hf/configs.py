"""Recipe configuration: one YAML per run, overridable from the command line, parsed into dataclasses.

The training scripts (``modernpatent_hf/scripts/``) parse their dataclasses with :class:`RecipeArgumentParser`. Every key of the YAML and every
``--key value`` on the command line must be a field of one of them (unknown keys are an error that names
them); command-line values win over the YAML. Values are typed by the same argparse machinery that
``transformers.HfArgumentParser`` builds from the dataclasses, so ``--learning_rate 8e-5`` and a YAML
``learning_rate: 8e-5`` (which YAML itself reads as a string) both become floats.

Every argument dataclass of the recipes lives here: :class:`ModelArguments` and :class:`DataArguments`
(both recipes), :class:`PatentTrainingArguments` (fine-tuning), :class:`PretrainArguments` and
:class:`PretrainTrainingArguments` (MLM pretraining).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
import yaml
from huggingface_hub.errors import StrictDataclassError
from transformers import HfArgumentParser, TrainingArguments
from transformers.utils import cached_file

from .commands.arguments import coerce_config_value, field_types, read_yaml_config
from .data.prepare_config import BAD_ROW_POLICIES, SPLIT_SEED, VALIDATION_FRACTION
from .io_utils import check_max_length, write_json_atomically
from .model_factory import encoder_config_class


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
    allow_split_overlap: bool = field(
        default=False,
        metadata={
            "help": "Train even when the splits share ids or texts (normalized: casefolded, whitespace "
            "collapsed); by default such a layout is refused, since its evaluation scores training data."
        },
    )

    def __post_init__(self):
        check_max_length(self.max_length)


# model_config keys that a run fills from elsewhere (given twice, the config would get two values).
MODEL_CONFIG_KEYS_SET_ELSEWHERE = {
    **dict.fromkeys(
        ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"), "the tokenizer"
    ),
    **dict.fromkeys(("id2label", "label2id"), "the label space"),
    "classifier_dropout": "the classifier_dropout field",
}
_POSITIVE_SIZES = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
)


def check_model_config(model_config: Mapping[str, Any], architecture: str) -> None:
    """A one-line ValueError naming the key when ``model_config`` (a new encoder's shape) cannot be what was meant.

    That is a key the architecture's config class does not know (a typo would otherwise build a default-sized
    model), a key the run sets from elsewhere, a size that is not a positive integer, a value the class refuses,
    or a hidden size that the attention heads do not divide.
    """
    config_class = encoder_config_class(architecture)
    known = _config_keys(config_class)
    for key in model_config:
        if key in MODEL_CONFIG_KEYS_SET_ELSEWHERE:
            raise ValueError(
                f"model_config: {key!r} is set from {MODEL_CONFIG_KEYS_SET_ELSEWHERE[key]}; remove it from model_config"
            )
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            raise ValueError(
                f"model_config: unknown key {key!r} for {config_class.__name__}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
            )
    for key in _POSITIVE_SIZES:
        value = model_config.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model_config: {key} must be a positive integer, got {value!r}")
    try:
        config = config_class(**model_config)
    except (TypeError, ValueError, StrictDataclassError) as error:
        raise ValueError(f"model_config: {' '.join(str(error).split())}") from None
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"model_config: hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
            f"{config.num_attention_heads}"
        )


def _config_keys(config_class: type) -> set:
    """The keys ``config_class(**keys)`` uses: its fields, their aliases, and the older names its own code reads
    from the extra keyword arguments (ModernBERT's ``global_attn_every_n_layers``, ``local_rope_theta``...)."""
    keys = {item.name for item in dataclasses.fields(config_class) if not item.name.startswith("_")} | set(
        config_class.attribute_map
    )
    try:
        source = inspect.getsource(config_class)
    except (OSError, TypeError):  # no source shipped: the fields alone
        return keys
    return keys | set(re.findall(r"kwargs\.(?:get|pop)\(\s*[\"'](\w+)[\"']", source))


def model_max_positions(model_args: ModelArguments) -> Optional[int]:
    """``max_position_embeddings`` of the run's model without loading it: a new model's (``model_config`` or the class
    default), or a checkpoint's ``config.json`` when it is a local directory or in the Hub cache; else None."""
    if not model_args.model_name_or_path:
        return encoder_config_class(model_args.architecture)(**(model_args.model_config or {})).max_position_embeddings
    try:
        path = cached_file(
            model_args.model_name_or_path,
            "config.json",
            local_files_only=True,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        with open(path, encoding="utf-8") as handle:
            positions = json.load(handle).get("max_position_embeddings")
    except (OSError, ValueError, TypeError, AttributeError):  # not downloaded yet, or not a config: checked on loading
        return None
    return positions if isinstance(positions, int) else None


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
        batch_eval_metrics: ``True`` (streaming evaluation, see :mod:`modernpatent_hf.trainer`).
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


def _typed_override_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A copy of the dataclass parser that returns only the options actually given (no defaults, none required)."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
        if action.type is dict:
            action.type = yaml.safe_load
    return parser


class RecipeHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every field's help, and the recipe's docstring (with its example command) kept as written."""


class RecipeArgumentParser(HfArgumentParser):
    """`HfArgumentParser` for one recipe run: ``--config YAML`` plus ``--field value`` overrides.

    Every key of the YAML and every option must be a field of one of the dataclasses (unknown keys are an
    error that names them); command-line values win over the YAML. YAML values get the types argparse
    gives the command line, so ``learning_rate: 8e-5`` (a string to YAML) becomes a float. ``--help`` prints
    ``description`` (a recipe passes its docstring, which holds its example command), ``--config`` and
    every field with its help and default.
    """

    def __init__(self, dataclass_types: Sequence[type], description: Optional[str] = None):
        super().__init__(
            dataclass_types,
            description=description,
            formatter_class=RecipeHelpFormatter,
            usage="%(prog)s [-h] [--config YAML] [--FIELD VALUE ...]",
        )
        self.add_argument(
            "--config",
            default=None,
            metavar="YAML",
            help="YAML file of field: value pairs for this run (recipes/<model>/<task>/config_<variant>.yaml); the --field options below override it",
        )
        for action in self._actions:
            # Field help is plain text ("10 %"), but argparse formats it with %: escape every % not starting %(name)s.
            if action.help:
                action.help = re.sub(r"%(?!\()", "%%", action.help)
        # HfArgumentParser adds the dataclass fields before --config; list --config right after --help, where a
        # reader looks, in the usage line and in the options.
        for actions in (self._actions, self._optionals._group_actions):
            actions.insert(1, actions.pop())

    def parse_recipe(self, argv: Optional[List[str]] = None) -> Tuple:
        """Instances of the dataclasses from ``argv`` (default ``sys.argv[1:]``); ``--help`` prints and exits."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if "-h" in argv or "--help" in argv:
            self.print_help()
            sys.exit(0)
        front = argparse.ArgumentParser(add_help=False)
        front.add_argument("--config", default=None)
        known, rest = front.parse_known_args(argv)
        config = read_yaml_config(known.config) if known.config is not None else {}

        actions = {action.dest: action for action in self._actions if action.dest not in ("help", "config")}
        unknown = sorted(set(config) - set(actions))
        if unknown:
            raise ValueError(f"unknown key(s) in {known.config}: {', '.join(unknown)} (see --help for the fields)")
        try:
            overrides, leftover = _typed_override_parser(
                HfArgumentParser(self.dataclass_types, exit_on_error=False)
            ).parse_known_args(rest)
        except argparse.ArgumentError as error:
            raise ValueError(f"{error}; see --help for the fields") from None
        if leftover:
            raise ValueError(f"unknown command-line argument(s): {' '.join(leftover)} (see --help for the fields)")
        types = field_types(self.dataclass_types)
        merged = {
            key: coerce_config_value(actions[key], key, value, known.config, types.get(key))
            for key, value in config.items()
        }
        merged.update(vars(overrides))
        parsed = self.parse_dict(merged, allow_extra_keys=False)
        model_args = next((item for item in parsed if isinstance(item, ModelArguments)), None)
        data_args = next((item for item in parsed if isinstance(item, DataArguments)), None)
        if model_args is not None and data_args is not None:
            check_max_length(data_args.max_length, model_max_positions(model_args))
        return parsed


def parse_recipe_args(
    dataclass_types: Sequence[type], argv: Optional[List[str]] = None, description: Optional[str] = None
) -> Tuple:
    """``RecipeArgumentParser(dataclass_types, description).parse_recipe(argv)``: what the scripts and grids call."""
    return RecipeArgumentParser(dataclass_types, description).parse_recipe(argv)


def dump_recipe_args(path: str, *instances: Any) -> None:
    """Write the resolved configuration of a run (all dataclasses, JSON) so that it can be reproduced."""
    resolved = {}
    for instance in instances:
        values = instance.to_dict() if hasattr(instance, "to_dict") else asdict(instance)
        resolved[type(instance).__name__] = values
    write_json_atomically(path, resolved, default=str)
