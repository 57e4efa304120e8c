"""Training: arguments with this task's defaults, the collator, streaming F1@k evaluation, the Trainer.

The tokenized dataset stores each patent's labels as label-space *indices* (a few ints per row, not
665 floats), and :class:`MultiLabelCollator` builds the multi-hot float targets per batch. Evaluation
runs with ``batch_eval_metrics``: each gathered batch updates a
:class:`~modernpatent_hf.metrics.MultilabelMetricsAccumulator` and is dropped, so N x L logits never
sit in memory and several processes give the same figures as one (``gather_for_metrics`` drops the
padding of uneven last batches).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME

from .cpc import LABEL_SPACE_FILE, CpcLabelSpace
from .io_utils import write_json_atomically
from .metrics import MultilabelMetricsAccumulator

logger = logging.getLogger(__name__)

# The training arguments saved with every checkpoint, as JSON (see ResumableTrainer._save).
TRAINING_ARGS_JSON = "training_args.json"

# Outputs of our models that are not the subclass logits: evaluation must not collect them.
NON_LOGIT_OUTPUTS = ["class_logits", "section_logits", "hidden_states", "attentions"]


@dataclass
class PatentTrainingArguments(TrainingArguments):
    r"""`TrainingArguments` for CPC patent classification.

    Changed defaults (compared with `transformers.TrainingArguments`):
        metric_for_best_model: ``"f1@1"`` (the figure the seed and PatentBERT report), greater_is_better ``True``.
        train_sampling_strategy: ``"group_by_length"`` (patents vary from 20 to thousands of tokens; grouping
            similar lengths wastes less compute on padding).
        batch_eval_metrics: ``True`` (streaming evaluation, see the module docstring).
        remove_unused_columns: ``False`` (the collator needs ``label_ids``, which is not a forward argument).
        report_to: ``"tensorboard"``.
        label_names: ``["labels"]``.

    New parameters:
        top_k: the k of precision/recall/F1@k reported at evaluation.
        eval_threshold: probability threshold of the micro/macro/exact-match metrics.
    """

    metric_for_best_model: Optional[str] = field(default="f1@1", metadata={"help": "Metric that selects the best checkpoint."})
    greater_is_better: Optional[bool] = field(default=True, metadata={"help": "Whether a larger metric_for_best_model is better."})
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={"help": "Sampler for training: 'group_by_length' (default here), 'random', 'sequential' or 'batch_rebalance'.",
                  "choices": ["random", "sequential", "group_by_length", "batch_rebalance"]},
    )
    batch_eval_metrics: bool = field(default=True, metadata={"help": "Compute metrics batch by batch (streaming)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep label_ids for the collator."})
    report_to: Optional[str] = field(default="tensorboard", metadata={"help": "Trackers to log to: 'tensorboard', 'wandb', 'none', ..."})
    label_names: Optional[List[str]] = field(default_factory=lambda: ["labels"], metadata={"help": "Input keys holding the targets."})
    top_k: List[int] = field(default_factory=lambda: [1, 5], metadata={"help": "k values of P/R/F1@k reported at evaluation."})
    eval_threshold: float = field(default=0.5, metadata={"help": "Probability threshold of the micro/macro metrics."})

    def __post_init__(self):
        self.use_cpu = self.use_cpu or needs_cpu_process_group()
        super().__post_init__()


def needs_cpu_process_group() -> bool:
    """Whether this is one of several processes (``WORLD_SIZE`` > 1) on a machine without an accelerator.

    Such processes must join one gloo group on the CPU (``use_cpu=True``): without it, accelerate gives
    each of them a world of one and they silently train alone. This holds under DeepSpeed too, whose
    engine then runs ZeRO over that gloo group (tests/test_deepspeed.py).
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()


