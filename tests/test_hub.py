"""Hub readiness: the model card the Hub reads, and what a push uploads (no network: a recording HfApi double)."""

import json
import threading

import pytest
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard, RepoUrl

from modernpatent_hf.configs import DataArguments, ModelArguments, PatentTrainingArguments
from modernpatent_hf.cpc import CpcLabelSpace
from modernpatent_hf.model_card import (
    MODEL_CARD_TAGS,
    MODEL_INDEX_KEYS,
    ModelCardInfo,
    build_model_card,
    model_card_info,
)
from modernpatent_hf.scripts.finetune import main as finetune_main

from testing_utils import tiny_finetune_args

REPO_ID = "tester/tiny-cpc"
# What every push of a model folder holds besides the remote code (*.py): weights and config, tokenizer,
# label space and the card; the final push adds the tuned thresholds and the results.
CHECKPOINT_FILES = {
    "README.md",
    "config.json",
    "label_space.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}
FINAL_FILES = CHECKPOINT_FILES | {"all_results.json", "thresholds.json"}
REMOTE_CODE = {"configuration_modernpatent.py", "modeling_modernpatent.py"}


class HubRecorder:
    """Stands in for the Hub: records the repositories created and the files of every commit, uploads nothing.

    ``HfApi.upload_folder`` itself runs (its pattern filtering is what is tested) down to ``create_commit``.
    """

    def __init__(self):
        self.repos, self.commits, self.lock = [], [], threading.Lock()

    def install(self, monkeypatch):
        recorder = self

        def create_repo(api, repo_id, **kwargs):
            recorder.repos.append(repo_id)
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_commit(api, repo_id, operations, *, commit_message, **kwargs):
            paths = sorted(op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd))
            with recorder.lock:
                recorder.commits.append({"repo_id": repo_id, "message": commit_message, "paths": paths})
            return CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}",
                commit_message=commit_message,
                commit_description="",
                oid="0" * 40,
            )

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "_validate_yaml", lambda api, content, **kwargs: None)  # a Hub request
        # The single-commit upload path (with hf_xet, upload_folder streams through the Xet pipeline instead).
        monkeypatch.setattr("huggingface_hub.hf_api.is_xet_available", lambda: False)


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory):
    """A tiny demo fine-tuning run with push_to_hub (hub_strategy checkpoint) against the recorder."""
    output_dir = tmp_path_factory.mktemp("pushed")
    recorder = HubRecorder()
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder.install(monkeypatch)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_used")
        metrics = finetune_main(
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
                "--report_to",
                "tensorboard",
                "--compare_baselines",
                "false",
                "--push_to_hub",
                "true",
                "--hub_model_id",
                REPO_ID,
                "--hub_strategy",
                "checkpoint",
                "--hub_always_push",
                "true",
            )
        )
    return output_dir, metrics, recorder


