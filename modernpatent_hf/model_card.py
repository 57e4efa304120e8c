"""The model card (``README.md``) saved with every fine-tuned checkpoint and pushed with it to the Hub.

Built with ``huggingface_hub``'s :class:`~huggingface_hub.ModelCardData` and :class:`~huggingface_hub.ModelCard`
from the package's template (``templates/modelcard_template.md``): the metadata the Hub reads (license,
``base_model``, ``datasets``, ``metrics``, ``pipeline_tag``, tags and a ``model-index`` whose results are the
test figures, as :class:`~huggingface_hub.EvalResult`), then what the model does, its intended use and limits,
the metrics table, the training settings, the label space and how to load it. :class:`ModelCardInfo` carries
what the trainer itself does not know (the starting checkpoint, the data and its years); the recipe builds it
with :func:`model_card_info`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple

import pyarrow.compute as pc
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments

from .cpc import CpcLabelSpace
from .data.normalize import DEFAULT_TEXT_FIELDS, parse_text_fields
from .data.records import is_prepared_dir, read_stats
from .data.sources import detect_format

if TYPE_CHECKING:
    import datasets
    import torch

    from .configs import DataArguments, ModelArguments

MODEL_CARD_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "modelcard_template.md")
"""The Jinja template of the card (shipped as package data)."""

DEFAULT_LICENSE = (
    "apache-2.0"  # the license of this package and of ModernBERT; Trainer.push_to_hub(license=...) overrides it
)
MODEL_CARD_TAGS = ("patents", "cpc", "patent-classification", "multi-label-classification", "modernpatent-hf")
MODEL_CARD_METRICS = ("f1", "precision", "recall")

# (name in the card, metric key without its eval_/test_ prefix): the rows of the metrics table.
METRIC_ROWS = (
    ("F1@1", "f1@1"),
    ("P@1", "precision@1"),
    ("R@1 (per-patent mean)", "recall@1"),
    ("R@1 micro", "recall@1_micro"),
    ("F1@5", "f1@5"),
    ("class P@1", "precision@1_class"),
    ("section P@1", "precision@1_section"),
    ("micro F1 @0.5", "micro_f1"),
    ("macro F1 @0.5", "macro_f1"),
    ("macro precision @0.5", "macro_precision"),
)
# The figures the model-index reports; its metric_type is the key, so `test_<metric_type>` is the all_results.json entry.
MODEL_INDEX_KEYS = ("f1@1", "precision@1", "recall@1", "f1@5", "precision@1_section", "precision@1_class")

# A Hub repository id ("owner/name"); local paths that exist are never taken for one.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FIELD_NAMES = {"first_claim": "first claim", "claims": "claims", "title": "title", "abstract": "abstract"}


@dataclass
class ModelCardInfo:
    """What a model card says about a run beyond the trainer's own state: where it started, what it learned from."""

    base_model: Optional[str] = field(
        default=None, metadata={"help": "The checkpoint fine-tuned (Hub id or path); None: a new random model."}
    )
    dataset: Optional[str] = field(
        default=None, metadata={"help": "The dataset as the run named it (dataset_name_or_path)."}
    )
    hub_datasets: List[str] = field(
        default_factory=list, metadata={"help": "Hub dataset ids the data came from (card `datasets`)."}
    )
    text_fields: Optional[List[str]] = field(
        default=None, metadata={"help": "Record fields joined into the model's text; None: unknown."}
    )
    years: Dict[str, Tuple[str, str]] = field(
        default_factory=dict, metadata={"help": "First and last year of the dates of each split."}
    )
    rows: Dict[str, int] = field(default_factory=dict, metadata={"help": "Patents per split."})
    max_length: Optional[int] = field(
        default=None, metadata={"help": "Tokens per patent in training; longer texts were truncated."}
    )
    license: str = field(default=DEFAULT_LICENSE, metadata={"help": "License id of the model (Hub license list)."})
    language: str = field(default="en", metadata={"help": "Language of the training texts (ISO 639-1)."})
    tags: List[str] = field(default_factory=list, metadata={"help": "Hub tags added to MODEL_CARD_TAGS."})


