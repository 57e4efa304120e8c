"""Resumable, multi-process prediction and embedding over files: one output row per input row, in input order.

:func:`predict_file` writes JSON Lines::

    {"id": "US10002286B1", "predictions": [{"code": "G06V", "score": 0.93, "class": "G06", "section": "G"}, ...]}

:func:`embed_file` writes the pooled, normalized vectors of :meth:`PatentClassifier.embed` to Parquet (``id``,
``embedding``) or NumPy (``.npy``). Both run through the same machinery below; its part files hold JSON Lines
(embeddings as base64 float32), converted into the output's format when the parts are merged.

Rows. Inputs are resolved to their files by :mod:`modernpatent_hf.data.inputs` and read row by row by
:func:`modernpatent_hf.data.rows.iter_rows`, the reader ``prepare`` uses. Every input row gives exactly one output row. A bad
row (invalid JSON, not an object, no ``id``, no text in the chosen fields) stops the run with a one-line error
naming its line or row (``on_bad_row="raise"``, the default), or with ``on_bad_row="record"`` becomes an output
row ``{"id": ... or null, "predictions": [], "error": "<what is wrong, where>"}`` counted in ``bad_rows``. Texts
longer than the classifier's ``max_length`` tokens are truncated and counted (``truncated``).

Resume. Rows are cut into chunks of ``chunk_size``. Each process appends its chunks to a part file
``OUTPUT.partial-R-of-W`` and, after each chunk is flushed to disk, rewrites a small state file
``OUTPUT.partial-R-of-W.state.json`` (chunks done, bytes committed, counters, and a fingerprint of the
input files, the model and the settings). A rerun of the same command after a crash or SIGKILL
truncates the part file to the last committed chunk and continues from there; a different input,
model or setting starts over. At the end the output appears at once (rename), and part and state
files are removed. A run stopped by its input (a bad row with ``on_bad_row="raise"``, an unreadable
file) removes its part and state files too: fixing the input changes its fingerprint, so nothing
there could be resumed.

Several processes. Under ``accelerate launch --num_processes N`` or ``torchrun`` (``WORLD_SIZE`` and
``RANK`` set), process R predicts chunks R, R+N, R+2N... into its own part file; after a barrier,
process 0 interleaves the parts back into input order. The output is the same as one process's.
"""

from __future__ import annotations

import base64
import datetime
import glob
import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from . import process_group  # noqa: F401  (before _process_state creates a group: see its docstring)
from .data.bad_rows import BadRow, Counters
from .data.inputs import default_text_fields, input_files, row_id_and_text, total_rows
from .data.normalize import parse_text_fields
from .data.rows import Row, iter_rows
from .io_utils import file_signatures, refuse_output_overlap, remove_stale_scratch, scratch_path, write_json_atomically
from .predictor import PatentClassifier, check_top_k

DEFAULT_CHUNK_SIZE = 10_000
BAD_ROW_POLICIES = ("raise", "record")
EMBEDDING_FORMATS = ("parquet", "npy")
# Writes the output at a path from the merged JSON Lines rows (bytes, with their newline) and their number.
OutputWriter = Callable[[Iterator[bytes], int, str], None]
_STATE_VERSION = 1
# A process that finished its share waits at the barrier for the others: a long job must not time it out.
_BARRIER_TIMEOUT = datetime.timedelta(days=7)


def _chunk_lines(
    classifier: PatentClassifier,
    chunk: Sequence[Tuple[str, Row]],
    fields: Sequence[str],
    on_bad_row: str,
    counters: Counters,
    task: "_RowTask",
) -> List[str]:
    """The output lines of one chunk of ``(where, row)`` input rows, one per row, in order: ``{"id", <result>}``
    with ``task.compute``'s result for each good row, an error row for each bad one (``on_bad_row="record"``)."""
    rows: List[dict] = []
    texts: List[str] = []
    positions: List[int] = []
    for where, row in chunk:
        try:
            record_id, text = row_id_and_text(where, row, fields, counters)
        except BadRow as bad:
            if on_bad_row == "raise":
                raise ValueError(
                    f"{bad}; fix or remove that row, or pass --on-bad-row record (on_bad_row='record') to write an "
                    "error row for it"
                ) from None
            counters["bad_rows"] = counters.get("bad_rows", 0) + 1
            rows.append({"id": bad.record_id, task.result_key: task.empty_result, "error": str(bad)})
            continue
        positions.append(len(rows))
        rows.append({"id": record_id, task.result_key: task.empty_result})
        texts.append(text)
    truncated_before = classifier.truncated_count
    for position, result in zip(positions, task.compute(texts)):
        rows[position][task.result_key] = result
    counters["truncated"] = counters.get("truncated", 0) + classifier.truncated_count - truncated_before
    return [json.dumps(row, ensure_ascii=False) for row in rows]


