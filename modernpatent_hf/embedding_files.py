"""The output files of :func:`~modernpatent_hf.predict_file.embed_file`: Parquet or NumPy, written from the merged
part-file rows (JSON Lines whose ``embedding`` is base64 float32, or null for a bad row)."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Iterator, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def decode_embedding_rows(
    lines: Iterator[bytes], hidden_size: int
) -> Iterator[Tuple[Optional[str], Optional[np.ndarray], Optional[str]]]:
    """``(id, vector or None, error or None)`` per part-file line of :func:`embed_file`."""
    for line in lines:
        row = json.loads(line)
        encoded = row["embedding"]
        vector = None if encoded is None else np.frombuffer(base64.b64decode(encoded), dtype=np.float32)
        if vector is not None and vector.shape != (hidden_size,):
            raise RuntimeError(f"a part-file row holds {vector.size} values, not {hidden_size}; rerun to redo it")
        yield row["id"], vector, row.get("error")


def write_parquet_embeddings(
    lines: Iterator[bytes], rows: int, path: str, hidden_size: int, with_errors: bool, batch_rows: int = 10_000
) -> None:
    """Parquet with ``id``, ``embedding`` (fixed-size float32 lists) and, for recorded bad rows, ``error``."""
    fields = [pa.field("id", pa.string()), pa.field("embedding", pa.list_(pa.float32(), hidden_size))]
    schema = pa.schema(fields + ([pa.field("error", pa.string())] if with_errors else []))
    with pq.ParquetWriter(path, schema) as writer:
        decoded = decode_embedding_rows(lines, hidden_size)
        while batch := list(itertools.islice(decoded, batch_rows)):
            ids, vectors, errors = zip(*batch)
            flat = np.concatenate(
                [vector if vector is not None else np.zeros(hidden_size, np.float32) for vector in vectors]
            )
            embedding = pa.FixedSizeListArray.from_arrays(
                pa.array(flat, pa.float32()), hidden_size, mask=pa.array([vector is None for vector in vectors])
            )
            columns = [pa.array(ids, pa.string()), embedding] + (
                [pa.array(errors, pa.string())] if with_errors else []
            )
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def write_npy_embeddings(lines: Iterator[bytes], rows: int, path: str, hidden_size: int, with_errors: bool) -> None:
    """A float32 ``.npy`` matrix [rows, hidden_size], filled row by row on disk (NaN rows for bad rows)."""
    if rows == 0:  # a memory map cannot map zero bytes
        with open(path, "wb") as handle:
            np.save(handle, np.zeros((0, hidden_size), dtype=np.float32))
        return
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, hidden_size))
    written = 0
    for written, (_, vector, _) in enumerate(decode_embedding_rows(lines, hidden_size), start=1):
        if written > rows:
            raise RuntimeError(f"the parts of {path} hold more than {rows} rows; rerun to redo them")
        matrix[written - 1] = np.nan if vector is None else vector
    matrix.flush()
    del matrix
