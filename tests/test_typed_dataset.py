"""Typed prepared datasets: class-label labels and date32 dates that load_dataset(DIR) alone understands, and a push."""

import datetime
import gzip
import json

import datasets
import pytest
import yaml
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, RepoUrl

from modernpatent_hf import CpcLabelSpace, generate_synthetic_records, write_synthetic_corpus
from modernpatent_hf.data.prepare import prepare_dataset
from modernpatent_hf.data.prepare_config import PrepareConfig
from modernpatent_hf.data.records import load_dataset_dir, push_dataset_dir, write_dataset_dir


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """`modernpatent prepare` of generated JSON Lines records (title, abstract, cpc, date), with a test split."""
    directory = tmp_path_factory.mktemp("typed")
    source = directory / "records.jsonl.gz"
    with gzip.open(source, "wt", encoding="utf-8") as handle:
        for record in generate_synthetic_records(400, seed=7, num_subclasses=20):
            words = record["text"].split()
            handle.write(
                json.dumps(
                    {
                        "id": record["id"],
                        "title": " ".join(words[:6]),
                        "abstract": " ".join(words[6:]),
                        "cpc": record["labels"],
                        "date": record["date"],
                    }
                )
                + "\n"
            )
    out = directory / "prepared"
    prepare_dataset(PrepareConfig(inputs=[source], out=out, test_fraction=0.2), progress=False)
    return out


def test_load_dataset_alone_names_the_cpc_codes_and_reads_dates_as_dates(prepared):
    raw = datasets.load_dataset(str(prepared))
    codes = list(CpcLabelSpace.load(prepared).codes)
    normalized = load_dataset_dir(str(prepared))
    for split in ("train", "validation", "test"):
        features = raw[split].features
        assert isinstance(features["labels"], datasets.List)
        assert isinstance(features["labels"].feature, datasets.ClassLabel)
        assert features["labels"].feature.names == codes  # the label space, in its order
        assert features["date"] == datasets.Value("date32")
        rows = raw[split]
        assert all(isinstance(value, int) for labels in rows["labels"] for value in labels)
        assert all(isinstance(value, datetime.date) for value in rows["date"])
        # The readers' view: the same records with their codes and YYYY-MM-DD strings.
        assert normalized[split].features["labels"] == datasets.List(datasets.Value("string"))
        assert normalized[split]["id"] == rows["id"] and normalized[split]["text"] == rows["text"]
        assert normalized[split]["labels"] == [features["labels"].feature.int2str(labels) for labels in rows["labels"]]
        assert normalized[split]["date"] == [value.isoformat() for value in rows["date"]]
    assert {code for labels in normalized["train"]["labels"] for code in labels} == set(codes)


def test_a_split_cached_in_several_arrow_files_reads_as_records(prepared, monkeypatch):
    """USPTO-3M's train split is too large for one Arrow cache file: datasets then gives it as a ConcatenationTable,
    which cannot set a column, and the conversion to codes and date strings must still work. Here the train split
    is made of two Arrow files (the table datasets builds for a split of several cache files)."""
    expected = load_dataset_dir(str(prepared))
    load_dataset = datasets.load_dataset

    def in_two_files(path, **options):
        loaded = load_dataset(path, **options)
        train, half = loaded["train"], len(loaded["train"]) // 2
        loaded["train"] = datasets.concatenate_datasets(
            [train.select(range(half)).flatten_indices(), train.select(range(half, len(train))).flatten_indices()]
        )
        assert type(loaded["train"].data).__name__ == "ConcatenationTable" and len(loaded["train"].cache_files) == 2
        return loaded

    monkeypatch.setattr(datasets, "load_dataset", in_two_files)
    normalized = load_dataset_dir(str(prepared))
    assert normalized["train"].to_list() == expected["train"].to_list()
    assert normalized["train"].features == expected["train"].features


def test_the_card_documents_the_typed_features(prepared):
    card = (prepared / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    features = {feature["name"]: feature for feature in header["dataset_info"]["features"]}
    names = features["labels"]["list"]["class_label"]["names"]
    assert [names[str(index)] for index in range(len(names))] == list(CpcLabelSpace.load(prepared).codes)
    assert features["date"]["dtype"] == "date32"
    assert "## Features" in card and "ClassLabel" in card


def test_a_label_outside_the_label_space_is_one_clear_error(tmp_path):
    space = CpcLabelSpace(["A01B", "H04W"])
    records = [
        {"id": "P1", "text": "a seed drill", "labels": ["A01B"], "date": "2020-01-02"},
        {"id": "P2", "text": "a radio network", "labels": ["H04W", "G06F"], "date": None},
    ]
    with pytest.raises(ValueError, match="record 'P2' of the 'train' split has label 'G06F'") as error:
        write_dataset_dir(str(tmp_path / "out"), {"train": records}, space, progress=False)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_push_dataset_dir_uploads_the_parquet_shards_and_the_card(tmp_path, monkeypatch):
    directory = tmp_path / "synthetic"
    write_synthetic_corpus(str(directory), n=300, seed=0)
    (directory / "notes.txt").write_text("not part of the dataset")
    repos, commits = [], []

    def create_repo(api, repo_id, **kwargs):
        repos.append((repo_id, kwargs.get("repo_type")))
        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def create_commit(api, repo_id, operations, *, commit_message, **kwargs):
        commits.append(
            {
                "repo_id": repo_id,
                "repo_type": kwargs.get("repo_type"),
                "files": {
                    op.path_in_repo: op.path_or_fileobj for op in operations if isinstance(op, CommitOperationAdd)
                },
            }
        )
        return CommitInfo(
            commit_url=f"https://huggingface.co/datasets/{repo_id}/commit/{'0' * 40}",
            commit_message=commit_message,
            commit_description="",
            oid="0" * 40,
        )

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    url = push_dataset_dir(str(directory), "tester/cpc-synthetic", token="hf_test_token_not_used")
    assert url == "https://huggingface.co/datasets/tester/cpc-synthetic"
    assert repos == [("tester/cpc-synthetic", "dataset")]
    [commit] = commits
    assert commit["repo_id"] == "tester/cpc-synthetic" and commit["repo_type"] == "dataset"
    shards = sorted(f"data/{path.name}" for path in (directory / "data").glob("*.parquet"))
    assert shards == ["data/test-00000.parquet", "data/train-00000.parquet", "data/validation-00000.parquet"]
    assert set(commit["files"]) == {*shards, "README.md", "label_space.json", "stats.json"}
    # What was uploaded is what load_dataset reads: the card's configs point at the shards, its features are typed.
    uploaded = tmp_path / "uploaded"
    for name, source in commit["files"].items():
        (uploaded / name).parent.mkdir(parents=True, exist_ok=True)
        (uploaded / name).write_bytes(open(source, "rb").read())
    loaded = datasets.load_dataset(str(uploaded))
    assert loaded["train"].features["labels"].feature.names == list(CpcLabelSpace.load(directory).codes)
    rows = json.loads((directory / "stats.json").read_text())["rows_per_split"]
    assert {split: len(loaded[split]) for split in loaded} == rows and sum(rows.values()) > 250