def _chunks(rows: Iterable[Tuple[str, Row]], size: int) -> Iterator[List[Tuple[str, Row]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def _part_path(output_path: str, rank: int, world: int) -> str:
    return f"{output_path}.partial-{rank}-of-{world}"


class _PartFile:
    """One process's share of the output: a part file plus a state file, committed a chunk at a time.

    The state records the bytes of the part file that hold whole chunks; on reopening with the same fingerprint,
    anything after them (a chunk cut short by a kill) is truncated away and work continues after the last
    committed chunk.
    """

    def __init__(self, output_path: str, rank: int, world: int, fingerprint: str, task_name: str = "predict"):
        self.path = _part_path(output_path, rank, world)
        self.state_path = f"{self.path}.state.json"
        self.fingerprint = fingerprint
        state = _read_json(self.state_path)
        resumable = (
            state is not None
            and state.get("fingerprint") == fingerprint
            and os.path.exists(self.path)
            and os.path.getsize(self.path) >= state["bytes"]
        )
        if resumable:
            self.handle = open(self.path, "r+b")
            self.handle.truncate(state["bytes"])
            self.handle.seek(state["bytes"])
            self.chunks_done, self.rows, self.counters = state["chunks_done"], state["rows"], state["counters"]
            print(f"{task_name}: resuming {self.path} after {self.rows:,} committed rows", file=sys.stderr)
        else:
            if state is not None:
                print(
                    f"{task_name}: cannot resume {self.path} (another input, model or settings, or its part file is "
                    "gone); starting over",
                    file=sys.stderr,
                )
            self.handle = open(self.path, "wb")
            self.chunks_done, self.rows, self.counters = 0, 0, {}
        self.rows_at_start = self.rows
        self._save_state()

    def commit(self, lines: Sequence[str]) -> None:
        """Append one chunk's lines, make them durable, then record them in the state file."""
        self.handle.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.chunks_done += 1
        self.rows += len(lines)
        self._save_state()

    def _save_state(self) -> None:
        write_json_atomically(
            self.state_path,
            {
                "version": _STATE_VERSION,
                "fingerprint": self.fingerprint,
                "chunks_done": self.chunks_done,
                "rows": self.rows,
                "bytes": self.handle.tell(),
                "counters": self.counters,
                "rows_at_start": self.rows_at_start,
            },
        )

    def close(self) -> None:
        self.handle.close()

    def remove(self) -> None:
        """Close and delete the part and state files: progress that no rerun can resume."""
        self.handle.close()
        for path in (self.path, self.state_path):
            if os.path.exists(path):
                os.remove(path)


def _merge_parts(
    output_path: str, world: int, chunk_size: int, expected_rows: int, write_output: Optional[OutputWriter] = None
) -> None:
    """Interleave the parts (chunk k is in part k % world) into ``output_path``, atomically, then remove them.

    The output is the interleaved JSON Lines, or what ``write_output(lines, rows, path)`` writes from them.
    """
    if world == 1 and write_output is None:
        os.replace(_part_path(output_path, 0, 1), output_path)
    else:
        tmp = scratch_path(output_path, "merging")
        parts = [open(_part_path(output_path, rank, world), "rb") for rank in range(world)]
        written = 0

        def interleaved() -> Iterator[bytes]:
            nonlocal written
            for chunk_index in itertools.count():
                lines = list(itertools.islice(parts[chunk_index % world], chunk_size))
                if not lines:
                    return
                written += len(lines)
                yield from lines

        try:
            if write_output is None:
                with open(tmp, "wb") as merged:
                    merged.writelines(interleaved())
            else:
                write_output(interleaved(), expected_rows, tmp)
            leftover = any(part.read(1) for part in parts)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        finally:
            for part in parts:
                part.close()
        if leftover or written != expected_rows:
            os.remove(tmp)
            raise RuntimeError(
                f"the parts of {output_path} do not interleave into {expected_rows} rows; rerun to redo them"
            )
        os.replace(tmp, output_path)
    # Also the parts of runs with another number of processes: the output is complete, they are obsolete.
    for path in glob.glob(f"{glob.escape(output_path)}.partial-*"):
        os.remove(path)


def _process_state(device: torch.device) -> PartialState:
    """accelerate's view of the launcher (rank, world size, barrier); CPU processes join a gloo group."""
    return PartialState(cpu=device.type == "cpu", timeout=_BARRIER_TIMEOUT)


def check_prediction_output(
    output_path: Union[str, os.PathLike],
    inputs: Sequence[Union[str, os.PathLike, None]],
    kind: str = "a JSON Lines file",
) -> None:
    """One-line refusal of an output that is a directory, or is, contains or sits inside an input (the model too)."""
    refuse_output_overlap(output_path, inputs, "--output")
    if os.path.isdir(output_path):
        raise ValueError(f"--output {os.path.abspath(output_path)} is a directory: give the path of {kind}")


def check_embedding_output(
    output_path: Union[str, os.PathLike], inputs: Sequence[Union[str, os.PathLike, None]]
) -> str:
    """:func:`check_prediction_output` for ``embed``, plus its format: returns ``"parquet"`` or ``"npy"`` (the
    output's suffix), or raises a one-line ValueError for another suffix."""
    check_prediction_output(output_path, inputs, kind="a .parquet or .npy file")
    output_format = os.path.splitext(os.fspath(output_path))[1].lstrip(".").lower()
    if output_format not in EMBEDDING_FORMATS:
        raise ValueError(f"--output {os.fspath(output_path)} must end in .parquet or .npy (the embeddings' format)")
    return output_format


def predict_file(
    classifier: PatentClassifier,
    input_path: Union[str, os.PathLike],
    output_path: Union[str, os.PathLike],
    top_k: int = 5,
    threshold: Union[float, str, None] = None,
    text_fields: Union[str, Sequence[str], None] = None,
    input_format: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    split: Optional[str] = None,
    on_bad_row: str = "raise",
) -> dict:
    """Predict every row of ``input_path`` into JSON Lines at ``output_path``, resumably, in constant memory.

    Inputs: JSON Lines (``.jsonl``/``.jsonl.gz``), CSV (``.csv``/``.csv.gz``, a header row), Parquet (a file or a
    directory), or a directory written by ``modernpatent prepare`` (all its splits, or ``split``). Each row needs an
    ``id``; its text is ``text_fields`` joined by newlines as ``prepare`` joins them (default: the ``text`` column
    of CSV/Parquet inputs that have one, else ``title,abstract``). See the module docstring for the output rows,
    bad rows (``on_bad_row``), resuming and several processes. Returns a summary: rows, predicted, bad_rows,
    truncated, empty_lines, missing_<field> counts, resumed_after_rows, processes, seconds, rows_per_second.
    """
    check_top_k(top_k, threshold)
    classifier.label_thresholds(threshold)  # "auto" without tuned thresholds fails before any input is read
    task = _RowTask(
        name="predict",
        result_key="predictions",
        empty_result=[],
        done_key="predicted",
        compute=lambda texts: classifier.predict(texts, top_k=top_k, threshold=threshold),
        settings={
            "top_k": top_k,
            "threshold": threshold,
            # Titles (--titles) and tuned thresholds change rows too.
            "titles": [classifier.label_space.title(code) for code in classifier.label_space.codes],
            "thresholds": None if classifier.thresholds is None else classifier.thresholds.tolist(),
        },
    )
    return _run_rows(
        classifier, task, input_path, output_path, text_fields, input_format, chunk_size, progress, split, on_bad_row
    )


@dataclass
class _RowTask:
    """What one kind of file run computes per row; the reading, chunking, resuming and merging are shared."""

    name: str  # "predict" or "embed": progress bar and messages
    result_key: str  # the output row's key for the result
    empty_result: Any  # that key's value in an error row
    done_key: str  # the summary's count of rows with a result
    compute: Callable[[List[str]], Sequence[Any]]  # texts -> one JSON-serializable result per text
    settings: dict  # what else changes the rows: part of the resume fingerprint
    write_output: Optional[OutputWriter] = None  # None: the output is the JSON Lines rows


def _run_rows(
    classifier: PatentClassifier,
    task: _RowTask,
    input_path: Union[str, os.PathLike],
    output_path: Union[str, os.PathLike],
    text_fields: Union[str, Sequence[str], None],
    input_format: str,
    chunk_size: int,
    progress: bool,
    split: Optional[str],
    on_bad_row: str,
) -> dict:
    """Run ``task`` over every row of ``input_path`` into ``output_path``: chunked, resumable, in this process's
    share under a launcher (module docstring); returns the summary."""
    start = time.perf_counter()
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_row must be one of {', '.join(BAD_ROW_POLICIES)}, got {on_bad_row!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    input_format, files = input_files(input_path, input_format, split)
    output_path = os.path.abspath(output_path)
    check_prediction_output(
        output_path,
        [input_path, *files, classifier.source],
        kind="a JSON Lines file" if task.write_output is None else "a .parquet or .npy file",
    )
    fields = parse_text_fields(text_fields, allowed=None) or default_text_fields(input_format, files)
    model_files = (
        sorted(glob.glob(os.path.join(classifier.source, "*"))) if os.path.isdir(classifier.source or "") else []
    )
    settings = {
        "task": task.name,
        "input": file_signatures(files),
        "model": classifier.source,
        "model_files": file_signatures(model_files),
        "precision": classifier.precision,
        "max_length": classifier.max_length,
        "text_fields": fields,
        "chunk_size": chunk_size,
        "on_bad_row": on_bad_row,
        **task.settings,
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()

    state = _process_state(classifier.device)
    rank, world = state.process_index, state.num_processes
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    if state.is_main_process:  # what killed runs left half-written: state files, a half-merged output
        remove_stale_scratch(output_path)
        for rank_path in glob.glob(f"{glob.escape(output_path)}.partial-*.state.json"):
            remove_stale_scratch(rank_path)
    part = _PartFile(output_path, rank, world, fingerprint, task.name)
    input_counts: Dict[str, int] = {}
    bar = tqdm(
        total=total_rows(input_format, files),
        desc=task.name,
        unit=" rows",
        disable=not (progress and state.is_main_process),
    )
    try:
        rows_in = iter_rows(files, input_format, columns=("id", *fields), counters=input_counts)
        for chunk_index, chunk in enumerate(_chunks(rows_in, chunk_size)):
            bar.update(len(chunk))
            if chunk_index % world != rank or chunk_index // world < part.chunks_done:
                continue  # another process's chunk, or one committed before an interruption
            part.commit(_chunk_lines(classifier, chunk, fields, on_bad_row, part.counters, task))
            bar.set_postfix(truncated=part.counters.get("truncated", 0), refresh=False)
    except ValueError:
        # Stopped by the input (a bad row, an unreadable file): fixing it changes the input's fingerprint, so no
        # rerun could resume these rows. Interruptions (Ctrl-C, a kill, a crash) keep them for the rerun.
        part.remove()
        raise
    finally:
        bar.close()
        part.close()

    state.wait_for_everyone()
    states = [_read_json(f"{_part_path(output_path, other, world)}.state.json") for other in range(world)]
    counters: Dict[str, int] = dict(input_counts)
    for other in states:
        for key, value in other["counters"].items():
            counters[key] = counters.get(key, 0) + value
    rows = sum(other["rows"] for other in states)
    resumed = sum(other["rows_at_start"] for other in states)
    state.wait_for_everyone()  # every process has read the states before process 0 removes them
    if state.is_main_process:
        _merge_parts(output_path, world, chunk_size, rows, task.write_output)
    seconds = time.perf_counter() - start
    return {
        "output": output_path,
        "rows": rows,
        task.done_key: rows - counters.get("bad_rows", 0),
        "bad_rows": counters.pop("bad_rows", 0),
        "truncated": counters.pop("truncated", 0),
        "empty_lines": counters.pop("empty_lines", 0),
        **dict(sorted(counters.items())),
        "resumed_after_rows": resumed,
        "processes": world,
        "seconds": round(seconds, 3),
        "rows_per_second": round((rows - resumed) / seconds, 1) if seconds > 0 else None,
    }


def embed_file(
    classifier: PatentClassifier,
    input_path: Union[str, os.PathLike],
    output_path: Union[str, os.PathLike],
    normalize: bool = True,
    text_fields: Union[str, Sequence[str], None] = None,
    input_format: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    split: Optional[str] = None,
    on_bad_row: str = "raise",
) -> dict:
    """Embed every row of ``input_path`` (:meth:`PatentClassifier.embed`) into ``output_path``, resumably.

    Inputs, text fields, bad rows, resuming and several processes are as in :func:`predict_file` (the part files
    hold the vectors as base64 float32). The output's suffix picks its format, one row per input row in input order:
    ``.parquet`` has columns ``id`` and ``embedding`` (float32 lists of the hidden size; null for a bad row, whose
    message is in an ``error`` column with ``on_bad_row="record"``); ``.npy`` is a float32 matrix [rows, hidden size]
    (NaN for a bad row; the ids are the input's, in order). Returns the summary of :func:`predict_file`, with
    ``embedded`` for ``predicted``.
    """
    output_format = check_embedding_output(output_path, [input_path, classifier.source])
    hidden_size = classifier.model.config.hidden_size

    def compute(texts: List[str]) -> List[str]:
        vectors = classifier.embed(texts, normalize=normalize)
        return [base64.b64encode(vector.tobytes()).decode("ascii") for vector in vectors]

    writer = _write_parquet_embeddings if output_format == "parquet" else _write_npy_embeddings
    task = _RowTask(
        name="embed",
        result_key="embedding",
        empty_result=None,
        done_key="embedded",
        compute=compute,
        settings={"normalize": normalize, "output_format": output_format},
        write_output=lambda lines, rows, path: writer(lines, rows, path, hidden_size, on_bad_row == "record"),
    )
    return _run_rows(
        classifier, task, input_path, output_path, text_fields, input_format, chunk_size, progress, split, on_bad_row
    )


def _decode_embedding_rows(
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


def _write_parquet_embeddings(
    lines: Iterator[bytes], rows: int, path: str, hidden_size: int, with_errors: bool, batch_rows: int = 10_000
) -> None:
    """Parquet with ``id``, ``embedding`` (fixed-size float32 lists) and, for recorded bad rows, ``error``."""
    fields = [pa.field("id", pa.string()), pa.field("embedding", pa.list_(pa.float32(), hidden_size))]
    schema = pa.schema(fields + ([pa.field("error", pa.string())] if with_errors else []))
    with pq.ParquetWriter(path, schema) as writer:
        decoded = _decode_embedding_rows(lines, hidden_size)
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


def _write_npy_embeddings(lines: Iterator[bytes], rows: int, path: str, hidden_size: int, with_errors: bool) -> None:
    """A float32 ``.npy`` matrix [rows, hidden_size], filled row by row on disk (NaN rows for bad rows)."""
    if rows == 0:  # a memory map cannot map zero bytes
        with open(path, "wb") as handle:
            np.save(handle, np.zeros((0, hidden_size), dtype=np.float32))
        return
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, hidden_size))
    written = 0
    for written, (_, vector, _) in enumerate(_decode_embedding_rows(lines, hidden_size), start=1):
        if written > rows:
            raise RuntimeError(f"the parts of {path} hold more than {rows} rows; rerun to redo them")
        matrix[written - 1] = np.nan if vector is None else vector
    matrix.flush()
    del matrix
