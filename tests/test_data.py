"""Readers (USPTO-3M Parquet/Hub layout, PatentBERT TSV, JSON Lines), USPTO-3M splits and the builder."""

import gzip
import json
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, load_dataset

from modernpatent_hf import CpcCodeError, CpcLabelSpace
from modernpatent_hf.data.bad_rows import BadRow
from modernpatent_hf.data.inputs import row_id_and_text
from modernpatent_hf.data.normalize import normalize_date, parse_text_fields, strip_claim_number
from modernpatent_hf.data.readers import iter_records
from modernpatent_hf.data.rows import iter_rows
from modernpatent_hf.data.splits import clean_records, split_indices
from modernpatent_hf.data.uspto3m import Uspto3mBuilder, load_uspto3m

from testing_utils import uspto3m_columns, write_hub_copy, write_jsonl, write_lines

# A small copy of the Hub layout. Row by row: a claim number to strip, a spaced claim number, no claim
# number, a repeat of 8000002 that adds G06F, an empty claim after stripping, a null claim, a
# malformed code next to a good one, and only a malformed code.
HUB_ROWS = [
    ("C11D,Y10S", "8000001", "2013-01-01", "1. A detergent composition comprising a surfactant."),
    ("H01L", "8000002", "2014-02-03", "1 . A semiconductor device having a gate."),
    ("G06F,H04L", "8000003", "2015-03-04", "A method of routing packets."),
    ("G06F,H01L", "8000002", "2014-02-03", "1. A semiconductor device having a gate."),
    ("A01B", "8000004", "2015-05-06", "1. "),
    ("A01B", "8000005", "2015-05-06", None),
    ("B01J,not-a-code", "8000006", "2015-07-08", "1. A catalyst."),
    ("123/456", "8000007", "2015-07-08", "1. A widget."),
]


def many_rows(n, seed=0):
    """``n`` distinct patents granted 2013-2016 with one or two subclasses from a small pool."""
    rng = np.random.default_rng(seed)
    codes = ["A01B", "B01J", "C11D", "G06F", "H01L", "H04L", "Y10S"]
    rows = []
    for i in range(n):
        labels = sorted(set(rng.choice(codes, size=rng.integers(1, 3))))
        date = f"{2013 + i % 4}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        rows.append((",".join(labels), str(9_000_000 + i), date, f"1. Claim text number {i}."))
    return rows


@pytest.fixture
def hub_copy(tmp_path):
    return write_hub_copy(tmp_path / "USPTO-3M", uspto3m_columns(HUB_ROWS))


@pytest.fixture(scope="module")
def big_hub_copy(tmp_path_factory):
    return write_hub_copy(tmp_path_factory.mktemp("big") / "USPTO-3M", uspto3m_columns(many_rows(3000)))


# ------------------------------------------------------------------------------ field helpers
def test_claim_numbers_are_stripped_but_not_numbers_in_the_text():
    assert strip_claim_number("1. A method") == "A method"
    assert strip_claim_number("1 . A method") == "A method"
    assert strip_claim_number("12.A method") == "A method"
    assert strip_claim_number("1.5 mm thick sheet") == "1.5 mm thick sheet"
    assert strip_claim_number("3D printer comprising") == "3D printer comprising"


def test_dates_are_normalized_or_rejected():
    assert normalize_date("2013-01-08") == "2013-01-08"
    assert normalize_date("2013-01-08 00:00:00") == "2013-01-08"
    assert normalize_date("20130108") == "2013-01-08"
    assert normalize_date(None) is None
    with pytest.raises(ValueError, match=r"record 'US1' has date 'Jan 2013'"):
        normalize_date("Jan 2013", "US1")


def test_text_fields_are_validated():
    assert parse_text_fields("title, abstract") == ("title", "abstract")
    assert parse_text_fields(None) is None
    with pytest.raises(ValueError, match="unknown text field 'description'"):
        parse_text_fields("title,description")
    with pytest.raises(ValueError, match="repeated"):
        parse_text_fields("title,title")


