"""USPTO-3M as it really is: grants of 2000-2015 in one `train` split, bad rows among 3.2 M, and the seed's test sets
published apart from it. Copies in the real schema come from modernpatent_hf.data.standins; Hub ids resolve through a
Hugging Face cache laid out in the test (no network)."""

import dataclasses
import shutil

import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from modernpatent_hf.commands.arguments import read_yaml_config
from modernpatent_hf.configs import DataArguments
from modernpatent_hf.data import dates as dates_module
from modernpatent_hf.data import prepare as prepare_module
from modernpatent_hf.data import sources as sources_module
from modernpatent_hf.data import uspto3m as uspto3m_module
from modernpatent_hf.data.leakage import split_overlap
from modernpatent_hf.data.prepare import prepare_dataset
from modernpatent_hf.data.prepare_config import PrepareConfig
from modernpatent_hf.data.records import load_dataset_dir
from modernpatent_hf.data.sources import TEST_2016_HUB_ID, USPTO3M_HUB_ID
from modernpatent_hf.data.splits import RECORDS_NOT_WRITTEN
from modernpatent_hf.data.standins import overlap_candidates, write_test_set_copy, write_uspto3m_copy
from modernpatent_hf.data.uspto3m import load_uspto3m
from modernpatent_hf.hub_cache import publish_to_offline_cache

from testing_utils import REPO_ROOT

ROWS = 3000  # the smallest copy that holds one bad row of each kind, with room between them
TEST_ROWS = 200


@pytest.fixture(scope="module")
def uspto3m_copy(tmp_path_factory):
    """A 2000-2015 copy in USPTO-3M's schema with one bad row of each kind, and its summary."""
    out = tmp_path_factory.mktemp("uspto3m") / "USPTO-3M"
    return out, write_uspto3m_copy(str(out), ROWS, seed=0)


@pytest.fixture(scope="module")
def test_set_copy(tmp_path_factory, uspto3m_copy):
    """A 2016 test set with integer ids, three of whose rows repeat a training row's text and codes."""
    train, summary = uspto3m_copy
    out = tmp_path_factory.mktemp("test2016") / "claims_2016"
    return out, write_test_set_copy(str(out), TEST_ROWS, seed=1, overlap_from=overlap_candidates(str(train), summary))


def refuse_reading(*args, **kwargs):
    raise AssertionError("read the records before checking the split settings")


def test_a_test_year_the_data_lacks_is_refused_from_the_dates_alone(uspto3m_copy, tmp_path, monkeypatch):
    """The recipes' old `test_year: 2016` against grants of 2000-2015: one line listing the years, before any record
    is read or normalized."""
    copy, _ = uspto3m_copy
    monkeypatch.setattr(prepare_module, "iter_records", refuse_reading)
    with pytest.raises(ValueError) as error:
        prepare_dataset(PrepareConfig(inputs=copy, out=tmp_path / "out", test_year=2016, test_size=100))
    message = str(error.value)
    assert "\n" not in message and "is dated in 2016" in message
    assert "its years (records): 2000 (" in message and "2015 (" in message and "2016 (" not in message
    assert "test_dataset_name_or_path" in message
    assert not (tmp_path / "out").exists()

    monkeypatch.setattr(uspto3m_module, "normalize_uspto3m_batch", refuse_reading)
    with pytest.raises(ValueError, match=r"is dated in 2016; its years \(records\): 2000 \("):
        load_uspto3m(copy, test_year=2016)


def test_the_years_listed_are_four_digit_years_only():
    """Bad dates ("n/a", full-width digits) are bad rows, not years to choose from."""
    dates = pa.array(["2001-01-02", "n/a", None, "2001-05-06", "\uff12\uff10\uff11\uff15-01-01", " 2003-07-08"])
    assert dates_module.year_counts(dates) == {"2001": 2, "2003": 1}


