"""Build a patent classifier from any ModernBERT or BERT starting point, with the labels of a CPC label space.

Why not just ``ModernBertForHierarchicalPatentClassification.from_pretrained(stock_checkpoint)``: transformers 5
would read the stock ``config.json`` into ``ModernBertPatentConfig`` as it is, placeholder labels and all. Here the
stock config is read with its own class and converted field by field into the patent config, which is then passed
to ``from_pretrained``: the labels come from the label space and the provenance keys are dropped.

A recipe's ``model_config`` (the shape of a new encoder) is checked here when its arguments are built
(:func:`check_model_config`), and :func:`model_max_positions` reads a run's position limit without loading a model.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
import pickle
import re
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertConfig,
    ModernBertConfig,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import cached_file

from .checkpoint_checks import CheckpointFilesMismatch, check_checkpoint_files
from .configuration_modernpatent import (
    BertPatentConfig,
    HierarchicalPatentConfigMixin,
    ModernBertPatentConfig,
    named_labels,
)
from .cpc import LABEL_SPACE_FILE, CpcLabelSpace
from .errors import one_line
from .modeling_modernpatent import (
    BertForHierarchicalPatentClassification,
    ModernBertForHierarchicalPatentClassification,
)

if TYPE_CHECKING:  # the recipes' arguments; prediction loads models without the training configuration
    from .configs import ModelArguments


def encoder_config_class(architecture: str) -> type:
    """The transformers config class of a new encoder of ``architecture`` (``"modernbert"`` or ``"bert"``)."""
    return ModernBertConfig if architecture == "modernbert" else BertConfig


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


# Keys of a saved config that describe the checkpoint it came from, not the model to build.
_PROVENANCE_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path")


def build_patent_classifier(
    model_name_or_path: Union[str, PreTrainedConfig],
    label_space: CpcLabelSpace,
    *,
    attn_implementation: Optional[str] = None,
    dtype: Union[str, torch.dtype, None] = None,
    allow_pickle: bool = False,
    **config_overrides: Any,
) -> PreTrainedModel:
    """A ModernBERT or BERT patent classifier predicting the subclasses of ``label_space``.

    ``model_name_or_path`` is a checkpoint directory or hub id, detected from its config: a stock ModernBERT
    (``answerdotai/ModernBERT-base``, a saved ``ModernBertForMaskedLM`` or ``ModernBertModel``), a stock BERT, or a
    checkpoint saved by this package. Encoder weights are loaded; the head and classifier are initialized when the
    checkpoint lacks them (an MLM checkpoint's prediction-head dense + LayerNorm seed the head, as in stock
    ``ModernBertForSequenceClassification``). A ``ModernBertConfig``/``BertConfig`` instance instead gives a randomly
    initialized model of that shape (tiny demo models, tests).

    ``config_overrides`` set patent or encoder config fields (``loss_type="hierarchical"``,
    ``class_weights=[...]``, ``pooling="cls"``, ``classifier_dropout=0.1``...). ``attn_implementation`` (``"sdpa"``,
    ``"eager"``, ``"flash_attention_2"``) and ``dtype`` go to ``from_pretrained``. Weights are read from
    safetensors only, unless ``allow_pickle`` (see :func:`load_pretrained_weights`).

    Raises a one-line ValueError when a saved classifier with named labels predicts other labels than
    ``label_space``, or when the checkpoint is neither ModernBERT nor BERT; a one-line OSError when the
    checkpoint cannot be found or has no safetensors weights.
    """
    if isinstance(model_name_or_path, PreTrainedConfig):
        source_config, weights_path = model_name_or_path, None
    else:
        source_config, weights_path = load_checkpoint_config(model_name_or_path), model_name_or_path
    source = weights_path or type(source_config).__name__
    _check_saved_labels(source_config, label_space, source)

    # ModernBertPatentConfig/BertPatentConfig subclass the stock configs, so both stock and saved checkpoints match here.
    if isinstance(source_config, ModernBertConfig):
        model_class = ModernBertForHierarchicalPatentClassification
    elif isinstance(source_config, BertConfig):
        model_class = BertForHierarchicalPatentClassification
    else:
        raise ValueError(
            f"{source} has model_type {source_config.model_type!r}: build_patent_classifier supports "
            "ModernBERT and BERT checkpoints"
        )

    values = {key: value for key, value in source_config.to_dict().items() if key not in _PROVENANCE_KEYS}
    values.update(config_overrides)
    values.update(id2label=dict(label_space.id2label), label2id=dict(label_space.label2id))
    config = model_class.config_class(**values)

    load_kwargs = {"attn_implementation": attn_implementation, "dtype": dtype}
    load_kwargs = {key: value for key, value in load_kwargs.items() if value is not None}
    if weights_path is None:
        return model_class._from_config(config, **load_kwargs)
    # A stock classifier for another task (labels unnamed, a different count) has an output layer of another
    # shape: re-initialize it (the load report says so) rather than fail. Nothing else depends on the label count.
    mismatched_head = source_config.num_labels != len(label_space)
    return load_pretrained_weights(
        model_class,
        weights_path,
        allow_pickle=allow_pickle,
        config=config,
        ignore_mismatched_sizes=mismatched_head,
        **load_kwargs,
    )


def load_checkpoint_config(model_name_or_path: str) -> PreTrainedConfig:
    """:func:`checkpoint_config` with one-line errors naming the path (a missing directory, no network)."""
    path = os.fspath(model_name_or_path)
    if (os.path.isabs(path) or path.startswith(".")) and not os.path.isdir(path):
        raise FileNotFoundError(
            f"checkpoint directory {path!r} does not exist: set model_name_or_path to a saved checkpoint or a Hub id"
        )
    try:
        return checkpoint_config(path)
    except CheckpointFilesMismatch:  # one line naming the checkpoint and the field already
        raise
    except OSError as error:
        raise OSError(
            f"cannot load a model config from {path!r} ({str(error).splitlines()[0]}); offline, use a local checkpoint directory"
        ) from None
    except ValueError as error:
        raise ValueError(f"{path!r} is not a model checkpoint ({str(error).splitlines()[0]})") from None


def checkpoint_config(model_name_or_path: Union[str, os.PathLike]) -> PreTrainedConfig:
    """The config of a checkpoint: its ``config.json`` checked against the weights' header
    (:func:`~modernpatent_hf.checkpoint_checks.check_checkpoint_files`), ``AutoConfig.from_pretrained``, then
    :func:`as_patent_config`."""
    check_checkpoint_files(model_name_or_path)
    return as_patent_config(AutoConfig.from_pretrained(model_name_or_path))


# The files of a fast tokenizer saved with a checkpoint (what the recipes save).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_checkpoint_tokenizer(model_name_or_path: Union[str, os.PathLike]) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` with a one-line OSError: naming the missing tokenizer files of a checkpoint
    directory, or giving the first line of transformers' error."""
    path = os.fspath(model_name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as error:
        missing = [name for name in TOKENIZER_FILES if not os.path.isfile(os.path.join(path, name))]
        if os.path.isdir(path) and missing:
            raise OSError(
                f"{path} has no tokenizer (missing {', '.join(missing)}): save the tokenizer next to the model, as "
                "the fine-tuning recipe does"
            ) from None
        raise OSError(f"cannot load the tokenizer of {path!r} ({one_line(error)})") from None


# The fields every patent classifier config saves (loss and head settings): what tells our ModernBERT checkpoints,
# saved as stock ModernBERT classifiers, from other ModernBERT checkpoints.
PATENT_CONFIG_FIELDS = tuple(item.name for item in dataclasses.fields(HierarchicalPatentConfigMixin))


def as_patent_config(config: PreTrainedConfig) -> PreTrainedConfig:
    """A ModernBERT patent classifier's config as :class:`ModernBertPatentConfig`; any other config unchanged.

    ``AutoConfig`` reads our ModernBERT checkpoints as stock ``ModernBertConfig`` (their ``model_type`` is
    ``"modernbert"``, so that every engine can serve them), with our fields as extra attributes. Passed as
    ``config=`` to ``from_pretrained``, the patent config makes the Auto classes build our class (registered for it
    in :mod:`.auto_classes`), with its class/section logits, loss and packed batches.
    """
    if type(config) is ModernBertConfig and all(hasattr(config, name) for name in PATENT_CONFIG_FIELDS):
        return ModernBertPatentConfig.from_dict(config.to_dict())
    return config


def load_pretrained_weights(
    model_class: Any, model_name_or_path: str, *, allow_pickle: bool = False, **kwargs: Any
) -> PreTrainedModel:
    """``model_class.from_pretrained(model_name_or_path, **kwargs)`` that reads safetensors weights only.

    The one way this package loads a model's weights (prediction, ONNX export, reports, recipes): a test
    checks that no other ``from_pretrained`` of a model class is left in the package.

    A checkpoint with pickled weights alone (``pytorch_model.bin``) is refused with a one-line OSError
    naming the opt-in, ``allow_pickle=True`` (``--allow-pickle``). transformers reads such weights with
    ``torch.load(weights_only=True)``, a restricted unpickler, but pickle is a code-bearing format
    whose restrictions have been bypassed before (CVE-2025-32434): only a checkpoint you trust should
    be read that way. A weights file that is damaged (empty, truncated, not safetensors) or a pickle the
    restricted unpickler refuses is a one-line OSError too. ``model_class`` is any class with
    ``from_pretrained`` (ours or an Auto class).
    """
    config = kwargs.pop("config", None)
    try:
        # Our ModernBERT checkpoints read as stock configs: build our class for them (see as_patent_config).
        kwargs["config"] = checkpoint_config(model_name_or_path) if config is None else as_patent_config(config)
        return model_class.from_pretrained(
            model_name_or_path, use_safetensors=None if allow_pickle else True, **kwargs
        )
    except OSError as error:
        if allow_pickle or "safetensors" not in str(error):
            raise
        raise OSError(
            f"{model_name_or_path} has no safetensors weights (model.safetensors); if it has pickled weights "
            "(pytorch_model.bin) from a source you trust, allow them with --allow-pickle (allow_pickle=True in Python, "
            "allow_pickle: true in a recipe)"
        ) from None
    except SafetensorError as error:
        raise OSError(
            f"the weights in {model_name_or_path} cannot be read ({one_line(error)}): model.safetensors is damaged or "
            "incomplete; copy or save the checkpoint again"
        ) from None
    except pickle.UnpicklingError as error:  # torch.load(weights_only=True) met something other than tensors
        reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(error))
        raise OSError(
            f"refused to unpickle the weights in {model_name_or_path}: the pickle holds more than tensors "
            f"({(reason.group(1) if reason else one_line(error)).split('. ')[0]}), and unpickling it could run code; "
            "do not load it"
        ) from None


