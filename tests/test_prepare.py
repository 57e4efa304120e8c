"""`modernpatent prepare`: real records end to end, mixed sources, split determinism, and bad input."""

import gzip
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from modernpatent_hf import CpcLabelSpace
from modernpatent_hf.cli import main
from modernpatent_hf.data.prepare import prepare_dataset
from modernpatent_hf.data.prepare_config import PrepareConfig
from modernpatent_hf.data.records import load_dataset_dir, read_stats, write_dataset_dir

from testing_utils import write_jsonl

DROP_KEYS = ("empty_text", "no_labels", "duplicate_ids_merged", "no_labels_in_space")


def split_ids(out_dir):
    """Ids per split as ``datasets.load_dataset(out_dir)`` returns them."""
    return {name: list(split["id"]) for name, split in load_dataset(str(out_dir)).items()}


def assert_nothing_lost(summary):
    """Every record read is either written or counted as dropped/merged."""
    counts = summary["counts"]
    written = sum(summary["rows_per_split"].values())
    assert written + sum(counts.get(key, 0) for key in DROP_KEYS) == counts["records_read"]


def write_parquet(path, columns):
    pq.write_table(pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()}), path)
    return path


# ------------------------------------------------------------------------------ real records
def test_prepare_real_records_title_abstract(shared_data, tmp_path, capsys):
    source = shared_data / "patents_us_gpatents_ai.jsonl.gz"
    out = tmp_path / "gpatents"
    assert main(["prepare", str(source), "--out", str(out), "--text-fields", "title,abstract"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sum(summary["rows_per_split"].values()) == 18_075
    assert_nothing_lost(summary)
    stats = read_stats(out)
    assert stats["label_statistics"]["all"]["records"] == 18_075
    assert stats["label_statistics"]["all"]["subclasses"] == 407
    assert len(CpcLabelSpace.load(out)) == summary["num_labels"]

    ids = split_ids(out)
    assert sum(map(len, ids.values())) == 18_075
    assert len(set().union(*map(set, ids.values()))) == 18_075  # no id in two splits
    assert len(ids["validation"]) == math.ceil(0.005 * 18_075)

    # The loaded rows are the input records: text = title + newline + abstract, labels = the cpc list.
    expected = {}
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            expected[row["id"]] = (f"{row['title'].strip()}\n{row['abstract'].strip()}", row["cpc"])
    loaded = load_dataset_dir(str(out))  # labels as their codes (load_dataset gives class-label indices)
    for split in loaded.values():
        for row in split:
            assert (row["text"], row["labels"]) == expected[row["id"]]
    assert {label for split in loaded.values() for labels in split["labels"] for label in labels} == set(
        CpcLabelSpace.load(out).codes
    )


# ------------------------------------------------------------------------------ generated sources
@pytest.fixture
def mixed_sources(tmp_path):
    """JSON Lines, a PatentBERT TSV and a USPTO-3M Parquet copy; patent 9000001 is in both of the last two."""
    jsonl = write_jsonl(
        tmp_path / "records.jsonl",
        [
            {
                "id": f"US{i}",
                "title": f"Title {i}",
                "abstract": f"Abstract {i}.",
                "cpc": ["G06F", "G06N"][: 1 + i % 2],
                "date": f"{2014 + i % 3}-06-01",
            }
            for i in range(60)
        ]
        + [{"id": "US-empty", "title": "", "abstract": "", "cpc": ["G06F"]}],
    )
    tsv = tmp_path / "patentbert.tsv"
    tsv.write_text(
        "group_ids\tid\tdate\ttext\n"
        + "".join(f"H01L21/02,H01L21/30\t{9000000 + i}\t2015-01-0{1 + i % 9}\t1. A device {i}.\n" for i in range(20))
        + "F03D1/00\t9100000\t2016-03-01\t1. A wind turbine.\n"  # the only F03D: in the test year
        + "nonsense\t9100001\t2015-03-01\t1. No valid code.\n",
        encoding="utf-8",
    )
    hub = tmp_path / "USPTO-3M"
    (hub / "data").mkdir(parents=True)
    write_parquet(
        hub / "data" / "train-00000-of-00001.parquet",
        {
            "cpc_ids": ["B01J,Y10S", "C11D", "A01B"],
            "id": ["9000001", "9200000", "9200001"],
            "date": ["2015-01-02", "2014-05-05", "2015-05-05"],
            "text": ["1. A device 1.", "1. A detergent.", "1. A plough."],
        },
    )
    return [jsonl, tsv, hub]


def test_prepare_mixed_sources_counts_everything(mixed_sources, tmp_path):
    out = tmp_path / "prepared"
    # 2016 holds 20 JSON Lines records and the F03D patent: a test size of 21 takes them all.
    summary = prepare_dataset(
        PrepareConfig(
            inputs=mixed_sources,
            out=out,
            validation_fraction=0.1,
            test_year=2016,
            test_size=21,
            min_count=2,
            titles={"H01L": "Semiconductor devices"},
        )
    )
    counts = summary["counts"]
    assert counts["records_read"] == 61 + 22 + 3
    assert counts["empty_text"] == 1 and counts["no_labels"] == 1 and counts["invalid_codes"] == 1
    assert counts["duplicate_ids_merged"] == 1
    assert_nothing_lost(summary)
    assert read_stats(out)["counts"] == counts

    loaded = load_dataset_dir(str(out))
    assert {name: len(split) for name, split in loaded.items()} == summary["rows_per_split"]
    assert all(date.startswith("2016") for date in loaded["test"]["date"])
    all_ids = [i for split in loaded.values() for i in split["id"]]
    assert len(all_ids) == len(set(all_ids))
    # F03D is in no training record, so the F03D patent loses its only label and is dropped.
    assert len(loaded["test"]) == 20 and "9100000" not in all_ids
    merged = next(row for split in loaded.values() for row in split if row["id"] == "9000001")
    assert merged["labels"] == [code for code in ["H01L", "B01J", "Y10S"] if code in CpcLabelSpace.load(out)]

    # The label space comes from train with min_count 2: F03D (test only) and A01B/C11D (once) are out.
    space = CpcLabelSpace.load(out)
    train_counts = {}
    for labels in loaded["train"]["labels"]:
        for code in labels:
            train_counts[code] = train_counts.get(code, 0) + 1
    assert set(space.codes) == {code for code, n in train_counts.items() if n >= 2}
    assert "F03D" not in space and "A01B" not in space
    assert space.title("H01L") == "Semiconductor devices"
    assert counts["labels_outside_space"] >= 3 and counts["no_labels_in_space"] >= 1


def test_prepare_test_fraction_is_seeded(tmp_path):
    source = write_jsonl(
        tmp_path / "r.jsonl",
        [{"id": f"US{i}", "title": f"T{i}", "abstract": "A.", "cpc": ["A01B"]} for i in range(200)],
    )
    first = prepare_dataset(
        PrepareConfig(inputs=source, out=tmp_path / "a", test_fraction=0.2, validation_fraction=0.1)
    )
    prepare_dataset(PrepareConfig(inputs=source, out=tmp_path / "b", test_fraction=0.2, validation_fraction=0.1))
    prepare_dataset(
        PrepareConfig(inputs=source, out=tmp_path / "c", test_fraction=0.2, validation_fraction=0.1, seed=3)
    )
    assert first["rows_per_split"] == {"train": 144, "validation": 16, "test": 40}
    a, b, c = (split_ids(tmp_path / name) for name in "abc")
    assert a == b
    assert set(a["test"]) != set(c["test"])
    assert not set(a["test"]) & set(a["train"]) and not set(a["validation"]) & set(a["train"])


def test_empty_test_split_loads_as_empty(tmp_path):
    # Distinct texts: a text in two splits would be moved to train (tests/reliability/test_leakage.py).
    source = write_jsonl(
        tmp_path / "r.jsonl",
        [{"id": f"US{i}", "title": f"T{i}", "abstract": "A.", "cpc": ["A01B"]} for i in range(10)],
    )
    prepare_dataset(PrepareConfig(inputs=source, out=tmp_path / "out"))
    assert set(load_dataset(str(tmp_path / "out"))) == {"train", "validation"}
    loaded = load_dataset_dir(str(tmp_path / "out"))
    assert len(loaded["test"]) == 0 and loaded["test"].features == loaded["train"].features


def test_write_dataset_dir_refuses_an_id_in_two_splits(tmp_path):
    record = {"id": "US1", "text": "t", "labels": ["A01B"], "date": None, "title": None, "abstract": None}
    with pytest.raises(ValueError, match=r"id 'US1' appears in both the 'train' and 'test' splits"):
        write_dataset_dir(
            str(tmp_path / "out"), {"train": [record], "test": [record]}, CpcLabelSpace(["A01B"]), progress=False
        )
    assert not (tmp_path / "out").exists()


def test_invalid_codes_are_dropped_with_a_count_by_default(tmp_path, capsys):
    source = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {"id": "US1", "title": "T", "abstract": "A.", "cpc": ["A01B", "not a code"]},
            {"id": "US2", "title": "T", "abstract": "A.", "cpc": ["B01J"]},
        ],
    )
    assert main(["prepare", str(source), "--out", str(tmp_path / "out"), "--validation-fraction", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["invalid_codes"] == 1
    assert summary["rows_per_split"]["train"] == 2


# ------------------------------------------------------------------------------ bad input -> one line, exit 2
def bad_input(tmp_path, case):
    """``(prepare arguments, words the error must contain)`` for one kind of bad input."""
    good = {"id": "US1", "title": "T", "abstract": "A.", "cpc": ["A01B"]}
    if case == "nonexistent path":
        return [tmp_path / "missing.jsonl"], "no such file or directory"
    if case == "truncated parquet":
        full = write_parquet(
            tmp_path / "full.parquet",
            {
                "cpc_ids": ["A01B"] * 50,
                "id": [str(i) for i in range(50)],
                "date": ["2015-01-01"] * 50,
                "text": ["1. A claim."] * 50,
            },
        )
        (tmp_path / "cut.parquet").write_bytes(full.read_bytes()[:300])
        return [tmp_path / "cut.parquet"], "as Parquet"
    if case == "invalid JSON line":
        (tmp_path / "bad.jsonl").write_text(json.dumps(good) + '\n{"id": "US2",\n', encoding="utf-8")
        return [tmp_path / "bad.jsonl"], "bad.jsonl:2: not valid JSON"
    if case == "missing column":
        write_parquet(tmp_path / "nolabels.parquet", {"id": ["1"], "date": ["2015-01-01"], "text": ["1. A claim."]})
        return [tmp_path / "nolabels.parquet"], "has no column 'cpc_ids'"
    if case == "missing cpc field":
        write_jsonl(tmp_path / "nocpc.jsonl", [{"id": "US1", "title": "T"}])
        return [tmp_path / "nocpc.jsonl"], "record 'US1' has no 'cpc' field"
    if case == "malformed code":
        write_jsonl(tmp_path / "code.jsonl", [dict(good, cpc=["A01B", "12/345"])])
        return [tmp_path / "code.jsonl", "--on-invalid-code", "raise"], "invalid CPC code '12/345' in record 'US1'"
    if case == "missing text field":
        write_jsonl(tmp_path / "noclaims.jsonl", [good])
        return [tmp_path / "noclaims.jsonl", "--text-fields", "claims"], "record 'US1' has no 'claims' field"
    if case == "only empty texts":
        write_jsonl(tmp_path / "empty.jsonl", [dict(good, title="", abstract="  ")])
        return [tmp_path / "empty.jsonl"], "empty.jsonl: of 1 records read, 1 had no text; check"
    if case == "short TSV row":
        (tmp_path / "short.tsv").write_text("H01L21/02\t8523456\t2013-09-03\n", encoding="utf-8")
        return [tmp_path / "short.tsv"], "short.tsv:1: expected 4 tab-separated columns"
    if case == "bad date":
        (tmp_path / "date.tsv").write_text("H01L21/02\t8523456\tSept 2013\t1. A claim.\n", encoding="utf-8")
        return [tmp_path / "date.tsv"], "date.tsv:1: record '8523456' has date 'Sept 2013'"
    if case == "unknown text field":
        write_jsonl(tmp_path / "r.jsonl", [good])
        return [tmp_path / "r.jsonl", "--text-fields", "title,description"], "unknown text field 'description'"
    if case == "test year not in data":
        write_jsonl(tmp_path / "r.jsonl", [dict(good, date="2015-01-01")])
        return [tmp_path / "r.jsonl", "--test-year", "2016"], "is dated in 2016; its years (records): 2015 (1). Choose"
    if case == "conflicting test options":
        write_jsonl(tmp_path / "r.jsonl", [good])
        return [
            tmp_path / "r.jsonl",
            "--test-year",
            "2016",
            "--test-fraction",
            "0.1",
        ], "either a test fraction or a test year"
    if case == "missing titles file":
        write_jsonl(tmp_path / "r.jsonl", [good])
        return [tmp_path / "r.jsonl", "--titles", tmp_path / "titles.tsv"], "titles.tsv"
    if case == "hub unreachable":
        return ["MalavP/USPTO-3M"], "cannot load 'MalavP/USPTO-3M' from the Hugging Face Hub"
    raise AssertionError(case)


BAD_INPUTS = [
    "nonexistent path",
    "truncated parquet",
    "invalid JSON line",
    "missing column",
    "missing cpc field",
    "malformed code",
    "missing text field",
    "only empty texts",
    "short TSV row",
    "bad date",
    "unknown text field",
    "test year not in data",
    "conflicting test options",
    "missing titles file",
    "hub unreachable",
]


def assert_one_line_error(stderr, words):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("modernpatent prepare: error: ")
    assert words in lines[0]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    arguments, words = bad_input(tmp_path, case)
    out = tmp_path / "out"
    # Bad rows stop prepare only under --on-bad-row raise (skipped and counted by default: test_bad_rows_are_skipped...).
    assert main(["prepare", *map(str, arguments), "--out", str(out), "--on-bad-row", "raise"]) == 2
    assert_one_line_error(capsys.readouterr().err, words)
    assert not out.exists()


# A subprocess pays the package import (torch, transformers), so one case shows that nothing else (datasets'
# offline errors, import warnings) reaches stderr; the in-process test above covers every case through `main`.
def test_bad_input_through_the_installed_cli(tmp_path, run_cli):
    arguments, words = bad_input(tmp_path, "hub unreachable")
    result = run_cli("prepare", *arguments, "--out", tmp_path / "out", check=False)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, words)


def test_rewritten_directory_loads_fresh_rows_not_a_stale_cache(tmp_path):
    # datasets keys its cache of a local directory by the README, so two writes must differ there.
    def records(n):
        return [{"id": f"US{i}", "text": "t", "labels": ["A01B"]} for i in range(n)]

    for n in (5, 9):
        write_dataset_dir(str(tmp_path / "prepared"), {"train": records(n)}, CpcLabelSpace(["A01B"]), progress=False)
        assert len(load_dataset(str(tmp_path / "prepared"))["train"]) == n


def test_the_keyword_form_still_prepares_the_same_output_with_a_future_warning(tmp_path):
    source = tmp_path / "patents.jsonl"
    write_jsonl(
        source, [{"id": str(i), "title": f"a plough {i}", "abstract": "tines", "cpc": ["A01B"]} for i in range(30)]
    )
    current = prepare_dataset(PrepareConfig(inputs=source, out=tmp_path / "config", test_fraction=0.2, format="jsonl"))
    with pytest.warns(FutureWarning, match=r"prepare_dataset\(inputs, out_dir, \.\.\.\) is deprecated"):
        legacy = prepare_dataset(source, tmp_path / "keywords", test_fraction=0.2, input_format="jsonl")
    assert legacy["rows_per_split"] == current["rows_per_split"] and legacy["counts"] == current["counts"]
    with pytest.raises(TypeError, match="PrepareConfig alone"):
        prepare_dataset(PrepareConfig(inputs=source, out=tmp_path / "x"), tmp_path / "y")