def is_hub_id(name: Optional[str]) -> bool:
    """Whether ``name`` reads as a Hub repository id (``owner/name``) and is not a local path."""
    return bool(name) and not os.path.exists(name) and bool(_HUB_ID.match(name))


def _split_years(dates) -> Optional[Tuple[str, str]]:
    """First and last year of a date column (strings ``YYYY-MM-DD`` or a date type); None when it holds none."""
    bounds = pc.min_max(dates).as_py()
    if bounds["min"] is None:
        return None
    return str(bounds["min"])[:4], str(bounds["max"])[:4]


def _prepared_stats(source: str) -> Optional[Dict]:
    """The ``stats.json`` of a prepared dataset directory ({} when unreadable); None when ``source`` is not one."""
    if not is_prepared_dir(source):
        return None
    try:
        return read_stats(source)
    except (OSError, ValueError):
        return {}


def _text_fields(data_args: DataArguments) -> Optional[List[str]]:
    """The fields joined into the training text: as configured, as prepared, or the source format's default."""
    if data_args.text_fields:
        return list(parse_text_fields(data_args.text_fields))
    source = data_args.dataset_name_or_path
    sources = [source]
    stats = _prepared_stats(source)
    if stats is not None:
        if isinstance(stats.get("text_fields"), list):
            return list(stats["text_fields"])
        sources = stats.get("inputs", [])
    formats = set()
    for name in sources:
        try:
            formats.add(detect_format(name))
        except (OSError, ValueError):  # "synthetic", a moved input: the fields are unknown
            return None
    return list(DEFAULT_TEXT_FIELDS[formats.pop()]) if len(formats) == 1 else None


def model_card_info(
    model_args: ModelArguments, data_args: DataArguments, splits: datasets.DatasetDict
) -> ModelCardInfo:
    """A :class:`ModelCardInfo` from a fine-tuning run's arguments and its loaded splits (dates read from the ``date`` column)."""
    source = data_args.dataset_name_or_path
    stats = _prepared_stats(source)
    sources = [source] if stats is None else stats.get("inputs", [])
    years = {}
    for name, rows in splits.items():
        if len(rows) and "date" in rows.column_names:
            span = _split_years(rows.with_format("arrow")["date"])
            if span is not None:
                years[name] = span
    return ModelCardInfo(
        base_model=model_args.model_name_or_path,
        dataset=source,
        hub_datasets=[name for name in sources if is_hub_id(name)],
        text_fields=_text_fields(data_args),
        years=years,
        rows={name: len(rows) for name, rows in splits.items()},
        max_length=data_args.max_length,
    )


def _percent(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.2f} %"


def _input_text(info: ModelCardInfo) -> str:
    if info.dataset == "synthetic":
        return "generated claim-like text: this model learned from the synthetic demo corpus, not from real patents."
    if not info.text_fields:
        return "patent text in the form of the training data."
    fields = " + ".join(_FIELD_NAMES.get(name, name) for name in info.text_fields)
    return (
        f"the patent's {fields} (English), as in training; other text (descriptions, other claims, "
        "non-patent prose) is outside what the model saw."
    )


def _data_description(info: ModelCardInfo) -> str:
    if info.dataset is None:
        return "not recorded with this checkpoint."
    name = "the synthetic demo corpus (`modernpatent synth`)" if info.dataset == "synthetic" else f"`{info.dataset}`"
    parts = [f"trained on {name}"]
    if info.rows:
        parts.append(", ".join(f"{split} {count:,} patents" for split, count in info.rows.items()))
    if info.years:
        parts.append(
            "dates "
            + ", ".join(
                f"{split} {first}-{last}" if first != last else f"{split} {first}"
                for split, (first, last) in info.years.items()
            )
        )
    return "; ".join(parts) + ". Patents from other years, offices or fields than these may score lower."


def _settings(
    model: torch.nn.Module, args: TrainingArguments, info: ModelCardInfo, started_from: Optional[str]
) -> List[Tuple[str, object]]:
    config = getattr(model, "config", None)
    settings = {
        "started from": started_from,
        "loss": getattr(config, "loss_type", None),
        "hierarchy weight": getattr(config, "hierarchy_weight", None),
        "class weights": "balanced" if getattr(config, "class_weights", None) else "none",
        "pooling": getattr(config, "pooling", None),
        "max length": info.max_length,
        "learning rate": args.learning_rate,
        "scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "batch size per device": args.per_device_train_batch_size,
        "epochs": args.num_train_epochs
        if args.max_steps is None or args.max_steps <= 0
        else f"{args.max_steps} steps",
        "weight decay": args.weight_decay,
        "AdamW betas / eps": f"({args.adam_beta1}, {args.adam_beta2}) / {args.adam_epsilon}",
        "bf16": args.bf16,
    }
    return [(name, value) for name, value in settings.items() if value is not None]


