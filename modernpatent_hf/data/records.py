"""The normalized patent record, label statistics, and the on-disk layout every source is turned into.

A normalized record is a dict with ``id`` (str), ``text`` (str), ``labels`` (list of subclass codes)
and, when known, ``date`` (``YYYY-MM-DD``), ``title`` and ``abstract`` (``None`` otherwise).

A prepared dataset directory holds Parquet shards under ``data/``, a ``README.md`` whose YAML
``configs:`` lets ``datasets.load_dataset(DIR)`` find the splits (datasets' own mechanism), the
``label_space.json`` and a ``stats.json``. Its Parquet columns are typed (:func:`prepared_features`):
``labels`` are class labels of the label space and ``date`` a date, so ``load_dataset(DIR)`` alone names
the codes; :func:`load_dataset_dir` gives them back as normalized records.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import shutil
from array import array
from collections import Counter
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets.table import ConcatenationTable, Table
from huggingface_hub import CommitOperationAdd, HfApi
from tqdm.auto import tqdm

from ..cpc import LABEL_SPACE_FILE, CpcLabelSpace, class_of, section_of
from ..io_utils import foreign_files, remove_stale_scratch, scratch_path, write_json_atomically, write_output_marker
from .leakage import digest64, shared_across_splits, text_key
from .normalize import RECORD_COLUMNS

STATS_FILE = "stats.json"
SHARDS_SUBDIR = "data"  # the Parquet shards of a prepared dataset directory
SPLIT_ORDER = ("train", "validation", "test")
ROW_GROUP_ROWS = 10_000  # rows held in memory (as Python dicts) before they go to the Parquet file


def record_features() -> datasets.Features:
    """The ``datasets.Features`` of a normalized record."""
    string = datasets.Value("string")
    return datasets.Features(
        {
            "id": string,
            "text": string,
            "labels": datasets.List(string),
            "date": string,
            "title": string,
            "abstract": string,
        }
    )


def prepared_features(label_codes: Sequence[str]) -> datasets.Features:
    """The features of a prepared dataset's Parquet splits: :func:`record_features` with ``labels`` as class labels
    of the label space (``List(ClassLabel(names=codes))``, so ``load_dataset(DIR)`` alone names them) and ``date``
    as a date (``Value("date32")``)."""
    features = record_features()
    features["labels"] = datasets.List(datasets.ClassLabel(names=list(label_codes)))
    features["date"] = datasets.Value("date32")
    return features


def _typed_row(record: Mapping, label_index: Mapping[str, int], split: str) -> dict:
    """A normalized record as a row of :func:`prepared_features`: label indices and a ``datetime.date``."""
    row = {column: record.get(column) for column in RECORD_COLUMNS}
    try:
        row["labels"] = [label_index[code] for code in record["labels"]]
    except KeyError as error:
        raise ValueError(
            f"record {record['id']!r} of the {split!r} split has label {error.args[0]!r}, which is not in the label "
            f"space ({len(label_index)} subclasses): drop labels outside the label space before writing"
        ) from None
    row["date"] = datetime.date.fromisoformat(row["date"]) if row["date"] else None
    return row


def _replace_column(table: Table, name: str, convert: Callable[[pa.ChunkedArray], pa.ChunkedArray]) -> Table:
    """``table`` with column ``name`` replaced by ``convert(column)``, the other columns left memory-mapped.

    A split that ``datasets`` cached in several Arrow files (USPTO-3M's train split: 3 million rows) is a
    ``ConcatenationTable``, which has no ``set_column``: its blocks are converted one by one instead.
    """
    if isinstance(table, ConcatenationTable):
        return ConcatenationTable.from_blocks(
            [
                [_replace_column(block, name, convert) if name in block.column_names else block for block in row]
                for row in table.blocks
            ]
        )
    return table.set_column(table.schema.get_field_index(name), name, convert(table.column(name)))


def as_record_columns(split: datasets.Dataset) -> datasets.Dataset:
    """A split with typed ``labels`` (class labels) and ``date`` (a date type) given back as normalized record
    columns: the label codes and ``YYYY-MM-DD`` strings (:func:`record_features`). Other splits come back as
    they are. The conversion is columnar and leaves the other columns memory-mapped."""
    label_feature = getattr(split.features.get("labels"), "feature", None)
    date_feature = split.features.get("date")
    typed_labels = isinstance(label_feature, datasets.ClassLabel)
    typed_date = isinstance(date_feature, datasets.Value) and date_feature.dtype != "string"
    if not typed_labels and not typed_date:
        return split
    table = split.data
    if typed_labels:
        names = pa.array(label_feature.names, pa.string())
        table = _replace_column(
            table,
            "labels",
            lambda labels: pa.chunked_array(
                [pa.ListArray.from_arrays(chunk.offsets, names.take(chunk.values)) for chunk in labels.chunks],
                type=pa.list_(pa.string()),
            ),
        )
    if typed_date:
        table = _replace_column(table, "date", lambda dates: dates.cast(pa.string()))
    info = split.info.copy()
    info.features = datasets.Features({name: record_features()[name] for name in table.column_names})
    return datasets.Dataset(table, info=info, split=split.split)


def label_statistics(label_lists: Iterable[Sequence[str]], top_n: int = 30) -> Dict:
    """Label statistics of a dataset: sizes, labels per patent, the long tail, top-``top_n`` share."""
    counts: Counter = Counter()
    n_records = 0
    n_without = 0
    for labels in label_lists:
        n_records += 1
        n_without += not labels
        counts.update(labels)
    total = sum(counts.values())
    ranked = counts.most_common()
    top = ranked[:top_n]
    frequencies = np.array([n for _, n in ranked], dtype=np.int64)
    return {
        "records": n_records,
        "records_without_labels": n_without,
        "label_occurrences": total,
        "labels_per_record": total / n_records if n_records else 0.0,
        "subclasses": len(counts),
        "classes": len({class_of(c) for c in counts}),
        "sections": len({section_of(c) for c in counts}),
        f"top{top_n}_share": (sum(n for _, n in top) / total) if total else 0.0,
        "subclasses_below_10": int((frequencies < 10).sum()),
        "subclasses_below_100": int((frequencies < 100).sum()),
        "subclasses_below_1000": int((frequencies < 1000).sum()),
        f"top{top_n}": [[code, n] for code, n in top],
        "section_counts": dict(sorted(Counter(section_of(c) for c in counts.elements()).items())),
    }


def format_label_statistics(stats: Mapping, title: str = "Label statistics") -> str:
    """A short human-readable table of :func:`label_statistics`."""
    top_key = next((k for k in stats if k.startswith("top") and k.endswith("_share")), None)
    lines = [
        title,
        f"  records                 {stats['records']:>12,}",
        f"  label occurrences       {stats['label_occurrences']:>12,}",
        f"  labels per record       {stats['labels_per_record']:>12.3f}",
        f"  subclasses / classes / sections   {stats['subclasses']} / {stats['classes']} / {stats['sections']}",
    ]
    if top_key:
        lines.append(f"  {top_key.replace('_', ' ')} of occurrences   {100 * stats[top_key]:.1f} %")
    lines.append(
        f"  subclasses with < 10 / < 100 / < 1000 occurrences   "
        f"{stats['subclasses_below_10']} / {stats['subclasses_below_100']} / {stats['subclasses_below_1000']}"
    )
    top_list = next((v for k, v in stats.items() if k.startswith("top") and isinstance(v, list)), [])
    if top_list:
        lines.append("  most frequent: " + ", ".join(f"{code} ({n:,})" for code, n in top_list[:10]))
    return "\n".join(lines)


def _content_fingerprint(data_dir: str) -> str:
    """sha256 over the names and bytes of the data files."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(data_dir)):
        digest.update(name.encode("utf-8"))
        with open(os.path.join(data_dir, name), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _readme(rows_per_split: Mapping[str, int], description: str, fingerprint: str, features: datasets.Features) -> str:
    splits = [split for split, rows in rows_per_split.items() if rows]
    header = {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{SHARDS_SUBDIR}/{split}-*.parquet"} for split in splits],
            }
        ],
        # datasets keys its cache of a local directory by this YAML, not by the files' contents: the
        # fingerprint makes a rewritten directory (or another one with the same name) load its own data.
        "dataset_info": {
            "config_name": "default",
            "description": f"content sha256 {fingerprint}",
            "features": features._to_yaml_list(),
        },
    }
    num_labels = len(features["labels"].feature.names)
    return (
        "---\n"
        f"{yaml.safe_dump(header, sort_keys=False)}"
        "---\n\n"
        f"{description}\n\n"
        'Load with `datasets.load_dataset("<this directory>")`; the label space is in '
        f"`{LABEL_SPACE_FILE}` (`modernpatent_hf.CpcLabelSpace.load`), statistics in `{STATS_FILE}`.\n\n"
        "## Features\n\n"
        "- `id` (string): the patent's publication or record id.\n"
        "- `text` (string): the text a classifier reads (the chosen fields, joined by newlines).\n"
        f"- `labels` (list of `ClassLabel`): the patent's CPC subclasses, as indices into the {num_labels} names of "
        "the label space (the training split's subclasses); "
        '`dataset.features["labels"].feature.int2str(ids)` gives the codes, e.g. `A01B`.\n'
        "- `date` (`date32`): the publication or filing date, when known.\n"
        "- `title`, `abstract` (string): when the source has them.\n"
    )


