"""An index of labelled patents: their ids, CPC codes and normalized vectors, searched for the nearest neighbours of a
patent to predict (the evidence behind its codes and the k-nearest-neighbour vote of :mod:`~modernpatent_hf.knn_scores`).

The index is a ``datasets.Dataset`` with an ``embeddings`` column and its FAISS index (``Dataset.add_faiss_index``),
inner product over L2-normalized vectors, so a score is the cosine similarity. An index directory
(``modernpatent index``, :func:`build_index`, :func:`write_index`) holds::

    INDEX/
      dataset/           Dataset.save_to_disk: id (string), codes (list of subclass codes), exact_key and near_key
                         (uint64 duplicate keys of the patent's text, data.leakage), embeddings (float32 [dim])
      embeddings.faiss   Dataset.save_faiss_index of the embeddings column
      index.json         kind, FAISS factory string, search parameters, rows, dim, what the vectors came from
      .modernpatent-output

The directory loads with the datasets API alone (``datasets.load_from_disk(INDEX/dataset)``, then
``Dataset.load_faiss_index("embeddings", INDEX/embeddings.faiss)``); :meth:`EvidenceIndex.load` reads the same FAISS
file with FAISS itself, which holds it once in memory where datasets' reader holds it twice.

Kinds (:data:`INDEX_KINDS`): ``flat`` searches exactly (every vector, 4 bytes a dimension); ``ivf`` searches the
``nprobe`` nearest of sqrt(rows) k-means cells; ``hnsw`` walks a graph of 32 links a vector; ``ivfpq`` is ``ivf``
with vectors compressed to one byte per 8 dimensions (32 times smaller, approximate scores). ``auto`` is ``flat`` up
to :data:`AUTO_FLAT_MAX_ROWS` rows, ``ivfpq`` above (docs/benchmarks.md: build time, size and queries/s of each).

Self-evidence. :meth:`EvidenceIndex.search` can leave out, per query, the neighbours with the query's id and those
whose text is a near duplicate of the query's (same near-duplicate key as :mod:`~modernpatent_hf.data.leakage`
defines it, which includes exact duplicates): a patent scored against an index that holds it, or a copy of it, must
not find itself as evidence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import datasets
import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .cpc import parse_cpc_codes
from .data.bad_rows import BadRow
from .data.inputs import default_text_fields, input_files, row_id_and_text
from .data.leakage import duplicate_keys
from .data.loading import RUN_DATA_SUBDIR
from .data.normalize import parse_text_fields
from .data.records import is_prepared_dir
from .data.rows import columns_of, iter_rows, parse_json_row
from .io_utils import check_output_dir, file_signatures, owned_output_dir, write_json_atomically
from .predict_file import DEFAULT_CHUNK_SIZE, embed_file
from .predictor import PatentClassifier

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq")
# A flat search reads every vector per query: at 100,000 x 768 it answered 37 queries/s on 2 shared cores, ivfpq
# 2,479 (docs/benchmarks.md); past that size auto trades exact scores for ivfpq's speed and 26x smaller index.
AUTO_FLAT_MAX_ROWS = 100_000
COMMAND = "index"
DATASET_SUBDIR = "dataset"
FAISS_FILE = "embeddings.faiss"
INFO_FILE = "index.json"
EMBEDDINGS = "embeddings"  # the column and the name of its FAISS index
LABEL_COLUMNS = ("labels", "cpc", "cpc_ids")  # prepared directories; JSON Lines; USPTO-3M Parquet
HNSW_LINKS = 32
# Defaults of the search effort: cells visited (ivf, ivfpq) and the candidate list of the graph walk (hnsw).
DEFAULT_NPROBE = 16
DEFAULT_EF_SEARCH = 64
# Training points per k-means cell (faiss warns below 39) and at least 39 per PQ centroid (256 a sub-quantizer).
TRAIN_POINTS_PER_CELL = 50
MIN_PQ_TRAIN_POINTS = 39 * 256
TRAIN_SEED = 0
BATCH_ROWS = 10_000
FAISS_INFO_VERSION = 1


def index_features(dim: int) -> datasets.Features:
    """The columns of an index's dataset (module docstring)."""
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "codes": datasets.List(datasets.Value("string")),
            "exact_key": datasets.Value("uint64"),
            "near_key": datasets.Value("uint64"),
            EMBEDDINGS: datasets.List(datasets.Value("float32"), length=dim),
        }
    )


