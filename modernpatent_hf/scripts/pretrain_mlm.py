"""Continue masked-language-model pretraining of ModernBERT (or BERT) on patent text.

    accelerate launch -m modernpatent_hf.scripts.pretrain_mlm --config recipes/tiny-modernbert/pretrain/config_demo.yaml [--field value ...]
    accelerate launch recipes/pretrain_mlm.py --config recipes/tiny-modernbert/pretrain/config_demo.yaml      # the same, from a clone

One YAML per run (recipes/<model>/pretrain/config_<variant>.yaml); command-line values override it. The data
are the training split of the same source fine-tuning reads (``dataset_name_or_path``), so a pretraining run
with the fine-tuning run's split settings never sees its validation or test patents. The output directory ends
with a masked-LM checkpoint (config, safetensors weights, tokenizer) that ``recipes/finetune.py`` takes as
``model_name_or_path`` (with ``tokenizer_name_or_path`` the same directory), and the evaluation loss and
perplexity as JSON. A run relaunched with the same command resumes from the last checkpoint in its output
directory.
"""

import logging
import os
from typing import Dict, List, Optional

import transformers

from modernpatent_hf.checkpoints import last_complete_checkpoint, save_metrics_json
from modernpatent_hf.configs import DataArguments, ModelArguments, PretrainArguments, PretrainTrainingArguments
from modernpatent_hf.data.loading import load_patent_splits
from modernpatent_hf.packing import use_packed_batches
from modernpatent_hf.pretraining import MLMTrainer, SeededMLMCollator, build_masked_lm, tokenize_for_mlm
from modernpatent_hf.recipe_parser import dump_recipe_args, parse_recipe_args
from modernpatent_hf.scripts import run_with_one_line_errors
from modernpatent_hf.tokenization import load_or_train_tokenizer

logger = logging.getLogger("pretrain_mlm")


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    model_args, data_args, pretrain_args, training_args = parse_recipe_args(
        (ModelArguments, DataArguments, PretrainArguments, PretrainTrainingArguments), argv, description=__doc__
    )
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(logging.WARNING)
    os.makedirs(training_args.output_dir, exist_ok=True)
    # Before anything random: a new model's initial weights must be the same in every run with this seed.
    transformers.set_seed(training_args.seed)

    splits, _ = load_patent_splits(data_args, training_args.output_dir, training_args)
    logger.info("data: %s", {name: len(rows) for name, rows in splits.items()})
    tokenizer = load_or_train_tokenizer(model_args, splits["train"]["text"], training_args.output_dir, training_args)
    model = build_masked_lm(model_args, tokenizer)
    if data_args.max_length > model.config.max_position_embeddings:
        raise ValueError(
            f"max_length {data_args.max_length} exceeds the model's max_position_embeddings "
            f"{model.config.max_position_embeddings}: lower max_length"
        )

    with training_args.main_process_first(desc="tokenizing"):
        tokenized = {
            name: tokenize_for_mlm(
                rows,
                tokenizer,
                data_args.max_length,
                pretrain_args.packing,
                data_args.preprocessing_num_workers,
                desc=f"tokenizing {name}",
            )
            for name, rows in splits.items()
        }
    logger.info(
        "sequences: %s (packing: %s)", {name: len(rows) for name, rows in tokenized.items()}, pretrain_args.packing
    )
    collator = SeededMLMCollator(
        tokenizer,
        mlm_probability=pretrain_args.mlm_probability,
        mask_replace_prob=pretrain_args.mask_replace_prob,
        random_replace_prob=pretrain_args.random_replace_prob,
        seed=training_args.seed,
    )
    if pretrain_args.padding_free:
        collator = use_packed_batches(model, collator, token_labels=True)
    trainer = MLMTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        processing_class=tokenizer,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("validation"),
    )
    last_checkpoint = last_complete_checkpoint(training_args.output_dir)
    if last_checkpoint:
        logger.info("resuming from %s", last_checkpoint)
    if training_args.should_save:
        dump_recipe_args(
            os.path.join(training_args.output_dir, "run_config.json"),
            model_args,
            data_args,
            pretrain_args,
            training_args,
        )

    train_result = trainer.train(resume_from_checkpoint=last_checkpoint)
    metrics = {f"train_{k}" if not k.startswith("train_") else k: v for k, v in train_result.metrics.items()}
    for name, prefix in (("validation", "eval"), ("test", "test")):
        if name in tokenized and len(tokenized[name]):
            metrics.update(trainer.evaluate(tokenized[name], metric_key_prefix=prefix))

    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    if training_args.should_save:
        save_metrics_json(os.path.join(training_args.output_dir, "all_results.json"), metrics)
        print(
            "\n".join(
                f"{key}: {metrics[key]:.4f}" for key in sorted(metrics) if key.endswith(("_loss", "_perplexity"))
            )
        )
    if training_args.push_to_hub:
        trainer.push_to_hub()
    # A DeepSpeed engine holds the run's process groups until it is released (see process_group.end_process_group).
    trainer.accelerator.free_memory()
    return metrics


def cli(argv: Optional[List[str]] = None) -> None:
    """Run :func:`main`; a problem with the user's configuration or data ends the process with one line and status 2."""
    run_with_one_line_errors(main, "pretrain_mlm", argv)


if __name__ == "__main__":
    cli()
