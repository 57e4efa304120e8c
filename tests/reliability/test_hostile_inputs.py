"""Hostile input to `modernpatent prepare`, the loaders, the recipe configuration and the metric.

Each input either stops with one line that names the record or field and says what to do (CLI: exit
status 2, one stderr line, no traceback), or goes through a documented normalization whose every
change is counted in prepare's summary. Cases covered elsewhere are not repeated here:
tests/test_prepare.py (nonexistent path, truncated Parquet file, invalid JSON, missing column,
missing cpc/text field, malformed code with --on-invalid-code raise, short TSV row, bad date),
tests/test_data.py (the same through `iter_records`), tests/test_finetune.py (unknown config keys,
a missing config file, a label space that does not match the checkpoint, and how recipes/finetune.py
turns the ValueError/OSError raised here into exit status 2 and one stderr line) and
tests/test_metrics.py (wrong shapes, NaN scores, logits instead of probabilities, bad k, no rows).
"""

import contextlib
import io
import json

import numpy as np
import pyarrow as pa
import pytest

from modernpatent_hf import CpcLabelSpace, compute_multilabel_metrics
from modernpatent_hf.cli import main
from modernpatent_hf.configs import DataArguments, ModelArguments, PatentTrainingArguments
from modernpatent_hf.data.readers import iter_records
from modernpatent_hf.data.records import load_dataset_dir
from modernpatent_hf.data.splits import RECORDS_NOT_WRITTEN
from modernpatent_hf.data.uspto3m import load_uspto3m
from modernpatent_hf.metrics import F1_AT_K_METRIC
from modernpatent_hf.recipe_parser import parse_recipe_args

from testing_utils import write_hub_copy, write_jsonl

GOOD = {"id": "US1", "title": "A seed drill", "abstract": "A drill for seeds.", "cpc": ["A01C"]}
TEN_MB = 10 * 1024 * 1024


def hub_columns(ids, codes=None, texts=None):
    n = len(ids)
    return {
        "cpc_ids": codes if codes is not None else ["A01B"] * n,
        "id": ids,
        "date": ["2015-01-01"] * n,
        "text": texts if texts is not None else [f"1. A plough number {i}." for i in range(n)],
    }


def prepare(arguments, out, capsys):
    """Run `modernpatent prepare` in process: (exit status, stdout, stderr lines)."""
    status = main(
        ["prepare", *map(str, arguments), "--out", str(out), "--validation-fraction", "0", "--on-bad-row", "raise"]
    )
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


