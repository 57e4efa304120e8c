"""Build the pieces of a training run from its arguments: data splits + label space, tokenizer, model.

The recipes (`recipes/finetune.py`, `recipes/pretrain_mlm.py`) only wire these together. Work that must
happen once per run (preparing raw data, generating the embedded corpus, training a tokenizer) is done
by the main process first and cached in the output directory, so every rank reads the same files.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from typing import Optional, Tuple

from .cpc import LABEL_SPACE_FILE, CpcLabelSpace
from .data.leakage import split_overlap
from .data.records import load_dataset_dir

logger = logging.getLogger(__name__)

TOKENIZER_SUBDIR = "tokenizer"
DATA_SUBDIR = "data"


def _main_process_first(training_args):
    return training_args.main_process_first(desc="preparing data") if training_args is not None else nullcontext()


def is_prepared_dir(path: str) -> bool:
    """A directory written by `modernpatent prepare` or `modernpatent synth`."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, LABEL_SPACE_FILE)) and os.path.isfile(os.path.join(path, "README.md"))


def load_patent_splits(data_args, work_dir: str, training_args=None) -> Tuple[object, CpcLabelSpace]:
    """The run's ``DatasetDict`` (train/validation/test of normalized records) and its label space.

    ``data_args.dataset_name_or_path`` may be a prepared directory (used as it is), ``"synthetic"`` (the
    embedded corpus, generated into ``work_dir/data``), or any raw source `modernpatent prepare` reads
    (the USPTO-3M hub id or a local copy, JSON Lines, TSV), prepared into ``work_dir/data``.

    Splits that share an id or a normalized text (:mod:`~modernpatent_hf.data.leakage`) are refused
    with a one-line error unless ``data_args.allow_split_overlap``: evaluating on them scores training data.
    """
    source = data_args.dataset_name_or_path
    prepared = source if is_prepared_dir(source) else os.path.join(work_dir, DATA_SUBDIR)
    with _main_process_first(training_args):
        if not is_prepared_dir(prepared):
            if source == "synthetic":
                from .data.synthetic import write_synthetic_corpus

                write_synthetic_corpus(prepared, n=data_args.synthetic_num_records, seed=data_args.synthetic_seed)
            else:
                from .data.prepare import prepare_dataset

                prepare_dataset(
                    [source], prepared, text_fields=data_args.text_fields, min_count=data_args.min_label_count,
                    validation_fraction=data_args.validation_fraction, test_fraction=data_args.test_fraction,
                    test_year=data_args.test_year, test_size=data_args.test_size, seed=data_args.split_seed,
                    titles=data_args.titles_path,
                )
    splits = load_dataset_dir(prepared)
    if not data_args.allow_split_overlap:
        _refuse_split_overlap(splits, prepared)
    label_space = CpcLabelSpace.load(prepared)
    if data_args.min_label_count > 1 and label_space.counts is not None:
        label_space = CpcLabelSpace.from_counts(label_space.counts, min_count=data_args.min_label_count, titles=label_space.titles)
    if data_args.titles_path:
        label_space = label_space.with_titles(data_args.titles_path)
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples), ("test", data_args.max_test_samples)):
        if split in splits and limit is not None and limit < len(splits[split]):
            splits[split] = splits[split].select(range(limit))
    if "train" not in splits or len(splits["train"]) == 0:
        raise ValueError(f"the dataset {source!r} has no training records; check the source and its filters")
    return splits, label_space


def _refuse_split_overlap(splits, path: str) -> None:
    """A one-line error when ``splits`` share ids or normalized texts, naming the counts, an example and the flag."""
    overlap = split_overlap(splits)
    if overlap["shared_ids"] or overlap["shared_texts"]:
        split, record_id = overlap["example"]
        raise ValueError(
            f"the splits of {path} overlap: {overlap['shared_ids']} records share their id and {overlap['shared_texts']} "
            f"their normalized text with another split (e.g. id {record_id!r} in {split!r}), so evaluation would score "
            "training data; re-create the splits with `modernpatent prepare`, or set allow_split_overlap: true to train anyway"
        )


