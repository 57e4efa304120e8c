"""Fine-tune ModernBERT (or BERT) for CPC subclass classification.

    accelerate launch -m modernpatent_hf.scripts.finetune --config recipes/tiny-modernbert/finetune/config_demo.yaml [--field value ...]
    accelerate launch recipes/finetune.py --config recipes/tiny-modernbert/finetune/config_demo.yaml      # the same, from a clone

One YAML per run (recipes/<model>/finetune/config_<variant>.yaml); command-line values override it. The output
directory ends with a loadable checkpoint (config with auto_map, safetensors weights, tokenizer, label space,
model card) and the evaluation metrics as JSON. A run relaunched with the same command resumes from the last
checkpoint in its output directory.
"""

import logging
import os
from typing import Dict, List, Optional

import numpy as np
import transformers

from modernpatent_hf.checkpoints import RESULTS_FILE, last_complete_checkpoint, parameter_checksum, save_metrics_json
from modernpatent_hf.configs import DataArguments, ModelArguments, PatentTrainingArguments
from modernpatent_hf.data.loading import load_patent_splits
from modernpatent_hf.data.records import format_label_statistics, label_statistics
from modernpatent_hf.data.splits import label_counts_in_order
from modernpatent_hf.losses import balanced_class_weights
from modernpatent_hf.model_card import model_card_info
from modernpatent_hf.model_factory import build_classifier
from modernpatent_hf.packing import use_packed_batches
from modernpatent_hf.recipe_parser import dump_recipe_args, parse_recipe_args
from modernpatent_hf.reporting.tables import compare_with_baselines
from modernpatent_hf.scripts import run_with_one_line_errors
from modernpatent_hf.thresholds import save_thresholds, tune_thresholds
from modernpatent_hf.tokenization import load_or_train_tokenizer
from modernpatent_hf.trainer import PatentTrainer
from modernpatent_hf.training_data import MultiLabelCollator, multi_hot, tokenize_patent_dataset

logger = logging.getLogger("finetune")


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    model_args, data_args, training_args = parse_recipe_args(
        (ModelArguments, DataArguments, PatentTrainingArguments), argv, description=__doc__
    )
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(logging.WARNING)
    os.makedirs(training_args.output_dir, exist_ok=True)
    # Before anything random: a new model's initial weights must be the same in every run with this seed.
    transformers.set_seed(training_args.seed)

    if data_args.compare_frozen_encoder and not model_args.model_name_or_path:
        raise ValueError(
            "compare_frozen_encoder needs a pretrained model_name_or_path: a new random encoder has no embeddings worth a baseline"
        )
    splits, label_space = load_patent_splits(data_args, training_args.output_dir, training_args)
    logger.info("data: %s; %r", {name: len(rows) for name, rows in splits.items()}, label_space)
    logger.info(
        "\n%s",
        format_label_statistics(
            label_statistics(splits["train"]["labels"]), title="Label statistics of the training split"
        ),
    )
    tokenizer = load_or_train_tokenizer(model_args, splits["train"]["text"], training_args.output_dir, training_args)

    train_label_counts = label_counts_in_order(splits["train"], label_space)
    class_weights = None
    if model_args.class_weighting == "balanced":
        class_weights = balanced_class_weights(train_label_counts, cap=model_args.class_weight_cap)
    model = build_classifier(
        model_args,
        tokenizer,
        label_space,
        class_weights,
        label_frequencies=train_label_counts / max(len(splits["train"]), 1),
    )

    with training_args.main_process_first(desc="tokenizing"):
        tokenized = {}
        for name, rows in splits.items():
            tokenized[name], left_out = tokenize_patent_dataset(
                rows,
                tokenizer,
                label_space,
                data_args.max_length,
                data_args.preprocessing_num_workers,
                desc=f"tokenizing {name}",
            )
            if left_out:
                logger.warning(
                    "%s: %d label occurrences are outside the %d-label space and are not targets",
                    name,
                    left_out,
                    len(label_space),
                )

    collator = MultiLabelCollator(tokenizer, len(label_space))
    if training_args.packing:
        collator = use_packed_batches(model, collator)
    trainer = PatentTrainer(
        model=model,
        args=training_args,
        label_space=label_space,
        processing_class=tokenizer,
        data_collator=collator,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("validation"),
        model_card_info=model_card_info(model_args, data_args, splits),
    )
    deepspeed = (
        f", DeepSpeed ZeRO stage {trainer.accelerator.state.deepspeed_plugin.zero_stage}"
        if trainer.is_deepspeed_enabled
        else ""
    )
    logger.info(
        "training on %d process(es), %s%s", training_args.world_size, trainer.accelerator.device.type, deepspeed
    )
    last_checkpoint = last_complete_checkpoint(training_args.output_dir)
    if last_checkpoint:
        logger.info("resuming from %s", last_checkpoint)
    if training_args.should_save:
        dump_recipe_args(
            os.path.join(training_args.output_dir, "run_config.json"), model_args, data_args, training_args
        )

    train_result = trainer.train(resume_from_checkpoint=last_checkpoint)
    if training_args.world_size > 1:
        # Printed by every rank: data-parallel replicas must end with the same weights.
        print(
            f"rank {training_args.process_index} of {training_args.world_size}: "
            f"parameter sha256 {parameter_checksum(trainer.accelerator.unwrap_model(trainer.model))}",
            flush=True,
        )
    metrics = {f"train_{k}" if not k.startswith("train_") else k: v for k, v in train_result.metrics.items()}
    if "validation" in tokenized and len(tokenized["validation"]):
        # Validation predictions tune the decision thresholds that `predict --threshold auto` uses; the test
        # split is then also scored at them (test_micro_f1_tuned, test_macro_f1_tuned).
        validation = trainer.predict(tokenized["validation"], metric_key_prefix="eval")
        metrics.update(validation.metrics)
        references = multi_hot(tokenized["validation"]["label_ids"], len(label_space))
        tuned = tune_thresholds(
            1 / (1 + np.exp(-validation.predictions.astype(np.float64))),
            references,
            training_args.threshold_min_positives,
        )
        metrics["eval_threshold_global"] = tuned["global"]
        trainer.set_tuned_thresholds(tuned["per_label"])
        if training_args.should_save:
            save_thresholds(
                training_args.output_dir,
                tuned,
                label_space.codes,
                len(references),
                training_args.threshold_min_positives,
            )
    if "test" in tokenized and len(tokenized["test"]):
        metrics.update(trainer.evaluate(tokenized["test"], metric_key_prefix="test"))
    if data_args.knn_evidence and training_args.should_save:
        metrics.update(evaluate_knn_evidence(trainer, tokenizer, label_space, splits, data_args, training_args))

    if model_args.use_lora:
        # A merged model is a plain checkpoint: loadable without peft, by AutoModel and remote code.
        trainer.model = trainer.model.merge_and_unload()
    if training_args.should_save:
        # Before the final save: the model card written with the model reports these figures.
        save_metrics_json(os.path.join(training_args.output_dir, RESULTS_FILE), metrics)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()

    if data_args.compare_baselines and "test" in splits and len(splits["test"]) and training_args.should_save:
        frozen_encoder = model_args.model_name_or_path if data_args.compare_frozen_encoder else None
        print(
            compare_with_baselines(
                metrics,
                splits["train"],
                splits["test"],
                label_space,
                training_args.top_k,
                frozen_encoder=frozen_encoder,
                max_length=data_args.max_length,
            )
        )
    if training_args.push_to_hub:
        trainer.push_to_hub()
    # A DeepSpeed engine holds the run's process groups until it is released (see process_group.end_process_group).
    trainer.accelerator.free_memory()
    return metrics


