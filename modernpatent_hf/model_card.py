"""The model card (``README.md``) saved with every fine-tuned checkpoint: metadata, metrics, settings, usage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict

from transformers import TrainingArguments

from .cpc import CpcLabelSpace

if TYPE_CHECKING:
    import torch


def model_card(model: torch.nn.Module, label_space: CpcLabelSpace, args: TrainingArguments, metrics: Dict[str, float]) -> str:
    """A Hugging Face model card: metadata, what the model does, its metrics, settings and usage."""
    config = getattr(model, "config", None)
    rows = [
        ("F1@1", "f1@1"), ("P@1", "precision@1"), ("R@1 (per-patent mean)", "recall@1"), ("R@1 micro", "recall@1_micro"),
        ("F1@5", "f1@5"), ("class P@1", "precision@1_class"), ("section P@1", "precision@1_section"),
        ("micro F1 @0.5", "micro_f1"), ("macro F1 @0.5", "macro_f1"), ("macro precision @0.5", "macro_precision"),
    ]
    table = ["| metric | validation | test |", "|---|---|---|"]
    for name, key in rows:
        values = [metrics.get(f"{prefix}_{key}") for prefix in ("eval", "test")]
        if any(v is not None for v in values):
            table.append(f"| {name} | " + " | ".join("" if v is None else f"{100 * v:.2f} %" for v in values) + " |")
    settings = {
        "loss": getattr(config, "loss_type", None),
        "hierarchy weight": getattr(config, "hierarchy_weight", None),
        "class weights": "balanced" if getattr(config, "class_weights", None) else "none",
        "pooling": getattr(config, "pooling", None),
        "learning rate": args.learning_rate,
        "scheduler": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "batch size per device": args.per_device_train_batch_size,
        "epochs": args.num_train_epochs if args.max_steps is None or args.max_steps <= 0 else f"{args.max_steps} steps",
        "weight decay": args.weight_decay,
        "AdamW betas / eps": f"({args.adam_beta1}, {args.adam_beta2}) / {args.adam_epsilon}",
        "bf16": args.bf16,
    }
    return "\n".join([
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [patents, cpc, multi-label-classification, modernpatent-hf]",
        "---",
        "",
        f"# CPC subclass classifier ({len(label_space)} labels)",
        "",
        f"Predicts CPC subclasses ({len(label_space)} labels over {len(label_space.classes)} classes and "
        f"{len(label_space.sections)} sections) of a patent from its text. Trained with modernpatent-hf.",
        "",
        "## Metrics",
        "",
        *(table if len(table) > 2 else ["No evaluation has run yet."]),
        "",
        "## Training settings",
        "",
        *[f"- {name}: {value}" for name, value in settings.items() if value is not None],
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "model = AutoModelForSequenceClassification.from_pretrained(PATH, trust_remote_code=True)",
        "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        "probabilities = model(**tokenizer(texts, return_tensors='pt', padding=True, truncation=True)).logits.sigmoid()",
        "```",
        "",
        "The label space (codes, counts, titles) is in `label_space.json`: "
        "`modernpatent_hf.CpcLabelSpace.load(PATH)`.",
        "",
    ])