def write_dataset_dir(
    out_dir: str,
    splits: Mapping[str, Iterable[Mapping]],
    label_space: CpcLabelSpace,
    stats: Optional[Mapping] = None,
    description: str = "A CPC-labelled patent dataset written by modernpatent_hf.",
    shard_rows: int = 200_000,
    progress: bool = True,
    command: str = "prepare",
    fingerprint: Optional[Mapping] = None,
) -> Dict[str, int]:
    """Write splits of normalized records as Parquet shards plus README ``configs:``, label space, stats.

    Records are streamed, :data:`ROW_GROUP_ROWS` at a time: memory stays flat apart from two 8-byte digests
    per record (of its id and of its normalized text) for the checks across splits.
    The directory appears atomically: everything is written to a temporary sibling and renamed at the
    end (an existing directory is first renamed aside, then removed; one that received a file it does not list
    while this ran is put back and the write refused), so an interrupted run never
    leaves a directory that looks complete; what a killed run left is removed by the next run. A split
    layout that leaks is an error: an id in two splits, or a text found in two splits once normalized
    (:mod:`modernpatent_hf.data.leakage`). The directory is marked as the output of ``modernpatent COMMAND``
    made from ``fingerprint`` (:func:`~modernpatent_hf.io_utils.write_output_marker`); callers check the
    directory first (:func:`~modernpatent_hf.io_utils.check_output_dir`). Returns the number of rows per split.
    """
    out_dir = os.path.abspath(out_dir)
    remove_stale_scratch(out_dir)
    tmp_dir = scratch_path(out_dir, "tmp")
    os.makedirs(os.path.join(tmp_dir, SHARDS_SUBDIR))
    features = prepared_features(label_space.codes)
    schema = features.arrow_schema  # with the datasets features in its metadata
    label_index = {code: index for index, code in enumerate(label_space.codes)}
    id_keys: Dict[str, array] = {}
    text_keys: Dict[str, array] = {}
    rows_per_split: Dict[str, int] = {}
    try:
        for split, records in splits.items():
            rows, buffer, shard, writer = 0, [], 0, None
            id_keys[split], text_keys[split] = array("Q"), array("Q")

            def flush() -> None:
                nonlocal buffer, writer
                if buffer:
                    if writer is None:
                        writer = pq.ParquetWriter(
                            os.path.join(tmp_dir, SHARDS_SUBDIR, f"{split}-{shard:05d}.parquet"), schema
                        )
                    writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                    buffer = []

            for record in tqdm(records, desc=f"writing {split}", unit=" rows", disable=not progress):
                id_keys[split].append(digest64(record["id"]))
                text_keys[split].append(text_key(record["text"]))
                buffer.append(_typed_row(record, label_index, split))
                rows += 1
                if len(buffer) >= ROW_GROUP_ROWS:
                    flush()
                if rows % shard_rows == 0:
                    flush()
                    writer.close()
                    writer, shard = None, shard + 1
            flush()
            if writer is not None:
                writer.close()
            rows_per_split[split] = rows
        # datasets cannot load a split without rows, so an empty split gets no file and no README entry;
        # load_dataset_dir gives it back as an empty split.
        if not any(rows_per_split.values()):
            raise ValueError(f"nothing to write to {out_dir}: every split is empty")
        _refuse_shared_ids(tmp_dir, id_keys)
        _refuse_shared_texts(tmp_dir, text_keys)
        label_space.save(os.path.join(tmp_dir, LABEL_SPACE_FILE))
        write_json_atomically(
            os.path.join(tmp_dir, STATS_FILE), {"rows_per_split": rows_per_split, **(dict(stats) if stats else {})}
        )
        with open(os.path.join(tmp_dir, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(
                _readme(
                    rows_per_split, description, _content_fingerprint(os.path.join(tmp_dir, SHARDS_SUBDIR)), features
                )
            )
        write_output_marker(tmp_dir, command, fingerprint=fingerprint)
        # Rename, never delete, the previous directory first: a kill during a recursive delete would
        # leave a partly deleted directory whose README and label space still make it look complete.
        old_dir = scratch_path(out_dir, "old")
        shutil.rmtree(old_dir, ignore_errors=True)
        if os.path.exists(out_dir):
            os.replace(out_dir, old_dir)
            # Aside, the old directory can no longer receive files: what it holds now is all it will hold.
            foreign = foreign_files(old_dir)
            if foreign:
                os.replace(old_dir, out_dir)
                raise ValueError(
                    f"{out_dir} received {len(foreign)} file(s) that `modernpatent {command}` did not write while it "
                    f"ran (e.g. {foreign[0]}): they were left alone and nothing was replaced; move them out and run "
                    "again"
                )
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(old_dir, ignore_errors=True)  # only files its marker lists: checked above
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return rows_per_split


def _split_ids(tmp_dir: str, split: str) -> pa.ChunkedArray:
    """The ``id`` column of a split written to ``tmp_dir`` (read back from its shards)."""
    shards = sorted(glob.glob(os.path.join(tmp_dir, SHARDS_SUBDIR, f"{split}-*.parquet")))
    return pa.concat_tables([pq.read_table(shard, columns=["id"]) for shard in shards]).column("id")


def _refuse_shared_ids(tmp_dir: str, id_keys: Mapping[str, array]) -> None:
    """Raise a one-line error when an id occurs in two splits (found by digest, confirmed on the ids)."""
    shared = shared_across_splits({split: np.frombuffer(keys, dtype=np.uint64) for split, keys in id_keys.items()})
    suspects = {
        split: set(_split_ids(tmp_dir, split).take(np.flatnonzero(mask)).to_pylist())
        for split, mask in shared.items()
        if mask.any()
    }
    splits = list(suspects)
    for i, first in enumerate(splits):  # equal digests of different ids (chance: below 1e-6 at 6M ids) pass
        for second in splits[i + 1 :]:
            common = suspects[first] & suspects[second]
            if common:
                raise ValueError(
                    f"id {min(common)!r} appears in both the {first!r} and {second!r} splits; "
                    "a split layout must not share ids (merge duplicates before splitting)"
                )


def _refuse_shared_texts(tmp_dir: str, text_keys: Mapping[str, array]) -> None:
    """Raise a one-line error when a normalized text occurs in two splits, naming one such record."""
    shared = shared_across_splits({split: np.frombuffer(keys, dtype=np.uint64) for split, keys in text_keys.items()})
    n_shared = int(sum(mask.sum() for mask in shared.values()))
    if not n_shared:
        return
    split = next(name for name, mask in shared.items() if mask.any())
    example = _split_ids(tmp_dir, split)[int(np.flatnonzero(shared[split])[0])].as_py()
    raise ValueError(
        f"{n_shared} records share their normalized text with a record of another split (e.g. id {example!r} "
        f"in {split!r}); a split layout must not repeat a text across splits: put every copy in one split "
        "(`modernpatent prepare` moves them to train)"
    )


def load_dataset_dir(path: str) -> datasets.DatasetDict:
    """Load a directory written by :func:`write_dataset_dir` through ``datasets.load_dataset``, as normalized records.

    The typed columns (class-label ``labels``, ``date32`` dates) come back as codes and ``YYYY-MM-DD`` strings
    (:func:`as_record_columns`). Splits written empty (which have no files) come back as empty splits with the
    record features.
    """
    if not os.path.isfile(os.path.join(path, "README.md")):
        raise FileNotFoundError(f"{path} is not a prepared dataset directory (no README.md with `configs:`)")
    # Labels come back as their codes and dates as strings, the normalized record every reader uses.
    dataset = datasets.DatasetDict(
        {name: as_record_columns(split) for name, split in datasets.load_dataset(path).items()}
    )
    for split in SPLIT_ORDER:
        if split not in dataset:
            dataset[split] = datasets.Dataset.from_dict(
                {column: [] for column in RECORD_COLUMNS}, features=record_features()
            )
    return dataset


def push_dataset_dir(
    path: str,
    repo_id: str,
    *,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    commit_message: str = "Upload a CPC-labelled patent dataset prepared by modernpatent_hf",
) -> str:
    """Upload a prepared dataset directory to the Hub as a dataset repository, in one commit; returns its URL.

    Uploaded: the Parquet shards (``data/``), the card (``README.md``: the Hub reads its ``configs:`` and typed
    features, so ``load_dataset("<repo_id>")`` gives what ``load_dataset(path)`` gives), ``label_space.json`` and
    ``stats.json``; nothing else in the directory (the output marker, scratch files).
    """
    if not is_prepared_dir(path):
        raise ValueError(
            f"{path} is not a prepared dataset directory (no {LABEL_SPACE_FILE} and README.md): "
            "write one with `modernpatent prepare` or `modernpatent synth`"
        )
    shards = sorted(glob.glob(os.path.join(path, SHARDS_SUBDIR, "*.parquet")))
    names = [os.path.relpath(shard, path).replace(os.sep, "/") for shard in shards] + ["README.md", LABEL_SPACE_FILE]
    names += [STATS_FILE] if os.path.isfile(os.path.join(path, STATS_FILE)) else []
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.create_commit(
        repo_id=url.repo_id,
        repo_type="dataset",
        commit_message=commit_message,
        operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(path, name)) for name in names],
    )
    return str(url)


def read_stats(path: str) -> Dict:
    """The ``stats.json`` of a prepared dataset directory."""
    with open(os.path.join(path, STATS_FILE), encoding="utf-8") as handle:
        return json.load(handle)


def is_prepared_dir(path: str) -> bool:
    """A directory written by `modernpatent prepare` or `modernpatent synth` (label space and dataset card)."""
    return (
        os.path.isdir(path)
        and os.path.isfile(os.path.join(path, LABEL_SPACE_FILE))
        and os.path.isfile(os.path.join(path, "README.md"))
    )


def dataset_texts(dataset_dir: str, split: str = "test", limit: Optional[int] = None) -> List[str]:
    """The texts of one split of a prepared dataset directory (``modernpatent prepare``/``synth``), the first ``limit``."""
    splits = load_dataset_dir(dataset_dir)
    if split not in splits or len(splits[split]) == 0:
        filled = ", ".join(name for name in splits if len(splits[name])) or "none"
        raise ValueError(f"{dataset_dir} has no rows in split {split!r}; choose a split with rows: {filled}")
    rows = splits[split] if limit is None else splits[split].select(range(min(limit, len(splits[split]))))
    return list(rows["text"])