# ------------------------------------------------------------------------------ USPTO-3M layout
def test_hub_layout_reader_normalizes_and_counts(hub_copy):
    counters = {}
    records = list(iter_records(hub_copy, counters=counters))
    by_id = {}
    for record in records:
        by_id.setdefault(record["id"], []).append(record)
    assert sorted(by_id) == ["8000001", "8000002", "8000003", "8000006"]
    assert by_id["8000001"][0] == {
        "id": "8000001",
        "text": "A detergent composition comprising a surfactant.",
        "labels": ["C11D", "Y10S"],
        "date": "2013-01-01",
        "title": None,
        "abstract": None,
    }
    assert by_id["8000002"][0]["text"] == "A semiconductor device having a gate."
    assert by_id["8000003"][0]["text"] == "A method of routing packets."
    assert by_id["8000006"][0]["labels"] == ["B01J"]
    # The reader yields rows one for one; merging repeated ids is the job of load_uspto3m / prepare.
    assert len(by_id["8000002"]) == 2
    assert counters == {"records_read": 8, "empty_text": 2, "invalid_codes": 2, "no_labels": 1}


def test_a_local_copy_given_as_hub_format_reads_like_parquet(hub_copy):
    as_hub = list(iter_records(hub_copy, input_format="hub"))
    via_pyarrow = list(iter_records(hub_copy, input_format="parquet"))
    assert as_hub == via_pyarrow
    assert len(via_pyarrow) == 5


def test_hub_id_offline_fails_with_one_line_suggesting_a_local_copy():
    with pytest.raises(ConnectionError) as error:
        load_uspto3m("MalavP/USPTO-3M")
    message = str(error.value)
    assert "\n" not in message
    assert "MalavP/USPTO-3M" in message and "--local-dir" in message


def test_missing_column_and_truncated_parquet_are_one_line_errors(tmp_path):
    no_labels = tmp_path / "no_labels.parquet"
    pq.write_table(pa.table({"id": ["1"], "date": ["2013-01-01"], "text": ["1. A claim."]}), no_labels)
    with pytest.raises(ValueError, match=r"has no column 'cpc_ids'.*expected the USPTO-3M layout"):
        list(iter_records(no_labels))
    with pytest.raises(ValueError, match=r"has no column 'cpc_ids'"):
        load_uspto3m(no_labels)
    truncated = tmp_path / "truncated.parquet"
    good = write_hub_copy(tmp_path / "good", uspto3m_columns(HUB_ROWS)) / "data" / "train-00000-of-00001.parquet"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cannot read .*truncated.parquet as Parquet") as error:
        list(iter_records(truncated))
    assert "\n" not in str(error.value)


def test_load_uspto3m_merges_duplicates_drops_empties_and_counts(hub_copy, caplog):
    counters = {}
    with caplog.at_level(logging.WARNING, logger="modernpatent_hf.data.uspto3m"):
        splits = load_uspto3m(hub_copy, validation_fraction=0.0, counters=counters)
    assert any("merged 1 records that repeat an earlier id" in message for message in caplog.messages)
    train = {row["id"]: row for row in splits["train"]}
    assert sorted(train) == ["8000001", "8000002", "8000003", "8000006"]
    assert train["8000002"]["labels"] == ["H01L", "G06F"]  # label union, first-seen order
    assert train["8000002"]["text"] == "A semiconductor device having a gate."
    assert len(splits["validation"]) == 0 and len(splits["test"]) == 0
    assert counters == {
        "records_read": 8,
        "invalid_codes": 2,
        "empty_text": 2,
        "no_labels": 1,
        "duplicate_ids_merged": 1,
    }
    rows_accounted = (
        len(splits["train"]) + counters["empty_text"] + counters["no_labels"] + counters["duplicate_ids_merged"]
    )
    assert rows_accounted == counters["records_read"]


