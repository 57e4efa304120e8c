"""No command destroys a file it did not write: each refusal is one line, exit status 2,
and leaves every file as it was. The predict cases use a tiny saved classifier."""

import json
import os
import shutil

import pytest
import torch
from transformers import ModernBertConfig

from modernpatent_hf import CpcLabelSpace, build_patent_classifier
from modernpatent_hf.cli import main
from modernpatent_hf.configs import DataArguments
from modernpatent_hf.data.loading import load_patent_splits
from modernpatent_hf.data.synthetic import write_synthetic_corpus
from modernpatent_hf.io_utils import OUTPUT_MARKER, owned_output_dir, read_output_marker
from modernpatent_hf.predict_file import predict_file
from modernpatent_hf.predictor import PatentClassifier

from testing_utils import SEED_DRILL_RECORDS, SIX_CODES, tree_snapshot, write_jsonl


def test_prepare_refuses_an_output_directory_holding_other_files(tmp_path, one_line_refusal):
    source = write_jsonl(tmp_path / "a.jsonl", SEED_DRILL_RECORDS)
    out = tmp_path / "d"
    out.mkdir()
    (out / "thesis.txt").write_text("four years of work")
    line = one_line_refusal(["prepare", str(source), "--out", str(out)])
    assert "did not write" in line and "nothing was changed" in line
    assert tree_snapshot(out) == {(out / "thesis.txt").relative_to(out): b"four years of work"}
    # Its own earlier output is replaced only with --overwrite, and never once another file was put there.
    fresh = tmp_path / "fresh"
    arguments = ["prepare", str(source), "--out", str(fresh), "--validation-fraction", "0"]
    assert main(arguments) == 0
    before = tree_snapshot(fresh)
    assert "--overwrite" in one_line_refusal(arguments)
    assert tree_snapshot(fresh) == before
    assert main([*arguments, "--overwrite"]) == 0
    (fresh / "notes.txt").write_text("mine")
    line = one_line_refusal([*arguments, "--overwrite"])
    assert "notes.txt" in line and (fresh / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("layout", ["output is the input", "input inside the output"])
def test_prepare_never_writes_over_or_around_its_input(tmp_path, one_line_refusal, layout):
    if layout == "output is the input":
        source = write_jsonl(tmp_path / "x.jsonl", SEED_DRILL_RECORDS)
        out = source
    else:
        (tmp_path / "d").mkdir()
        source = write_jsonl(tmp_path / "d" / "raw.jsonl", SEED_DRILL_RECORDS)
        (tmp_path / "d" / "neighbour.txt").write_text("keep me")
        out = tmp_path / "d"
    before = tree_snapshot(tmp_path)
    line = one_line_refusal(["prepare", str(source), "--out", str(out)])
    assert "input" in line and "nothing was changed" in line
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["model weights", "inside the model directory", "the input itself", "a directory"])
def test_predict_refuses_an_output_that_would_replace_the_model_or_an_input(
    tmp_path, one_line_refusal, tiny_checkpoint, target
):
    source = write_jsonl(tmp_path / "in.jsonl", SEED_DRILL_RECORDS)
    output = {
        "model weights": tiny_checkpoint / "model.safetensors",
        "inside the model directory": tiny_checkpoint / "predictions.jsonl",
        "the input itself": source,
        "a directory": tmp_path,
    }[target]
    before = tree_snapshot(tmp_path)
    line = one_line_refusal(
        ["predict", "--model", str(tiny_checkpoint), "--input", str(source), "--output", str(output)]
    )
    assert "--output" in line
    assert tree_snapshot(tmp_path) == before


@pytest.fixture
def corpus(tmp_path):
    directory = tmp_path / "corpus"
    write_synthetic_corpus(str(directory), n=300, seed=0, num_subclasses=20)
    return directory


