"""MLM pretraining: masking statistics, packing, recipes/pretrain_mlm.py end to end, resume, and pretrain -> finetune."""

import importlib.util
import json
import logging
import math
import sys

import pytest
import torch

from modernpatent_hf.pretraining import SeededMLMCollator, tokenize_for_mlm

from testing_utils import DEMO_YAML, REPO_ROOT

PRETRAIN_YAML = REPO_ROOT / "recipes" / "tiny-modernbert" / "pretrain" / "config_demo.yaml"
TINY_MODEL = (
    "{hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, "
    "max_position_embeddings: 64, global_attn_every_n_layers: 1, sparse_prediction: true}"
)


def tiny_pretrain_args(output_dir, *extra):
    """Eight optimizer steps of the demo pretraining recipe on a small generated corpus, evaluated at 0, 4 and 8."""
    return [
        "--config",
        str(PRETRAIN_YAML),
        "--output_dir",
        str(output_dir),
        "--synthetic_num_records",
        "400",
        "--model_config",
        TINY_MODEL,
        "--tokenizer_vocab_size",
        "600",
        "--max_length",
        "64",
        "--max_steps",
        "8",
        "--per_device_train_batch_size",
        "16",
        "--per_device_eval_batch_size",
        "32",
        "--learning_rate",
        "5e-3",
        "--warmup_steps",
        "0",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "4",
        "--eval_on_start",
        "true",
        "--save_strategy",
        "steps",
        "--save_steps",
        "4",
        "--report_to",
        "none",
        "--logging_steps",
        "2",
        *extra,
    ]