def test_malformed_code_raises_naming_the_record_when_asked(hub_copy):
    with pytest.raises(CpcCodeError, match=r"'not-a-code' in record '8000006'"):
        load_uspto3m(hub_copy, on_invalid_code="raise")
    with pytest.raises(CpcCodeError, match=r"in record '8000006'"):
        list(iter_records(hub_copy, on_invalid_code="raise"))


def test_labels_outside_the_label_space_are_dropped_and_counted(hub_copy):
    counters = {}
    space = CpcLabelSpace(["C11D", "H01L", "B01J"])
    splits = load_uspto3m(hub_copy, validation_fraction=0.0, label_space=space, counters=counters)
    train = {row["id"]: row["labels"] for row in splits["train"]}
    # Y10S (8000001), G06F (8000002 after the merge) and G06F, H04L (8000003) are outside.
    assert train == {"8000001": ["C11D"], "8000002": ["H01L"], "8000006": ["B01J"]}
    assert counters["labels_outside_space"] == 4
    assert counters["no_labels_in_space"] == 1


def test_validation_split_is_upstreams_train_test_split_with_seed_42(big_hub_copy):
    splits = load_uspto3m(big_hub_copy)
    raw = load_dataset(str(big_hub_copy), split="train")
    upstream = raw.train_test_split(test_size=0.005, shuffle=True, seed=42)
    assert len(splits["validation"]) == 15
    assert set(splits["validation"]["id"]) == set(upstream["test"]["id"])
    assert set(splits["train"]["id"]) == set(upstream["train"]["id"])
    again = load_uspto3m(big_hub_copy)
    assert list(again["validation"]["id"]) == list(splits["validation"]["id"])
    other_seed = load_uspto3m(big_hub_copy, seed=7)
    assert set(other_seed["validation"]["id"]) != set(splits["validation"]["id"])


def test_test_split_samples_one_grant_year_as_upstream_and_leaves_train(big_hub_copy):
    splits = load_uspto3m(big_hub_copy, test_year=2015, test_size=40)
    test_ids = set(splits["test"]["id"])
    assert len(test_ids) == 40
    assert all(date.startswith("2015") for date in splits["test"]["date"])
    raw = load_dataset(str(big_hub_copy), split="train")
    upstream = raw.filter(lambda row: row["date"].startswith("2015")).shuffle(seed=42).select(range(40))
    assert test_ids == set(upstream["id"])
    assert not test_ids & set(splits["train"]["id"]) and not test_ids & set(splits["validation"]["id"])
    assert len(splits["train"]) + len(splits["validation"]) + 40 == 3000
    assert set(load_uspto3m(big_hub_copy, test_year=2015, test_size=40)["test"]["id"]) == test_ids
    assert set(load_uspto3m(big_hub_copy, test_year=2015, test_size=40, seed=1)["test"]["id"]) != test_ids
    with pytest.raises(ValueError, match=r"is dated in 2019; its years \(records\): 2013 \(\d+\), 2014"):
        load_uspto3m(big_hub_copy, test_year=2019)


def test_split_indices_partition_the_rows():
    dates = pa.chunked_array([[f"{2013 + i % 3}-01-01" for i in range(1000)]])
    parts = split_indices(1000, dates, validation_fraction=0.1, test_year=2014, test_size=50)
    together = np.concatenate(list(parts.values()))
    assert len(together) == 1000 and len(np.unique(together)) == 1000
    assert len(parts["test"]) == 50 and len(parts["validation"]) == 95
    by_fraction = split_indices(1000, test_fraction=0.2)
    assert len(by_fraction["test"]) == 200
    with pytest.raises(ValueError, match="either a test fraction or a test year"):
        split_indices(1000, test_fraction=0.2, test_year=2014)


