"""Resumable, multi-process prediction and embedding over files: one output row per input row, in input order.

:func:`predict_file` writes JSON Lines::

    {"id": "US10002286B1", "predictions": [{"code": "G06V", "score": 0.93, "class": "G06", "section": "G"}, ...]}

and with ``evidence=K`` (an index attached to the classifier, :class:`~modernpatent_hf.evidence.EvidenceScorer`)
each row also has ``"neighbours"`` (its K nearest labelled patents) and each prediction ``"evidence"`` (the ids of
those carrying its code).

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

Overlap. A thread reads and tokenizes the next chunk while this one runs through the model (the tokenizer releases
the GIL), and each chunk's results reach the host in one copy (:meth:`PatentClassifier.logits_from_ids`). The part
files and their merge are :mod:`modernpatent_hf.part_files`; the embeddings' output files
:mod:`modernpatent_hf.embedding_files`.

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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

from . import process_group  # noqa: F401  (before _process_state creates a group: see its docstring)
from .data.bad_rows import BadRow, Counters
from .data.inputs import default_text_fields, input_files, row_id_and_text, total_rows
from .data.normalize import parse_text_fields
from .data.rows import Row, iter_rows
from .embedding_files import write_npy_embeddings, write_parquet_embeddings
from .io_utils import check_output_file, file_signatures, remove_stale_scratch
from .output_lock import shared_output_lock
from .part_files import OutputWriter, PartFile, merge_parts, part_path, read_json
from .predictor import PatentClassifier, check_top_k

DEFAULT_CHUNK_SIZE = 10_000
BAD_ROW_POLICIES = ("raise", "record")
EMBEDDING_FORMATS = ("parquet", "npy")
# A process that finished its share waits at the barrier for the others: a long job must not time it out.
_BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass
class _PreparedChunk:
    """One chunk's rows before the model: output rows (results still empty), the token ids of its good rows and where
    their results go, and the chunk's own counters (bad rows, missing fields, truncations)."""

    rows: List[dict]
    positions: List[int]
    input_ids: List[List[int]]
    counters: Counters
    record_ids: List[str]  # the ids and texts of the good rows, as input_ids (evidence keeps a patent out of its own)
    texts: List[str]


def _prepare_chunk(
    classifier: PatentClassifier,
    chunk: Sequence[Tuple[str, Row]],
    fields: Sequence[str],
    on_bad_row: str,
    task: "_RowTask",
) -> _PreparedChunk:
    """Parse and tokenize one chunk of ``(where, row)`` input rows: an output row ``{"id", <empty result>}`` per row,
    in order, an error row for each bad one (``on_bad_row="record"``). Changes nothing outside the chunk, so it runs in
    a thread of its own while the model works on the chunk before."""
    counters: Counters = {}
    rows: List[dict] = []
    texts: List[str] = []
    record_ids: List[str] = []
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
        record_ids.append(record_id)
        texts.append(text)
    input_ids, truncated = classifier.encode_counting_truncations(texts)
    counters["truncated"] = truncated
    return _PreparedChunk(rows, positions, input_ids, counters, record_ids, texts)


def _chunk_lines(
    classifier: PatentClassifier, prepared: _PreparedChunk, counters: Counters, task: "_RowTask"
) -> List[str]:
    """The output lines of a prepared chunk, one per input row, in order, with ``task.compute``'s result for each good
    row; the chunk's counters are added to ``counters``."""
    for position, result in zip(prepared.positions, task.compute(prepared)):
        if task.merge_results:  # a dict of output keys (predictions with their evidence)
            prepared.rows[position].update(result)
        else:
            prepared.rows[position][task.result_key] = result
    for key, value in prepared.counters.items():
        counters[key] = counters.get(key, 0) + value
    classifier.truncated_count += prepared.counters["truncated"]
    return [json.dumps(row, ensure_ascii=False) for row in prepared.rows]


def _one_ahead(items: Iterable[Any], prepare: Callable[[Any], Any], pool: ThreadPoolExecutor) -> Iterator[Any]:
    """``prepare(item)`` for each item, in order, the next item's already under way in ``pool`` while the caller
    works on the current one; an error of ``prepare`` comes out where its item would have."""
    pending = None
    for item in items:
        future = pool.submit(prepare, item)
        if pending is not None:
            yield pending.result()
        pending = future
    if pending is not None:
        yield pending.result()