def evaluate_knn_evidence(trainer, tokenizer, label_space, splits, data_args, training_args) -> dict:
    """``knn_evidence``: the training split indexed with the trained model's embeddings, the kNN vote and its weight
    tuned on validation and saved (``knn_scores.json``), the three scorers compared on test (printed, and returned
    as ``test_knn_*`` / ``test_fused_*`` metrics)."""
    if not len(splits.get("validation") or []):
        raise ValueError("knn_evidence needs a validation split to tune the kNN vote on: set validation_fraction")
    # The index needs faiss, an optional extra: imported when asked for, a one-line error naming the extra.
    from modernpatent_hf.evidence import COMPARED_METRICS, LabelledTexts, evaluate_evidence, format_comparison
    from modernpatent_hf.knn_scores import save_knn_scoring
    from modernpatent_hf.predictor import PatentClassifier

    model = trainer.accelerator.unwrap_model(trainer.model)
    classifier = PatentClassifier(model, tokenizer, label_space, data_args.max_length)
    test = LabelledTexts.from_records(splits["test"]) if len(splits.get("test") or []) else None
    result = evaluate_evidence(
        classifier,
        LabelledTexts.from_records(splits["train"]),
        LabelledTexts.from_records(splits["validation"]),
        test,
        work_dir=training_args.output_dir,
    )
    model.train()  # PatentClassifier put it in eval mode
    save_knn_scoring(training_args.output_dir, result["tuned"].scoring)
    comparison = result["comparison"]
    if comparison is None:
        return {}
    print(format_comparison(comparison))
    return {
        f"test_{scorer}_{metric}": comparison[scorer][metric]
        for scorer in ("knn", "fused")
        for metric in COMPARED_METRICS
    }


def cli(argv: Optional[List[str]] = None) -> None:
    """Run :func:`main`; a problem with the user's configuration or data ends the process with one line and status 2."""
    run_with_one_line_errors(main, "finetune", argv)


if __name__ == "__main__":
    cli()