@dataclass
class MultiLabelCollator:
    """Pads token inputs dynamically and turns each row's ``label_ids`` into a multi-hot ``labels`` row."""

    tokenizer: object
    num_labels: int
    pad_to_multiple_of: Optional[int] = None

    def __call__(self, features: List[Dict]) -> Dict[str, torch.Tensor]:
        label_ids = [feature.get("label_ids") for feature in features]
        inputs = [{k: feature[k] for k in ("input_ids", "attention_mask") if k in feature} for feature in features]
        batch = self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        if all(ids is not None for ids in label_ids):
            labels = torch.zeros(len(features), self.num_labels, dtype=torch.float32)
            for row, ids in enumerate(label_ids):
                labels[row, list(ids)] = 1.0
            batch["labels"] = labels
        return batch


def tokenize_patent_dataset(dataset, tokenizer, label_space: CpcLabelSpace, max_length: int, num_proc=None, desc="tokenizing"):
    """Tokenize ``text`` and map ``labels`` to label-space indices; keeps ``id`` and adds ``length``.

    Codes outside the label space (rare codes seen only outside train) are left out of ``label_ids``;
    the number left out is returned so callers can report it.
    """
    left_out = sum(len(label_space.split_known(labels)[1]) for labels in dataset["labels"])

    def encode(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        encoded["label_ids"] = [[label_space.label2id[c] for c in labels if c in label_space.label2id] for labels in batch["labels"]]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        encoded.pop("token_type_ids", None)
        return encoded

    keep = {"id"}
    tokenized = dataset.map(
        encode, batched=True, num_proc=num_proc, desc=desc,
        remove_columns=[c for c in dataset.column_names if c not in keep],
    )
    return tokenized, left_out


class PatentMetricsComputer:
    """``compute_metrics`` for ``batch_eval_metrics=True``: accumulates per batch, reports at the last one."""

    def __init__(self, label_space: CpcLabelSpace, k=(1, 5), threshold: float = 0.5):
        self.label_space = label_space
        self.k = tuple(k)
        self.threshold = threshold
        self._accumulator = None

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
        self._accumulator.update(probabilities, (references > 0.5).astype(np.int32))
        if not compute_result:
            return {}
        accumulator, self._accumulator = self._accumulator, None
        self.last_per_label = accumulator.per_label()
        return accumulator.compute()


class ResumableTrainer(Trainer):
    """The `Trainer` both recipes build on: checkpoints without pickles, and resumes that train no extra step.

    Every saved directory holds the training arguments as ``training_args.json`` in place of the Trainer's
    pickled ``training_args.bin``. A run relaunched from a checkpoint that already reached ``max_steps``
    (a job killed after its last checkpoint, before its final save) trains nothing more: transformers
    5.x would run one more optimizer step past ``max_steps``, because it checks for the end only after a step.
    """

    def _run_epoch(self, *args, **kwargs):
        if self.state.global_step >= self.state.max_steps > 0:
            logger.warning("the checkpoint resumed from is at step %d of %d: nothing left to train", self.state.global_step, self.state.max_steps)
            self.control.should_training_stop = True
            # This call trained no step: its train_loss is NaN, not the 0 the Trainer would divide out.
            self._total_loss_scalar = float("nan")
            return None
        return super()._run_epoch(*args, **kwargs)

    def _save(self, output_dir: Optional[str] = None, state_dict=None):
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            save_training_args_as_json(output_dir if output_dir is not None else self.args.output_dir, self.args)


class PatentTrainer(ResumableTrainer):
    """A `Trainer` for CPC classification.

    Accepts a :class:`~modernpatent_hf.cpc.CpcLabelSpace`; sets the multi-label collator and streaming
    F1@k metrics when none are given; saves ``label_space.json`` and a model card (metrics table,
    training settings, usage) with every checkpoint, so each one is self-describing and loadable.
    """

    def __init__(self, *args, label_space: CpcLabelSpace, **kwargs):
        self.label_space = label_space
        training_args = kwargs.get("args") if "args" in kwargs else (args[1] if len(args) > 1 else None)
        top_k = getattr(training_args, "top_k", (1, 5))
        threshold = getattr(training_args, "eval_threshold", 0.5)
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = PatentMetricsComputer(label_space, k=top_k, threshold=threshold)
        if kwargs.get("data_collator") is None and kwargs.get("processing_class") is not None:
            kwargs["data_collator"] = MultiLabelCollator(kwargs["processing_class"], len(label_space))
        super().__init__(*args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys or NON_LOGIT_OUTPUTS, metric_key_prefix=metric_key_prefix)

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
        return super().predict(test_dataset, ignore_keys=ignore_keys or NON_LOGIT_OUTPUTS, metric_key_prefix=metric_key_prefix)

    def _save(self, output_dir: Optional[str] = None, state_dict=None):
        super()._save(output_dir, state_dict=state_dict)
        if not self.args.should_save:
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        self.label_space.save(os.path.join(output_dir, LABEL_SPACE_FILE))
        with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(model_card(self.model, self.label_space, self.args, latest_metrics(self.state.log_history)))


def save_training_args_as_json(output_dir: str, args: TrainingArguments) -> None:
    """Replace the ``training_args.bin`` that ``Trainer._save`` just wrote with ``training_args.json``.

    The Trainer pickles its arguments (``torch.save``) and never reads them back; a directory we
    publish holds no pickle, so a Trainer subclass calls this at the end of its ``_save``.
    """
    pickled_args = os.path.join(output_dir, TRAINING_ARGS_NAME)
    if os.path.exists(pickled_args):
        os.remove(pickled_args)
    write_json_atomically(os.path.join(output_dir, TRAINING_ARGS_JSON), args.to_dict(), default=str)


def latest_metrics(log_history: List[Dict]) -> Dict[str, float]:
    """The most recent evaluation metrics of each prefix (eval_, test_) found in a Trainer log history."""
    metrics: Dict[str, float] = {}
    for entry in log_history:
        if any(key.startswith(("eval_", "test_")) for key in entry):
            metrics.update({k: v for k, v in entry.items() if k.startswith(("eval_", "test_"))})
    return metrics


def model_card(model, label_space: CpcLabelSpace, args: TrainingArguments, metrics: Dict[str, float]) -> str:
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


def last_complete_checkpoint(output_dir: str) -> Optional[str]:
    """The newest ``checkpoint-N`` directory in ``output_dir`` that was saved to the end, or None.

    The Trainer writes ``trainer_state.json`` last, after the weights, optimizer, scheduler and RNG states.
    A checkpoint whose state file is missing or unreadable was interrupted while saving (a kill, a full
    disk), so it is skipped with a warning and the previous one is used: a resume never loads half a checkpoint.
    """
    import re

    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := re.fullmatch(r"checkpoint-(\d+)", name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        try:
            with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as handle:
                json.load(handle)
            return path
        except (OSError, ValueError):
            logger.warning("skipping %s: it was not saved to the end (no readable trainer_state.json)", path)
    return None


def parameter_checksum(model) -> str:
    """sha256 over the model's parameters in name order: equal on every rank of a correct data-parallel run.

    Under DeepSpeed ZeRO-3 each rank holds only a shard of every parameter, so the parameters are gathered
    first; there this is a collective that every rank must call.
    """
    import contextlib
    import hashlib

    named_parameters = sorted(model.named_parameters())
    gathered = contextlib.nullcontext()
    if any(hasattr(parameter, "ds_id") for _, parameter in named_parameters):
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters([parameter for _, parameter in named_parameters])
    digest = hashlib.sha256()
    with gathered:
        for name, parameter in named_parameters:
            digest.update(name.encode("utf-8"))
            digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_metrics_json(path: str, metrics: Dict[str, float]) -> None:
    """Write metrics as JSON atomically."""
    write_json_atomically(path, metrics, sort_keys=True)
