"""Settings and input checked where they enter: one line that names the key,
record or file, exit status 2 from the CLI, and nothing half-done left behind."""

import json

import pytest

from modernpatent_hf import CpcLabelSpace
from modernpatent_hf.cli import main
from modernpatent_hf.configs import DataArguments, ModelArguments, PatentTrainingArguments
from modernpatent_hf.recipe_parser import parse_recipe_args

from testing_utils import SIX_CODES, write_jsonl

ARGUMENT_TYPES = (ModelArguments, DataArguments, PatentTrainingArguments)
RECORDS = [
    {
        "id": f"US{i}",
        "title": f"A seed drill {i}",
        "abstract": "A drill for seeds.",
        "cpc": ["A01C" if i % 2 else "B60K"],
    }
    for i in range(12)
]
POSITIONS = 64  # the tiny checkpoint's max_position_embeddings


def parse(tmp_path, recipe, *extra):
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({"output_dir": str(tmp_path / "run"), "report_to": "none", **recipe}), encoding="utf-8")
    return parse_recipe_args(ARGUMENT_TYPES, ["--config", str(path), *extra])


# ---------------------------------------------------------------------------------------- case 7: model_config
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 48,
    "max_position_embeddings": 64,
}


@pytest.mark.parametrize(
    "model_config, message",
    [
        (
            {**TINY, "hidden_sise": 32},
            "model_config: unknown key 'hidden_sise' for ModernBertConfig (did you mean 'hidden_size'?)",
        ),
        ({**TINY, "num_hidden_layers": -1}, "model_config: num_hidden_layers must be a positive integer, got -1"),
        ({**TINY, "hidden_size": "big"}, "model_config: hidden_size must be a positive integer, got 'big'"),
        (
            {**TINY, "hidden_size": 30, "num_attention_heads": 4},
            "model_config: hidden_size 30 is not a multiple of num_attention_heads 4",
        ),
        ({**TINY, "vocab_size": 100}, "model_config: 'vocab_size' is set from the tokenizer"),
        ({**TINY, "norm_eps": "small"}, "model_config: Validation error for field 'norm_eps'"),
    ],
)
def test_model_config_keys_and_values_are_checked_when_the_recipe_is_parsed(tmp_path, model_config, message):
    with pytest.raises(ValueError) as error:
        parse(tmp_path, {"model_name_or_path": None, "model_config": model_config})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_valid_model_config_parses_with_the_older_keys_modernbert_still_reads(tmp_path):
    model_args, _, _ = parse(
        tmp_path,
        {"model_name_or_path": None, "max_length": 64, "model_config": {**TINY, "global_attn_every_n_layers": 1}},
    )
    assert model_args.model_config["hidden_size"] == 32
    with pytest.raises(ValueError, match="unknown key 'hidden_sise' for BertConfig"):
        parse(tmp_path, {"model_name_or_path": None, "architecture": "bert", "model_config": {"hidden_sise": 32}})


# ---------------------------------------------------------------------------------------- case 8: max_length
@pytest.mark.parametrize(
    "max_length, message",
    [
        (-5, "max_length must be an integer of at least 2"),
        (0, "max_length must be an integer of at least 2"),
        (1, "max_length must be an integer of at least 2"),
        (65, "max_length 65 exceeds the model's max_position_embeddings 64"),
    ],
)
def test_max_length_is_between_2_and_the_model_positions(tmp_path, tiny_checkpoint, max_length, message):
    for model in ({"model_name_or_path": None, "model_config": TINY}, {"model_name_or_path": str(tiny_checkpoint)}):
        with pytest.raises(ValueError, match=message) as error:
            parse(tmp_path, {**model, "max_length": max_length})
        assert "\n" not in str(error.value)
        with pytest.raises(ValueError, match=message):  # a command-line override too
            parse(tmp_path, model, "--max_length", str(max_length))
    _, data_args, _ = parse(tmp_path, {"model_name_or_path": str(tiny_checkpoint), "max_length": POSITIONS})
    assert data_args.max_length == POSITIONS


@pytest.mark.parametrize("max_length", ["-5", "0", str(POSITIONS + 1)])
def test_predict_refuses_a_max_length_outside_the_model_before_reading_rows(
    tmp_path, one_line_refusal, tiny_checkpoint, max_length
):
    source = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    output = tmp_path / "pred.jsonl"
    line = one_line_refusal(
        [
            "predict",
            "--model",
            str(tiny_checkpoint),
            "--input",
            str(source),
            "--output",
            str(output),
            "--max-length",
            max_length,
        ]
    )
    assert "max_length" in line
    assert not list(tmp_path.glob("pred.jsonl*"))