def test_card_has_the_hub_metadata_and_the_model_index_equals_all_results(pushed_run):
    output_dir, _, _ = pushed_run
    results = json.loads((output_dir / "all_results.json").read_text())
    card = ModelCard.load(output_dir / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.language == "en" and data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert set(MODEL_CARD_TAGS) <= set(data.tags)
    assert data.metrics == ["f1", "precision", "recall"]
    assert data.base_model is None, "a new random model has no base model"
    assert data.model_name == REPO_ID.split("/")[-1]
    reported = {result.metric_type: result for result in data.eval_results}
    assert set(reported) == set(MODEL_INDEX_KEYS)
    for key, result in reported.items():
        assert result.task_type == "text-classification" and result.dataset_split == "test"
        assert result.metric_value == results[f"test_{key}"], key
    # The text: what the model does, its limits, the data's years, the label space and how to load it.
    label_space = CpcLabelSpace.load(output_dir)
    assert f"{len(label_space)} subclasses" in card.text
    for phrase in (
        "## Intended use and limits",
        "synthetic demo corpus",
        "train 2010-2018",
        "CpcLabelSpace.load(PATH)",
        "trust_remote_code=True",
        "is a stock `ModernBertForSequenceClassification` checkpoint",
        "| F1@1 |",
    ):
        assert phrase in card.text, phrase
    assert "More information needed" not in card.text and "unknown dataset" not in card.text


def test_every_checkpoint_card_is_the_same_kind_of_card(pushed_run):
    output_dir, _, _ = pushed_run
    checkpoints = sorted(output_dir.glob("checkpoint-*"))
    assert checkpoints
    for checkpoint in checkpoints:
        data = ModelCard.load(checkpoint / "README.md").data
        assert data.license == "apache-2.0" and data.pipeline_tag == "text-classification"
        # During training the figures are the latest validation: the model-index says so.
        assert {result.dataset_split for result in data.eval_results} == {"validation"}


def test_push_uploads_only_the_model_folders_published_files(pushed_run):
    output_dir, _, recorder = pushed_run
    assert set(recorder.repos) == {REPO_ID}
    remote_code = {path.name for path in output_dir.glob("*.py")}
    assert REMOTE_CODE <= remote_code
    # The run left data, TensorBoard runs and checkpoints in its output directory: none of it is in the model pushes.
    assert (output_dir / "data").is_dir() and (output_dir / "runs").is_dir() and list(output_dir.glob("checkpoint-*"))
    # The recipe's final save_model pushes ("Model save", as the Trainer's does with push_to_hub), then its push_to_hub.
    final = [commit for commit in recorder.commits if commit["message"] in ("Model save", "End of training")]
    assert [commit["message"] for commit in final] == ["Model save", "End of training"]
    for commit in final:
        assert commit["repo_id"] == REPO_ID and set(commit["paths"]) == FINAL_FILES | remote_code, commit["message"]
    during = [commit for commit in recorder.commits if commit["message"].startswith("Training in progress")]
    model_pushes = [commit for commit in during if not commit["message"].endswith(", checkpoint")]
    assert [commit["message"] for commit in model_pushes] == [
        "Training in progress, step 3",
        "Training in progress, step 6",
    ]
    for commit in model_pushes:
        assert set(commit["paths"]) == CHECKPOINT_FILES | remote_code, commit["message"]
    # hub_strategy checkpoint asks for the resumable checkpoint too: it goes whole to last-checkpoint/.
    checkpoint_pushes = [commit for commit in during if commit["message"].endswith(", checkpoint")]
    assert len(checkpoint_pushes) == 2
    for commit in checkpoint_pushes:
        assert all(path.startswith("last-checkpoint/") for path in commit["paths"])
        assert {"last-checkpoint/optimizer.pt", "last-checkpoint/trainer_state.json"} <= set(commit["paths"])
    assert len(recorder.commits) == len(final) + len(during)


def test_card_names_a_hub_base_model_and_the_hub_dataset_the_data_came_from(pushed_run, tmp_path):
    output_dir, _, _ = pushed_run
    model_args = ModelArguments(model_name_or_path="answerdotai/ModernBERT-base")
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "README.md").write_text("---\n---\n")
    (prepared / "label_space.json").write_text((output_dir / "label_space.json").read_text())
    (prepared / "stats.json").write_text(
        json.dumps({"inputs": ["MalavP/USPTO-3M"], "text_fields": "default of each format"})
    )
    info = model_card_info(model_args, DataArguments(dataset_name_or_path=str(prepared), max_length=512), {})
    assert info.base_model == "answerdotai/ModernBERT-base" and info.hub_datasets == ["MalavP/USPTO-3M"]
    assert info.text_fields == ["first_claim"]

    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    args = PatentTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    metrics = json.loads((output_dir / "all_results.json").read_text())
    card = build_model_card(model, CpcLabelSpace.load(output_dir), args, metrics, info)
    assert card.data.base_model == "answerdotai/ModernBERT-base" and card.data.datasets == ["MalavP/USPTO-3M"]
    assert {result.dataset_type for result in card.data.eval_results} == {"MalavP/USPTO-3M"}
    assert "Fine-tuned from `answerdotai/ModernBERT-base`" in card.text and "first claim" in card.text
    # A local starting checkpoint is named in the text but is no Hub base_model.
    local = build_model_card(
        model, CpcLabelSpace.load(output_dir), args, metrics, ModelCardInfo(base_model=str(output_dir))
    )
    assert local.data.base_model is None and str(output_dir) in local.text


def test_create_model_card_arguments_stay_in_every_later_card(pushed_run, tmp_path):
    """Trainer.push_to_hub(**kwargs) passes license, finetuned_from, dataset_tags and tags to create_model_card."""
    output_dir, _, _ = pushed_run
    from transformers import AutoModelForSequenceClassification

    from modernpatent_hf.trainer import PatentTrainer

    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    args = PatentTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    trainer = PatentTrainer(model=model, args=args, label_space=CpcLabelSpace.load(output_dir))
    trainer.create_model_card(
        license="mit", finetuned_from="answerdotai/ModernBERT-base", dataset_tags="MalavP/USPTO-3M", tags=["demo"]
    )
    written = ModelCard.load(tmp_path / "out" / "README.md").data
    assert (written.license, written.base_model, written.datasets) == (
        "mit",
        "answerdotai/ModernBERT-base",
        ["MalavP/USPTO-3M"],
    )
    assert "demo" in written.tags and set(MODEL_CARD_TAGS) <= set(written.tags)
    trainer.save_model()
    saved = ModelCard.load(tmp_path / "out" / "README.md").data
    assert (saved.license, saved.base_model, saved.datasets) == (
        "mit",
        "answerdotai/ModernBERT-base",
        ["MalavP/USPTO-3M"],
    )
    assert "demo" in saved.tags