def test_clean_records_unites_labels_of_repeated_ids_and_drops_empty_rows():
    dataset = Dataset.from_dict(
        {
            "id": ["b", "a", "b", "a", "c", "a", "d"],
            "text": ["", "first a", "b", "second a", "c", "third a", "d"],
            "labels": [["F03D"], ["H01L"], ["A01B"], ["G06F", "H01L"], ["C11D"], ["Y10S"], []],
        }
    )
    counters = {}
    cleaned = clean_records(dataset, counters)
    # The empty "b" is dropped first, so the later "b" is the one kept; "d" has no labels.
    assert cleaned["id"] == ["a", "b", "c"]
    assert cleaned["text"] == ["first a", "b", "c"]
    assert cleaned["labels"] == [["H01L", "G06F", "Y10S"], ["A01B"], ["C11D"]]
    assert counters == {"empty_text": 1, "no_labels": 1, "duplicate_ids_merged": 2}
    assert clean_records(cleaned, {}) is cleaned


def test_builder_configs_read_a_local_copy(hub_copy, tmp_path):
    raw = Uspto3mBuilder(config_name="first_claim", data_dir=str(hub_copy), cache_dir=str(tmp_path / "cache"))
    raw.download_and_prepare()
    published = raw.as_dataset(split="train")
    assert published.column_names == ["cpc_ids", "id", "date", "text"]
    assert published["cpc_ids"] == [row[0] for row in HUB_ROWS]
    assert published["text"][0] == HUB_ROWS[0][3]

    normalized = Uspto3mBuilder(config_name="normalized", data_dir=str(hub_copy), cache_dir=str(tmp_path / "cache"))
    normalized.download_and_prepare()
    records = normalized.as_dataset(split="train")
    assert records.column_names == ["id", "text", "labels", "date", "title", "abstract"]
    assert records.to_list() == list(iter_records(hub_copy))

    from_hub = Uspto3mBuilder(config_name="normalized", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(
        ConnectionError, match=r"cannot load 'MalavP/USPTO-3M' from the Hugging Face Hub .* --local-dir DIR"
    ):
        from_hub.download_and_prepare()


# ------------------------------------------------------------------------------ PatentBERT TSV
def test_tsv_reader_reduces_groups_to_subclasses(tmp_path):
    path = write_lines(
        tmp_path / "patents.tsv",
        [
            "group_ids\tid\tdate\ttext",
            "H01L21/02,H01L21/30,G06F3/01\t8523456\t20130903\t1. A method\twith a tab inside.",
            "A01B1/00\t8523457\t2013-09-10\t",
            "B01J 21/18,bogus\t8523458\t2013-09-17\t1. A catalyst.",
        ],
    )
    counters = {}
    records = list(iter_records(path, counters=counters))
    assert [record["id"] for record in records] == ["8523456", "8523458"]
    assert records[0]["labels"] == ["H01L", "G06F"]
    assert records[0]["text"] == "A method\twith a tab inside."
    assert records[0]["date"] == "2013-09-03"
    assert records[1]["labels"] == ["B01J"]
    assert counters == {"records_read": 3, "empty_text": 1, "invalid_codes": 1}


def test_tsv_errors_name_the_line_or_the_field(tmp_path):
    path = write_lines(tmp_path / "short.tsv", ["H01L21/02\t8523456\t2013-09-03\t1. A claim.", "H01L21/02\t8523457"])
    with pytest.raises(ValueError, match=r"short.tsv:2: expected 4 tab-separated columns .* found 2"):
        list(iter_records(path, on_bad_row="raise"))
    with pytest.raises(ValueError, match="holds only the first claim"):
        iter_records(path, text_fields="title,abstract")


# ------------------------------------------------------------------------------ JSON Lines
def test_jsonl_text_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "patents.jsonl",
        [
            {
                "id": "US1",
                "title": "Seed drill",
                "abstract": "A drill for seeds.",
                "cpc": ["A01C"],
                "claims": ["1. A seed drill.", "2. The drill of claim 1."],
            },
            {
                "id": "US2",
                "title": "Lamp",
                "abstract": "A lamp.",
                "cpc": ["F21V", "F21V 23/00"],
                "claims": "1. A lamp.",
            },
        ],
    )
    title_abstract = list(iter_records(path))
    assert [record["text"] for record in title_abstract] == ["Seed drill\nA drill for seeds.", "Lamp\nA lamp."]
    assert title_abstract[1]["labels"] == ["F21V"]
    assert title_abstract[0]["title"] == "Seed drill" and title_abstract[0]["abstract"] == "A drill for seeds."
    everything = list(iter_records(path, text_fields="title,abstract,claims"))
    assert everything[0]["text"] == "Seed drill\nA drill for seeds.\nA seed drill.\nThe drill of claim 1."
    # The first claim comes from a claims list; a claims string is not split into claims.
    first_claims = iter_records(path, text_fields=["first_claim"])
    assert next(first_claims)["text"] == "A seed drill."
    with pytest.raises(ValueError, match=r"record 'US2' has no 'first_claim' field"):
        next(first_claims)


