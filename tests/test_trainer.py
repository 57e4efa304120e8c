"""The Trainer subclasses on a tiny model: a rerun at max_steps, keyword arguments, metrics at tuned thresholds."""

import json
import logging
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modernpatent_hf import CpcLabelSpace
from modernpatent_hf.configs import PatentTrainingArguments
from modernpatent_hf.eval_metrics import PatentMetricsComputer
from modernpatent_hf.trainer import PatentTrainer

from testing_utils import FOUR_CODES, random_patent_rows, stack_features, tiny_trainer_classifier

SPACE = CpcLabelSpace(FOUR_CODES)


def epoch_trainer(output_dir):
    """Four steps an epoch, six in all: the run ends inside its second epoch, logged, evaluated and saved per epoch."""
    args = PatentTrainingArguments(
        output_dir=str(output_dir),
        max_steps=6,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        logging_strategy="epoch",
        eval_strategy="epoch",
        save_strategy="epoch",
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        train_sampling_strategy="random",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    return PatentTrainer(
        model=tiny_trainer_classifier(SPACE),
        args=args,
        label_space=SPACE,
        train_dataset=random_patent_rows(16, len(SPACE), seed=0),
        eval_dataset=random_patent_rows(8, len(SPACE), seed=1),
        data_collator=stack_features,
    )


def test_a_rerun_from_a_checkpoint_at_max_steps_trains_evaluates_and_saves_nothing_more(tmp_path, caplog):
    """The rerun's pass over the rest of its epoch ends at once: no step, and no epoch-end log, evaluation or save."""
    epoch_trainer(tmp_path).train()
    last = tmp_path / "checkpoint-6"
    saved_state = (last / "trainer_state.json").read_text()
    evaluations = [entry for entry in json.loads(saved_state)["log_history"] if "eval_loss" in entry]
    assert [entry["step"] for entry in evaluations] == [4, 6]

    rerun = epoch_trainer(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = rerun.train(resume_from_checkpoint=str(last))
    assert "is at step 6 of 6: nothing left to train" in caplog.text
    expected = load_file(last / "model.safetensors")
    actual = rerun.model.state_dict()
    assert all(torch.equal(actual[name], expected[name]) for name in expected)
    assert result.global_step == 6 and rerun.state.global_step == 6
    # This call ran no step: no training loss to report, rather than a loss of 0.
    assert math.isnan(result.training_loss) and math.isnan(result.metrics["train_loss"])
    new_entries = rerun.state.log_history[len(json.loads(saved_state)["log_history"]) :]
    assert len(new_entries) == 1 and math.isnan(new_entries[0]["train_loss"])
    assert (last / "trainer_state.json").read_text() == saved_state
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]

    # A run that has steps left trains them, in the same trainer.
    result = rerun.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    assert result.global_step == 6 and not math.isnan(result.training_loss)


def test_patent_trainer_takes_keyword_arguments_only(tmp_path):
    args = PatentTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(TypeError):
        PatentTrainer(tiny_trainer_classifier(SPACE), args, label_space=SPACE)
    trainer = PatentTrainer(model=tiny_trainer_classifier(SPACE), args=args, label_space=SPACE)
    assert isinstance(trainer.compute_metrics, PatentMetricsComputer)


def test_the_metrics_at_tuned_thresholds_are_the_f1_of_those_thresholds_over_all_batches(tmp_path):
    from transformers import EvalPrediction

    from modernpatent_hf.thresholds import threshold_scores

    rng = np.random.default_rng(0)
    references = (rng.random((40, len(SPACE))) < 0.3).astype(np.float32)
    logits = rng.normal(0, 2, references.shape).astype(np.float32) + 2 * references
    thresholds = np.array([0.2, 0.4, 0.6, 0.8])
    args = PatentTrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, top_k=[1, 2], eval_threshold=0.4
    )
    trainer = PatentTrainer(model=tiny_trainer_classifier(SPACE), args=args, label_space=SPACE)
    assert trainer.compute_metrics.tuned_thresholds is None
    trainer.set_tuned_thresholds(thresholds)
    computer = trainer.compute_metrics
    assert (computer.k, computer.threshold, computer.tuned_thresholds) == ((1, 2), 0.4, thresholds)

    batches = np.array_split(np.arange(len(references)), 3)
    for number, rows in enumerate(batches):
        results = computer(
            EvalPrediction(predictions=logits[rows], label_ids=references[rows]),
            compute_result=number == len(batches) - 1,
        )
    probabilities = torch.sigmoid(torch.as_tensor(logits)).numpy()
    expected = threshold_scores(probabilities, references, thresholds)
    assert results["micro_f1_tuned"] == pytest.approx(expected["micro_f1"])
    assert results["macro_f1_tuned"] == pytest.approx(expected["macro_f1"])
    # Without tuned thresholds, no "*_tuned" figures.
    untuned = PatentMetricsComputer(SPACE)
    assert not any(key.endswith("_tuned") for key in untuned(EvalPrediction(predictions=logits, label_ids=references)))