def recipe(name):
    """A recipe script as a module, to run its ``main(argv)`` in this process (no second import of torch)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def texts():
    from modernpatent_hf.data.synthetic import generate_synthetic_records

    return [record["text"] for record in generate_synthetic_records(300, seed=3)]


@pytest.fixture(scope="module")
def tokenizer(texts):
    from modernpatent_hf.tokenization import train_patent_tokenizer

    return train_patent_tokenizer(texts, vocab_size=600)


@pytest.fixture(scope="module")
def encoded(texts, tokenizer):
    from datasets import Dataset

    return tokenize_for_mlm(
        Dataset.from_dict({"text": texts, "id": list(range(len(texts)))}), tokenizer, max_length=128
    )


def test_collator_masks_30_percent_of_ordinary_tokens_80_10_10(encoded, tokenizer):
    collator = SeededMLMCollator(
        tokenizer, mlm_probability=0.30, mask_replace_prob=0.8, random_replace_prob=0.1, seed=1
    )
    special_ids = torch.tensor(sorted(tokenizer.all_special_ids))
    counts = {"ordinary": 0, "selected": 0, "mask": 0, "unchanged": 0, "special_selected": 0}
    for start in range(0, len(encoded), 50):
        features = [encoded[i] for i in range(start, min(start + 50, len(encoded)))]
        original = tokenizer.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")["input_ids"]
        batch = collator(features)
        selected = batch["labels"] != -100
        ordinary = ~torch.isin(original, special_ids)  # [CLS], [SEP] and padding are never selected
        assert torch.equal(batch["labels"][selected], original[selected])
        counts["ordinary"] += int(ordinary.sum())
        counts["selected"] += int(selected.sum())
        counts["special_selected"] += int((selected & ~ordinary).sum())
        counts["mask"] += int((batch["input_ids"][selected] == tokenizer.mask_token_id).sum())
        counts["unchanged"] += int((batch["input_ids"][selected] == original[selected]).sum())
    assert counts["ordinary"] > 10000 and counts["special_selected"] == 0
    assert counts["selected"] / counts["ordinary"] == pytest.approx(0.30, abs=0.015)
    mask, unchanged = counts["mask"] / counts["selected"], counts["unchanged"] / counts["selected"]
    # A random replacement draws the original token 1 time in len(tokenizer).
    assert mask == pytest.approx(0.8, abs=0.02)
    assert unchanged == pytest.approx(0.1 + 0.1 / len(tokenizer), abs=0.02)
    assert 1 - mask - unchanged == pytest.approx(0.1 * (1 - 1 / len(tokenizer)), abs=0.02)


def test_masks_depend_on_the_batch_and_seed_not_on_earlier_batches(encoded, tokenizer):
    first, second = [encoded[i] for i in range(8)], [encoded[i] for i in range(8, 16)]
    collator = SeededMLMCollator(tokenizer, mlm_probability=0.3, seed=5)
    alone = collator(second)
    collator(first)
    after_another = collator(second)
    assert torch.equal(alone["input_ids"], after_another["input_ids"]) and torch.equal(
        alone["labels"], after_another["labels"]
    )
    other_seed = SeededMLMCollator(tokenizer, mlm_probability=0.3, seed=6)(second)
    assert not torch.equal(other_seed["labels"], alone["labels"])


def test_collator_pads_to_a_multiple_never_selects_padding_and_refuses_bad_probabilities(encoded, tokenizer):
    features = [
        {key: encoded[i][key][:length] for key in ("input_ids", "attention_mask", "special_tokens_mask")}
        for i, length in enumerate((10, 37, 20, 5, 33, 12))
    ]
    batch = SeededMLMCollator(tokenizer, mlm_probability=0.9, seed=0, pad_to_multiple_of=16)(features)
    lengths = [len(f["input_ids"]) for f in features]
    assert batch["input_ids"].shape == (6, -(-max(lengths) // 16) * 16) == batch["labels"].shape
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    padding = batch["attention_mask"] == 0
    assert padding.any() and (batch["labels"][padding] == -100).all()
    assert (batch["input_ids"][padding] == tokenizer.pad_token_id).all()
    for bad in (
        {"mlm_probability": 0.0},
        {"mask_replace_prob": 0.8, "random_replace_prob": 0.3},
        {"random_replace_prob": -0.1},
    ):
        with pytest.raises(ValueError):
            SeededMLMCollator(tokenizer, **bad)


def test_packing_fills_blocks_and_loses_no_token(texts, tokenizer):
    from datasets import Dataset

    max_length = 64
    packed = tokenize_for_mlm(Dataset.from_dict({"text": texts}), tokenizer, max_length=max_length, packing=True)
    blocks = packed["input_ids"]
    assert all(len(block) == max_length for block in blocks[:-1]) and 1 < len(blocks[-1]) <= max_length
    assert all(block[0] == tokenizer.cls_token_id for block in blocks)
    documents = tokenizer(texts, add_special_tokens=False)["input_ids"]
    expected_stream = [token for ids in documents for token in [*ids, tokenizer.sep_token_id]]
    assert [token for block in blocks for token in block[1:]] == expected_stream
    special = [[int(t in (tokenizer.cls_token_id, tokenizer.sep_token_id)) for t in block] for block in blocks]
    assert packed["special_tokens_mask"] == special
    # Without packing: one truncated [CLS] ... [SEP] sequence per document.
    single = tokenize_for_mlm(Dataset.from_dict({"text": texts}), tokenizer, max_length=max_length)
    assert len(single) == len(texts)
    assert all(
        len(ids) <= max_length and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        for ids in single["input_ids"]
    )
    assert any(len(ids) == max_length for ids in single["input_ids"]), "no document was long enough to test truncation"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("pretrain") / "uninterrupted"
    return output_dir, recipe("pretrain_mlm").main(tiny_pretrain_args(output_dir))


def test_run_lowers_the_eval_loss_reports_perplexity_and_saves_a_masked_lm(pretrained):
    output_dir, returned = pretrained
    state = json.loads((output_dir / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    # During training at steps 0, 4 and 8, then the recipe's final evaluation.
    assert [entry["step"] for entry in evaluations] == [0, 4, 8, 8]
    assert evaluations[2]["eval_loss"] < evaluations[0]["eval_loss"] - 0.05
    assert all(
        entry["eval_perplexity"] == pytest.approx(math.exp(entry["eval_loss"]), rel=1e-6) for entry in evaluations
    )
    metrics = json.loads((output_dir / "all_results.json").read_text())
    assert metrics == pytest.approx(returned)
    for prefix in ("eval", "test"):
        assert metrics[f"{prefix}_perplexity"] == pytest.approx(math.exp(metrics[f"{prefix}_loss"]), rel=1e-6)
    for name in (
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "run_config.json",
        "checkpoint-4/trainer_state.json",
    ):
        assert (output_dir / name).is_file(), name

    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(output_dir)
    assert type(model).__name__ == "ModernBertForMaskedLM" and model.config.hidden_size == 32


def loss_history(output_dir):
    """(step, key, loss) of the logged training, evaluation and test losses, each repeated entry once.

    train_loss (the mean over the steps one process ran) is left out. A resumed run evaluates again
    on start (eval_on_start) and the recipe evaluates after the last step's evaluation: same step, same loss.
    """
    log_history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    entries = [
        (entry["step"], key, round(entry[key], 5))
        for entry in log_history
        for key in ("loss", "eval_loss", "test_loss")
        if key in entry
    ]
    return list(dict.fromkeys(entries))


# Right after the first checkpoint is complete, and while the last one is half written (weights there,
# trainer_state.json, written last, not yet): the rerun resumes from a complete checkpoint only. The
# second kill may land after the last checkpoint is complete; the rerun must end alike then too.
@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["checkpoint-4/trainer_state.json", "checkpoint-8/model.safetensors"])
def test_killed_run_resumes_and_ends_like_an_uninterrupted_one(
    pretrained, tmp_path, kill_when_written, newest_complete_checkpoint, caplog, kill_when
):
    """SIGKILL at the kill point, relaunch the same command: the run of the fixture, to float tolerance."""
    from safetensors.torch import load_file

    uninterrupted, _ = pretrained
    interrupted = tmp_path / "interrupted"
    kill_when_written(
        [sys.executable, str(REPO_ROOT / "recipes" / "pretrain_mlm.py"), *tiny_pretrain_args(interrupted)],
        interrupted / kill_when,
    )
    complete = newest_complete_checkpoint(interrupted)
    with caplog.at_level(logging.INFO, logger="pretrain_mlm"):
        recipe("pretrain_mlm").main(tiny_pretrain_args(interrupted))
    assert f"resuming from {complete}\n" in caplog.text
    expected, actual = (load_file(run / "model.safetensors") for run in (uninterrupted, interrupted))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.allclose(actual[name], expected[name], atol=1e-5), name
    expected, actual = loss_history(uninterrupted), loss_history(interrupted)
    assert len(expected) == 8 and [entry[:2] for entry in actual] == [entry[:2] for entry in expected]
    assert [entry[2] for entry in actual] == pytest.approx([entry[2] for entry in expected], abs=1e-5)


def test_relaunch_from_a_checkpoint_at_max_steps_trains_no_further_step(tmp_path, caplog):
    """A job killed after its last checkpoint, before its final save: the rerun only evaluates and saves.

    With a constant learning rate, a step past max_steps (which transformers 5.x would run) changes the weights.
    """
    import shutil

    from safetensors.torch import load_file

    args = ("--max_steps", "4", "--lr_scheduler_type", "constant", "--eval_on_start", "false")
    finished, relaunched = tmp_path / "finished", tmp_path / "relaunched"
    recipe("pretrain_mlm").main(tiny_pretrain_args(finished, *args))
    shutil.copytree(finished / "checkpoint-4", relaunched / "checkpoint-4")
    with caplog.at_level(logging.INFO):
        metrics = recipe("pretrain_mlm").main(tiny_pretrain_args(relaunched, *args))
    assert "is at step 4 of 4: nothing left to train" in caplog.text
    expected, actual = (
        load_file(finished / "checkpoint-4" / "model.safetensors"),
        load_file(relaunched / "model.safetensors"),
    )
    assert expected.keys() == actual.keys() and all(torch.equal(actual[name], expected[name]) for name in expected)
    state = json.loads((relaunched / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and max(entry["step"] for entry in state["log_history"]) == 4
    # This call ran no step: no training loss to report, rather than a loss of 0.
    assert math.isnan(metrics["train_loss"])
    assert metrics["eval_loss"] == pytest.approx(
        json.loads((finished / "all_results.json").read_text())["eval_loss"], abs=1e-5
    )


def test_finetuning_from_the_pretrained_checkpoint_initializes_only_the_classifier(pretrained, tmp_path):
    """Learning rate 0: the fine-tuned weights are the loaded ones, so every tensor shows where it came from."""
    from safetensors.torch import load_file

    pretrain_dir, _ = pretrained
    finetune_dir = tmp_path / "finetune"
    recipe("finetune").main(
        [
            "--config",
            str(DEMO_YAML),
            "--output_dir",
            str(finetune_dir),
            "--model_name_or_path",
            str(pretrain_dir),
            "--tokenizer_name_or_path",
            str(pretrain_dir),
            "--synthetic_num_records",
            "400",
            "--max_length",
            "64",
            "--max_steps",
            "2",
            "--learning_rate",
            "0",
            "--warmup_steps",
            "0",
            "--per_device_train_batch_size",
            "16",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--compare_baselines",
            "false",
        ]
    )
    pretrained_weights, finetuned = (
        load_file(pretrain_dir / "model.safetensors"),
        load_file(finetune_dir / "model.safetensors"),
    )
    assert sorted(set(finetuned) - set(pretrained_weights)) == ["classifier.bias", "classifier.weight"]
    encoder = [name for name in pretrained_weights if name.startswith(("model.", "head."))]
    assert len(encoder) > 10 and set(encoder) <= set(finetuned)
    for name in encoder:
        assert torch.equal(finetuned[name], pretrained_weights[name]), name
    assert (finetune_dir / "tokenizer.json").read_text() == (pretrain_dir / "tokenizer.json").read_text()
    # The classifier has no masked-LM head: MLM pretraining cannot continue it.
    from transformers import AutoTokenizer

    from modernpatent_hf.configs import ModelArguments
    from modernpatent_hf.pretraining import build_masked_lm

    with pytest.raises(
        ValueError, match="is a patent classifier checkpoint: MLM pretraining continues a ModernBERT or BERT encoder"
    ):
        build_masked_lm(
            ModelArguments(model_name_or_path=str(finetune_dir)), AutoTokenizer.from_pretrained(finetune_dir)
        )


def test_every_pretraining_yaml_parses():
    from modernpatent_hf.configs import (
        DataArguments,
        ModelArguments,
        PretrainArguments,
        PretrainTrainingArguments,
    )
    from modernpatent_hf.recipe_parser import parse_recipe_args

    paths = sorted((REPO_ROOT / "recipes").glob("*/pretrain/config_*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        # bf16 needs a GPU; everything else must parse here exactly as written.
        _, _, pretrain_args, training_args = parse_recipe_args(
            (ModelArguments, DataArguments, PretrainArguments, PretrainTrainingArguments),
            ["--config", str(path), "--bf16", "false"],
        )
        # ModernBERT was pretrained masking 30 % of tokens; the BERT lineage (all-MiniLM-L6-v2) 15 %.
        expected = 0.15 if path.parts[-3] == "all-minilm-l6-v2" else 0.30
        assert pretrain_args.mlm_probability == pytest.approx(expected), path
        assert training_args.output_dir


def test_continuing_a_checkpoint_loads_its_weights(pretrained):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from modernpatent_hf.configs import ModelArguments
    from modernpatent_hf.pretraining import build_masked_lm

    output_dir, _ = pretrained
    model = build_masked_lm(
        ModelArguments(model_name_or_path=str(output_dir)), AutoTokenizer.from_pretrained(output_dir)
    )
    state = model.state_dict()
    saved = load_file(output_dir / "model.safetensors")
    assert len(saved) > 10 and all(torch.equal(state[name], tensor) for name, tensor in saved.items())


def test_max_length_beyond_the_model_positions_is_an_error_that_says_what_to_do(tmp_path):
    with pytest.raises(
        ValueError, match="max_length 100 exceeds the model's max_position_embeddings 64: lower max_length"
    ):
        recipe("pretrain_mlm").main(
            tiny_pretrain_args(tmp_path, "--max_length", "100", "--synthetic_num_records", "100")
        )