def _check_saved_labels(config: PreTrainedConfig, label_space: CpcLabelSpace, source: str) -> None:
    """A checkpoint with named labels (a saved classifier) must predict the label space's codes, in the same order."""
    saved = named_labels(config)
    if saved is None or saved == list(label_space.codes):
        return
    unknown = sorted(set(saved) - set(label_space.codes))[:3]
    absent = sorted(set(label_space.codes) - set(saved))[:3]
    raise ValueError(
        f"{source} predicts {len(saved)} labels but the label space has {len(label_space)} subclasses "
        f"(only in the checkpoint: {unknown or 'none'}, only in the label space: {absent or 'none'}"
        f"{', same codes in another order' if not unknown and not absent else ''}): "
        "use the label space the checkpoint was trained with, or start from its encoder checkpoint"
    )


def special_token_ids(architecture: str, tokenizer: PreTrainedTokenizerBase) -> dict:
    """The config fields that tie a new ``"modernbert"`` or ``"bert"`` model's special tokens to ``tokenizer``'s."""
    special = {"pad_token_id": tokenizer.pad_token_id}
    if architecture == "modernbert":
        special.update(
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
        )
    return special


def new_model_config(
    model_args: ModelArguments,
    tokenizer: PreTrainedTokenizerBase,
    label_space: Optional[CpcLabelSpace] = None,
    **loss_settings: Any,
) -> PreTrainedConfig:
    """Config of a new randomly initialized model whose vocabulary and special tokens match ``tokenizer``.

    With ``label_space``: a patent classifier's config. Without: a stock ``ModernBertConfig``/``BertConfig``
    (an encoder for MLM pretraining, with no labels that would tie it to one label space).
    """
    if label_space is None:
        config_class = encoder_config_class(model_args.architecture)
        labels = {}
    else:
        config_class = ModernBertPatentConfig if model_args.architecture == "modernbert" else BertPatentConfig
        labels = {"id2label": dict(label_space.id2label), "label2id": dict(label_space.label2id)}
    special = special_token_ids(model_args.architecture, tokenizer)
    return config_class(
        vocab_size=len(tokenizer), **labels, **special, **(model_args.model_config or {}), **loss_settings
    )