def command_arguments(command, out, corpus, checkpoint):
    return {
        "synth": ["synth", "--n", "200", "--num-subclasses", "20", "--out", str(out)],
        "tokenizer": [
            "tokenizer",
            "--corpus",
            str(corpus),
            "--vocab-size",
            "300",
            "--min-frequency",
            "1",
            "--out",
            str(out),
        ],
        "report": ["report", "--data", str(corpus), "--out", str(out)],
        "export-onnx": ["export-onnx", "--model", str(checkpoint), "--out", str(out)],
    }[command]


@pytest.mark.parametrize("command", ["synth", "tokenizer", "report", "export-onnx"])
def test_every_directory_command_writes_only_a_new_empty_or_own_directory(
    tmp_path, one_line_refusal, corpus, tiny_checkpoint, command
):
    """Foreign files refuse the command (even with --overwrite); its own output needs --overwrite; inputs are never outputs."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.txt").write_text("four years of work")
    arguments = command_arguments(command, out, corpus, tiny_checkpoint)
    for extra in ([], ["--overwrite"]):
        assert "did not write" in one_line_refusal([*arguments, *extra])
        assert tree_snapshot(out) == {(out / "thesis.txt").relative_to(out): b"four years of work"}

    fresh = tmp_path / "fresh"
    arguments = command_arguments(command, fresh, corpus, tiny_checkpoint)
    assert main(arguments) == 0
    assert read_output_marker(fresh)["command"] == command
    before = tree_snapshot(fresh)
    assert "--overwrite" in one_line_refusal(arguments)
    assert tree_snapshot(fresh) == before
    assert main([*arguments, "--overwrite"]) == 0
    assert set(tree_snapshot(fresh)) == set(before)
    (fresh / "notes.txt").write_text("mine")
    assert "notes.txt" in one_line_refusal([*arguments, "--overwrite"])
    assert (fresh / "notes.txt").read_text() == "mine"

    if command != "synth":  # an --out inside an input (the corpus, the model) is refused
        inside = (tiny_checkpoint if command == "export-onnx" else corpus) / "out"
        before = tree_snapshot(tmp_path)
        assert "input" in one_line_refusal(command_arguments(command, inside, corpus, tiny_checkpoint))
        assert tree_snapshot(tmp_path) == before


def test_overwrite_leaves_no_file_of_the_earlier_output_and_a_stopped_run_leaves_it_whole(tmp_path):
    out = tmp_path / "out"
    with owned_output_dir(out, "report") as directory:
        for name in ("a.txt", "figures/b.png"):
            os.makedirs(os.path.dirname(os.path.join(directory, name)), exist_ok=True)
            open(os.path.join(directory, name), "w").close()
    assert read_output_marker(out) == {
        "command": "report",
        "complete": True,
        "files": ["a.txt", "figures/b.png"],
        "fingerprint": None,
    }
    with owned_output_dir(out, "report", overwrite=True) as directory:
        open(os.path.join(directory, "a.txt"), "w").close()
    assert sorted(os.listdir(out)) == [OUTPUT_MARKER, "a.txt"]  # b.png of the earlier options is gone
    before = tree_snapshot(out)
    with pytest.raises(KeyboardInterrupt), owned_output_dir(out, "report", overwrite=True) as directory:
        open(os.path.join(directory, "half.txt"), "w").close()
        raise KeyboardInterrupt
    assert tree_snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["out"]  # no scratch left either


def interrupt_after_first_chunk(classifier, monkeypatch):
    """Make ``classifier`` stop (as Ctrl-C does) on its second chunk: the first stays committed, resumable."""
    calls = []
    predict = classifier.predict_from_ids  # what a file run calls per chunk, on the chunk's token ids

    def stopping_predict(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict(*args, **kwargs)

    monkeypatch.setattr(classifier, "predict_from_ids", stopping_predict)


@pytest.mark.parametrize(
    "change", ["nothing (control)", "titles", "top_k", "threshold", "max_length", "thresholds file", "model"]
)
def test_a_resumed_predict_never_mixes_rows_of_other_settings(tmp_path, monkeypatch, tiny_checkpoint, change):
    """Issue 16 case 5: every option that changes a row is in the resume fingerprint; only the same command resumes."""
    source = write_jsonl(tmp_path / "in.jsonl", SEED_DRILL_RECORDS)
    output = tmp_path / "pred.jsonl"
    first = PatentClassifier.from_pretrained(str(tiny_checkpoint), device="cpu")
    interrupt_after_first_chunk(first, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        predict_file(first, source, output, chunk_size=5, progress=False)
    assert not output.exists() and (tmp_path / "pred.jsonl.partial-0-of-1").exists()

    model, load, options = tiny_checkpoint, {}, {}
    if change == "titles":
        (tmp_path / "titles.tsv").write_text("A01C\tPlanting; sowing\nB60K\tVehicle drives\n", encoding="utf-8")
        load["titles"] = str(tmp_path / "titles.tsv")
    elif change in ("top_k", "threshold"):
        options[change] = {"top_k": 1, "threshold": 0.4}[change]
    elif change == "max_length":
        load["max_length"] = 8
    elif change == "thresholds file":
        (tiny_checkpoint / "thresholds.json").write_text(json.dumps({"global": 0.3, "per_label": {}}))
        options["threshold"] = "auto"
    elif change == "model":
        model = tmp_path / "other-model"
        shutil.copytree(tiny_checkpoint, model)
        torch.manual_seed(1)
        reloaded = build_patent_classifier(ModernBertConfig.from_pretrained(model), CpcLabelSpace(list(SIX_CODES)))
        reloaded.save_pretrained(model)
    second = PatentClassifier.from_pretrained(str(model), device="cpu", **load)
    summary = predict_file(second, source, output, chunk_size=5, progress=False, **options)
    expected = predict_file(second, source, tmp_path / "reference.jsonl", chunk_size=5, progress=False, **options)
    assert output.read_text() == (tmp_path / "reference.jsonl").read_text() and summary["rows"] == expected[
        "rows"
    ] == len(SEED_DRILL_RECORDS)
    assert summary["resumed_after_rows"] == (5 if change == "nothing (control)" else 0)


def test_a_run_rebuilds_its_prepared_data_when_the_source_or_split_settings_change(tmp_path):
    """Issue 16 case 6: OUTPUT_DIR/data is keyed by source and split settings, never silently reused."""
    first = write_jsonl(tmp_path / "first.jsonl", SEED_DRILL_RECORDS)
    second = write_jsonl(
        tmp_path / "second.jsonl", [{**row, "id": row["id"].replace("US", "EP")} for row in SEED_DRILL_RECORDS]
    )
    work = tmp_path / "run"

    def train_ids(**settings):
        splits, _ = load_patent_splits(DataArguments(**{"validation_fraction": 0.0, **settings}), str(work))
        return set(splits["train"]["id"]) | set(splits["validation"]["id"])

    assert train_ids(dataset_name_or_path=str(first)) == {row["id"] for row in SEED_DRILL_RECORDS}
    stamp = (work / "data" / "README.md").stat().st_mtime_ns
    assert train_ids(dataset_name_or_path=str(first)) == {row["id"] for row in SEED_DRILL_RECORDS}
    assert (work / "data" / "README.md").stat().st_mtime_ns == stamp, "the same source and settings reuse the data"
    assert all(row_id.startswith("EP") for row_id in train_ids(dataset_name_or_path=str(second)))
    splits, _ = load_patent_splits(
        DataArguments(dataset_name_or_path=str(second), validation_fraction=0.25), str(work)
    )
    assert len(splits["validation"]) == 5
    assert json.loads((work / "data" / "stats.json").read_text())["split"]["validation_fraction"] == 0.25

    (work / "data" / "notes.txt").write_text("mine")  # a file no command wrote: refused, not deleted
    with pytest.raises(ValueError, match="notes.txt") as error:
        load_patent_splits(DataArguments(dataset_name_or_path=str(first)), str(work))
    assert "\n" not in str(error.value) and (work / "data" / "notes.txt").read_text() == "mine"
