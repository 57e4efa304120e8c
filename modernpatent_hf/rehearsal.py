"""Rehearsal of the cluster run, offline: a Hugging Face cache in which the real Hub ids resolve to stand-ins.

The cluster commands name real Hub ids (the model ``answerdotai/ModernBERT-base``, the datasets
``MalavP/USPTO-3M``, ``0zo/google_patentsview_claims_2016`` and ``0zo/google_patentsview_claims_2017-B``).
To run those commands unchanged without network, this module generates stand-ins locally and lays them
into a hub cache (``<HF_HOME>/hub``) exactly as ``huggingface_hub`` leaves a download: with
``HF_HOME=<dir>`` and ``HF_HUB_OFFLINE=1`` the ids then resolve through the libraries' own code
(``snapshot_download``, ``hf_hub_download``, ``AutoConfig``/``AutoTokenizer``/``AutoModelForMaskedLM``
``.from_pretrained``), and an id that was not published fails as it would on the cluster without access.

Stand-ins:

* USPTO-3M (:func:`write_uspto3m_copy`): ``data/train-0000i-of-0000N.parquet`` with the real columns
  ``cpc_ids id date text``, all strings, grants of 2000-2015, claim texts and CPC labels from the synthetic
  generator (:mod:`modernpatent_hf.data.synthetic`), plus a few deterministic bad rows of the kinds a reader
  must survive. It streams in batches, so the 3.2 million rows of the real set take flat memory.
* The test sets (:func:`write_test_set_copy`): the same columns with an ``int64`` id, grants of one year
  (2016, or January-August 2017), texts from another seed and a few rows copied from the training copy, so
  that a leakage check has something to find.
* ModernBERT-base (:func:`write_tiny_modernbert`): a byte-level BPE tokenizer with ModernBERT's special tokens
  and a tiny random ``ModernBertForMaskedLM``, both saved with ``save_pretrained``.

:func:`publish_to_offline_cache` lays any folder into the cache under a repo id; :func:`build_offline_hub_cache`
builds and publishes all four. Command line: ``python -m modernpatent_hf.rehearsal build-cache --hf-home DIR``
(then ``export HF_HOME=DIR HF_HUB_OFFLINE=1``) and ``python -m modernpatent_hf.rehearsal write-uspto3m``.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import validate_repo_id
from tqdm.auto import tqdm
from transformers import ModernBertConfig, ModernBertForMaskedLM

from .data.readers import TEST_2016_HUB_ID, TEST_2017B_HUB_ID, USPTO3M_COLUMNS, USPTO3M_HUB_ID
from .data.synthetic import generate_synthetic_records, synthetic_world
from .errors import USER_ERRORS, report_one_line_error
from .io_utils import owned_output_dir, write_json_atomically, write_text_atomically
from .model_factory import special_token_ids
from .tokenization import train_patent_tokenizer
from .trainer import HUB_ALLOW_PATTERNS

MODERNBERT_HUB_ID = "answerdotai/ModernBERT-base"

# Rows generated and written at once: memory is bounded by one batch, whatever the row count.
BATCH_ROWS = 16_384
ROWS_PER_FILE = 500_000

# Patent numbers of the stand-ins. Training ids count up from TRAIN_ID_START; test ids start where the training
# ids end (at least at TEST_ID_START), so that no test id is a training id.
TRAIN_ID_START = 6_000_000
TEST_ID_START = 9_000_000

# Bad rows of the USPTO-3M copy: one of each kind per started million rows, at evenly spaced positions.
BAD_ROW_KINDS = ("bad_date", "empty_id", "empty_text", "duplicate_id", "bad_code")
BAD_DATES = ("2007-13-45", "n/a")  # the right shape but no such day, and no date at all
BAD_CODE = "XX99"  # not a CPC subclass: a reader must drop the value and keep the row's other codes
ROWS_PER_BAD_ROW_SET = 1_000_000
CLAIM_NUMBER = "1. "

OVERLAP_ROWS = 3  # training rows copied into the 2016 test set
TEST_2017B_MONTHS = tuple(range(1, 9))  # 2017-B: the grants of January to August

# The tiny stand-in for ModernBERT-base: ModernBERT's layout (alternating global/local attention, rotary
# positions) at toy size. 8192 positions like the real model: rotary embeddings have no position weights.
TINY_MODERNBERT_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=8192,
)

# Files the Hub stores through Git LFS (its default .gitattributes patterns) and the size above which it always
# does: the cache names an LFS file's blob by its sha256, any other file's blob by its git blob sha1.
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".arrow", ".pt", ".pth", ".h5", ".onnx", ".msgpack", ".model")
LFS_MIN_BYTES = 10 * 1024 * 1024
TREE_CACHE_FORMAT_VERSION = 1  # huggingface_hub's trees/<commit>.json listing (see huggingface_hub._tree_cache)
# In each repo folder this module publishes: it lets a later publish replace the stand-in, never a real download.
STAND_IN_MARKER = ".rehearsal-stand-in.json"
_HASH_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- Parquet stand-ins
@dataclass(frozen=True)
class _CopyPlan:
    """What the rows of one stand-in look like: every row follows from it, the seed and the row's index."""

    num_rows: int
    seed: int
    date_pool: np.ndarray  # the days a row's date is drawn from, 'YYYY-MM-DD'
    id_start: int
    integer_ids: bool
    bad_rows: Dict[int, str] = field(default_factory=dict)  # row -> bad row kind
    overlap: Dict[int, Tuple[str, str]] = field(default_factory=dict)  # row -> (text, cpc_ids) copied in

    @property
    def schema(self) -> pa.Schema:
        id_type = pa.int64() if self.integer_ids else pa.string()
        return pa.schema([(name, id_type if name == "id" else pa.string()) for name in USPTO3M_COLUMNS])

    @property
    def numbered_from(self) -> str:
        # Older grants' first claims lack the claim number: rows dated in the second half of the range have it.
        return str(self.date_pool[len(self.date_pool) // 2])


def _date_pool(first_year: int, last_year: int, months: Optional[Sequence[int]] = None) -> np.ndarray:
    """Every day from January 1 of ``first_year`` to December 31 of ``last_year`` (only ``months``, if given)."""
    if first_year > last_year:
        raise ValueError(f"first_year {first_year} is after last_year {last_year}")
    days = np.arange(np.datetime64(f"{first_year}-01-01"), np.datetime64(f"{last_year + 1}-01-01"))
    if months is not None:
        months = sorted(set(months))
        if not months or months[0] < 1 or months[-1] > 12:
            raise ValueError(f"months must be numbers 1-12, got {months}")
        month_of_day = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        days = days[np.isin(month_of_day, months)]
    return np.datetime_as_string(days)


def uspto3m_bad_rows(num_rows: int) -> Dict[int, str]:
    """Positions of the bad rows of a USPTO-3M copy of ``num_rows`` rows: ``{row: kind}``.

    One row of each of :data:`BAD_ROW_KINDS` per started million rows, spread evenly through the data and never
    next to each other (the row before a ``duplicate_id`` row is the clean row whose id it repeats).
    """
    per_kind = -(-num_rows // ROWS_PER_BAD_ROW_SET)
    total = per_kind * len(BAD_ROW_KINDS)
    smallest = 3 * (total + 1)
    if num_rows < smallest:
        raise ValueError(f"bad rows need at least {smallest} rows to stay apart, got num_rows={num_rows}; "
                         "pass bad_rows=False (--no-bad-rows) for smaller copies")
    return {(t + 1) * num_rows // (total + 1): BAD_ROW_KINDS[t % len(BAD_ROW_KINDS)] for t in range(total)}


def _toggled_code(codes: List[str], world_codes: Sequence[str]) -> List[str]:
    """``codes`` with one code of the synthetic world added or removed, so that it differs and is never empty."""
    code = world_codes[0] if codes != [world_codes[0]] else world_codes[1]
    return sorted(set(codes) ^ {code})


def _iter_batches(plan: _CopyPlan) -> Iterator[pa.RecordBatch]:
    """The rows of ``plan`` as record batches of at most :data:`BATCH_ROWS` rows (constant memory)."""
    records = generate_synthetic_records(plan.num_rows, seed=plan.seed)
    world_codes = synthetic_world().codes.tolist()
    numbered_from = plan.numbered_from
    # The codes of each row a duplicate_id row repeats the id of, kept until that row comes.
    repeated_rows = {row - 1 for row, kind in plan.bad_rows.items() if kind == "duplicate_id"}
    repeated_codes: Dict[int, List[str]] = {}
    bad_dates = 0
    for start in range(0, plan.num_rows, BATCH_ROWS):
        stop = min(start + BATCH_ROWS, plan.num_rows)
        # Dates come from a stream of their own per batch (the synthetic records have theirs, over other years).
        rng = np.random.default_rng([plan.seed, start // BATCH_ROWS, 0x5EA])
        dates = plan.date_pool[rng.integers(0, len(plan.date_pool), size=stop - start)].tolist()
        columns: Dict[str, list] = {name: [] for name in USPTO3M_COLUMNS}
        for row, record, date in zip(range(start, stop), islice(records, stop - start), dates):
            codes = sorted(record["labels"])
            text = record["text"]
            if date < numbered_from and text.startswith(CLAIM_NUMBER):
                text = text[len(CLAIM_NUMBER):]
            record_id = plan.id_start + row
            kind = plan.bad_rows.get(row)
            if kind == "bad_date":
                date = BAD_DATES[bad_dates % len(BAD_DATES)]
                bad_dates += 1
            elif kind == "empty_id":
                record_id = ""
            elif kind == "empty_text":
                text = ""
            elif kind == "duplicate_id":
                record_id = plan.id_start + row - 1
                if codes == repeated_codes[row - 1]:
                    codes = _toggled_code(codes, world_codes)
            elif kind == "bad_code":
                codes = sorted(codes + [BAD_CODE])
            if row in repeated_rows:
                repeated_codes[row] = codes
            cpc_ids = ",".join(codes)
            if row in plan.overlap:
                text, cpc_ids = plan.overlap[row]
            columns["cpc_ids"].append(cpc_ids)
            columns["id"].append(record_id if plan.integer_ids or record_id == "" else str(record_id))
            columns["date"].append(date)
            columns["text"].append(text)
        yield pa.RecordBatch.from_pydict(columns, schema=plan.schema)


def _shard_names(num_rows: int, rows_per_file: int) -> List[str]:
    num_files = max(1, -(-num_rows // rows_per_file))
    return [f"train-{i:05d}-of-{num_files:05d}.parquet" for i in range(num_files)]


def _dataset_card(schema: pa.Schema, num_rows: int, title: str, description: str) -> str:
    """A Hub-style dataset card: its ``configs:`` block is what ``datasets`` reads to find the train split."""
    features = "".join(
        f"  - name: {name}\n    dtype: {'int64' if pa.types.is_int64(schema.field(name).type) else 'string'}\n"
        for name in schema.names
    )
    return (
        "---\n"
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
        f"dataset_info:\n  features:\n{features}  splits:\n  - name: train\n    num_examples: {num_rows}\n"
        "---\n\n"
        f"# {title}\n\n{description}\n"
    )


def _prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    """Refuse a directory that already holds files unless ``overwrite``; then remove what a stand-in holds there."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise ValueError(f"{out_dir} is not empty: give a new or empty directory, or pass overwrite=True")
        # Stale shards of a larger earlier copy would otherwise join this one under data/train-*.
        shutil.rmtree(os.path.join(out_dir, "data"), ignore_errors=True)
        if os.path.isfile(os.path.join(out_dir, "README.md")):
            os.remove(os.path.join(out_dir, "README.md"))
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)


def _write_copy(out_dir: str, plan: _CopyPlan, rows_per_file: int, card: str, progress: bool, desc: str) -> List[str]:
    """Stream the rows of ``plan`` into ``out_dir/data/train-*.parquet`` and write the card; returns the files."""
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    names = _shard_names(plan.num_rows, rows_per_file)
    paths = [os.path.join(out_dir, "data", name) for name in names]
    bar = tqdm(total=plan.num_rows, desc=desc, unit=" rows", disable=not progress)
    writer: Optional[pq.ParquetWriter] = None
    shard, in_shard = -1, rows_per_file
    try:
        for batch in _iter_batches(plan):
            while batch.num_rows:
                if in_shard == rows_per_file:  # the current shard is full (or none is open yet)
                    if writer is not None:
                        writer.close()
                        os.replace(paths[shard] + ".tmp", paths[shard])
                    shard, in_shard = shard + 1, 0
                    writer = pq.ParquetWriter(paths[shard] + ".tmp", plan.schema)
                part = batch.slice(0, rows_per_file - in_shard)
                writer.write_batch(part)
                in_shard += part.num_rows
                batch = batch.slice(part.num_rows)
                bar.update(part.num_rows)
        if writer is None:  # no rows: one empty shard, as the Hub would hold for an empty split
            shard, writer = 0, pq.ParquetWriter(paths[0] + ".tmp", plan.schema)
        writer.close()
        writer = None
        os.replace(paths[shard] + ".tmp", paths[shard])
    finally:
        bar.close()
        if writer is not None:  # an interrupted write leaves no half shard under data/train-*
            writer.close()
            if os.path.exists(paths[shard] + ".tmp"):
                os.remove(paths[shard] + ".tmp")
    write_text_atomically(os.path.join(out_dir, "README.md"), card)
    return [os.path.join("data", name) for name in names]


def _uspto3m_plan(num_rows: int, seed: int, first_year: int, last_year: int, bad_rows: bool) -> _CopyPlan:
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, got {num_rows}")
    return _CopyPlan(
        num_rows=num_rows, seed=seed, date_pool=_date_pool(first_year, last_year), id_start=TRAIN_ID_START,
        integer_ids=False, bad_rows=uspto3m_bad_rows(num_rows) if bad_rows else {},
    )


def iter_uspto3m_batches(
    num_rows: int, *, seed: int = 0, first_year: int = 2000, last_year: int = 2015, bad_rows: bool = True
) -> Iterator[pa.RecordBatch]:
    """The rows :func:`write_uspto3m_copy` writes, as record batches of at most :data:`BATCH_ROWS` rows.

    Each batch is generated when it is asked for, so a consumer that streams them (a writer, a benchmark that
    reads without touching disk) holds one batch at a time, whatever ``num_rows`` is.
    """
    return _iter_batches(_uspto3m_plan(num_rows, seed, first_year, last_year, bad_rows))


def write_uspto3m_copy(
    out_dir: str,
    num_rows: int,
    *,
    seed: int = 0,
    first_year: int = 2000,
    last_year: int = 2015,
    rows_per_file: int = ROWS_PER_FILE,
    bad_rows: bool = True,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write a stand-in for ``MalavP/USPTO-3M``: ``out_dir/data/train-0000i-of-0000N.parquet`` and a ``README.md``.

    Columns ``cpc_ids id date text``, all strings, as on the Hub: ``cpc_ids`` the row's CPC subclasses sorted and
    comma-joined, ``id`` a numeric patent number (``TRAIN_ID_START + row``), ``date`` a day drawn uniformly from
    ``first_year``-``last_year``, ``text`` a synthetic first claim (numbered ``"1. "`` from the middle of the date
    range on, as older grants are not). With ``bad_rows``: the rows of :func:`uspto3m_bad_rows` are broken, one
    kind each (a date that is no day, an empty id, an empty text, the id of the row before with other codes, the
    malformed code :data:`BAD_CODE` among the codes). Rows are generated and written in batches of
    :data:`BATCH_ROWS`, so memory does not grow with ``num_rows``. The same arguments give the same bytes.

    ``out_dir`` must be new or empty (``overwrite`` replaces an earlier copy). Returns a summary: the files, rows,
    bad rows by kind (their positions), years, id range and seconds.
    """
    started = time.perf_counter()
    plan = _uspto3m_plan(num_rows, seed, first_year, last_year, bad_rows)
    _prepare_out_dir(out_dir, overwrite)
    card = _dataset_card(
        plan.schema, num_rows, f"USPTO-3M stand-in ({USPTO3M_HUB_ID})",
        f"Generated by modernpatent_hf.rehearsal (seed {seed}, {num_rows} rows, grants {first_year}-{last_year}) for "
        "an offline rehearsal: the real dataset's layout and columns, synthetic claims and labels. Not real patents.",
    )
    files = _write_copy(out_dir, plan, rows_per_file, card, progress, "USPTO-3M copy")
    by_kind: Dict[str, List[int]] = {kind: [] for kind in BAD_ROW_KINDS}
    for row, kind in sorted(plan.bad_rows.items()):
        by_kind[kind].append(row)
    return {
        "out_dir": out_dir,
        "files": files,
        "rows": num_rows,
        "bad_rows": by_kind if bad_rows else {},
        "years": [first_year, last_year],
        "id_range": [TRAIN_ID_START, TRAIN_ID_START + num_rows - 1],
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
    }


def write_test_set_copy(
    out_dir: str,
    num_rows: int,
    *,
    seed: int = 1,
    year: int = 2016,
    months: Optional[Sequence[int]] = None,
    integer_ids: bool = True,
    id_start: int = TEST_ID_START,
    overlap_from: Optional[Sequence[Tuple[str, str]]] = None,
    rows_per_file: int = ROWS_PER_FILE,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write a stand-in for a test set such as ``0zo/google_patentsview_claims_2016``, laid out like USPTO-3M.

    The same columns, with ``id`` an ``int64`` when ``integer_ids`` (as the real 2016 set may have it), ids from
    ``id_start`` up (keep them clear of the training copy's), dates in ``year`` (only ``months`` if given, e.g.
    1-8 for 2017-B) and texts from ``seed`` (use another seed than the training copy's). ``overlap_from``: pairs
    ``(text, cpc_ids)`` copied in as the text and codes of rows spread through the set, for a leakage check to
    find. Returns a summary: files, rows, year, months, id type and range, the overlapping rows' positions.
    """
    overlap_from = list(overlap_from or [])
    if num_rows < len(overlap_from):
        raise ValueError(f"num_rows={num_rows} cannot hold the {len(overlap_from)} rows of overlap_from")
    started = time.perf_counter()
    positions = [(i + 1) * num_rows // (len(overlap_from) + 1) for i in range(len(overlap_from))]
    plan = _CopyPlan(
        num_rows=num_rows, seed=seed, date_pool=_date_pool(year, year, months), id_start=id_start,
        integer_ids=integer_ids, overlap=dict(zip(positions, overlap_from)),
    )
    _prepare_out_dir(out_dir, overwrite)
    when = f"{year}" if months is None else f"{year}, months {min(months)}-{max(months)}"
    card = _dataset_card(
        plan.schema, num_rows, f"Patent test set stand-in (grants of {when})",
        f"Generated by modernpatent_hf.rehearsal (seed {seed}, {num_rows} rows) for an offline rehearsal, in "
        f"USPTO-3M's columns; {len(positions)} rows repeat a training row's text and codes. Not real patents.",
    )
    files = _write_copy(out_dir, plan, rows_per_file, card, progress, f"test set {year}")
    return {
        "out_dir": out_dir,
        "files": files,
        "rows": num_rows,
        "year": year,
        "months": sorted(set(months)) if months is not None else None,
        "id_type": "int64" if integer_ids else "string",
        "id_range": [id_start, id_start + num_rows - 1],
        "overlap_rows": positions,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
    }


def iter_parquet_rows(directory: str, columns: Sequence[str] = USPTO3M_COLUMNS) -> Iterator[dict]:
    """The rows of a stand-in's ``data/train-*.parquet`` files, in order, read in batches (constant memory)."""
    data = os.path.join(directory, "data")
    for name in sorted(os.listdir(data)):
        if name.startswith("train-") and name.endswith(".parquet"):
            for batch in pq.ParquetFile(os.path.join(data, name)).iter_batches(batch_size=BATCH_ROWS, columns=list(columns)):
                yield from batch.to_pylist()


def overlap_candidates(directory: str, summary: dict, count: int = OVERLAP_ROWS) -> List[Tuple[str, str]]:
    """``(text, cpc_ids)`` of ``count`` clean rows spread through a USPTO-3M copy, to copy into a test set."""
    broken = {row for rows in summary["bad_rows"].values() for row in rows}
    broken |= {row - 1 for row in summary["bad_rows"].get("duplicate_id", [])}
    wanted = []
    for i in range(count):
        row = (2 * i + 1) * summary["rows"] // (2 * count)
        while row in broken or row in wanted:
            row += 1
        wanted.append(row)
    found = {row: (values["text"], values["cpc_ids"])
             for row, values in enumerate(iter_parquet_rows(directory, ("text", "cpc_ids"))) if row in wanted}
    if len(found) < count:
        raise ValueError(f"{directory} has too few rows ({summary['rows']}) for {count} overlapping rows")
    return [found[row] for row in wanted]


# ----------------------------------------------------------------------------- model stand-in
def write_tiny_modernbert(out_dir: str, texts: Iterable[str], *, vocab_size: int = 2000, seed: int = 0) -> dict:
    """Save a stand-in for ``answerdotai/ModernBERT-base`` in ``out_dir``: tokenizer and tiny random MLM.

    The tokenizer is :func:`~modernpatent_hf.tokenization.train_patent_tokenizer` trained on ``texts`` (byte-level
    BPE, ``[UNK] [CLS] [SEP] [PAD] [MASK]``, ``[CLS] text [SEP]``); the model a ``ModernBertForMaskedLM`` of
    :data:`TINY_MODERNBERT_CONFIG` with the tokenizer's vocabulary and special token ids, weights drawn from
    ``seed`` (safetensors). ``AutoTokenizer``/``AutoConfig``/``AutoModel``/``AutoModelForMaskedLM`` load it.
    Returns a summary: the vocabulary size, the config and the files.
    """
    tokenizer = train_patent_tokenizer(texts, vocab_size=vocab_size)
    tokenizer.save_pretrained(out_dir)
    config = ModernBertConfig(
        vocab_size=len(tokenizer), **special_token_ids("modernbert", tokenizer), **TINY_MODERNBERT_CONFIG,
    )
    # The caller's random state stays as it was: only these weights follow from the seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ModernBertForMaskedLM(config)
    model.save_pretrained(out_dir)
    return {
        "out_dir": out_dir,
        "vocab_size": len(tokenizer),
        "config": dict(TINY_MODERNBERT_CONFIG),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "files": sorted(os.listdir(out_dir)),
    }


# ----------------------------------------------------------------------------- hub cache
def _file_hashes(path: str) -> Tuple[str, str, int]:
    """``(sha256, git blob sha1, size)`` of a file, read once in chunks."""
    size = os.path.getsize(path)
    sha256, git_sha1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            sha256.update(chunk)
            git_sha1.update(chunk)
    return sha256.hexdigest(), git_sha1.hexdigest(), size


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def _tree_entries(folder: str) -> Dict[str, dict]:
    """Every file under ``folder`` (``/``-separated path) with the metadata the Hub's tree listing gives it.

    An LFS file's git blob is its pointer file, and its cache blob is named by its sha256; any other file's
    cache blob is named by its git blob sha1 (huggingface_hub names blobs by the file's etag, which is that).
    """
    entries = {}
    for root, subdirs, names in os.walk(folder):
        subdirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            sha256, git_sha1, size = _file_hashes(path)
            if name.endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES:
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
                entry = {"size": size, "blob_id": _git_blob_sha1(pointer.encode()), "lfs_sha256": sha256, "lfs_size": size}
                blob = sha256
            else:
                entry, blob = {"size": size, "blob_id": git_sha1}, git_sha1
            entries[relative] = {"tree": entry, "blob": blob, "source": path}
    return entries


def _link_or_copy(blob: str, pointer: str, final_pointer: str) -> None:
    """Make ``pointer`` a relative symlink to ``blob``, as huggingface_hub does (a copy where links fail).

    The link is relative to ``final_pointer``, where ``pointer`` will be once its folder is renamed into place.
    """
    try:
        os.symlink(os.path.relpath(blob, os.path.dirname(final_pointer)), pointer)
    except OSError:
        shutil.copy2(blob, pointer)


def publish_to_offline_cache(hf_home: str, repo_id: str, folder: str, *, repo_type: str = "model") -> str:
    """Lay ``folder``'s files (recursively) into the hub cache of ``hf_home`` as a download of ``repo_id`` would.

    ``<hf_home>/hub/{models|datasets}--{org}--{name}/``: ``blobs/`` (each file once, named by its etag),
    ``snapshots/<commit>/`` (the repo's files as relative links to the blobs), ``refs/main`` (the commit, no
    newline: huggingface_hub reads it verbatim) and ``trees/<commit>.json`` (the tree listing that newer
    huggingface_hub versions cache, by which an offline ``snapshot_download`` checks that the snapshot is
    complete). The commit is a sha1 of the files' paths and contents, so other content gives another commit.

    A repo published before is replaced: ``refs/main`` moves to the new commit, the old snapshots and blobs are
    removed. A repo folder that this function did not write (a real download) is refused, never replaced.
    Returns the snapshot folder.
    """
    validate_repo_id(repo_id)
    if repo_type not in ("model", "dataset"):
        raise ValueError(f"repo_type must be 'model' or 'dataset', got {repo_type!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a directory")
    entries = _tree_entries(folder)
    if not entries:
        raise ValueError(f"{folder} holds no files to publish as {repo_id}")
    listing = json.dumps({path: entry["tree"] for path, entry in entries.items()}, sort_keys=True)
    commit = hashlib.sha1(f"{repo_type}:{repo_id}\n{listing}".encode()).hexdigest()

    storage = os.path.join(hf_home, "hub", repo_folder_name(repo_id=repo_id, repo_type=repo_type))
    marker = os.path.join(storage, STAND_IN_MARKER)
    if os.path.isdir(storage) and not os.path.isfile(marker):
        raise ValueError(f"{storage} holds a download of {repo_id} that is not a rehearsal stand-in; refusing to "
                         "replace it: give another hf_home")
    os.makedirs(storage, exist_ok=True)
    write_json_atomically(marker, {"repo_id": repo_id, "repo_type": repo_type, "commit": commit})

    blobs = os.path.join(storage, "blobs")
    os.makedirs(blobs, exist_ok=True)
    for entry in entries.values():
        blob = os.path.join(blobs, entry["blob"])
        if not os.path.isfile(blob):  # blobs are content-addressed: one already there is this file
            shutil.copyfile(entry["source"], blob + ".incomplete")  # the suffix huggingface_hub uses mid-download
            os.replace(blob + ".incomplete", blob)

    # The snapshot is built aside and renamed into place, so snapshots/<commit> is complete whenever it exists.
    snapshots = os.path.join(storage, "snapshots")
    snapshot = os.path.join(snapshots, commit)
    building = os.path.join(storage, f".building-{commit}-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    for path, entry in entries.items():
        pointer = os.path.join(building, *path.split("/"))
        os.makedirs(os.path.dirname(pointer), exist_ok=True)
        _link_or_copy(os.path.join(blobs, entry["blob"]), pointer, os.path.join(snapshot, *path.split("/")))
    os.makedirs(snapshots, exist_ok=True)
    if os.path.isdir(snapshot):
        shutil.rmtree(snapshot)
    os.replace(building, snapshot)

    os.makedirs(os.path.join(storage, "trees"), exist_ok=True)
    write_json_atomically(
        os.path.join(storage, "trees", f"{commit}.json"),
        {"format_version": TREE_CACHE_FORMAT_VERSION, "files": {path: entries[path]["tree"] for path in sorted(entries)}},
    )
    os.makedirs(os.path.join(storage, "refs"), exist_ok=True)
    write_text_atomically(os.path.join(storage, "refs", "main"), commit)

    # What an earlier stand-in of this repo left: its snapshots, tree listings, cached misses and unused blobs.
    for name in os.listdir(snapshots):
        if name != commit:
            shutil.rmtree(os.path.join(snapshots, name))
    for name in os.listdir(os.path.join(storage, "trees")):
        if name != f"{commit}.json":
            os.remove(os.path.join(storage, "trees", name))
    shutil.rmtree(os.path.join(storage, ".no_exist"), ignore_errors=True)
    used = {entry["blob"] for entry in entries.values()}
    for name in os.listdir(blobs):
        if name not in used:
            os.remove(os.path.join(blobs, name))
    return snapshot


def build_offline_hub_cache(
    hf_home: str,
    *,
    train_rows: int = 2000,
    test_rows: int = 300,
    seed: int = 0,
    vocab_size: int = 2000,
    progress: bool = False,
) -> dict:
    """Generate every stand-in of the cluster run and publish each under its real Hub id in ``hf_home``'s cache.

    ``MalavP/USPTO-3M``: :func:`write_uspto3m_copy` (``train_rows``, 2000-2015, bad rows);
    ``0zo/google_patentsview_claims_2016``: :func:`write_test_set_copy` (``test_rows``, 2016, int64 ids, texts of
    ``seed + 1``, :data:`OVERLAP_ROWS` rows copied from the training copy); ``0zo/google_patentsview_claims_2017-B``:
    the same for January-August 2017 (``seed + 2``, no overlap); ``answerdotai/ModernBERT-base``:
    :func:`write_tiny_modernbert` with the tokenizer trained on the training copy's texts. The stand-ins are
    written in a scratch folder inside ``hf_home`` that is removed at the end.

    Afterwards ``HF_HOME=hf_home HF_HUB_OFFLINE=1`` makes the ids resolve (``HF_HUB_CACHE``, when set, must be
    ``hf_home/hub``). Returns a summary: per repo id its type, snapshot, commit and rows; the overlapping texts'
    positions; the environment to set; seconds.
    """
    started = time.perf_counter()
    os.makedirs(hf_home, exist_ok=True)
    repos: Dict[str, dict] = {}
    # Inside hf_home: the scratch copies sit on the cache's file system, however large they are.
    with tempfile.TemporaryDirectory(prefix=".rehearsal-build-", dir=hf_home) as work:
        train_dir = os.path.join(work, "uspto3m")
        train = write_uspto3m_copy(train_dir, train_rows, seed=seed, progress=progress)
        overlap = overlap_candidates(train_dir, train)
        test_2016 = write_test_set_copy(
            os.path.join(work, "test2016"), test_rows, seed=seed + 1, year=2016,
            id_start=max(TEST_ID_START, train["id_range"][1] + 1), overlap_from=overlap, progress=progress,
        )
        test_2017b = write_test_set_copy(
            os.path.join(work, "test2017b"), test_rows, seed=seed + 2, year=2017, months=TEST_2017B_MONTHS,
            id_start=test_2016["id_range"][1] + 1, progress=progress,
        )
        model_dir = os.path.join(work, "modernbert")
        model = write_tiny_modernbert(
            model_dir, (row["text"] for row in iter_parquet_rows(train_dir, ("text",))), vocab_size=vocab_size, seed=seed,
        )
        for repo_id, repo_type, folder, rows in (
            (USPTO3M_HUB_ID, "dataset", train_dir, train_rows),
            (TEST_2016_HUB_ID, "dataset", test_2016["out_dir"], test_rows),
            (TEST_2017B_HUB_ID, "dataset", test_2017b["out_dir"], test_rows),
            (MODERNBERT_HUB_ID, "model", model_dir, None),
        ):
            snapshot = publish_to_offline_cache(hf_home, repo_id, folder, repo_type=repo_type)
            repos[repo_id] = {"repo_type": repo_type, "snapshot": snapshot, "commit": os.path.basename(snapshot)}
            if rows is not None:
                repos[repo_id]["rows"] = rows
    repos[USPTO3M_HUB_ID]["bad_rows"] = train["bad_rows"]
    repos[TEST_2016_HUB_ID]["overlap_rows"] = test_2016["overlap_rows"]
    repos[MODERNBERT_HUB_ID]["vocab_size"] = model["vocab_size"]
    return {
        "hf_home": os.path.abspath(hf_home),
        "repos": repos,
        "environment": {"HF_HOME": os.path.abspath(hf_home), "HF_HUB_OFFLINE": "1"},
        "seconds": round(time.perf_counter() - started, 2),
    }


# ----------------------------------------------------------------------------- the rehearsal
# The cluster commands, as the README gives them. The rehearsal changes only what a CPU forces: bf16 (7-8x slower
# than fp32 on a CPU, and refused without a GPU), the batch sizes, a step budget (--max_steps, with evaluations
# and checkpoints inside it), the tensorboard logs and dataloader workers that a 2-core machine cannot spare.
FINETUNE_RECIPE = "recipes/modernbert-base/finetune/config_full.yaml"
YEAR_SPLIT_RECIPE = "recipes/modernbert-base/finetune/config_year_split.yaml"
PRETRAIN_RECIPE = "recipes/modernbert-base/pretrain/config_full.yaml"
CPU_DDP_CONFIG = "accelerate_configs/cpu_ddp.yaml"
# Where the rehearsal publishes its fine-tuned checkpoint, as `push_to_hub` would, for predict and embed to load by id.
REHEARSAL_MODEL_ID = "modernpatent-hf/modernbert-base-uspto3m-rehearsal"
CPU_OVERRIDES = ("--bf16", "false", "--dataloader_num_workers", "0", "--report_to", "none")


@dataclass
class RehearsalSize:
    """How much of the cluster run the rehearsal runs: rows of the stand-ins and optimizer steps."""

    train_rows: int
    test_rows: int
    finetune_steps: int
    pretrain_steps: int
    batch_size: int


REHEARSAL_SIZES = {
    "full": RehearsalSize(train_rows=20_000, test_rows=2_000, finetune_steps=120, pretrain_steps=20, batch_size=16),
    "short": RehearsalSize(train_rows=3_000, test_rows=300, finetune_steps=8, pretrain_steps=2, batch_size=8),
}


def rehearsal_environment(hf_home: str) -> Dict[str, str]:
    """The environment of a rehearsal step: this process's, with the Hub cache at ``hf_home`` and no network."""
    environment = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_CACHE", "HF_DATASETS_CACHE")}
    environment.update(
        HF_HOME=os.path.abspath(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
    )
    return environment


def _launch(config_file: str, script: str, recipe: str, *arguments: str) -> List[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file, script,
            "--config", recipe, *arguments]


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process under it, as a scheduler ending a job does (torch's elastic agent
    starts the ranks in sessions of their own, out of reach of a process-group kill)."""
    try:
        tree = psutil.Process(process.pid)
        members = [*tree.children(recursive=True), tree]
    except psutil.NoSuchProcess:
        return
    for member in members:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(members, timeout=30)


def _run_step(name: str, command: Sequence[str], cwd: str, environment: Mapping[str, str], log_dir: str, *,
              expect: int = 0, expect_line: Optional[str] = None, kill_when: Optional[str] = None,
              timeout: float = 3600) -> dict:
    """Run one step, its output in ``log_dir/<name>.log``; with ``kill_when``, SIGKILL it once that path exists.

    ``ok`` when it ended with status ``expect`` (or was killed, with ``kill_when``) and, with ``expect_line``, its
    output has a line holding that text.
    """
    log_path = os.path.join(log_dir, f"{name}.log")
    print(f"rehearsal: {name} (output: {log_path})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, cwd=cwd, env=dict(environment), stdout=log, stderr=subprocess.STDOUT)
        deadline = started + timeout
        while process.poll() is None and time.perf_counter() < deadline and not (kill_when and os.path.exists(kill_when)):
            time.sleep(0.1)
        killed = process.poll() is None
        if killed:
            _kill_tree(process)
        status = process.wait()
    with open(log_path, errors="replace") as log:
        lines = [line.rstrip() for line in log]
    expected = "killed" if kill_when else expect
    found = expect_line is None or any(expect_line in line for line in lines)
    step = {"step": name, "status": "killed" if killed else status, "expected": expected,
            "seconds": round(time.perf_counter() - started, 1), "log": log_path, "tail": lines[-3:],
            "ok": ("killed" if killed else status) == expected and found}
    verdict = "as expected" if step["ok"] else f"NOT as expected ({expected}{', ' + repr(expect_line) if expect_line else ''})"
    print(f"rehearsal: {name}: {step['status']} after {step['seconds']} s, {verdict}", file=sys.stderr, flush=True)
    return step


def _first_checkpoint_marker(output_dir: str, every: int) -> str:
    """The last file the Trainer writes in the first checkpoint: the rehearsal's kill waits for it."""
    return os.path.join(output_dir, f"checkpoint-{every}", "trainer_state.json")


def rehearse(out_dir: str, *, size: str = "full", repo_root: str = ".", overwrite: bool = False, progress: bool = False) -> dict:
    """Run the cluster commands against stand-ins in an offline Hugging Face cache (``out_dir/hf-home``).

    Steps, each a fresh process with ``HF_HOME=out_dir/hf-home`` and ``HF_HUB_OFFLINE=1``:

    1. build the cache (:func:`build_offline_hub_cache`);
    2. the old recipe's mistake, ``config_year_split.yaml --test_year 2016`` against grants of 2000-2015: must
       end with status 2 and one line listing the years, in seconds;
    3. ``config_full.yaml`` fine-tuning under ``accelerate_configs/cpu_ddp.yaml`` (two ranks), killed as soon
       as its first checkpoint is complete;
    4. the same command again: resumes from that checkpoint and finishes (test F1@1 on the 2016 stand-in);
    5. ``pretrain/config_full.yaml`` MLM under the same launcher;
    6. the fine-tuned checkpoint published under :data:`REHEARSAL_MODEL_ID`, then ``modernpatent predict`` and
       ``modernpatent embed`` by that id on the 2016 stand-in.

    ``size``: ``"full"`` or ``"short"`` (:data:`REHEARSAL_SIZES`). ``repo_root``: a clone (its recipes and
    accelerate configs). ``out_dir`` must be new or empty, or an earlier rehearsal's (replaced with ``overwrite``).
    Returns a summary with every step's status and seconds, and the test metrics.
    """
    if size not in REHEARSAL_SIZES:
        raise ValueError(f"size must be one of {', '.join(REHEARSAL_SIZES)}, got {size!r}")
    plan = REHEARSAL_SIZES[size]
    repo_root = os.path.abspath(repo_root)
    missing = [path for path in (FINETUNE_RECIPE, PRETRAIN_RECIPE, YEAR_SPLIT_RECIPE, CPU_DDP_CONFIG)
               if not os.path.isfile(os.path.join(repo_root, path))]
    if missing:
        raise FileNotFoundError(f"{repo_root} is not a clone of this project (no {missing[0]}); pass --repo-root")
    with owned_output_dir(out_dir, "rehearsal", overwrite=overwrite) as out_dir:
        return _rehearse(out_dir, plan, size, repo_root, progress)


def _rehearse(out_dir: str, plan: RehearsalSize, size: str, repo_root: str, progress: bool) -> dict:
    hf_home, logs = os.path.join(out_dir, "hf-home"), os.path.join(out_dir, "logs")
    os.makedirs(logs)
    environment = rehearsal_environment(hf_home)
    cache = build_offline_hub_cache(hf_home, train_rows=plan.train_rows, test_rows=plan.test_rows, progress=progress)
    steps: List[dict] = []

    every = max(plan.finetune_steps // 2, 1)
    finetune_dir = os.path.join(out_dir, "finetune")
    finetune = _launch(
        CPU_DDP_CONFIG, "recipes/finetune.py", FINETUNE_RECIPE, "--output_dir", finetune_dir, *CPU_OVERRIDES,
        "--per_device_train_batch_size", str(plan.batch_size), "--per_device_eval_batch_size", str(2 * plan.batch_size),
        "--max_steps", str(plan.finetune_steps), "--eval_steps", str(every), "--save_steps", str(every),
        "--logging_steps", str(max(every // 4, 1)),
    )
    year_split = _launch(
        CPU_DDP_CONFIG, "recipes/finetune.py", YEAR_SPLIT_RECIPE, "--output_dir", os.path.join(out_dir, "year-2016"),
        *CPU_OVERRIDES, "--test_year", "2016",
    )
    # torch's elastic agent ends a launch with status 1 when a rank fails; the rank's own line says why.
    steps.append(_run_step("test year missing", year_split, repo_root, environment, logs, expect=1,
                           expect_line="finetune: error: no record of MalavP/USPTO-3M is dated in 2016; its years"))
    steps.append(_run_step("finetune, killed", finetune, repo_root, environment, logs,
                           kill_when=_first_checkpoint_marker(finetune_dir, every)))
    steps.append(_run_step("finetune, resumed", finetune, repo_root, environment, logs,
                           expect_line=f"resuming from {os.path.join(finetune_dir, f'checkpoint-{every}')}"))

    pretrain = _launch(
        CPU_DDP_CONFIG, "recipes/pretrain_mlm.py", PRETRAIN_RECIPE, "--output_dir", os.path.join(out_dir, "pretrain"),
        *CPU_OVERRIDES, "--per_device_train_batch_size", str(plan.batch_size),
        "--per_device_eval_batch_size", str(2 * plan.batch_size), "--gradient_accumulation_steps", "1",
        "--max_steps", str(plan.pretrain_steps), "--eval_steps", str(plan.pretrain_steps),
        "--save_steps", str(plan.pretrain_steps), "--max_test_samples", str(plan.test_rows),
    )
    steps.append(_run_step("pretrain MLM", pretrain, repo_root, environment, logs))

    metrics: Dict[str, float] = {}
    results = os.path.join(finetune_dir, "all_results.json")
    if os.path.isfile(results):
        with open(results) as handle:
            metrics = {key: value for key, value in json.load(handle).items() if key.startswith("test_")}
        publish_to_offline_cache(hf_home, REHEARSAL_MODEL_ID, _published_files(finetune_dir))
    test_file = sorted(glob.glob(os.path.join(cache["repos"][TEST_2016_HUB_ID]["snapshot"], "data", "*.parquet")))[0]
    cli = [sys.executable, "-m", "modernpatent_hf.cli"]
    steps.append(_run_step("predict by Hub id", [
        *cli, "predict", "--model", REHEARSAL_MODEL_ID, "--input", test_file, "--text-fields", "text",
        "--output", os.path.join(out_dir, "predictions.jsonl"), "--top-k", "3", "--device", "cpu",
    ], repo_root, environment, logs))
    steps.append(_run_step("embed by Hub id", [
        *cli, "embed", "--model", REHEARSAL_MODEL_ID, "--input", test_file, "--text-fields", "text",
        "--output", os.path.join(out_dir, "embeddings.parquet"), "--device", "cpu",
    ], repo_root, environment, logs))
    summary = {"out_dir": out_dir, "size": size, "ok": all(step["ok"] for step in steps), "steps": steps,
               "test_metrics": metrics, "cache": cache["repos"]}
    write_json_atomically(os.path.join(out_dir, "rehearsal.json"), summary)
    return summary


def _published_files(output_dir: str) -> str:
    """A folder beside ``output_dir`` holding the files `push_to_hub` would upload from it (the trainer's patterns)."""
    published = output_dir.rstrip(os.sep) + "-published"
    os.makedirs(published, exist_ok=True)
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if os.path.isfile(path) and any(fnmatch.fnmatch(name, pattern) for pattern in HUB_ALLOW_PATTERNS):
            shutil.copy2(path, os.path.join(published, name))
    return published


def format_rehearsal(summary: Mapping) -> str:
    """The rehearsal as a table: each step's exit status against the expected one, and the test scores."""
    lines = ["| step | exit status | expected | seconds | ok |", "|---|---|---|---:|---|"]
    for step in summary["steps"]:
        lines.append(f"| {step['step']} | {step['status']} | {step['expected']} | {step['seconds']:.1f} | "
                     f"{'yes' if step['ok'] else 'NO'} |")
    metrics = summary["test_metrics"]
    if metrics:
        shown = ", ".join(f"{key} {value:.4f}" for key, value in sorted(metrics.items())
                          if key in ("test_f1@1", "test_precision@1", "test_recall@1", "test_loss"))
        lines.append(f"\ntest split (the 2016 stand-in): {shown}")
    lines.append(f"\nrehearsal {'passed' if summary['ok'] else 'FAILED'}; logs in {summary['out_dir']}/logs")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def _build_cache_command(args: argparse.Namespace) -> dict:
    return build_offline_hub_cache(
        args.hf_home, train_rows=args.train_rows, test_rows=args.test_rows, seed=args.seed,
        vocab_size=args.vocab_size, progress=not args.quiet,
    )


def _write_uspto3m_command(args: argparse.Namespace) -> dict:
    return write_uspto3m_copy(
        args.out, args.rows, seed=args.seed, first_year=args.first_year, last_year=args.last_year,
        rows_per_file=args.rows_per_file, bad_rows=not args.no_bad_rows, progress=not args.quiet,
        overwrite=args.overwrite,
    )


def _run_command(args: argparse.Namespace) -> dict:
    return rehearse(args.out, size=args.size, repo_root=args.repo_root, overwrite=args.overwrite, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    """The rehearsal's command line: one subcommand each, whose ``handler`` returns a JSON-able summary."""
    parser = argparse.ArgumentParser(
        prog="python -m modernpatent_hf.rehearsal",
        description="Rehearse the cluster run offline: stand-ins for its Hub datasets and model in a local HF cache.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build-cache", help="generate the stand-ins and publish them under their real Hub ids in --hf-home",
        description="Afterwards run the cluster commands with HF_HOME=DIR HF_HUB_OFFLINE=1.",
    )
    build.add_argument("--hf-home", required=True, help="the HF_HOME of the rehearsal (its cache is DIR/hub)")
    build.add_argument("--train-rows", type=int, default=2000, help="rows of the MalavP/USPTO-3M stand-in")
    build.add_argument("--test-rows", type=int, default=300, help="rows of each test set stand-in")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--vocab-size", type=int, default=2000, help="vocabulary of the ModernBERT stand-in's tokenizer")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(handler=_build_cache_command)

    uspto = commands.add_parser("write-uspto3m", help="write a USPTO-3M-shaped Parquet copy (streamed, constant memory)")
    uspto.add_argument("--out", required=True, help="new or empty directory: gets data/train-*.parquet and README.md")
    uspto.add_argument("--rows", type=int, required=True)
    uspto.add_argument("--seed", type=int, default=0)
    uspto.add_argument("--first-year", type=int, default=2000)
    uspto.add_argument("--last-year", type=int, default=2015)
    uspto.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE)
    uspto.add_argument("--no-bad-rows", action="store_true", help="leave out the deliberately broken rows")
    uspto.add_argument("--overwrite", action="store_true", help="replace an earlier copy in --out")
    uspto.add_argument("--quiet", action="store_true", help="no progress bar")
    uspto.set_defaults(handler=_write_uspto3m_command)

    run = commands.add_parser(
        "run", help="rehearse the cluster run: build the cache, then run the README's commands against it (make rehearsal)",
        description="Fine-tuning (two CPU ranks, killed and resumed), MLM pretraining, predict and embed by Hub id, "
        "each with HF_HOME=OUT/hf-home HF_HUB_OFFLINE=1 and only what a CPU forces changed. Exit status 1 when a step "
        "did not end as expected; OUT/logs has every step's output.",
    )
    run.add_argument("--out", required=True, help="new or empty directory for the cache, the runs and the logs")
    run.add_argument("--size", default="full", choices=sorted(REHEARSAL_SIZES),
                     help="full: 20,000 training rows and 120 fine-tuning steps; short: the version `make test` runs")
    run.add_argument("--repo-root", default=".", help="a clone of this project (its recipes/ and accelerate_configs/)")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier rehearsal in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(handler=_run_command, formatter=format_rehearsal, failed=lambda summary: not summary["ok"])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a subcommand and print its summary as JSON; an error ends it with one line and status 2, as in the CLI."""
    args = build_parser().parse_args(argv)
    try:
        summary = args.handler(args)
    except (Exception, KeyboardInterrupt) as error:
        if args.debug:
            raise
        return report_one_line_error(error, f"rehearsal {args.command}", USER_ERRORS)
    if hasattr(args, "formatter"):
        print(args.formatter(summary))
    else:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 1 if getattr(args, "failed", lambda _: False)(summary) else 0


if __name__ == "__main__":
    sys.exit(main())
