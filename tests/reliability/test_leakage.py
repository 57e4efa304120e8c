"""Leakage between splits: prepare keeps duplicated texts out of two splits, the writer and training refuse overlap."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modernpatent_hf import CpcLabelSpace
from modernpatent_hf.configs import DataArguments
from modernpatent_hf.data.leakage import EDGE_WORDS, duplicate_keys, normalize_text, text_key
from modernpatent_hf.data.loading import load_patent_splits
from modernpatent_hf.data.prepare import prepare_dataset
from modernpatent_hf.data.prepare_config import PrepareConfig
from modernpatent_hf.data.records import load_dataset_dir, write_dataset_dir

SPLITS = ("train", "validation", "test")
GROUPS = 25  # texts written three times, in three spellings, under three ids
NEAR_PAIRS = 15  # texts sharing their first and last EDGE_WORDS words, differing inside


def corpus():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(500)]
    rows = [
        {"id": f"U{i}", "title": f"Unique patent {i}", "abstract": " ".join(rng.choice(words, 8)), "cpc": ["A01B"]}
        for i in range(300)
    ]
    for g in range(GROUPS):
        for copy, (title, abstract) in enumerate(
            [
                (f"A Seed Drill for group {g}", "It sows seeds."),
                (f"a seed  drill FOR GROUP {g}", "it sows SEEDS."),
                (f"A seed\tdrill for group {g}\n", " It sows seeds. "),
            ]
        ):
            rows.append({"id": f"D{g}-{copy}", "title": title, "abstract": abstract, "cpc": ["A01C"]})
    for p in range(NEAR_PAIRS):
        edge = [f"pair{p}word{i}" for i in range(EDGE_WORDS)]
        for variant in ("a plough", "a harrow with discs"):
            rows.append(
                {
                    "id": f"N{p}-{variant[2]}",
                    "title": " ".join(edge),
                    "abstract": f"{variant} {' '.join(edge)}",
                    "cpc": ["A01B"],
                }
            )
    return rows


def split_of(dataset):
    return {record_id: name for name in SPLITS for record_id in dataset[name]["id"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same prepare command three times: twice as shipped, once with the move to train switched off."""
    tmp_path = tmp_path_factory.mktemp("leakage")
    source = tmp_path / "patents.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in corpus()), encoding="utf-8")

    def config(out):
        return PrepareConfig(inputs=source, out=tmp_path / out, validation_fraction=0.25, test_fraction=0.25)

    summary = prepare_dataset(config("a"), progress=False)
    again = prepare_dataset(config("b"), progress=False)
    with pytest.MonkeyPatch.context() as patch:  # the split drawn before the move, written despite its overlap
        patch.setattr(
            "modernpatent_hf.data.splits.move_shared_texts_to_train", lambda keys, positions: (dict(positions), 0)
        )
        patch.setattr("modernpatent_hf.data.records._refuse_shared_texts", lambda *args: None)
        prepare_dataset(config("unmoved"), progress=False)
    return {
        "summary": summary,
        "again": again,
        "moved": load_dataset_dir(str(tmp_path / "a")),
        "repeat": load_dataset_dir(str(tmp_path / "b")),
        "unmoved": load_dataset_dir(str(tmp_path / "unmoved")),
    }


def test_definitions():
    assert normalize_text("  A  Seed\tDRILL\n") == "a seed drill"
    assert normalize_text("Straße") == normalize_text("STRASSE")  # casefold, not lower
    assert text_key("A Seed  Drill") == text_key("a seed drill ") != text_key("a seed drills")
    edge = " ".join(f"e{i}" for i in range(EDGE_WORDS))
    exact, near = duplicate_keys(
        [f"{edge} one middle {edge}", f"{edge} another middle {edge}", f"x {edge} one middle {edge}"]
    )
    assert exact.dtype == np.uint64 and near.dtype == np.uint64  # 8 bytes a record, whatever the text length
    assert exact[0] != exact[1] and near[0] == near[1] != near[2]


def test_duplicated_texts_that_span_splits_all_go_to_train(runs):
    moved, unmoved = split_of(runs["moved"]), split_of(runs["unmoved"])
    expected_moves = 0
    for g in range(GROUPS):
        copies = [f"D{g}-{copy}" for copy in range(3)]
        before = {unmoved[i] for i in copies}
        if len(before) > 1:
            assert {moved[i] for i in copies} == {"train"}, (g, before)
            expected_moves += sum(unmoved[i] != "train" for i in copies)
        else:  # all copies in one split already: nothing leaks, nothing moves
            assert {moved[i] for i in copies} == before
    assert expected_moves > 0, "the corpus should have groups that span splits"
    assert runs["summary"]["counts"]["duplicate_texts_moved_to_train"] == expected_moves
    assert runs["summary"]["leakage"]["duplicate_texts_moved_to_train"] == expected_moves
    others = [i for i in unmoved if not i.startswith("D")]
    assert all(moved[i] == unmoved[i] for i in others), "records without a duplicate must keep their split"


