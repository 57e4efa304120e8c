"""No command destroys a file it did not write (issue 16, cases 1-4): each refusal is one line, exit status 2,
and leaves every file as it was. The predict cases use a tiny saved classifier."""

import json

import pytest
import torch
from transformers import ModernBertConfig

from modernpatent_hf import CpcLabelSpace, build_patent_classifier
from modernpatent_hf.cli import main
from modernpatent_hf.tokenization import train_patent_tokenizer

RECORDS = [{"id": f"US{i}", "title": f"A seed drill {i}", "abstract": "A drill for seeds.", "cpc": ["A01C" if i % 2 else "B60K"]}
           for i in range(20)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def one_line_refusal(arguments, capsys):
    capsys.readouterr()  # what fixtures printed
    status = main(arguments)
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1, lines
    return lines[0]


def snapshot(directory):
    return {path.relative_to(directory): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def test_prepare_refuses_an_output_directory_holding_other_files(tmp_path, capsys):
    source = write_jsonl(tmp_path / "a.jsonl", RECORDS)
    out = tmp_path / "d"
    out.mkdir()
    (out / "thesis.txt").write_text("four years of work")
    line = one_line_refusal(["prepare", str(source), "--out", str(out)], capsys)
    assert "did not write" in line and "nothing was changed" in line
    assert snapshot(out) == {(out / "thesis.txt").relative_to(out): b"four years of work"}
    # Its own earlier output is replaced by a rerun, as before.
    fresh = tmp_path / "fresh"
    assert main(["prepare", str(source), "--out", str(fresh), "--validation-fraction", "0"]) == 0
    assert main(["prepare", str(source), "--out", str(fresh), "--validation-fraction", "0"]) == 0


@pytest.mark.parametrize("layout", ["output is the input", "input inside the output"])
def test_prepare_never_writes_over_or_around_its_input(tmp_path, capsys, layout):
    if layout == "output is the input":
        source = write_jsonl(tmp_path / "x.jsonl", RECORDS)
        out = source
    else:
        (tmp_path / "d").mkdir()
        source = write_jsonl(tmp_path / "d" / "raw.jsonl", RECORDS)
        (tmp_path / "d" / "neighbour.txt").write_text("keep me")
        out = tmp_path / "d"
    before = snapshot(tmp_path)
    line = one_line_refusal(["prepare", str(source), "--out", str(out)], capsys)
    assert "input" in line and "nothing was changed" in line
    assert snapshot(tmp_path) == before


@pytest.fixture
def checkpoint(tmp_path):
    space = CpcLabelSpace(["A01C", "B60K"])
    tokenizer = train_patent_tokenizer([row["title"] + " " + row["abstract"] for row in RECORDS], vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )
    directory = tmp_path / "model"
    build_patent_classifier(config, space).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    space.save(directory / "label_space.json")
    return directory


@pytest.mark.parametrize("target", ["model weights", "inside the model directory", "the input itself", "a directory"])
def test_predict_refuses_an_output_that_would_replace_the_model_or_an_input(tmp_path, capsys, checkpoint, target):
    source = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    output = {"model weights": checkpoint / "model.safetensors", "inside the model directory": checkpoint / "predictions.jsonl",
              "the input itself": source, "a directory": tmp_path}[target]
    before = snapshot(tmp_path)
    line = one_line_refusal(["predict", "--model", str(checkpoint), "--input", str(source), "--output", str(output)], capsys)
    assert "--output" in line
    assert snapshot(tmp_path) == before
