"""CPC codes: normalization of real-world spellings, the hierarchy, and the label space."""

import json

import numpy as np
import pytest

from modernpatent_hf.cpc import (
    CpcCodeError,
    CpcLabelSpace,
    class_of,
    hierarchical_distance,
    normalize_subclass,
    parse_cpc_codes,
    read_counts_tsv,
    read_titles_tsv,
    section_of,
)


@pytest.mark.parametrize(
    "spelling, code",
    [
        ("A01B", "A01B"),
        ("a01b", "A01B"),
        (" A01B ", "A01B"),
        ("A01B 1/00", "A01B"),
        ("A01B1/00", "A01B"),
        ("A01B 1/00 (2006.01)", "A01B"),
        ("H01L21/02", "H01L"),
        ("Y10S 977/00", "Y10S"),
        ("G06F 16/51", "G06F"),
        ("H01L 21/0234", "H01L"),
        ("B82Y", "B82Y"),
    ],
)
def test_real_world_spellings_reduce_to_the_subclass(spelling, code):
    assert normalize_subclass(spelling) == code


@pytest.mark.parametrize("value", ["123/456", "", "   ", "A1B", "Z01B", "A01", "A01BB", "H01L 21/02 extra", "UNKNOWN"])
def test_values_that_are_not_cpc_symbols_raise_naming_value_and_record(value):
    with pytest.raises(CpcCodeError) as error:
        normalize_subclass(value, record_id="US123")
    message = str(error.value)
    assert repr(value) in message and "'US123'" in message and "\n" not in message


@pytest.mark.parametrize("value", [123, 4.5, None, {"code": "A01B"}])
def test_non_strings_raise(value):
    with pytest.raises(CpcCodeError, match="not a string"):
        normalize_subclass(value)


def test_parse_comma_joined_lists_dedupes_and_keeps_first_seen_order():
    assert parse_cpc_codes("C11D,Y10S") == (["C11D", "Y10S"], [])
    assert parse_cpc_codes(["G06F 16/51", "G06N3/08", "G06F17/30"]) == (["G06F", "G06N"], [])
    assert parse_cpc_codes("H01L21/02; H01L21/30 | B82Y 10/00") == (["H01L", "B82Y"], [])
    assert parse_cpc_codes(None) == ([], [])
    assert parse_cpc_codes(np.array(["A01B", "A01C"])) == (["A01B", "A01C"], [])


def test_parse_drop_mode_returns_the_invalid_values_for_counting():
    codes, invalid = parse_cpc_codes(["A01B 1/00", "123/456", "a01c", "IPC?"], errors="drop")
    assert codes == ["A01B", "A01C"] and invalid == ["123/456", "IPC?"]
    assert parse_cpc_codes(42, errors="drop") == ([], [42])


def test_parse_raise_mode_names_the_record():
    with pytest.raises(CpcCodeError, match="'US9'"):
        parse_cpc_codes("A01B,123/456", record_id="US9")
    with pytest.raises(ValueError, match="errors must be"):
        parse_cpc_codes("A01B", errors="ignore")


def test_hierarchy_levels_and_distance():
    assert section_of("A01B") == "A" and class_of("A01B") == "A01"
    assert hierarchical_distance("A01B", "A01B") == 0.0
    assert hierarchical_distance("A01B", "A01C") == 0.25
    assert hierarchical_distance("A01B", "A21D") == 0.5
    assert hierarchical_distance("A01B", "H01L") == 1.0
    assert hierarchical_distance("A01B", "A01C", weights=(3, 2, 1)) == 1.0


def space():
    return CpcLabelSpace.from_label_lists([["H01L", "A01B"], ["A01C"], ["A01B", "B60K"], ["A01B"]])


def test_label_space_is_sorted_with_derived_hierarchy():
    labels = space()
    assert labels.codes == ("A01B", "A01C", "B60K", "H01L")
    assert labels.classes == ("A01", "B60", "H01") and labels.sections == ("A", "B", "H")
    assert labels.subclass_to_class.tolist() == [0, 0, 1, 2]
    assert labels.class_to_section.tolist() == [0, 1, 2]
    assert labels.subclass_to_section.tolist() == [0, 0, 1, 2]
    assert labels.counts == {"A01B": 3, "A01C": 1, "B60K": 1, "H01L": 1}
    assert labels.label2id["B60K"] == 2 and labels.id2label[2] == "B60K"
    tensors = labels.hierarchy_tensors()
    assert tensors["subclass_to_section"].tolist() == [0, 0, 1, 2]


def test_min_count_filters_rare_codes():
    assert CpcLabelSpace.from_label_lists([["A01B"], ["A01B", "H01L"]], min_count=2).codes == ("A01B",)
    with pytest.raises(ValueError, match="min_count=5"):
        CpcLabelSpace.from_label_lists([["A01B"]], min_count=5)


def test_encode_decode_round_trip():
    labels = space()
    vector = labels.encode(["H01L", "A01B", "Z99Z"])
    assert vector.tolist() == [1, 0, 0, 1] and vector.dtype == np.float32
    assert labels.decode(vector) == ["A01B", "H01L"]
    assert labels.decode([0.2, 0.7, 0.5, 0.1], threshold=0.5) == ["A01C", "B60K"]
    assert labels.encode_batch([["A01C"], []]).tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]
    assert labels.encode_batch([]).shape == (0, 4)
    with pytest.raises(KeyError, match="Z99Z"):
        labels.encode(["Z99Z"], strict=True)
    with pytest.raises(ValueError, match="4 entries"):
        labels.decode([1, 0])


def test_distance_matrix_matches_pairwise_distance():
    labels = space()
    matrix = labels.distance_matrix()
    for i, a in enumerate(labels.codes):
        for j, b in enumerate(labels.codes):
            assert matrix[i, j] == hierarchical_distance(a, b)


def test_json_round_trip_with_titles(tmp_path):
    titles = tmp_path / "titles.tsv"
    titles.write_text("code\ttitle\nA01B\tSOIL WORKING\nH01L\tSEMICONDUCTOR DEVICES\n")
    labels = space().with_titles(titles)
    assert labels.title("A01B") == "SOIL WORKING" and labels.title("A01C") is None
    labels.save(tmp_path / "label_space.json")
    data = json.loads((tmp_path / "label_space.json").read_text())
    assert data["codes"] == list(labels.codes) and data["format"] == CpcLabelSpace.FORMAT
    loaded = CpcLabelSpace.load(tmp_path)  # a directory holding label_space.json
    assert loaded == labels and loaded.titles == labels.titles and loaded.counts == labels.counts


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no label space"):
        CpcLabelSpace.load(tmp_path)
    (tmp_path / "label_space.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CpcLabelSpace.load(tmp_path)
    (tmp_path / "label_space.json").write_text('{"codes": ["A01B"]}')
    with pytest.raises(ValueError, match="not a CPC label space"):
        CpcLabelSpace.load(tmp_path)


def test_shared_titles_and_counts_files(shared_data):
    titles = read_titles_tsv(shared_data / "cpc_subclass_titles.tsv")
    counts = read_counts_tsv(shared_data / "uspto3m_label_counts.tsv")
    assert len(titles) == 681 and titles["A01B"].startswith("SOIL WORKING")
    assert len(counts) == 665 and sum(counts.values()) == 6_134_189
    labels = CpcLabelSpace.from_counts(counts, titles=titles)
    assert len(labels) == 665 and len(labels.sections) == 9 and len(labels.classes) == 128