def test_jsonl_missing_fields_are_counted_or_an_error(tmp_path):
    path = write_jsonl(
        tmp_path / "patents.jsonl",
        [
            {"id": "US1", "title": "Seed drill", "cpc": ["A01C"]},  # no abstract: title alone is text
            {"id": "US2", "title": "", "abstract": None, "cpc": ["A01C"]},  # present but empty: dropped
        ],
    )
    counters = {}
    records = list(iter_records(path, counters=counters))
    assert [record["text"] for record in records] == ["Seed drill"]
    assert counters == {"records_read": 2, "missing_abstract": 1, "empty_text": 1}
    with pytest.raises(ValueError, match=r"record 'US1' has no 'claims' field .* \(title\)"):
        list(iter_records(path, text_fields="claims"))


def test_jsonl_codes_drop_or_raise(tmp_path):
    path = write_jsonl(
        tmp_path / "patents.jsonl", [{"id": "US1", "title": "T", "abstract": "A", "cpc": ["A01C", "USPC 123/456", 7]}]
    )
    counters = {}
    assert [record["labels"] for record in iter_records(path, counters=counters)] == [["A01C"]]
    assert counters["invalid_codes"] == 2
    with pytest.raises(CpcCodeError, match=r"'USPC 123/456' in record 'US1'"):
        list(iter_records(path, on_invalid_code="raise"))