def eval_results(metrics: Mapping[str, float], info: ModelCardInfo) -> List[EvalResult]:
    """The model-index entries: the test figures of :data:`MODEL_INDEX_KEYS` (validation ones when no test ran)."""
    prefix, split = (
        ("test", "test") if any(f"test_{key}" in metrics for key in MODEL_INDEX_KEYS) else ("eval", "validation")
    )
    names = dict((key, name) for name, key in METRIC_ROWS)
    dataset_type = info.hub_datasets[0] if info.hub_datasets else (info.dataset or "unknown")
    dataset_name = (
        "synthetic demo corpus" if info.dataset == "synthetic" else os.path.basename(os.path.normpath(dataset_type))
    )
    return [
        EvalResult(
            task_type="text-classification",
            task_name="Multi-label CPC subclass classification",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=key,
            metric_name=names[key],
            metric_value=metrics[f"{prefix}_{key}"],
        )
        for key in MODEL_INDEX_KEYS
        if f"{prefix}_{key}" in metrics
    ]


def build_model_card(
    model: torch.nn.Module,
    label_space: CpcLabelSpace,
    args: TrainingArguments,
    metrics: Mapping[str, float],
    info: Optional[ModelCardInfo] = None,
    model_name: Optional[str] = None,
    has_thresholds: bool = False,
) -> ModelCard:
    """The card of a checkpoint: Hub metadata (with the model-index of ``metrics``) and text from the template.

    ``metrics``: eval_*/test_* figures (``all_results.json`` or the latest logged evaluation); ``model_name``
    names the model in the title and model-index (default: the Hub id or the output directory's name);
    ``has_thresholds``: the directory holds tuned thresholds.
    """
    if info is None:  # a trainer given no ModelCardInfo: where the run started is unknown
        info, started_from, lineage = ModelCardInfo(), None, ""
    elif info.base_model is None:
        started_from, lineage = "a new random model", "A new model trained from random weights."
    else:
        started_from, lineage = f"`{info.base_model}`", f"Fine-tuned from `{info.base_model}`."
    config = getattr(model, "config", None)
    model_name = (
        model_name or (args.hub_model_id or os.path.basename(os.path.normpath(args.output_dir))).split("/")[-1]
    )
    model_type = getattr(config, "model_type", None)
    results = eval_results(metrics, info)
    card_data = ModelCardData(
        language=info.language,
        license=info.license,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=[*MODEL_CARD_TAGS, *([model_type] if model_type else []), *info.tags],
        base_model=info.base_model if is_hub_id(info.base_model) else None,
        datasets=list(info.hub_datasets) or None,
        metrics=list(MODEL_CARD_METRICS),
        model_name=model_name if results else None,  # the model-index's name
        eval_results=results or None,
    )
    rows = []
    for name, key in METRIC_ROWS:
        validation, test = metrics.get(f"eval_{key}"), metrics.get(f"test_{key}")
        if validation is not None or test is not None:
            rows.append({"name": name, "validation": _percent(validation), "test": _percent(test)})
    return ModelCard.from_template(
        card_data,
        template_path=MODEL_CARD_TEMPLATE,
        title=f"{model_name}: CPC subclass classifier",
        num_labels=len(label_space),
        num_classes=len(label_space.classes),
        num_sections=len(label_space.sections),
        lineage=lineage,
        input_text=_input_text(info),
        max_length=info.max_length,
        data_description=_data_description(info),
        metric_rows=rows,
        settings=_settings(model, args, info, started_from),
        has_thresholds=has_thresholds,
        # A ModernBERT checkpoint is a stock classifier too (configuration_modernpatent); a BERT one is not.
        stock_class="ModernBertForSequenceClassification" if model_type == "modernbert" else None,
    )