# ---------------------------------------------------------------------------------------- case 9: dates
@pytest.mark.parametrize("date", ["2020-13-45", "2021-02-29", "20200231"])
def test_prepare_refuses_a_date_that_is_not_a_calendar_day(tmp_path, one_line_refusal, date):
    rows = [{**row, "date": "2020-02-29"} for row in RECORDS]  # a leap day is a day
    rows[3]["date"] = date
    source = write_jsonl(tmp_path / "a.jsonl", rows)
    line = one_line_refusal(["prepare", str(source), "--out", str(tmp_path / "out"), "--on-bad-row", "raise"])
    assert "'US3'" in line and repr(date) in line and "not a calendar date" in line
    assert not (tmp_path / "out").exists()
    rows[3]["date"] = "2020-02-29"
    assert (
        main(["prepare", str(write_jsonl(source, rows)), "--out", str(tmp_path / "out"), "--validation-fraction", "0"])
        == 0
    )


# ---------------------------------------------------------------------------------------- case 12
def test_csv_and_titles_with_a_byte_order_mark_are_read(tmp_path, capsys, tiny_checkpoint):
    source = tmp_path / "in.csv"
    source.write_text(
        "\ufeffid,title,abstract\n" + "".join(f"{row['id']},{row['title']},{row['abstract']}\n" for row in RECORDS),
        encoding="utf-8",
    )
    titles = tmp_path / "titles.tsv"
    code_titles = {code: f"Title of {code}" for code in SIX_CODES}
    titles.write_text(
        "\ufeffcode\ttitle\n" + "".join(f"{code}\t{title}\n" for code, title in code_titles.items()), encoding="utf-8"
    )
    output = tmp_path / "pred.jsonl"
    assert (
        main(
            [
                "predict",
                "--model",
                str(tiny_checkpoint),
                "--input",
                str(source),
                "--output",
                str(output),
                "--titles",
                str(titles),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["id"] for row in rows] == [row["id"] for row in RECORDS]
    predictions = [prediction for row in rows for prediction in row["predictions"]]
    assert predictions and all(prediction["title"] == code_titles[prediction["code"]] for prediction in predictions)


@pytest.mark.parametrize(
    "content",
    [
        '{"format": "something else", "codes": ["A01C", "B60K"]}',
        '["A01C", "B60K"]',
        '{"format": "modernpatent-cpc-label-space", "codes": ["A01C", "nonsense"]}',
    ],
)
def test_a_broken_label_space_is_named_in_the_error(tmp_path, one_line_refusal, tiny_checkpoint, content):
    (tiny_checkpoint / "label_space.json").write_text(content)
    source = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    line = one_line_refusal(
        ["predict", "--model", str(tiny_checkpoint), "--input", str(source), "--output", str(tmp_path / "p.jsonl")]
    )
    assert str(tiny_checkpoint / "label_space.json") in line


def test_a_label_space_that_disagrees_with_the_model_is_named_in_the_error(
    tmp_path, one_line_refusal, tiny_checkpoint
):
    CpcLabelSpace(["A01C", "B60K", "H04L"]).save(tiny_checkpoint / "label_space.json")
    source = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    line = one_line_refusal(
        ["predict", "--model", str(tiny_checkpoint), "--input", str(source), "--output", str(tmp_path / "p.jsonl")]
    )
    assert str(tiny_checkpoint / "label_space.json") in line and "3 codes" in line


def test_predict_stopped_by_a_bad_row_leaves_no_part_or_state_file(tmp_path, capsys, tiny_checkpoint):
    """Fixing the row changes the input, so nothing of the stopped run could be resumed: nothing of it stays."""
    rows = [*RECORDS[:8], {"id": "US-bad", "cpc": ["A01C"]}, *RECORDS[8:]]  # no text in the chosen fields
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "pred.jsonl"
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                "--model",
                str(tiny_checkpoint),
                "--input",
                str(source),
                "--output",
                str(output),
                "--chunk-size",
                "4",
            ]
        )
        == 2
    )
    assert "US-bad" in capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars of the first chunks
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl", "model"]