def build_classifier(
    model_args: ModelArguments,
    tokenizer: PreTrainedTokenizerBase,
    label_space: CpcLabelSpace,
    class_weights: Optional[Sequence[float]] = None,
    label_frequencies: Optional[Sequence[float]] = None,
) -> PreTrainedModel:
    """The patent classifier of a run: from a checkpoint (encoder loaded, head new) or new and random; LoRA-wrapped on request.

    ``label_frequencies`` (each label's share of training patents) start a new classifier's bias at the label
    prior when ``model_args.init_bias_from_prior``; a checkpoint that already has a classifier for these labels
    keeps its own.
    """
    loss_settings = {
        "loss_type": model_args.loss_type,
        "pooling": model_args.pooling,
        "classifier_dropout": model_args.classifier_dropout,
        "class_weight_cap": model_args.class_weight_cap,
    }
    if model_args.hierarchy_weight is not None:
        loss_settings["hierarchy_weight"] = model_args.hierarchy_weight
    if class_weights is not None:
        loss_settings["class_weights"] = list(class_weights)
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path:
        model = build_patent_classifier(
            model_args.model_name_or_path, label_space, allow_pickle=model_args.allow_pickle, **loss_settings, **extra
        )
    else:
        config = new_model_config(model_args, tokenizer, label_space, **loss_settings)
        if model_args.attn_implementation:
            config._attn_implementation = model_args.attn_implementation
        model_class = (
            ModernBertForHierarchicalPatentClassification
            if model_args.architecture == "modernbert"
            else BertForHierarchicalPatentClassification
        )
        model = model_class(config)
    new_classifier = (
        not model_args.model_name_or_path
        or named_labels(load_checkpoint_config(model_args.model_name_or_path)) is None
    )
    if model_args.init_bias_from_prior and label_frequencies is not None and new_classifier:
        model.init_classifier_bias_from_prior(label_frequencies)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only {model.config.vocab_size}; "
            "use the tokenizer the model was trained with"
        )
    if model_args.use_lora:
        model = wrap_with_lora(model, model_args)
    return model


