"""Helper for tests/test_distributed.py: evaluate a saved checkpoint on a prepared test split and print the metrics.

[accelerate launch ...] python tests/evaluate_checkpoint.py CHECKPOINT DATA_DIR OUTPUT_DIR
"""

import json
import sys

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from modernpatent_hf import CpcLabelSpace
from modernpatent_hf.configs import PatentTrainingArguments
from modernpatent_hf.data.records import load_dataset_dir
from modernpatent_hf.model_factory import load_pretrained_weights
from modernpatent_hf.trainer import PatentTrainer
from modernpatent_hf.training_data import tokenize_patent_dataset

checkpoint, data_dir, output_dir = sys.argv[1:4]
label_space = CpcLabelSpace.load(checkpoint)
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
test, _ = tokenize_patent_dataset(load_dataset_dir(data_dir)["test"], tokenizer, label_space, max_length=64)
args = PatentTrainingArguments(output_dir=output_dir, per_device_eval_batch_size=4, report_to="none")
trainer = PatentTrainer(
    # As the package loads a checkpoint: our class (its loss), not the stock classifier plain Auto gives.
    model=load_pretrained_weights(AutoModelForSequenceClassification, checkpoint),
    args=args,
    label_space=label_space,
    processing_class=tokenizer,
)
metrics = trainer.evaluate(test, metric_key_prefix="test")
if args.process_index == 0:
    timings = ("runtime", "per_second", "preparation_time")
    print("METRICS " + json.dumps({k: v for k, v in metrics.items() if not any(t in k for t in timings)}))