# ------------------------------------------------------------------------------ prepare: one-line errors
def error_case(tmp_path, case):
    """``(prepare arguments, words the one error line must contain)``."""
    if case == "bytes that are not UTF-8":
        path = tmp_path / "latin1.jsonl"
        path.write_bytes((json.dumps(GOOD) + "\n").encode() + b'{"id": "US2", "title": "Caf\xe9", "cpc": ["A01B"]}\n')
        return [path], "latin1.jsonl:2: not UTF-8 (byte 0xe9"
    if case == "TSV that is not UTF-8":
        path = tmp_path / "latin1.tsv"
        path.write_bytes(b"A01B1/00\t8000001\t2015-01-01\t1. A plough for caf\xe9s.\n")
        return [path], "latin1.tsv:1: not UTF-8"
    if case == "raw NUL byte inside a JSON string":
        path = tmp_path / "nul.jsonl"
        path.write_bytes(b'{"id": "US1", "title": "T\x00", "abstract": "A.", "cpc": ["A01B"]}\n')
        return [path], "nul.jsonl:1: not valid JSON"
    if case == "a float id":
        return [
            write_jsonl(tmp_path / "r.jsonl", [dict(GOOD, id=8000001.0)])
        ], "r.jsonl:1: record has the id 8000001.0, a float"
    if case == "a list id":
        return [
            write_jsonl(tmp_path / "r.jsonl", [dict(GOOD, id=["US1"])])
        ], "r.jsonl:1: record has the id ['US1'], a list"
    if case == "a TSV row without an id":
        path = tmp_path / "noid.tsv"
        path.write_text(
            "A01B1/00\t8000001\t2015-01-01\t1. A plough.\nB01J\t  \t2015-01-01\t1. A catalyst.\n", encoding="utf-8"
        )
        return [path], "noid.tsv:2: record has no 'id'"
    if case == "Parquet rows without an id":
        hub = write_hub_copy(tmp_path / "hub", hub_columns(pa.array([None, None], pa.string())))
        return [hub], "record has no 'id'"
    if case == "misnamed text fields":
        rows = [{"id": "US1", "Title": "T", "Abstract": "A.", "cpc": ["A01B"]}]
        return [
            write_jsonl(tmp_path / "r.jsonl", rows)
        ], "has none of the text fields title, abstract, claims, first_claim; its keys: id, Title, Abstract, cpc"
    if case == "misnamed code field":
        rows = [{"id": "US1", "title": "T", "abstract": "A.", "CPC": ["A01B"]}]
        return [
            write_jsonl(tmp_path / "r.jsonl", rows)
        ], "record 'US1' has no 'cpc' field (a list of CPC codes); its keys: id, title, abstract, CPC"
    if case == "a number for a text":
        return [
            write_jsonl(tmp_path / "r.jsonl", [dict(GOOD, title=42)])
        ], "r.jsonl:1: record 'US1' has a number (42) in field 'title'; expected a string"
    if case == "bytes for a Parquet text":
        hub = write_hub_copy(
            tmp_path / "hub", hub_columns(["8000001"], texts=pa.array([b"1. A plough."], pa.binary()))
        )
        return [hub], "record '8000001' has bytes (b'1. A plough.') in field 'first_claim'"
    if case == "an unpaired surrogate escape":
        path = tmp_path / "r.jsonl"
        path.write_text(
            '{"id": "US1", "title": "Seed \\ud800 drill", "abstract": "A.", "cpc": ["A01B"]}\n', encoding="utf-8"
        )
        return [path], "r.jsonl:1: record 'US1' has an unpaired surrogate '\\ud800' in field 'title'"
    if case == "a number for a code, raising":
        rows = [dict(GOOD, cpc=["A01B", 7])]
        return [
            write_jsonl(tmp_path / "r.jsonl", rows),
            "--on-invalid-code",
            "raise",
        ], "invalid CPC code 7 in record 'US1' (a number, not a string)"
    if case == "a JSON array for a record":
        path = tmp_path / "r.jsonl"
        path.write_text('["US1", "A01B"]\n', encoding="utf-8")
        return [path], "r.jsonl:1: expected a JSON object, got a list"
    raise AssertionError(case)


ERROR_CASES = [
    "bytes that are not UTF-8",
    "TSV that is not UTF-8",
    "raw NUL byte inside a JSON string",
    "a float id",
    "a list id",
    "a TSV row without an id",
    "Parquet rows without an id",
    "misnamed text fields",
    "misnamed code field",
    "a number for a text",
    "bytes for a Parquet text",
    "an unpaired surrogate escape",
    "a number for a code, raising",
    "a JSON array for a record",
]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_prepare_stops_with_one_line_naming_the_problem(tmp_path, capsys, case):
    arguments, words = error_case(tmp_path, case)
    status, _, errors = prepare(arguments, tmp_path / "out", capsys)
    assert status == 2
    assert len(errors) == 1 and errors[0].startswith("modernpatent prepare: error: "), errors
    assert words in errors[0]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ prepare: counted normalizations