def load_or_train_tokenizer(model_args, train_texts, work_dir: str, training_args=None):
    """The run's tokenizer: from ``tokenizer_name_or_path`` (or the model's), or trained on ``train_texts``."""
    from transformers import AutoTokenizer

    name = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if name == "train" and model_args.model_name_or_path:
        # A new vocabulary would scramble the token ids the checkpoint's embeddings were trained on.
        raise ValueError(
            f"tokenizer_name_or_path: train makes a new vocabulary, which does not match the embeddings of "
            f"{model_args.model_name_or_path!r}; leave tokenizer_name_or_path unset to use the checkpoint's tokenizer"
        )
    if name == "train":
        path = os.path.join(work_dir, TOKENIZER_SUBDIR)
        with _main_process_first(training_args):
            if not os.path.isfile(os.path.join(path, "tokenizer.json")):
                from .tokenization import train_patent_tokenizer

                tokenizer = train_patent_tokenizer(train_texts, vocab_size=model_args.tokenizer_vocab_size)
                tokenizer.save_pretrained(path)
        name = path
    if name is None:
        raise ValueError("no tokenizer: set tokenizer_name_or_path (a Hub id, a local directory, or 'train')")
    if (os.path.isabs(name) or name.startswith(".")) and not os.path.isdir(name):
        raise FileNotFoundError(f"tokenizer directory {name!r} does not exist: set tokenizer_name_or_path to a saved tokenizer or 'train'")
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
    except OSError as error:
        raise OSError(
            f"cannot load a tokenizer from {name!r} ({str(error).splitlines()[0]}); offline, use a local directory "
            "or tokenizer_name_or_path: train"
        ) from None


def new_model_config(model_args, tokenizer, label_space: Optional[CpcLabelSpace] = None, **loss_settings):
    """Config of a new randomly initialized model whose vocabulary and special tokens match ``tokenizer``.

    With ``label_space``: a patent classifier's config. Without: a stock ``ModernBertConfig``/``BertConfig``
    (an encoder for MLM pretraining, with no labels that would tie it to one label space).
    """
    from transformers import BertConfig, ModernBertConfig

    from .configuration_modernpatent import BertPatentConfig, ModernPatentConfig

    if label_space is None:
        config_class = ModernBertConfig if model_args.architecture == "modernbert" else BertConfig
        labels = {}
    else:
        config_class = ModernPatentConfig if model_args.architecture == "modernbert" else BertPatentConfig
        labels = {"id2label": dict(label_space.id2label), "label2id": dict(label_space.label2id)}
    special = {"pad_token_id": tokenizer.pad_token_id}
    if model_args.architecture == "modernbert":
        special.update(
            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
        )
    return config_class(vocab_size=len(tokenizer), **labels, **special, **(model_args.model_config or {}), **loss_settings)


def build_classifier(model_args, tokenizer, label_space: CpcLabelSpace, class_weights: Optional[list] = None):
    """The patent classifier of a run: from a checkpoint (encoder loaded, head new) or new and random; LoRA-wrapped on request."""
    loss_settings = {"loss_type": model_args.loss_type, "pooling": model_args.pooling,
                     "classifier_dropout": model_args.classifier_dropout, "class_weight_cap": model_args.class_weight_cap}
    if model_args.hierarchy_weight is not None:
        loss_settings["hierarchy_weight"] = model_args.hierarchy_weight
    if class_weights is not None:
        loss_settings["class_weights"] = list(class_weights)
    extra = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path:
        from .model_factory import build_patent_classifier

        model = build_patent_classifier(
            model_args.model_name_or_path, label_space, allow_pickle=model_args.allow_pickle, **loss_settings, **extra
        )
    else:
        from .modeling_modernpatent import BertForHierarchicalPatentClassification, ModernBertForHierarchicalPatentClassification

        config = new_model_config(model_args, tokenizer, label_space, **loss_settings)
        if model_args.attn_implementation:
            config._attn_implementation = model_args.attn_implementation
        model_class = ModernBertForHierarchicalPatentClassification if model_args.architecture == "modernbert" else BertForHierarchicalPatentClassification
        model = model_class(config)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only {model.config.vocab_size}; "
            "use the tokenizer the model was trained with"
        )
    if model_args.use_lora:
        model = wrap_with_lora(model, model_args)
    return model


def wrap_with_lora(model, model_args):
    """LoRA adapters on the encoder's linear layers; the head and classifier stay fully trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
        target_modules=list(model_args.lora_target_modules), modules_to_save=["head", "classifier"],
    )
    return get_peft_model(model, config)