def test_no_normalized_text_is_left_in_two_splits(runs):
    seen = {}
    for name in SPLITS:
        for text in runs["moved"][name]["text"]:
            assert seen.setdefault(normalize_text(text), name) == name, text
    # The check itself works: without the move the same corpus leaks.
    texts_by_split = {name: {normalize_text(t) for t in runs["unmoved"][name]["text"]} for name in SPLITS}
    assert texts_by_split["train"] & (texts_by_split["validation"] | texts_by_split["test"])


def test_near_duplicates_across_splits_are_counted_not_moved(runs):
    def edges(text):
        words = normalize_text(text).split(" ")
        return tuple(words[:EDGE_WORDS] + words[-EDGE_WORDS:]) if len(words) > 2 * EDGE_WORDS else tuple(words)

    splits_of_key = {}
    for name in SPLITS:
        for text in runs["moved"][name]["text"]:
            splits_of_key.setdefault(edges(text), []).append(name)
    expected = sum(len(names) for names in splits_of_key.values() if len(set(names)) > 1)
    assert expected > 0, "the corpus should have near duplicates in two splits"
    assert runs["summary"]["counts"]["near_duplicates_across_splits"] == expected
    assert runs["summary"]["leakage"]["near_duplicates_across_splits"] == expected
    assert split_of(runs["moved"])["N0-p"] == split_of(runs["unmoved"])["N0-p"]


def test_the_outcome_is_deterministic(runs):
    assert split_of(runs["moved"]) == split_of(runs["repeat"])
    assert runs["summary"]["counts"] == runs["again"]["counts"]


# ------------------------------------------------------------------------------ the writer and training refuse overlap
def record(record_id, text):
    return {"id": record_id, "text": text, "labels": ["A01B"], "date": None, "title": None, "abstract": None}


def test_write_dataset_dir_refuses_a_text_in_two_splits(tmp_path):
    splits = {
        "train": [record("US1", "A seed drill."), record("US2", "A plough."), record("US2b", "a PLOUGH.")],
        "test": [record("US3", "A harrow."), record("US4", "  a  seed DRILL. ")],
    }
    with pytest.raises(ValueError) as error:
        write_dataset_dir(str(tmp_path / "out"), splits, CpcLabelSpace(["A01B"]), progress=False)
    message = str(error.value)
    assert message.startswith(
        "2 records share their normalized text with a record of another split (e.g. id 'US1' in 'train')"
    )
    assert "\n" not in message
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())
    # Repeats inside one split do not leak: US2 and US2b are written.
    del splits["test"][1]
    assert write_dataset_dir(str(tmp_path / "out"), splits, CpcLabelSpace(["A01B"]), progress=False) == {
        "train": 3,
        "test": 1,
    }


def leaky_directory(tmp_path, extra_test_row):
    """A prepared directory whose test split was edited by hand to hold ``extra_test_row``."""
    out = tmp_path / "prepared"
    train = [record(f"US{i}", f"Patent text number {i}.") for i in range(20)]
    # datasets caches a directory by its README, which the hand edit leaves as it was: a test row of its own
    # gives each case a README (content fingerprint) of its own.
    test = [record("US100", f"A text that goes with {extra_test_row['id']}.")]
    write_dataset_dir(str(out), {"train": train, "test": test}, CpcLabelSpace(["A01B"]), progress=False)
    shard = out / "data" / "test-00000.parquet"
    table = pq.read_table(shard)
    # Labels are stored as class-label indices of the label space (here A01B = 0).
    extra = {**extra_test_row, "labels": [0]}
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([extra], schema=table.schema)]), shard)
    return out


@pytest.mark.parametrize(
    "extra_test_row, words",
    [
        (
            record("US200", "patent   TEXT number 3."),
            "0 records share their id and 2 their normalized text with another split (e.g. id 'US3' in 'train')",
        ),
        (
            record("US5", "Yet another text."),
            "2 records share their id and 0 their normalized text with another split (e.g. id 'US5' in 'train')",
        ),
    ],
)
def test_training_refuses_overlapping_splits_unless_allowed(tmp_path, extra_test_row, words):
    prepared = leaky_directory(tmp_path, extra_test_row)
    with pytest.raises(ValueError) as error:
        load_patent_splits(DataArguments(dataset_name_or_path=str(prepared)), str(tmp_path / "work"))
    message = str(error.value)
    assert words in message and "allow_split_overlap: true" in message and "\n" not in message
    splits, _ = load_patent_splits(
        DataArguments(dataset_name_or_path=str(prepared), allow_split_overlap=True), str(tmp_path / "work")
    )
    assert len(splits["test"]) == 2