@pytest.fixture(scope="module")
def normalized_run(tmp_path_factory):
    """One prepare run over every kind of input that is normalized rather than refused."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    rows = [
        # Codes in every case and spacing, IPC-style groups, a version date: all reduce to subclasses.
        dict(GOOD, id="US-codes", cpc=["a01c", " h01L 21/02 ", "A01B 1/00", "G06F 16/51 (2006.01)"]),
        # A USPC code and garbage next to a good code: 2 invalid codes dropped and counted, the record kept.
        dict(GOOD, id="US-uspc", title="Plough", cpc=["123/456", "A01B", "XX"]),
        # One comma-joined string where a list was expected: split like USPTO-3M's cpc_ids.
        dict(GOOD, id="US-string", title="Harrow", cpc="A01B,b01j"),
        # A number for the code list: 1 invalid code, and the record, left without labels, is dropped.
        dict(GOOD, id="US-number", title="Rake", cpc=123),
        # Empty and whitespace-only texts: dropped and counted.
        dict(GOOD, id="US-empty", title="", abstract=""),
        dict(GOOD, id="US-blank", title=" \t ", abstract="\n\u3000 "),
        # NUL characters: removed from the text, counted.
        dict(GOOD, id="US-nul", title="Seed\x00 drill", abstract="A\x00 drill for seeds and grain."),
        # The same id twice with conflicting labels: merged (labels united, first text kept), counted.
        dict(GOOD, id="US-dup", title="Sprayer", cpc=["A01M"]),
        dict(GOOD, id="US-dup", title="A different sprayer", cpc=["B05B"]),
        # A 10 MB text: kept whole.
        dict(GOOD, id="US-huge", title="Huge", abstract="grain " * (TEN_MB // 6)),
    ]
    source = write_jsonl(tmp_path / "hostile.jsonl", rows)
    # A UTF-8 byte order mark and Windows line ends must not break the first record or the text.
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(dict(GOOD, id="US-bom", title="Seeder")).encode() + b"\r\n")
    out = tmp_path / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["prepare", str(source), str(bom), "--out", str(out), "--validation-fraction", "0"]) == 0
    return json.loads(printed.getvalue()), load_dataset_dir(str(out)), out


def test_normalizations_are_counted_and_nothing_is_lost(normalized_run):
    summary, dataset, _ = normalized_run
    counts = summary["counts"]
    assert counts["records_read"] == 11
    assert counts["invalid_codes"] == 3  # 123/456, XX, and the number 123
    assert counts["no_labels"] == 1 and counts["empty_text"] == 2
    assert counts["duplicate_ids_merged"] == 1 and counts["texts_with_nul_removed"] == 1
    written = sum(summary["rows_per_split"].values())
    assert written + sum(counts.get(key, 0) for key in RECORDS_NOT_WRITTEN) == counts["records_read"]
    assert sorted(dataset["train"]["id"]) == sorted(
        ["US-codes", "US-uspc", "US-string", "US-nul", "US-dup", "US-huge", "US-bom"]
    )


def test_each_normalization_does_what_the_docs_say(normalized_run):
    _, dataset, out = normalized_run
    rows = {row["id"]: row for row in dataset["train"]}
    assert rows["US-codes"]["labels"] == ["A01C", "H01L", "A01B", "G06F"]
    assert rows["US-uspc"]["labels"] == ["A01B"]
    assert rows["US-string"]["labels"] == ["A01B", "B01J"]
    assert rows["US-nul"]["text"] == "Seed drill\nA drill for seeds and grain."
    assert rows["US-dup"]["labels"] == ["A01M", "B05B"] and rows["US-dup"]["text"].startswith("Sprayer")
    assert len(rows["US-huge"]["text"]) == len("Huge\n") + len(("grain " * (TEN_MB // 6)).strip())
    assert rows["US-bom"]["text"] == "Seeder\nA drill for seeds."
    assert set(CpcLabelSpace.load(out).codes) == {"A01B", "A01C", "A01M", "B01J", "B05B", "G06F", "H01L"}


def test_crlf_and_stray_carriage_returns_in_tsv(tmp_path):
    path = tmp_path / "windows.tsv"
    path.write_bytes(b"A01B1/00\t8000001\t2015-01-01\t1. A plough\rwith a share.\r\n")
    (record,) = iter_records(path)
    assert record["id"] == "8000001" and record["text"] == "A plough\rwith a share."


# ------------------------------------------------------------------------------ loaders on the USPTO-3M layout
def test_uspto3m_loader_normalizes_codes_and_ids_of_any_column_type(tmp_path):
    hub = write_hub_copy(
        tmp_path / "hub",
        {
            "cpc_ids": pa.array([["a01b", "H01L 21/02"], ["b01j"], ["123/456"]]),  # lists, not comma-joined strings
            "id": pa.array([8000001, 8000002, 8000003]),  # integers, not strings
            "date": pa.array([20150101, 20150102, 20150103]),  # compact integers
            "text": ["1. A plough.", "2. A catalyst.", "1. A widget."],
        },
    )
    counters = {}
    records = list(iter_records(hub, counters=counters))
    assert [(r["id"], r["labels"], r["date"]) for r in records] == [
        ("8000001", ["A01B", "H01L"], "2015-01-01"),
        ("8000002", ["B01J"], "2015-01-02"),
    ]
    assert counters == {"records_read": 3, "invalid_codes": 1, "no_labels": 1}


@pytest.mark.parametrize(
    "ids, words",
    [
        (pa.array([None, None], pa.string()), "record has no 'id'"),
        (pa.array([8000001.0, 8000002.0]), "record has the id 8000001.0, a float"),
    ],
)
def test_load_uspto3m_skips_or_refuses_rows_without_a_usable_id(tmp_path, ids, words):
    # str(None) would make both rows one patent called 'None'; str(8000001.0) an id nobody has.
    hub = write_hub_copy(tmp_path / "hub", hub_columns(ids))
    with pytest.raises(ValueError, match=r"USPTO-3M row \(cpc_ids 'A01B', date '2015-01-01'\)") as error:
        load_uspto3m(hub, validation_fraction=0.0, on_bad_row="raise")
    assert words in str(error.value) and "\n" not in str(error.value)
    # By default both are skipped as bad rows, which leaves no record.
    with pytest.raises(ValueError, match=r"of 2 records read, 2 were bad rows"):
        load_uspto3m(hub, validation_fraction=0.0)


def test_load_uspto3m_counts_nul_and_names_a_source_without_usable_records(tmp_path):
    hub = write_hub_copy(tmp_path / "hub", hub_columns(["1", "2"], texts=["1. A\x00 plough.", "1. A harrow."]))
    counters = {}
    splits = load_uspto3m(hub, validation_fraction=0.0, counters=counters)
    assert splits["train"]["text"] == ["A plough.", "A harrow."]
    assert counters["texts_with_nul_removed"] == 1
    useless = write_hub_copy(tmp_path / "useless", hub_columns(["1", "2"], codes=["123/456", "USPC 7"]))
    words = r"no usable record in .*useless: of 2 records read, 2 had no valid CPC code \(2 malformed CPC codes dropped\); check its cpc_ids"
    with pytest.raises(ValueError, match=words):
        load_uspto3m(useless, validation_fraction=0.0)


def test_load_uspto3m_names_a_truncated_shard_among_good_ones(tmp_path):
    hub = write_hub_copy(
        tmp_path / "hub", hub_columns([str(i) for i in range(200)]), shard="train-00000-of-00002.parquet"
    )
    good = (hub / "data" / "train-00000-of-00002.parquet").read_bytes()
    (hub / "data" / "train-00001-of-00002.parquet").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"cannot load .*hub as a USPTO-3M copy .*check the Parquet files") as error:
        load_uspto3m(hub)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------ recipe configuration
ARGUMENT_TYPES = (ModelArguments, DataArguments, PatentTrainingArguments)


@pytest.mark.parametrize(
    "yaml_text, words",
    [
        ("learning_rate: [1,\n", "is not valid YAML (expected the node content, but found '<stream end>' at line 2"),
        ("learning_rate: fast\n", "learning_rate in {config}: 'fast' is not a valid value"),
        ("use_lora: maybe\n", "use_lora in {config}: 'maybe' is not a valid value"),
        (
            "loss_type: focal\n",
            "loss_type in {config} is 'focal'; choose from bce, hierarchical, upstream_hierarchical",
        ),
        ("max_length: null\n", "max_length in {config} is null but needs a value of type int"),
        ("max_length: 12.5\n", "max_length in {config} must be an integer, got 12.5"),
        ("max_length: {a: 1}\n", "max_length in {config} takes one value"),
        ("model_config: tiny\n", "model_config in {config} must be a mapping"),
        ("top_k: '1,5'\n", "top_k in {config}: '1,5' is not a valid value"),
    ],
)
def test_bad_yaml_values_are_one_line_errors_naming_the_key(tmp_path, yaml_text, words):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ValueError) as error:
        parse_recipe_args(ARGUMENT_TYPES, ["--config", str(config), "--output_dir", str(tmp_path / "o")])
    assert words.format(config=config) in str(error.value) and "\n" not in str(error.value)


def test_a_bad_command_line_value_is_a_one_line_error_not_a_usage_dump(tmp_path):
    with pytest.raises(
        ValueError, match=r"argument --learning_rate/--learning-rate: invalid float value: 'fast'"
    ) as error:
        parse_recipe_args(ARGUMENT_TYPES, ["--output_dir", str(tmp_path), "--learning_rate", "fast"])
    assert "\n" not in str(error.value)


def test_one_value_for_a_list_field_becomes_a_list_as_on_the_command_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("lora_target_modules: Wqkv\ntop_k: 3\n", encoding="utf-8")
    model_args, _, training_args = parse_recipe_args(
        ARGUMENT_TYPES, ["--config", str(config), "--output_dir", str(tmp_path)]
    )
    assert model_args.lora_target_modules == ["Wqkv"] and training_args.top_k == [3]


def test_nonexistent_data_and_model_paths_are_one_line_errors(tmp_path):
    from modernpatent_hf.data.loading import load_patent_splits
    from modernpatent_hf.model_factory import build_patent_classifier

    with pytest.raises(FileNotFoundError, match=r"no such file or directory: '/nonexistent/patents.jsonl'") as error:
        load_patent_splits(DataArguments(dataset_name_or_path="/nonexistent/patents.jsonl"), str(tmp_path))
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"checkpoint directory '/nonexistent/model' does not exist") as error:
        build_patent_classifier("/nonexistent/model", CpcLabelSpace(["A01B"]))
    assert "\n" not in str(error.value)
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"not-a-model' is not a model checkpoint") as error:
        build_patent_classifier(str(tmp_path / "not-a-model"), CpcLabelSpace(["A01B"]))
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------ the metric
@pytest.mark.parametrize(
    "predictions, references, kwargs, words",
    [
        ([[0.1, 0.9], [0.3]], [[0, 1], [1]], {}, "predictions must be a rectangular [patents, labels] array"),
        ([[0.1, 0.9]], [[0, 1], [1, 0, 1]], {}, "references must be a rectangular"),
        ([["high", "low"]], [[0, 1]], {}, "predictions must hold numbers"),
        ([[0.1, 0.9]], [["no", "yes"]], {}, "references must hold numbers"),
        ([[0.1, 0.9]], [[0, float("nan")]], {}, "references must be multi-hot 0/1"),
        ([[0.1, float("inf")]], [[0, 1]], {}, "must be probabilities in [0, 1]"),
        ([], [], {}, "no patents to evaluate"),
        ([[], []], [[], []], {}, "no patents to evaluate"),
        ([[0.1, 0.9]], [[0, 1]], {"threshold": float("nan")}, "threshold must be a probability in [0, 1], got nan"),
        ([[0.1, 0.9]], [[0, 1]], {"threshold": 50}, "threshold must be a probability in [0, 1], got 50"),
    ],
)
def test_bad_metric_input_is_a_one_line_error(predictions, references, kwargs, words):
    with pytest.raises(ValueError) as error:
        compute_multilabel_metrics(predictions, references, **kwargs)
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.fixture(scope="module")
def f1_at_k():
    import evaluate

    return evaluate.load(F1_AT_K_METRIC)


@pytest.mark.parametrize(
    "predictions, references, words",
    [
        ([[0.1, 0.9], [0.3]], [[0, 1], [1]], "predictions must be a rectangular"),
        ([[0.1, float("nan")]], [[0, 1]], "predictions contain NaN scores"),
        ([], [], "no patents to evaluate"),
    ],
)
def test_the_evaluate_module_gives_the_same_one_line_errors(f1_at_k, predictions, references, words):
    with pytest.raises(ValueError) as error:
        f1_at_k.compute(predictions=predictions, references=references)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_boolean_references_and_integer_scores_are_accepted_as_numbers():
    expected = compute_multilabel_metrics(np.array([[0.0, 1.0]]), np.array([[0, 1]]), k=[1])
    assert compute_multilabel_metrics([[0, 1]], [[False, True]], k=[1]) == expected