def wrap_with_lora(model: PreTrainedModel, model_args: ModelArguments) -> torch.nn.Module:
    """LoRA adapters on the encoder's linear layers; the head and classifier stay fully trainable."""
    # Imported on use: peft takes seconds to import, and every `import modernpatent_hf` imports this module.
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=list(model_args.lora_target_modules),
        modules_to_save=["head", "classifier"],
    )
    return get_peft_model(model, config)


def load_checkpoint_label_space(path_or_hub_id: str, config: PreTrainedConfig) -> CpcLabelSpace:
    """The label space of a checkpoint: its ``label_space.json``, else the CPC codes of ``config.id2label``.

    Raises a one-line ValueError when neither gives CPC codes, or when they disagree with the model's outputs.
    """
    names = named_labels(config)
    label_file = cached_file(
        path_or_hub_id,
        LABEL_SPACE_FILE,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if label_file is not None:
        label_space = CpcLabelSpace.load(label_file)
    else:
        try:
            label_space = CpcLabelSpace(names) if names else None
        except ValueError:  # labels that are not CPC codes
            label_space = None
        if label_space is None:
            raise ValueError(
                f"model directory {path_or_hub_id} lacks a label space: no {LABEL_SPACE_FILE} and its config's "
                "id2label holds no CPC codes; save the checkpoint with PatentTrainer or copy the training data's "
                f"{LABEL_SPACE_FILE} next to it"
            )
    if len(label_space) != config.num_labels or (names is not None and names != list(label_space.codes)):
        listed_in = (
            label_file
            if label_file is not None
            else f"the id2label of {path_or_hub_id}'s config (it has no {LABEL_SPACE_FILE})"
        )
        raise ValueError(
            f"{path_or_hub_id}: the model predicts {config.num_labels} labels but {listed_in} lists "
            f"{len(label_space)} codes in another order or set; use the {LABEL_SPACE_FILE} the model was trained with"
        )
    return label_space
