"""recipes/finetune.py end to end on tiny models, its config parsing, and its errors."""

import json
import subprocess
import sys

import pytest

from modernpatent_hf.configs import DataArguments, ModelArguments, PatentTrainingArguments
from modernpatent_hf.recipe_parser import parse_recipe_args

from testing_utils import DEMO_YAML, REPO_ROOT, tiny_finetune_args

ARGUMENT_TYPES = (ModelArguments, DataArguments, PatentTrainingArguments)


def error_line(result):
    """The recipe's one-line error: the last stderr line, with no traceback before it."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("finetune: error: ")
    return last


def run_recipe(args, check=True):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "recipes" / "finetune.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"finetune failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def test_yaml_values_are_typed_and_overridden_by_the_command_line():
    model_args, data_args, training_args = parse_recipe_args(
        ARGUMENT_TYPES,
        [
            "--config",
            str(DEMO_YAML),
            "--learning_rate",
            "3e-4",
            "--top_k",
            "1",
            "3",
            "--model_config",
            "{hidden_size: 48}",
        ],
    )
    assert training_args.learning_rate == pytest.approx(3e-4)
    assert training_args.top_k == [1, 3]
    assert model_args.model_config == {"hidden_size": 48}
    assert data_args.dataset_name_or_path == "synthetic"
    assert training_args.metric_for_best_model == "f1@1"
    assert training_args.train_sampling_strategy == "group_by_length"


def test_every_recipe_yaml_parses(tmp_path):
    paths = sorted((REPO_ROOT / "recipes").glob("*/finetune/config_*.yaml"))
    assert len(paths) >= 7
    for path in paths:
        # bf16 needs a GPU; everything else must parse here exactly as written.
        _, _, training_args = parse_recipe_args(ARGUMENT_TYPES, ["--config", str(path), "--bf16", "false"])
        assert training_args.output_dir


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus_key", "1"], "unknown command-line argument"),
        (["--config", "/nonexistent/config.yaml"], "does not exist"),
    ],
)
def test_bad_arguments_are_named(args, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        parse_recipe_args(ARGUMENT_TYPES, args)


def test_unknown_yaml_key_is_an_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(DEMO_YAML.read_text() + "\nlearnin_rate: 0.1\n")
    with pytest.raises(ValueError, match="learnin_rate"):
        parse_recipe_args(ARGUMENT_TYPES, ["--config", str(config)])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("finetune")
    result = run_recipe(
        tiny_finetune_args(
            output_dir,
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "3",
            "--save_strategy",
            "steps",
            "--save_steps",
            "3",
        )
    )
    return output_dir, result


def test_run_writes_a_loadable_self_describing_checkpoint(finished_run):
    output_dir, result = finished_run
    config = json.loads((output_dir / "config.json").read_text())
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert config["loss_type"] == "hierarchical"
    for name in (
        "model.safetensors",
        "tokenizer.json",
        "label_space.json",
        "README.md",
        "all_results.json",
        "configuration_modernpatent.py",
        "modeling_modernpatent.py",
    ):
        assert (output_dir / name).is_file(), name
    assert not list(output_dir.glob("pytorch_model*.bin")), "weights must be safetensors only"
    # Every checkpoint describes itself too.
    checkpoints = sorted(output_dir.glob("checkpoint-*"))
    assert checkpoints and all((c / "label_space.json").is_file() and (c / "README.md").is_file() for c in checkpoints)

    from transformers import AutoModelForSequenceClassification

    from modernpatent_hf import CpcLabelSpace

    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    label_space = CpcLabelSpace.load(output_dir)
    assert [model.config.id2label[i] for i in range(len(label_space))] == list(label_space.codes)


def test_run_reports_every_metric_and_the_baseline_table(finished_run):
    output_dir, result = finished_run
    metrics = json.loads((output_dir / "all_results.json").read_text())
    for prefix in ("eval", "test"):
        for key in (
            "f1@1",
            "precision@1",
            "recall@1",
            "recall@1_micro",
            "f1@5",
            "micro_f1",
            "macro_f1",
            "precision@1_class",
            "precision@1_section",
        ):
            assert 0.0 <= metrics[f"{prefix}_{key}"] <= 1.0, f"{prefix}_{key}"
    # Thresholds tuned on validation are saved with the model and scored on test.
    for key in ("test_micro_f1_tuned", "test_macro_f1_tuned", "eval_threshold_global"):
        assert 0.0 <= metrics[key] <= 1.0, key
    thresholds = json.loads((output_dir / "thresholds.json").read_text())
    assert set(thresholds["per_label"]) == set(json.loads((output_dir / "label_space.json").read_text())["codes"])
    # The demo table: the model beside the two reference predictors.
    assert "most frequent label" in result.stdout and "TF-IDF" in result.stdout and "this model" in result.stdout
    card = (output_dir / "README.md").read_text()
    assert "F1@1" in card and "trust_remote_code=True" in card
    # Evaluation ran during training and was logged at the checkpoints.
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert any("eval_f1@1" in entry for entry in state["log_history"])


def test_training_lowers_the_loss_and_changes_every_parameter(tmp_path):
    """Through the Trainer: every trainable tensor moves, and the training loss goes down."""
    import torch

    from modernpatent_hf.data.loading import load_patent_splits
    from modernpatent_hf.model_factory import build_classifier
    from modernpatent_hf.tokenization import load_or_train_tokenizer
    from modernpatent_hf.trainer import PatentTrainer
    from modernpatent_hf.training_data import tokenize_patent_dataset

    model_args, data_args, training_args = parse_recipe_args(
        ARGUMENT_TYPES,
        tiny_finetune_args(tmp_path, "--max_steps", "30", "--learning_rate", "3e-3", "--warmup_steps", "0"),
    )
    splits, label_space = load_patent_splits(data_args, str(tmp_path))
    tokenizer = load_or_train_tokenizer(model_args, splits["train"]["text"], str(tmp_path))
    model = build_classifier(model_args, tokenizer, label_space)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    train, _ = tokenize_patent_dataset(splits["train"], tokenizer, label_space, data_args.max_length)
    trainer = PatentTrainer(
        model=model, args=training_args, label_space=label_space, processing_class=tokenizer, train_dataset=train
    )
    trainer.train()
    unchanged = [
        name for name, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), before[name])
    ]
    assert not unchanged, f"parameters not updated by training: {unchanged}"
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 3 and losses[-1] < losses[0]


def test_lora_trains_only_adapters_head_and_classifier(tmp_path):
    from modernpatent_hf.data.loading import load_patent_splits
    from modernpatent_hf.model_factory import build_classifier
    from modernpatent_hf.tokenization import load_or_train_tokenizer

    model_args, data_args, _ = parse_recipe_args(ARGUMENT_TYPES, tiny_finetune_args(tmp_path, "--use_lora", "true"))
    splits, label_space = load_patent_splits(data_args, str(tmp_path))
    tokenizer = load_or_train_tokenizer(model_args, splits["train"]["text"], str(tmp_path))
    model = build_classifier(model_args, tokenizer, label_space)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in name for name in trainable)
    assert any(".head." in name for name in trainable) and any("classifier" in name for name in trainable)
    outside = [n for n in trainable if not ("lora_" in n or ".head." in n or "classifier" in n)]
    assert not outside, f"LoRA run trains encoder weights: {outside}"


def test_lora_run_saves_a_merged_checkpoint(tmp_path):
    run_recipe(tiny_finetune_args(tmp_path / "lora", "--use_lora", "true", "--compare_baselines", "false"))
    from transformers import AutoModelForSequenceClassification

    # Merged: plain weights that load without peft.
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "lora")
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_label_space_that_does_not_match_the_checkpoint_is_refused(finished_run, tmp_path):
    output_dir, _ = finished_run
    result = run_recipe(
        tiny_finetune_args(
            tmp_path / "mismatch",
            "--model_name_or_path",
            str(output_dir),
            "--tokenizer_name_or_path",
            str(output_dir),
            "--synthetic_num_records",
            "300",
            "--synthetic_seed",
            "7",
        ),
        check=False,
    )
    assert "label" in error_line(result)


def test_errors_are_one_line(tmp_path):
    # A tokenizer that does not exist.
    result = run_recipe(
        tiny_finetune_args(tmp_path / "a", "--tokenizer_name_or_path", str(tmp_path / "missing")), check=False
    )
    assert "tokenizer" in error_line(result) and "missing" in error_line(result)
    # An empty dataset.
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run_recipe(tiny_finetune_args(tmp_path / "b", "--dataset_name_or_path", str(empty)), check=False)
    assert "no usable record in" in error_line(result) and "empty.jsonl: it holds no records" in error_line(result)
    # An unknown config key.
    result = run_recipe(tiny_finetune_args(tmp_path / "c", "--not_a_field", "1"), check=False)
    assert "not_a_field" in error_line(result)
    # A frozen-encoder baseline of a random new encoder.
    result = run_recipe(tiny_finetune_args(tmp_path / "d", "--compare_frozen_encoder", "true"), check=False)
    assert "compare_frozen_encoder needs a pretrained model_name_or_path" in error_line(result)


def test_a_new_tokenizer_for_a_pretrained_checkpoint_is_refused(tmp_path):
    from modernpatent_hf.configs import ModelArguments
    from modernpatent_hf.tokenization import load_or_train_tokenizer

    model_args = ModelArguments(model_name_or_path=str(tmp_path / "pretrained"), tokenizer_name_or_path="train")
    with pytest.raises(ValueError, match="leave tokenizer_name_or_path unset") as error:
        load_or_train_tokenizer(model_args, ["a patent text"], str(tmp_path))
    assert "pretrained" in str(error.value)
    assert not (tmp_path / "tokenizer").exists()  # refused before any training


def test_resume_skips_a_checkpoint_that_was_not_saved_to_the_end(tmp_path):
    from modernpatent_hf.checkpoints import last_complete_checkpoint

    assert last_complete_checkpoint(str(tmp_path / "missing")) is None
    for step, state in ((2, "{}"), (10, "{}"), (12, '{"global_st'), (14, None)):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (checkpoint / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-99.tmp").mkdir()  # not a checkpoint name
    # 14 has no state file and 12 a truncated one: both were interrupted while saving.
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")


def resumable_run(output_dir):
    """Twelve steps with a checkpoint every four: checkpoint-4, -8 and -12."""
    return [
        sys.executable,
        str(REPO_ROOT / "recipes" / "finetune.py"),
        *tiny_finetune_args(
            output_dir,
            "--max_steps",
            "12",
            "--save_strategy",
            "steps",
            "--save_steps",
            "4",
            "--eval_strategy",
            "no",
            "--compare_baselines",
            "false",
            "--dataloader_num_workers",
            "0",
        ),
    ]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("finetune") / "uninterrupted"
    run_recipe(resumable_run(output_dir)[2:])
    return output_dir


# Right after a checkpoint is complete, and while one is half written (its weights are there, its
# trainer_state.json, written last, not yet): the rerun must resume from a complete checkpoint only.
@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["checkpoint-4/trainer_state.json", "checkpoint-8/model.safetensors"])
def test_killed_run_resumes_and_ends_like_an_uninterrupted_one(
    uninterrupted_run, tmp_path, kill_when_written, newest_complete_checkpoint, kill_when
):
    """SIGKILL at the kill point, relaunch the same command: same final weights and loss curve as one run."""
    import torch
    from safetensors.torch import load_file

    interrupted = tmp_path / "interrupted"
    kill_when_written(resumable_run(interrupted), interrupted / kill_when)
    complete = newest_complete_checkpoint(interrupted)
    resumed = run_recipe(resumable_run(interrupted)[2:])
    assert f"resuming from {complete}" in resumed.stderr + resumed.stdout
    # Same final weights (float tolerance), hence the same model: the metrics of a 12-step model are
    # dominated by ties between near-equal scores, the weights are not.
    expected, actual = (load_file(run / "model.safetensors") for run in (uninterrupted_run, interrupted))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.allclose(actual[name], expected[name], atol=1e-5), name
    losses = [
        [e["loss"] for e in json.loads((run / "trainer_state.json").read_text())["log_history"] if "loss" in e]
        for run in (uninterrupted_run, interrupted)
    ]
    assert len(losses[0]) == 6 and losses[1] == pytest.approx(losses[0], abs=1e-5)