def _chunks(rows: Iterable[Tuple[str, Row]], size: int) -> Iterator[List[Tuple[str, Row]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _process_state(device: torch.device) -> PartialState:
    """accelerate's view of the launcher (rank, world size, barrier); CPU processes join a gloo group."""
    return PartialState(cpu=device.type == "cpu", timeout=_BARRIER_TIMEOUT)


def check_prediction_output(
    output_path: Union[str, os.PathLike],
    inputs: Sequence[Union[str, os.PathLike, None]],
    overwrite: bool = False,
    kind: str = "a JSON Lines file",
) -> None:
    """One-line refusal of an output that may not be written (:func:`~modernpatent_hf.io_utils.check_output_file`):
    one that is, contains or sits inside an input (the model too), a directory, a FIFO, device or socket, or,
    without ``overwrite``, an existing file."""
    check_output_file(output_path, inputs, overwrite, "--output", kind)


def check_embedding_output(
    output_path: Union[str, os.PathLike], inputs: Sequence[Union[str, os.PathLike, None]], overwrite: bool = False
) -> str:
    """:func:`check_prediction_output` for ``embed``, plus its format: returns ``"parquet"`` or ``"npy"`` (the
    output's suffix), or raises a one-line ValueError for another suffix."""
    output_format = os.path.splitext(os.fspath(output_path))[1].lstrip(".").lower()
    if output_format not in EMBEDDING_FORMATS:
        raise ValueError(f"--output {os.fspath(output_path)} must end in .parquet or .npy (the embeddings' format)")
    check_prediction_output(output_path, inputs, overwrite, kind="a .parquet or .npy file")
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
    overwrite: bool = False,
    evidence: int = 0,
) -> dict:
    """Predict every row of ``input_path`` into JSON Lines at ``output_path``, resumably, in constant memory.

    Inputs: JSON Lines (``.jsonl``/``.jsonl.gz``), CSV (``.csv``/``.csv.gz``, a header row), Parquet (a file or a
    directory), or a directory written by ``modernpatent prepare`` (all its splits, or ``split``). Each row needs an
    ``id``; its text is ``text_fields`` joined by newlines as ``prepare`` joins them (default: the ``text`` column
    of CSV/Parquet inputs that have one, else ``title,abstract``). See the module docstring for the output rows,
    bad rows (``on_bad_row``), resuming and several processes. ``evidence``: neighbours per row from the
    classifier's attached index (0: none). Returns a summary: rows, predicted, bad_rows,
    truncated, empty_lines, missing_<field> counts, resumed_after_rows, processes, seconds, rows_per_second.
    """
    check_top_k(top_k, threshold)
    if evidence:
        if classifier.evidence is None:
            raise ValueError("evidence needs an index of labelled patents: pass --index (evidence.attach_index)")
        classifier.evidence.cuts(threshold)  # "auto" without tuned thresholds fails before any input is read

        def compute(prepared: _PreparedChunk) -> List[dict]:
            return classifier.evidence.rows_from_ids(
                prepared.input_ids, prepared.texts, prepared.record_ids, top_k, threshold, evidence
            )

    else:
        classifier.label_thresholds(threshold)

        def compute(prepared: _PreparedChunk) -> List[List[dict]]:
            return classifier.predict_from_ids(prepared.input_ids, top_k=top_k, threshold=threshold)

    task = _RowTask(
        name="predict",
        result_key="predictions",
        empty_result=[],
        done_key="predicted",
        compute=compute,
        merge_results=bool(evidence),
        settings={
            "top_k": top_k,
            "threshold": threshold,
            "evidence": evidence,
            "index": None if not evidence else classifier.evidence.index.info,
            "fuse": bool(evidence) and classifier.evidence.fuse,
            # Titles (--titles) and tuned thresholds change rows too.
            "titles": [classifier.label_space.title(code) for code in classifier.label_space.codes],
            "thresholds": None if classifier.thresholds is None else classifier.thresholds.tolist(),
        },
    )
    return _run_rows(
        classifier,
        task,
        input_path,
        output_path,
        text_fields,
        input_format,
        chunk_size,
        progress,
        split,
        on_bad_row,
        overwrite,
    )


@dataclass
class _RowTask:
    """What one kind of file run computes per row; the reading, chunking, resuming and merging are shared."""

    name: str  # "predict" or "embed": progress bar and messages
    result_key: str  # the output row's key for the result
    empty_result: Any  # that key's value in an error row
    done_key: str  # the summary's count of rows with a result
    compute: Callable[[_PreparedChunk], Sequence[Any]]  # a chunk -> one JSON-serializable result per good row
    settings: dict  # what else changes the rows: part of the resume fingerprint
    write_output: Optional[OutputWriter] = None  # None: the output is the JSON Lines rows
    merge_results: bool = False  # each result is a dict of output keys, merged into its row


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
    overwrite: bool,
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
    check_output = lambda: check_prediction_output(  # noqa: E731
        output_path,
        [input_path, *files, classifier.source],
        overwrite,
        kind="a JSON Lines file" if task.write_output is None else "a .parquet or .npy file",
    )
    check_output()
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
    with shared_output_lock(output_path, task.name, state.is_main_process, broadcast_object_list):
        check_output()  # again, under the lock: a run that held it may have finished this output meanwhile
        return _run_rows_locked(
            classifier,
            task,
            files,
            input_format,
            output_path,
            fields,
            fingerprint,
            chunk_size,
            progress,
            on_bad_row,
            state,
            start,
        )


def _run_rows_locked(
    classifier: PatentClassifier,
    task: _RowTask,
    files: List[str],
    input_format: str,
    output_path: str,
    fields: Sequence[str],
    fingerprint: str,
    chunk_size: int,
    progress: bool,
    on_bad_row: str,
    state: PartialState,
    start: float,
) -> dict:
    """:func:`_run_rows` once the run holds the output's lock: resume or start the part files, run this process's
    chunks, merge."""
    rank, world = state.process_index, state.num_processes
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    if state.is_main_process:  # what killed runs left half-written: state files, a half-merged output
        remove_stale_scratch(output_path)
        for rank_path in glob.glob(f"{glob.escape(output_path)}.partial-*.state.json"):
            remove_stale_scratch(rank_path)
    part = PartFile(output_path, rank, world, fingerprint, task.name)
    input_counts: Dict[str, int] = {}
    bar = tqdm(
        total=total_rows(input_format, files),
        desc=task.name,
        unit=" rows",
        disable=not (progress and state.is_main_process),
    )
    # Reading and tokenizing the next chunk overlaps the model's work on this one (the tokenizer releases the GIL).
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{task.name}-prefetch")

    def own_chunks() -> Iterator[List[Tuple[str, Row]]]:
        rows_in = iter_rows(files, input_format, columns=("id", *fields), counters=input_counts)
        for chunk_index, chunk in enumerate(_chunks(rows_in, chunk_size)):
            bar.update(len(chunk))
            if chunk_index % world == rank and chunk_index // world >= part.chunks_done:
                yield chunk  # not another process's chunk, nor one committed before an interruption

    try:
        prepare = lambda chunk: _prepare_chunk(classifier, chunk, fields, on_bad_row, task)  # noqa: E731
        for prepared in _one_ahead(own_chunks(), prepare, prefetch):
            part.commit(_chunk_lines(classifier, prepared, part.counters, task))
            bar.set_postfix(truncated=part.counters.get("truncated", 0), refresh=False)
    except ValueError:
        # Stopped by the input (a bad row, an unreadable file): fixing it changes the input's fingerprint, so no
        # rerun could resume these rows. Interruptions (Ctrl-C, a kill, a crash) keep them for the rerun.
        part.remove()
        raise
    finally:
        prefetch.shutdown(wait=False, cancel_futures=True)
        bar.close()
        part.close()

    state.wait_for_everyone()
    states = [read_json(f"{part_path(output_path, other, world)}.state.json") for other in range(world)]
    counters: Dict[str, int] = dict(input_counts)
    for other in states:
        for key, value in other["counters"].items():
            counters[key] = counters.get(key, 0) + value
    rows = sum(other["rows"] for other in states)
    resumed = sum(other["rows_at_start"] for other in states)
    state.wait_for_everyone()  # every process has read the states before process 0 removes them
    if state.is_main_process:
        merge_parts(output_path, world, chunk_size, rows, task.write_output)
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
    overwrite: bool = False,
) -> dict:
    """Embed every row of ``input_path`` (:meth:`PatentClassifier.embed`) into ``output_path``, resumably.

    Inputs, text fields, bad rows, resuming and several processes are as in :func:`predict_file` (the part files
    hold the vectors as base64 float32). The output's suffix picks its format, one row per input row in input order:
    ``.parquet`` has columns ``id`` and ``embedding`` (float32 lists of the hidden size; null for a bad row, whose
    message is in an ``error`` column with ``on_bad_row="record"``); ``.npy`` is a float32 matrix [rows, hidden size]
    (NaN for a bad row; the ids are the input's, in order). Returns the summary of :func:`predict_file`, with
    ``embedded`` for ``predicted``.
    """
    output_format = check_embedding_output(output_path, [input_path, classifier.source], overwrite)
    hidden_size = classifier.model.config.hidden_size

    def compute(prepared: _PreparedChunk) -> List[str]:
        vectors = classifier.embed_from_ids(prepared.input_ids, normalize=normalize)
        return [base64.b64encode(vector.tobytes()).decode("ascii") for vector in vectors]

    writer = write_parquet_embeddings if output_format == "parquet" else write_npy_embeddings
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
        classifier,
        task,
        input_path,
        output_path,
        text_fields,
        input_format,
        chunk_size,
        progress,
        split,
        on_bad_row,
        overwrite,
    )
