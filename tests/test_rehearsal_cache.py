"""The offline rehearsal cache: USPTO-3M-shaped stand-ins, and real Hub ids resolving to them through the libraries.

huggingface_hub and transformers read their cache locations when they are imported, so resolution is checked in
a subprocess started with the rehearsal's environment (HF_HOME, HF_HUB_CACHE, offline switches) that imports
only the libraries, not this package.
"""

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modernpatent_hf.data import standins
from modernpatent_hf.data.rows import USPTO3M_COLUMNS
from modernpatent_hf.data.sources import TEST_2016_HUB_ID, TEST_2017B_HUB_ID, USPTO3M_HUB_ID
from modernpatent_hf.data.standins import (
    BAD_CODE,
    BAD_ROW_KINDS,
    iter_uspto3m_batches,
    overlap_candidates,
    uspto3m_bad_rows,
    write_test_set_copy,
    write_uspto3m_copy,
)
from modernpatent_hf.hub_cache import STAND_IN_MARKER, publish_to_offline_cache
from modernpatent_hf.rehearsal import main
from modernpatent_hf.rehearsal_cache import MODERNBERT_HUB_ID, build_offline_hub_cache

ROWS = 2000
SUBCLASS = re.compile(r"^[A-HY][0-9]{2}[A-Z]$")
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Variables that would point a library at another cache than the rehearsal's.
OTHER_CACHES = ("HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE", "HF_XET_CACHE", "HF_ASSETS_CACHE")


def read_copy(directory) -> pa.Table:
    return pq.read_table(sorted(Path(directory, "data").glob("train-*.parquet")))


def is_day(value: str) -> bool:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return bool(ISO_DATE.match(value))


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def train_copy(tmp_path_factory):
    out = tmp_path_factory.mktemp("uspto3m")
    summary = write_uspto3m_copy(str(out), ROWS, seed=0)
    return out, summary


def offline_env(monkeypatch, hf_home) -> dict:
    """The rehearsal's environment: HF_HOME and its hub cache, everything offline, no other cache location."""
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(Path(hf_home, "hub")))
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(variable, "1")
    for variable in OTHER_CACHES:
        monkeypatch.delenv(variable, raising=False)
    return dict(os.environ)


def run_offline(script: str, env: dict, cwd) -> dict:
    """Run ``script`` with this interpreter in the offline environment; it prints one JSON line, returned here."""
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"offline check failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- USPTO-3M copy
def test_uspto3m_copy_has_the_real_schema_and_bad_rows(train_copy):
    out, summary = train_copy
    assert summary["files"] == ["data/train-00000-of-00001.parquet"] and summary["rows"] == ROWS
    table = read_copy(out)
    assert table.column_names == list(USPTO3M_COLUMNS)
    assert all(pa.types.is_string(table.schema.field(name).type) for name in USPTO3M_COLUMNS)
    assert table.num_rows == ROWS
    card = Path(out, "README.md").read_text()
    assert "configs:" in card and "path: data/train-*" in card and "split: train" in card

    rows = table.to_pylist()
    bad = {row: kind for kind, positions in summary["bad_rows"].items() for row in positions}
    assert sorted(summary["bad_rows"]) == sorted(BAD_ROW_KINDS)
    assert all(len(positions) == 1 for positions in summary["bad_rows"].values())
    assert sorted(bad) == sorted(uspto3m_bad_rows(ROWS))

    for kind in BAD_ROW_KINDS:
        row = summary["bad_rows"][kind][0]
        values = rows[row]
        if kind == "bad_date":
            assert values["date"] in standins.BAD_DATES and not is_day(values["date"])
        elif kind == "empty_id":
            assert values["id"] == ""
        elif kind == "empty_text":
            assert values["text"] == ""
        elif kind == "duplicate_id":
            assert values["id"] == rows[row - 1]["id"] != ""
            assert values["cpc_ids"] != rows[row - 1]["cpc_ids"]
        elif kind == "bad_code":
            codes = values["cpc_ids"].split(",")
            assert BAD_CODE in codes and codes == sorted(codes) and len(codes) >= 2

    clean = [values for row, values in enumerate(rows) if row not in bad]
    # Dates: real days of 2000-2015 everywhere but the bad-date row.
    assert all(is_day(values["date"]) and "2000-01-01" <= values["date"] <= "2015-12-31" for values in clean)
    years = {values["date"][:4] for values in clean}
    assert years == {str(year) for year in range(2000, 2016)}
    # Codes: sorted, comma-joined CPC subclasses.
    for values in clean:
        codes = values["cpc_ids"].split(",")
        assert codes == sorted(set(codes)) and all(SUBCLASS.match(code) for code in codes), values["cpc_ids"]
    # Ids: numeric strings, unique but for the one duplicate.
    ids = [values["id"] for values in rows if values["id"] != ""]
    assert all(record_id.isdigit() for record_id in ids)
    assert len(ids) == ROWS - 1 and len(set(ids)) == ROWS - 2
    # About half the claims are numbered, the newer ones: older grants' first claims are not.
    numbered = [values["text"].startswith("1. ") for values in clean]
    assert 0.4 < sum(numbered) / len(numbered) < 0.6
    assert not any(values["text"].startswith("1. ") for values in clean if values["date"] < "2007-01-01")
    assert all(values["text"].startswith("1. ") for values in clean if values["date"] >= "2009-01-01")
    assert all(len(values["text"]) > 50 for values in clean)