def test_a_hub_source_is_checked_where_it_is_published_before_the_download(uspto3m_copy, tmp_path, monkeypatch):
    """Online, the dates of `MalavP/USPTO-3M` are read on the Hub (its date column only) before any file is downloaded;
    here a local folder laid out as the Hub's `datasets/<id>/` stands in for HfFileSystem."""
    copy, _ = uspto3m_copy
    shutil.copytree(copy, tmp_path / "hub" / "datasets" / USPTO3M_HUB_ID)
    monkeypatch.setattr(
        dates_module, "HfFileSystem", lambda: DirFileSystem(path=str(tmp_path / "hub"), fs=LocalFileSystem())
    )
    monkeypatch.setattr(sources_module, "snapshot_download", refuse_reading)
    with pytest.raises(ValueError, match=r"is dated in 2016; its years \(records\): 2000 \("):
        prepare_dataset(PrepareConfig(inputs=USPTO3M_HUB_ID, out=tmp_path / "out", test_year=2016))
    assert dates_module.hub_date_years(USPTO3M_HUB_ID) == dates_module.date_years(copy, "parquet")
    assert dates_module.hub_date_years("0zo/not-published") is None  # then the check runs after the download


def test_bad_rows_are_counted_and_skipped_not_fatal(uspto3m_copy, tmp_path):
    copy, summary = uspto3m_copy
    result = prepare_dataset(
        PrepareConfig(inputs=copy, out=tmp_path / "out", validation_fraction=0.1, test_year=2015, test_size=100)
    )
    counts, bad = result["counts"], summary["bad_rows"]
    assert counts["records_read"] == ROWS
    assert counts["bad_rows"] == len(bad["bad_date"]) + len(bad["empty_id"]) > 0
    assert counts["empty_text"] == len(bad["empty_text"])
    assert counts["duplicate_ids_merged"] == len(bad["duplicate_id"])
    assert counts["invalid_codes"] >= len(bad["bad_code"])
    written = sum(result["rows_per_split"].values())
    assert written + sum(counts.get(key, 0) for key in RECORDS_NOT_WRITTEN) == ROWS
    assert result["rows_per_split"]["test"] == 100

    with pytest.raises(ValueError, match=r"record '\d+' has date '(2007-13-45|n/a)'|record has no 'id'"):
        prepare_dataset(PrepareConfig(inputs=copy, out=tmp_path / "strict", on_bad_row="raise"))


def test_a_separate_test_set_is_the_test_split_as_published(uspto3m_copy, test_set_copy, tmp_path):
    copy, _ = uspto3m_copy
    test_copy, test_summary = test_set_copy
    assert pq.read_schema(next(test_copy.glob("data/*.parquet"))).field("id").type == "int64"
    result = prepare_dataset(
        PrepareConfig(inputs=copy, out=tmp_path / "out", test_input=[test_copy], validation_fraction=0.1)
    )
    counts = result["counts"]
    assert counts["test_records_read"] == TEST_ROWS
    # The three training rows whose text is in the test set leave the training pool; the test set stays whole.
    assert counts["records_removed_for_test_overlap"] == len(test_summary["overlap_rows"]) == 3
    splits = load_dataset_dir(str(tmp_path / "out"))
    # Only test rows whose every code is outside the training label space leave it (no_labels_in_space, all splits).
    assert TEST_ROWS - counts.get("no_labels_in_space", 0) <= len(splits["test"]) <= TEST_ROWS
    assert all(isinstance(record_id, str) and record_id.isdigit() for record_id in splits["test"]["id"])
    assert {date[:4] for date in splits["test"]["date"]} == {"2016"}
    assert max(date for date in splits["train"]["date"] if date) < "2016"
    assert split_overlap(splits) == {"shared_ids": 0, "shared_texts": 0, "example": None}
    total = ROWS + TEST_ROWS
    assert sum(result["rows_per_split"].values()) + sum(counts.get(key, 0) for key in RECORDS_NOT_WRITTEN) == total

    sampled = prepare_dataset(
        PrepareConfig(inputs=copy, out=tmp_path / "sampled", test_input=[test_copy], test_size=50)
    )
    prepare_dataset(PrepareConfig(inputs=copy, out=tmp_path / "again", test_input=[test_copy], test_size=50))
    assert sampled["rows_per_split"]["test"] <= 50
    assert (
        load_dataset_dir(str(tmp_path / "sampled"))["test"]["id"]
        == load_dataset_dir(str(tmp_path / "again"))["test"]["id"]
    )
    with pytest.raises(ValueError, match="a separate test set replaces test_year"):
        prepare_dataset(PrepareConfig(inputs=copy, out=tmp_path / "both", test_input=[test_copy], test_year=2015))