def test_jsonl_bad_input_errors(tmp_path):
    bad_json = write_lines(
        tmp_path / "bad.jsonl", ['{"id": "US1", "cpc": ["A01C"], "title": "T"}', '{"id": "US2", "cpc": ']
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        list(iter_records(bad_json, on_bad_row="raise"))
    no_cpc = write_jsonl(tmp_path / "no_cpc.jsonl", [{"id": "US1", "title": "T"}])
    with pytest.raises(ValueError, match=r"no_cpc.jsonl:1: record 'US1' has no 'cpc' field"):
        list(iter_records(no_cpc, on_bad_row="raise"))
    no_id = write_jsonl(tmp_path / "no_id.jsonl", [{"title": "T", "cpc": ["A01C"]}])
    with pytest.raises(ValueError, match=r"no_id.jsonl:1: record has no 'id'"):
        list(iter_records(no_id, on_bad_row="raise"))
    packed = gzip.compress(b"".join(b'{"id": "US%d", "title": "T", "cpc": ["A01C"]}\n' % i for i in range(2000)))
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*truncated.jsonl.gz after line \d+") as error:
        list(iter_records(truncated))
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        iter_records(tmp_path / "nowhere.jsonl")


def test_prepare_and_predict_read_json_lines_alike(tmp_path):
    """prepare (iter_records) and predict (row_id_and_text) read the same rows of iter_rows alike."""
    rows = [
        {"id": "US1", "cpc": ["A01B"], "title": "Plough", "abstract": "A blade."},
        {"id": 2, "cpc": ["H01L"], "title": "Wafer", "claims": ["1. A gate.", "2. A layer."]},
    ]
    path = write_lines(tmp_path / "same.jsonl", [json.dumps(rows[0]), "", json.dumps(rows[1])])
    counters = {}
    assert [where for where, _ in iter_rows(path, "jsonl", counters=counters)] == [f"{path}:1", f"{path}:3"]
    assert counters == {"empty_lines": 1}
    for fields in (("title", "abstract"), ("title", "first_claim")):
        prepared = [(record["id"], record["text"]) for record in iter_records(path, text_fields=fields)]
        predicted = [row_id_and_text(where, row, fields, {}) for where, row in iter_rows(path, "jsonl")]
        assert predicted == prepared and prepared[1] == ("2", "Wafer" if "abstract" in fields else "Wafer\nA gate.")
    bad = write_lines(tmp_path / "bad.jsonl", [json.dumps(rows[0]), '{"id": "US3", "cpc": '])
    with pytest.raises(ValueError) as prepare_error:
        list(iter_records(bad, on_bad_row="raise"))
    where, line = list(iter_rows(bad, "jsonl"))[1]
    with pytest.raises(BadRow) as predict_error:
        row_id_and_text(where, line, ("title", "abstract"), {})
    assert str(prepare_error.value) == str(predict_error.value)
    assert str(predict_error.value).startswith(f"{bad}:2: not valid JSON (Expecting value, column ")


# ------------------------------------------------------------------------------ dataset card
CARD = os.path.join(os.path.dirname(__file__), os.pardir, "dataset_card", "README.md")


def test_dataset_card_configs_load_a_copy_with_the_declared_features(tmp_path):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(CARD)
    assert card.data.license == "unknown"
    assert card.data.task_categories == ["text-classification"] and card.data.size_categories == ["1M<n<10M"]
    copy = write_hub_copy(tmp_path / "USPTO-3M", uspto3m_columns(HUB_ROWS))
    (copy / "README.md").write_text(open(CARD, encoding="utf-8").read(), encoding="utf-8")
    train = load_dataset(str(copy), split="train")
    declared = {feature["name"]: feature["dtype"] for feature in card.data.dataset_info["features"]}
    assert {name: feature.dtype for name, feature in train.features.items()} == declared
    assert len(train) == len(HUB_ROWS)


def test_dataset_card_figures_match_the_label_counts(shared_data):
    from modernpatent_hf.cpc import read_counts_tsv

    counts = read_counts_tsv(shared_data / "uspto3m_label_counts.tsv")
    ranked = sorted(counts.values(), reverse=True)
    total = sum(ranked)
    text = open(CARD, encoding="utf-8").read()
    assert f"| label occurrences | {total:,} |" in text
    assert f"| labels per patent (mean) | {total / 3_198_360:.3f} |" in text
    classes, sections = {code[:3] for code in counts}, {code[0] for code in counts}
    assert f"| subclasses / classes / sections | {len(counts)} / {len(classes)} / {len(sections)} |" in text
    shares = " / ".join(f"{100 * sum(ranked[:n]) / total:.1f} %" for n in (10, 30, 100))
    assert f"| share of the 10 / 30 / 100 most frequent subclasses | {shares} |" in text
    below = " / ".join(str(sum(n < limit for n in ranked)) for limit in (10, 100, 1000, 10_000))
    assert f"| subclasses with fewer than 10 / 100 / 1,000 / 10,000 occurrences | {below} |" in text
    for section in sorted(sections):
        n = sum(count for code, count in counts.items() if code[0] == section)
        assert f"| {n:,} | {100 * n / total:.1f} % |" in text, section
    for code, n in sorted(counts.items(), key=lambda item: -item[1])[:10]:
        assert f"| {code} | {n:,} | {100 * n / total:.1f} % |" in text, code