def resolve_kind(kind: str, rows: int) -> str:
    """``kind`` itself, or for ``auto`` the kind :data:`AUTO_FLAT_MAX_ROWS` picks for ``rows`` rows."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}: choose from {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        return "flat" if rows <= AUTO_FLAT_MAX_ROWS else "ivfpq"
    return kind


def ivf_cells(rows: int) -> int:
    """k-means cells of an ``ivf``/``ivfpq`` index: about sqrt(rows), so that a search visits few vectors a cell."""
    return max(1, int(round(np.sqrt(rows))))


def factory_string(kind: str, rows: int, dim: int) -> str:
    """The ``faiss.index_factory`` string of ``kind`` (not ``auto``) for ``rows`` vectors of ``dim`` dimensions."""
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{HNSW_LINKS},Flat"
    if kind == "ivf":
        return f"IVF{ivf_cells(rows)},Flat"
    if kind == "ivfpq":
        if dim % 8:
            raise ValueError(f"ivfpq compresses 8 dimensions into a byte; {dim} is not a multiple of 8: use ivf")
        return f"IVF{ivf_cells(rows)},PQ{dim // 8}x8"
    raise ValueError(f"unknown index kind {kind!r}: choose from {', '.join(INDEX_KINDS[1:])}")


def train_rows(kind: str, rows: int) -> int:
    """Vectors an index of ``kind`` is trained on (0: it needs no training); refuses a corpus too small for it."""
    if kind in ("flat", "hnsw"):
        return 0
    needed = TRAIN_POINTS_PER_CELL * ivf_cells(rows)
    if kind == "ivfpq":
        needed = max(needed, MIN_PQ_TRAIN_POINTS)
        if rows < MIN_PQ_TRAIN_POINTS:
            raise ValueError(
                f"an ivfpq index trains its codebooks on at least {MIN_PQ_TRAIN_POINTS:,} vectors; the corpus has "
                f"{rows:,}: use --kind flat"
            )
    return min(rows, needed)


def default_search_parameters(kind: str) -> Dict[str, int]:
    """The FAISS search parameters saved with an index of ``kind`` (``faiss.ParameterSpace`` names)."""
    if kind in ("ivf", "ivfpq"):
        return {"nprobe": DEFAULT_NPROBE}
    if kind == "hnsw":
        return {"efSearch": DEFAULT_EF_SEARCH}
    return {}


def set_search_parameters(index: "faiss.Index", parameters: Mapping[str, int]) -> None:
    for name, value in parameters.items():
        faiss.ParameterSpace().set_index_parameter(index, name, value)


def new_faiss_index(
    kind: str, dataset: datasets.Dataset, progress: bool = True
) -> Tuple["faiss.Index", str, Dict[str, int]]:
    """An empty FAISS index of ``kind`` (not ``auto``) for ``dataset``'s embeddings, trained when the kind needs it on
    a seeded random sample of rows (not the first rows: a corpus in date or code order would bias the cells). Returns
    the index, its factory string and its search parameters."""
    rows, dim = len(dataset), dataset.features[EMBEDDINGS].length
    factory = factory_string(kind, rows, dim)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if kind == "ivfpq":  # polysemous codes serve Hamming-distance filtering, which the search does not use
        index.do_polysemous_training = False
    sample = train_rows(kind, rows)
    if sample:
        positions = np.sort(np.random.default_rng(TRAIN_SEED).choice(rows, size=sample, replace=False))
        vectors = dataset.select_columns([EMBEDDINGS]).with_format("numpy")[positions][EMBEDDINGS]
        if progress:
            print(f"index: training the {kind} index ({factory}) on {sample:,} vectors", flush=True)
        index.train(np.ascontiguousarray(vectors, dtype=np.float32))
    reserve_flat_storage(index, rows)
    parameters = default_search_parameters(kind)
    set_search_parameters(index, parameters)
    return index, factory, parameters


def reserve_flat_storage(index: "faiss.Index", rows: int) -> None:
    """Size the vector store of a ``flat`` or ``hnsw`` index for ``rows`` vectors before they are added.

    FAISS keeps those vectors in one growing buffer and adds each batch by resizing it: every growth past its capacity
    copies the whole store into a buffer twice as large, so the build's peak was up to three times the index (200,000
    x 768 vectors, 585 MiB: a peak of 1,043 MiB, 662 MiB sized up front). Resizing to the final size and back to
    empty keeps the capacity, so the batches are added without a copy. IVF kinds keep a list per cell and are left
    as they are."""
    store = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    if isinstance(store, faiss.IndexFlatCodes) and store.ntotal == 0:
        store.codes.resize(rows * store.code_size)
        store.codes.resize(0)


def index_batches(
    ids: Sequence[str],
    codes: Sequence[Sequence[str]],
    vectors: np.ndarray,
    texts: Optional[Sequence[str]] = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Record batches of :func:`index_features` from in-memory rows (``vectors`` [rows, dim], L2-normalized).

    ``texts`` give the duplicate keys that :meth:`EvidenceIndex.search` compares; without them the keys are 0 and
    only ids can be excluded."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if (
        vectors.ndim != 2
        or not len(ids) == len(codes) == len(vectors)
        or (texts is not None and len(texts) != len(ids))
    ):
        raise ValueError(
            f"ids ({len(ids)}), codes ({len(codes)}), texts and vectors {vectors.shape} must give one row each"
        )
    if texts is None:
        exact = near = np.zeros(len(ids), dtype=np.uint64)
    else:
        exact, near = duplicate_keys(texts)
    schema = index_features(vectors.shape[1]).arrow_schema
    for start in range(0, len(ids), batch_rows):
        stop = start + batch_rows
        yield record_batch(
            schema, ids[start:stop], codes[start:stop], exact[start:stop], near[start:stop], vectors[start:stop]
        )


def record_batch(
    schema: pa.Schema,
    ids: Sequence[str],
    codes: Sequence[Sequence[str]],
    exact_keys: np.ndarray,
    near_keys: np.ndarray,
    vectors: np.ndarray,
) -> pa.RecordBatch:
    dim = vectors.shape[1]
    columns = [
        pa.array(list(ids), pa.string()),
        pa.array([list(row) for row in codes], pa.list_(pa.string())),
        pa.array(np.asarray(exact_keys, dtype=np.uint64)),
        pa.array(np.asarray(near_keys, dtype=np.uint64)),
        pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors, np.float32).ravel()), dim),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def write_index(
    batches: Iterable[pa.RecordBatch],
    out_dir: Union[str, os.PathLike],
    kind: str = "auto",
    inputs: Sequence[Union[str, os.PathLike]] = (),
    overwrite: bool = False,
    built_from: Optional[Mapping[str, object]] = None,
    progress: bool = True,
) -> dict:
    """Write an index directory (module docstring) from record batches of :func:`index_features` into ``out_dir``.

    ``out_dir`` is an owned output (``modernpatent index``'s): new, empty, or an earlier index replaced with
    ``overwrite``; it may not overlap ``inputs``. The rows stream through an Arrow file on disk, so memory holds
    one batch plus the FAISS index. ``built_from`` is recorded in ``index.json``. Returns that JSON's content.
    """
    with owned_output_dir(out_dir, COMMAND, inputs, overwrite) as path:
        rows_path = os.path.join(path, "rows.arrow")
        rows, schema = 0, None
        writer = None
        try:
            for batch in batches:
                if writer is None:
                    schema = batch.schema
                    writer = pa.ipc.new_stream(rows_path, schema)
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        if rows == 0:
            raise ValueError("no labelled patent to index: the corpus gave no row with a vector and a code")
        dim = schema.field(EMBEDDINGS).type.list_size
        dataset = datasets.Dataset.from_file(rows_path, info=datasets.DatasetInfo(features=index_features(dim)))
        kind = resolve_kind(kind, rows)
        index, factory, parameters = new_faiss_index(kind, dataset, progress)
        dataset.add_faiss_index(EMBEDDINGS, custom_index=index, batch_size=BATCH_ROWS)
        dataset.save_faiss_index(EMBEDDINGS, os.path.join(path, FAISS_FILE))
        dataset.drop_index(EMBEDDINGS)
        dataset.save_to_disk(os.path.join(path, DATASET_SUBDIR))
        del dataset, index  # the memory map of rows.arrow closes before the file goes
        os.remove(rows_path)
        info = {
            "version": FAISS_INFO_VERSION,
            "kind": kind,
            "factory": factory,
            "metric": "inner_product",
            "search_parameters": parameters,
            "rows": rows,
            "dim": dim,
            "built_from": dict(built_from or {}),
        }
        write_json_atomically(os.path.join(path, INFO_FILE), info, indent=1)
    return info


@dataclass
class Neighbours:
    """The nearest labelled patents of each query: ``positions`` [N, K] (rows of the index; -1 where fewer than K
    were found) and their cosine ``similarities`` [N, K] (0 at -1), nearest first."""

    positions: np.ndarray
    similarities: np.ndarray


class EvidenceIndex:
    """An index directory loaded for search: ``dataset`` (the rows), ``faiss_index`` (the FAISS index of its
    ``embeddings`` column) and ``info``."""

    def __init__(
        self,
        dataset: datasets.Dataset,
        info: Mapping[str, object],
        path: Optional[str] = None,
        faiss_index: Optional["faiss.Index"] = None,
    ):
        self.dataset = dataset
        # The FAISS index of the embeddings column: given, or the one attached to the dataset (add_faiss_index).
        self.faiss_index = faiss_index if faiss_index is not None else dataset.get_index(EMBEDDINGS).faiss_index
        self.info = dict(info)
        self.path = path
        # Small columns read once: the keys compared for every query (8 bytes a row each) and the ids and codes
        # of the neighbours (memory-mapped, read per query batch).
        keys = dataset.select_columns(["near_key"]).with_format("numpy")
        self.near_keys = np.asarray(keys["near_key"], dtype=np.uint64)
        self.labels = dataset.select_columns(["id", "codes"])

    @classmethod
    def load(
        cls, path: Union[str, os.PathLike], search_parameters: Optional[Mapping[str, int]] = None
    ) -> "EvidenceIndex":
        """Load an index directory; ``search_parameters`` (e.g. ``{"nprobe": 64}``) override the saved ones."""
        path = os.fspath(path)
        info_path = os.path.join(path, INFO_FILE)
        if not os.path.isfile(info_path):
            raise FileNotFoundError(f"{path} is not an index written by `modernpatent index` (no {INFO_FILE})")
        with open(info_path, encoding="utf-8") as handle:
            info = json.load(handle)
        dataset = datasets.load_from_disk(os.path.join(path, DATASET_SUBDIR))
        # The file is what Dataset.save_faiss_index wrote, and Dataset.load_faiss_index reads it too; read here by
        # FAISS itself, because datasets passes it through a Python buffer: twice the index in memory at the peak
        # and after (1.7 GiB for a 0.9 GiB flat index), more than a machine has for 3.2 M x 768 vectors.
        faiss_index = faiss.read_index(os.path.join(path, FAISS_FILE))
        parameters = {**info.get("search_parameters", {}), **(search_parameters or {})}
        set_search_parameters(faiss_index, parameters)
        info["search_parameters"] = parameters
        return cls(dataset, info, path, faiss_index)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    def search(
        self,
        vectors: np.ndarray,
        k: int,
        exclude_ids: Optional[Sequence[Optional[str]]] = None,
        exclude_texts: Optional[Sequence[Optional[str]]] = None,
    ) -> Neighbours:
        """The ``k`` nearest labelled patents of each row of ``vectors`` [N, dim] (L2-normalized, as ``embed`` gives).

        ``exclude_ids[i]`` (the query's own id) and ``exclude_texts[i]`` (its text) leave out, for query i, the
        index rows with that id and those whose text is a near (or exact) duplicate of it; the search then reaches
        further so that K neighbours remain when the index has them. None (for all queries or one) excludes nothing.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"query vectors must be [N, {self.dim}] (the index's dimension), got {vectors.shape}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        count = len(vectors)
        for name, values in (("exclude_ids", exclude_ids), ("exclude_texts", exclude_texts)):
            if values is not None and len(values) != count:
                raise ValueError(f"{name} must give one value per query ({count}), got {len(values)}")
        near = None
        if exclude_texts is not None:
            _, keys = duplicate_keys(text or "" for text in exclude_texts)
            near = np.where([text is not None for text in exclude_texts], keys, np.uint64(0))
        excluding = exclude_ids is not None or near is not None
        positions = np.full((count, k), -1, dtype=np.int64)
        similarities = np.zeros((count, k), dtype=np.float32)
        pending = np.arange(count)
        reach = min(k + (k if excluding else 0), len(self))
        while pending.size:
            found_similarities, found = self._faiss_search(vectors[pending], reach)
            if excluding:
                keep = self._kept(found, pending, exclude_ids, near)
            else:
                keep = found >= 0
            done = (keep.sum(axis=1) >= k) | (reach >= len(self))
            for row in np.flatnonzero(done):
                chosen = np.flatnonzero(keep[row])[:k]
                positions[pending[row], : len(chosen)] = found[row, chosen]
                similarities[pending[row], : len(chosen)] = found_similarities[row, chosen]
            pending = pending[~done]
            reach = min(reach * 2, len(self))  # excluded neighbours ate the margin: look twice as far
        return Neighbours(positions, similarities)

    def _faiss_search(self, vectors: np.ndarray, reach: int) -> Tuple[np.ndarray, np.ndarray]:
        scores, positions = self.faiss_index.search(vectors, reach)
        return np.asarray(scores, dtype=np.float32), np.asarray(positions, dtype=np.int64)

    def _kept(
        self,
        found: np.ndarray,
        queries: np.ndarray,
        exclude_ids: Optional[Sequence[Optional[str]]],
        near: Optional[np.ndarray],
    ) -> np.ndarray:
        """Which of the ``found`` index rows [Q, R] of the ``queries`` (positions in the query batch) may be evidence."""
        keep = found >= 0
        safe = np.where(keep, found, 0)
        if near is not None:
            query_keys = near[queries][:, None]
            keep &= (self.near_keys[safe] != query_keys) | (query_keys == 0)
        if exclude_ids is not None:
            ids = np.asarray(self.labels.select_columns(["id"])[safe.ravel().tolist()]["id"], dtype=object).reshape(
                found.shape
            )
            own = np.asarray([exclude_ids[query] for query in queries], dtype=object)[:, None]
            keep &= ids != own
        return keep

    def evidence(self, neighbours: Neighbours) -> List[List[dict]]:
        """Per query, its neighbours as ``{"id", "similarity", "codes"}``, nearest first (none for -1 positions)."""
        found = neighbours.positions >= 0
        rows = self.labels[neighbours.positions[found].tolist()] if found.any() else {"id": [], "codes": []}
        records = iter(zip(rows["id"], rows["codes"]))
        result = []
        for query_found, query_similarities in zip(found, neighbours.similarities):
            result.append(
                [
                    {"id": record_id, "similarity": round(float(similarity), 6), "codes": codes}
                    for (record_id, codes), similarity in zip(
                        (next(records) for _ in range(int(query_found.sum()))), query_similarities[query_found]
                    )
                ]
            )
        return result

    def label_matrix(self, neighbours: Neighbours, codes: Sequence[str]) -> np.ndarray:
        """Multi-hot [N, K, L] of the neighbours' codes over the label space ``codes`` (0 for -1 positions and for
        codes outside it): the input of :func:`~modernpatent_hf.knn_scores.knn_vote`."""
        column = {code: index for index, code in enumerate(codes)}
        matrix = np.zeros((*neighbours.positions.shape, len(codes)), dtype=bool)
        found = np.argwhere(neighbours.positions >= 0)
        if len(found):
            rows = self.labels[neighbours.positions[found[:, 0], found[:, 1]].tolist()]["codes"]
            for (query, rank), neighbour_codes in zip(found, rows):
                for code in neighbour_codes:
                    if code in column:
                        matrix[query, rank, column[code]] = True
        return matrix


def supporting_neighbours(evidence: Sequence[Mapping[str, object]], codes: Sequence[str]) -> Dict[str, List[str]]:
    """For one query's ``evidence`` (:meth:`EvidenceIndex.evidence`), each of ``codes`` (its predicted codes) with
    the ids of the neighbours that carry it, nearest first (an empty list when none does)."""
    return {code: [row["id"] for row in evidence if code in row["codes"]] for code in codes}


# ------------------------------------------------------------------------------------- a labelled corpus
def label_column(input_format: str, files: Sequence[str]) -> str:
    """The column of a CSV or Parquet input that holds the codes (:data:`LABEL_COLUMNS`); JSON Lines rows are
    looked at one by one."""
    columns = columns_of(input_format, files[0]) if files else None
    if columns is None:
        return ""
    found = next((name for name in LABEL_COLUMNS if name in columns), None)
    if found is None:
        raise ValueError(
            f"{files[0]} has no column of CPC codes ({', '.join(LABEL_COLUMNS)}): an index needs labelled patents"
        )
    return found


def class_label_names(input_format: str, file: str, column: str) -> Optional[List[str]]:
    """The code of each class label of a prepared directory's Parquet ``labels`` (None: the values are codes)."""
    if input_format != "parquet":
        return None
    feature = datasets.Features.from_arrow_schema(pq.read_schema(file)).get(column)
    label = getattr(feature, "feature", None)
    return list(label.names) if isinstance(label, datasets.ClassLabel) else None


def labelled_rows(
    data: Union[str, os.PathLike],
    input_format: str = "auto",
    split: Optional[str] = None,
    text_fields: Union[str, Sequence[str], None] = None,
) -> Iterator[Tuple[str, Optional[str], List[str], Optional[BadRow]]]:
    """``(id, text, codes, bad row)`` of every row of a labelled corpus, in the order ``embed`` reads them.

    Inputs and texts are those of ``embed``; the codes come from the ``labels`` (prepared directories: class labels
    or codes), ``cpc`` (JSON Lines) or ``cpc_ids`` (USPTO-3M) field, parsed to subclasses. A bad row comes back with
    its :class:`BadRow` (id and text None) for the caller's policy.
    """
    input_format, files = input_files(data, input_format, split)
    fields = parse_text_fields(text_fields, allowed=None) or default_text_fields(input_format, files)
    column = label_column(input_format, files)
    for file in files:
        names = class_label_names(input_format, file, column)
        read = ("id", *fields, column) if column else None
        for where, row in iter_rows(file, input_format, columns=read):
            try:
                record_id, text = row_id_and_text(where, row, fields, {})
            except BadRow as bad:
                yield bad.record_id, None, [], bad
                continue
            values = parse_json_row(where, row) if isinstance(row, str) else row
            raw = next((values[name] for name in ((column,) if column else LABEL_COLUMNS) if name in values), None)
            if names is not None and raw is not None:
                raw = [names[value] for value in raw]
            codes, _ = parse_cpc_codes(raw, record_id=record_id, errors="drop")
            yield record_id, text, codes, None


def vectors_path(out_dir: Union[str, os.PathLike]) -> str:
    """Where :func:`build_index` embeds the corpus, resumably, before the index is written: beside ``out_dir``
    (``INDEX.vectors.parquet``, removed once the index is complete), so that the owned output directory, emptied at
    the start of each run, never holds half-done work."""
    return os.path.abspath(os.fspath(out_dir)).rstrip(os.sep) + ".vectors.parquet"


def corpus_batches(
    vectors_file: str, rows: Iterator[Tuple[str, Optional[str], List[str], Optional[BadRow]]], counters: Dict[str, int]
) -> Iterator[pa.RecordBatch]:
    """Record batches of the index: the embedded vectors (``embed``'s Parquet) beside the labelled rows they were
    made from, row by row; rows without a vector (bad rows) or without a code are left out and counted."""
    table = pq.ParquetFile(vectors_file)
    dim = table.schema_arrow.field("embedding").type.list_size
    schema = index_features(dim).arrow_schema
    for batch in table.iter_batches(batch_size=BATCH_ROWS, columns=["id", "embedding"]):
        ids, codes, texts, keep = [], [], [], []
        for vector_id, vector_valid in zip(
            batch.column("id").to_pylist(), batch.column("embedding").is_valid().to_pylist()
        ):
            record_id, text, row_codes, bad = next(rows)
            if bad is None and record_id != vector_id:
                raise RuntimeError(
                    f"row {record_id!r} of the corpus meets vector {vector_id!r}: the corpus changed while it was "
                    "indexed; rerun"
                )
            usable = bad is None and vector_valid and bool(row_codes)
            counters["no_codes"] += int(bad is None and not row_codes)
            keep.append(usable)
            if usable:
                ids.append(record_id)
                codes.append(row_codes)
                texts.append(text)
        if not ids:
            continue
        exact, near = duplicate_keys(texts)
        flat = batch.column("embedding").filter(pa.array(keep)).flatten().to_numpy(zero_copy_only=False)
        yield record_batch(schema, ids, codes, exact, near, flat.reshape(len(ids), dim))


def default_index_data(model: Union[str, os.PathLike]) -> Optional[Tuple[str, str]]:
    """``(prepared directory, "train")``: the training split a checkpoint records (its run's ``data`` folder, or the
    prepared ``dataset_name_or_path`` of its ``run_config.json``); None when it records none."""
    model = os.fspath(model)
    candidates = [os.path.join(model, RUN_DATA_SUBDIR)]
    try:
        with open(os.path.join(model, "run_config.json"), encoding="utf-8") as handle:
            source = json.load(handle).get("DataArguments", {}).get("dataset_name_or_path")
        if isinstance(source, str):
            candidates.append(source)
    except (OSError, ValueError, AttributeError):
        pass
    found = next((path for path in candidates if os.path.isdir(path) and is_prepared_dir(path)), None)
    return None if found is None else (found, "train")


def build_index(
    classifier: PatentClassifier,
    data: Union[str, os.PathLike],
    out_dir: Union[str, os.PathLike],
    kind: str = "auto",
    split: Optional[str] = None,
    text_fields: Union[str, Sequence[str], None] = None,
    input_format: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_bad_row: str = "raise",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Embed a labelled corpus with ``classifier`` and write its index directory to ``out_dir``.

    ``data`` is any input of ``embed`` whose rows also carry codes (:func:`labelled_rows`). The embedding streams and
    resumes as ``embed``'s (:func:`~modernpatent_hf.predict_file.embed_file`, into :func:`vectors_path`): a rerun
    after a kill continues after the last committed chunk. Then :func:`write_index` writes the index (``kind``:
    :data:`INDEX_KINDS`). Returns a summary: the index's info, the embedding summary, rows left out.
    """
    resolve_kind(kind, 0)  # an unknown kind fails before anything is read
    _, files = input_files(data, input_format, split)
    inputs = [data, *files, classifier.source or data]
    check_output_dir(out_dir, COMMAND, inputs, overwrite)  # refused before the embedding, not after
    vectors_file = vectors_path(out_dir)
    if os.path.exists(vectors_file):  # complete vectors of a run killed while writing the index: made again
        os.remove(vectors_file)
    embedded = embed_file(
        classifier,
        data,
        vectors_file,
        normalize=True,
        text_fields=text_fields,
        input_format=input_format,
        chunk_size=chunk_size,
        progress=progress,
        split=split,
        on_bad_row=on_bad_row,
    )
    counters = {"no_codes": 0}
    rows = labelled_rows(data, input_format, split, text_fields)
    bar = tqdm(total=embedded["rows"], desc="index rows", unit=" rows", disable=not progress)

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in corpus_batches(vectors_file, rows, counters):
            bar.update(batch.num_rows)
            yield batch

    try:
        info = write_index(
            counted(),
            out_dir,
            kind,
            inputs,
            overwrite,
            built_from={
                "model": classifier.source,
                "data": os.path.abspath(os.fspath(data)),
                "split": split,
                "files": file_signatures(files),
                "precision": classifier.precision,
                "max_length": classifier.max_length,
            },
            progress=progress,
        )
    finally:
        bar.close()
    os.remove(vectors_file)
    return {
        **info,
        "embedded": embedded["embedded"],
        "bad_rows": embedded["bad_rows"],
        "truncated": embedded["truncated"],
        "left_out_without_codes": counters["no_codes"],
        "resumed_after_rows": embedded["resumed_after_rows"],
        "seconds_embedding": embedded["seconds"],
    }