def test_hub_ids_resolve_through_the_hugging_face_cache(uspto3m_copy, test_set_copy, tmp_path, monkeypatch):
    """`MalavP/USPTO-3M` and the 2016 test set by their Hub ids, offline, from a cache as `hf download` fills it."""
    copy, _ = uspto3m_copy
    test_copy, _ = test_set_copy
    hf_home = tmp_path / "hf-home"
    publish_to_offline_cache(str(hf_home), USPTO3M_HUB_ID, str(copy), repo_type="dataset")
    publish_to_offline_cache(str(hf_home), TEST_2016_HUB_ID, str(test_copy), repo_type="dataset")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    from_hub = prepare_dataset(
        PrepareConfig(
            inputs=USPTO3M_HUB_ID, out=tmp_path / "hub", test_input=[TEST_2016_HUB_ID], validation_fraction=0.1
        )
    )
    from_files = prepare_dataset(
        PrepareConfig(inputs=copy, out=tmp_path / "files", test_input=[test_copy], validation_fraction=0.1)
    )
    assert from_hub["rows_per_split"] == from_files["rows_per_split"] and from_hub["counts"] == from_files["counts"]
    assert (
        load_dataset_dir(str(tmp_path / "hub"))["test"]["id"]
        == load_dataset_dir(str(tmp_path / "files"))["test"]["id"]
    )
    with pytest.raises(
        ConnectionError, match=r"cannot load '0zo/not-published' from the Hugging Face Hub .*hf download"
    ):
        prepare_dataset(
            PrepareConfig(inputs=USPTO3M_HUB_ID, out=tmp_path / "missing", test_input=["0zo/not-published"])
        )


def test_a_hub_dataset_published_without_parquet_is_read_from_the_hubs_parquet_conversion(
    test_set_copy, tmp_path, monkeypatch
):
    test_copy, _ = test_set_copy
    (tmp_path / "main").mkdir()  # a CSV-only repo: nothing matches the Parquet patterns on its main branch
    revisions = []

    def snapshot(repo_id, repo_type, allow_patterns, revision=None):
        revisions.append(revision)
        return str(test_copy) if revision == sources_module.HUB_PARQUET_REVISION else str(tmp_path / "main")

    monkeypatch.setattr(sources_module, "snapshot_download", snapshot)
    assert sources_module.hub_dataset_snapshot(TEST_2016_HUB_ID) == str(test_copy)
    assert revisions == [None, "refs/convert/parquet"]


def test_recipes_evaluate_on_the_seeds_test_sets_or_a_year_uspto3m_has():
    recipes = REPO_ROOT / "recipes" / "modernbert-base"
    expected = {
        "finetune/config_full.yaml": ("0zo/google_patentsview_claims_2016", None),
        "finetune/config_test_2017b.yaml": ("0zo/google_patentsview_claims_2017-B", None),
        "finetune/config_year_split.yaml": (None, 2015),
    }
    data_fields = {item.name for item in dataclasses.fields(DataArguments)}
    for name, (test_set, year) in expected.items():
        recipe = read_yaml_config(str(recipes / name))
        data_args = DataArguments(**{key: value for key, value in recipe.items() if key in data_fields})
        assert (data_args.dataset_name_or_path, data_args.test_dataset_name_or_path, data_args.test_year) == (
            USPTO3M_HUB_ID,
            test_set,
            year,
        ), name
        assert data_args.validation_fraction == 0.005 and data_args.split_seed == 42
    # Pretraining splits USPTO-3M as fine-tuning does, so it never sees a patent that fine-tuning tests on.
    pretrain = (recipes / "pretrain" / "config_full.yaml").read_text()
    assert "test_dataset_name_or_path: 0zo/google_patentsview_claims_2016" in pretrain
    assert all("test_year: 2016" not in path.read_text() for path in REPO_ROOT.glob("recipes/**/*.yaml"))