def test_uspto3m_copy_is_deterministic(train_copy, tmp_path):
    out, _ = train_copy
    again = write_uspto3m_copy(str(tmp_path / "again"), ROWS, seed=0)
    other = write_uspto3m_copy(str(tmp_path / "other"), ROWS, seed=1)
    for name in again["files"] + ["README.md"]:
        assert sha256(out / name) == sha256(tmp_path / "again" / name), name
    assert read_copy(tmp_path / "other").column("text") != read_copy(out).column("text")
    assert other["bad_rows"] == again["bad_rows"]  # positions depend on the row count only


def test_uspto3m_copy_streams_in_batches_over_several_files(tmp_path, monkeypatch):
    monkeypatch.setattr(standins, "BATCH_ROWS", 300)
    writes = []
    original_write = pq.ParquetWriter.write_batch

    def recording_write(self, batch, *args, **kwargs):
        writes.append(batch.num_rows)
        return original_write(self, batch, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", recording_write)
    summary = write_uspto3m_copy(str(tmp_path), ROWS, seed=0, rows_per_file=700)
    assert summary["files"] == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [pq.ParquetFile(tmp_path / name).metadata.num_rows for name in summary["files"]] == [700, 700, 600]
    assert sum(writes) == ROWS and max(writes) <= 300 and len(writes) >= ROWS // 300
    for name in summary["files"]:
        metadata = pq.ParquetFile(tmp_path / name).metadata
        assert all(metadata.row_group(i).num_rows <= 300 for i in range(metadata.num_row_groups))
    table = read_copy(tmp_path)
    assert table.num_rows == ROWS and len(set(table.column("id").to_pylist())) == ROWS - 1


def test_a_large_copy_is_generated_batch_by_batch():
    # The first batch of a copy of the real size arrives after one batch's work: rows are not built up front.
    started = time.perf_counter()
    batches = iter_uspto3m_batches(3_200_000, seed=0)
    first = next(batches)
    assert first.num_rows == standins.BATCH_ROWS and first.schema.names == list(USPTO3M_COLUMNS)
    assert time.perf_counter() - started < 20
    bad = uspto3m_bad_rows(3_200_000)
    assert sorted(bad.values()).count("bad_code") == 4 and len(bad) == 4 * len(BAD_ROW_KINDS)
    positions = sorted(bad)
    assert min(b - a for a, b in zip(positions, positions[1:])) > 100_000  # spread through the data
    with pytest.raises(ValueError, match="bad rows need"):
        uspto3m_bad_rows(10)


# ----------------------------------------------------------------------------- test sets
def test_test_set_copies_have_integer_ids_their_year_and_the_overlap(train_copy, tmp_path):
    out, summary = train_copy
    overlap = overlap_candidates(str(out), summary)
    assert len(overlap) == 3 and len(set(overlap)) == 3
    test = write_test_set_copy(str(tmp_path / "2016"), 300, seed=1, year=2016, overlap_from=overlap)
    table = read_copy(tmp_path / "2016")
    assert table.column_names == list(USPTO3M_COLUMNS)
    assert pa.types.is_int64(table.schema.field("id").type)
    assert all(pa.types.is_string(table.schema.field(name).type) for name in ("cpc_ids", "date", "text"))
    rows = table.to_pylist()
    assert all(is_day(values["date"]) and values["date"].startswith("2016-") for values in rows)
    train_rows = read_copy(out).to_pylist()
    train_ids = {values["id"] for values in train_rows}
    assert not train_ids & {str(values["id"]) for values in rows}
    assert len({values["id"] for values in rows}) == 300
    train_pairs = {(values["text"], values["cpc_ids"]) for values in train_rows}
    shared = [row for row, values in enumerate(rows) if (values["text"], values["cpc_ids"]) in train_pairs]
    assert shared == test["overlap_rows"] and [(rows[r]["text"], rows[r]["cpc_ids"]) for r in shared] == overlap
    assert "int64" in Path(tmp_path, "2016", "README.md").read_text()

    write_test_set_copy(str(tmp_path / "2017b"), 200, seed=2, year=2017, months=range(1, 9), id_start=9_100_000)
    dates = read_copy(tmp_path / "2017b").column("date").to_pylist()
    assert min(dates) >= "2017-01-01" and max(dates) <= "2017-08-31" and len({d[:7] for d in dates}) == 8


def test_write_uspto3m_command_prints_its_summary(tmp_path, capsys):
    assert main(["write-uspto3m", "--out", str(tmp_path / "copy"), "--rows", "60", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 60 and read_copy(tmp_path / "copy").num_rows == 60
    with pytest.raises(ValueError, match="holds an earlier output of `modernpatent write-uspto3m`: pass --overwrite"):
        write_uspto3m_copy(str(tmp_path / "copy"), 60)
    (tmp_path / "copy" / "notes.txt").write_text("not a stand-in's")
    with pytest.raises(ValueError, match="that `modernpatent write-uspto3m` did not write"):
        write_uspto3m_copy(str(tmp_path / "copy"), 60, overwrite=True)


# ----------------------------------------------------------------------------- offline resolution
RESOLVE = r"""
import glob, json, os
import datasets, pyarrow.parquet as pq
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

found = {}
for repo_id in (USPTO3M, TEST_2016, TEST_2017B):
    path = snapshot_download(repo_id, repo_type="dataset")
    files = sorted(glob.glob(os.path.join(path, "data", "train-*.parquet")))
    schema = pq.read_schema(files[0])
    rows = len(datasets.load_dataset(path, split="train"))  # the card's configs block finds the split
    found[repo_id] = {"path": path, "files": len(files), "rows": rows, "id_type": str(schema.field("id").type),
                      "columns": schema.names}
found["readme"] = hf_hub_download(TEST_2017B, "README.md", repo_type="dataset")

tokenizer = AutoTokenizer.from_pretrained(MODEL)
encoding = tokenizer("1. A method for sealing a valve body")
config = AutoConfig.from_pretrained(MODEL)
model = AutoModelForMaskedLM.from_pretrained(MODEL).eval()
import torch
with torch.no_grad():
    logits = model(**tokenizer(["a claim", "a somewhat longer claim"], padding=True, return_tensors="pt")).logits
found["model"] = {
    "tokens": tokenizer.convert_ids_to_tokens(encoding["input_ids"]), "vocab": len(tokenizer),
    "model_type": config.model_type, "hidden_size": config.hidden_size, "logits": list(logits.shape),
    "finite": bool(torch.isfinite(logits).all()),
}

missing = {}
try:
    snapshot_download("MalavP/USPTO-4M", repo_type="dataset")
except LocalEntryNotFoundError as error:
    missing["dataset"] = type(error).__name__
try:
    AutoTokenizer.from_pretrained("answerdotai/ModernBERT-large")
except OSError as error:
    missing["model"] = type(error).__name__
found["missing"] = missing
scan = scan_cache_dir()
found["scan"] = {"repos": sorted(repo.repo_id for repo in scan.repos), "warnings": [str(w) for w in scan.warnings]}
print(json.dumps(found))
"""


def test_real_ids_resolve_offline_to_the_stand_ins(tmp_path, monkeypatch):
    hf_home = tmp_path / "hf"
    summary = build_offline_hub_cache(str(hf_home), train_rows=ROWS, test_rows=300, seed=0)
    assert [entry.name for entry in hf_home.iterdir()] == ["hub"]  # the scratch folder is gone
    repos = summary["repos"]
    assert set(repos) == {USPTO3M_HUB_ID, TEST_2016_HUB_ID, TEST_2017B_HUB_ID, MODERNBERT_HUB_ID}
    snapshot = Path(repos[USPTO3M_HUB_ID]["snapshot"])
    assert snapshot == hf_home / "hub" / "datasets--MalavP--USPTO-3M" / "snapshots" / repos[USPTO3M_HUB_ID]["commit"]
    assert (snapshot.parent.parent / "refs" / "main").read_text() == snapshot.name

    env = offline_env(monkeypatch, hf_home)
    names = dict(
        USPTO3M=USPTO3M_HUB_ID, TEST_2016=TEST_2016_HUB_ID, TEST_2017B=TEST_2017B_HUB_ID, MODEL=MODERNBERT_HUB_ID
    )
    script = "".join(f"{name} = {value!r}\n" for name, value in names.items()) + RESOLVE
    found = run_offline(script, env, cwd=tmp_path)

    for repo_id, rows, id_type in (
        (USPTO3M_HUB_ID, ROWS, "string"),
        (TEST_2016_HUB_ID, 300, "int64"),
        (TEST_2017B_HUB_ID, 300, "int64"),
    ):
        assert found[repo_id]["path"] == repos[repo_id]["snapshot"]
        assert found[repo_id]["files"] == 1 and found[repo_id]["rows"] == rows
        assert found[repo_id]["columns"] == list(USPTO3M_COLUMNS) and found[repo_id]["id_type"] == id_type
    assert found["readme"].startswith(repos[TEST_2017B_HUB_ID]["snapshot"])

    model = found["model"]
    assert model["tokens"][0] == "[CLS]" and model["tokens"][-1] == "[SEP]" and len(model["tokens"]) > 4
    assert model["model_type"] == "modernbert" and model["hidden_size"] == 64
    assert model["vocab"] == repos[MODERNBERT_HUB_ID]["vocab_size"]  # the stand-in's vocabulary, not the real 50368
    assert model["logits"][0] == 2 and model["logits"][2] == model["vocab"] and model["finite"]
    assert found["missing"] == {"dataset": "LocalEntryNotFoundError", "model": "OSError"}
    assert found["scan"] == {"repos": sorted(repos), "warnings": []}


REREAD = r"""
import json
from huggingface_hub import hf_hub_download, snapshot_download
path = snapshot_download(REPO)
with open(hf_hub_download(REPO, "notes/a.txt")) as handle:
    print(json.dumps({"snapshot": path, "text": handle.read()}))
"""


def test_publishing_again_replaces_what_resolves(tmp_path, monkeypatch):
    hf_home, repo_id = tmp_path / "hf", "someone/stand-in"
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, text in ((first, "first version"), (second, "second version")):
        (folder / "notes").mkdir(parents=True)
        (folder / "notes" / "a.txt").write_text(text)
        (folder / "weights.safetensors").write_bytes(text.encode() * 10)

    old = Path(publish_to_offline_cache(str(hf_home), repo_id, str(first)))
    assert Path(publish_to_offline_cache(str(hf_home), repo_id, str(first))) == old  # the commit follows the content
    new = Path(publish_to_offline_cache(str(hf_home), repo_id, str(second)))
    storage = hf_home / "hub" / "models--someone--stand-in"
    assert new != old and new.parent == old.parent == storage / "snapshots"
    assert re.fullmatch(r"[0-9a-f]{40}", new.name) and (storage / "refs" / "main").read_text() == new.name
    assert not old.exists() and [path.name for path in (storage / "snapshots").iterdir()] == [new.name]
    assert (new / "notes" / "a.txt").is_symlink() and (new / "notes" / "a.txt").read_text() == "second version"
    assert len(list((storage / "blobs").iterdir())) == 2  # the first version's blobs are gone
    tree = json.loads((storage / "trees" / f"{new.name}.json").read_text())
    assert set(tree["files"]) == {"notes/a.txt", "weights.safetensors"}
    assert "lfs_sha256" in tree["files"]["weights.safetensors"] and "lfs_sha256" not in tree["files"]["notes/a.txt"]

    found = run_offline(f"REPO = {repo_id!r}\n" + REREAD, offline_env(monkeypatch, hf_home), cwd=tmp_path)
    assert found == {"snapshot": str(new), "text": "second version"}


def test_a_real_download_is_never_replaced(tmp_path):
    storage = tmp_path / "hf" / "hub" / "models--answerdotai--ModernBERT-base"
    (storage / "snapshots").mkdir(parents=True)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a rehearsal stand-in"):
        publish_to_offline_cache(str(tmp_path / "hf"), MODERNBERT_HUB_ID, str(tmp_path / "folder"))
    assert not (storage / STAND_IN_MARKER).exists() and list(storage.iterdir()) == [storage / "snapshots"]
