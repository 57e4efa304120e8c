"""Resumable, multi-process prediction over files: one JSON Lines output row per input row, in input order::

    {"id": "US10002286B1", "predictions": [{"code": "G06V", "score": 0.93, "class": "G06", "section": "G"}, ...]}

Rows. Inputs are resolved to their files by :mod:`modernpatent_hf.data.inputs` and read row by row by
:func:`modernpatent_hf.data.readers.iter_rows`, the reader ``prepare`` uses. Every input row gives exactly one output row. A bad
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
files are removed.

Several processes. Under ``accelerate launch --num_processes N`` or ``torchrun`` (``WORLD_SIZE`` and
``RANK`` set), process R predicts chunks R, R+N, R+2N... into its own part file; after a barrier,
process 0 interleaves the parts back into input order. The output is the same as one process's.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import itertools
import json
import os
import sys
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from .data.inputs import default_text_fields, input_files, row_id_and_text, total_rows
from .data.readers import BadRow, Counters, Row, iter_rows, parse_text_fields
from .io_utils import refuse_output_overlap, remove_stale_scratch, scratch_path, write_json_atomically
from .predictor import PatentClassifier, check_top_k

DEFAULT_CHUNK_SIZE = 10_000
BAD_ROW_POLICIES = ("raise", "record")
_STATE_VERSION = 1
# A process that finished its share waits at the barrier for the others: a long job must not time it out.
_BARRIER_TIMEOUT = datetime.timedelta(days=7)


def _predict_chunk(
    classifier: PatentClassifier,
    chunk: Sequence[Tuple[str, Row]],
    fields: Sequence[str],
    top_k: int,
    threshold: Union[float, str, None],
    on_bad_row: str,
    counters: Counters,
) -> List[str]:
    """The output lines of one chunk of ``(where, row)`` input rows, one per row, in order."""
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
            rows.append({"id": bad.record_id, "predictions": [], "error": str(bad)})
            continue
        positions.append(len(rows))
        rows.append({"id": record_id, "predictions": []})
        texts.append(text)
    truncated_before = classifier.truncated_count
    for position, predictions in zip(positions, classifier.predict(texts, top_k=top_k, threshold=threshold)):
        rows[position]["predictions"] = predictions
    counters["truncated"] = counters.get("truncated", 0) + classifier.truncated_count - truncated_before
    return [json.dumps(row, ensure_ascii=False) for row in rows]


def _chunks(rows: Iterable[Tuple[str, Row]], size: int) -> Iterator[List[Tuple[str, Row]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _file_signatures(paths: Iterable[str]) -> List[list]:
    """``[path, size, mtime]`` per file: what changes when a file is rewritten, without reading it."""
    return [[os.path.abspath(path), os.path.getsize(path), os.stat(path).st_mtime_ns] for path in paths]


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

    def __init__(self, output_path: str, rank: int, world: int, fingerprint: str):
        self.path = _part_path(output_path, rank, world)
        self.state_path = f"{self.path}.state.json"
        self.fingerprint = fingerprint
        state = _read_json(self.state_path)
        resumable = (
            state is not None and state.get("fingerprint") == fingerprint
            and os.path.exists(self.path) and os.path.getsize(self.path) >= state["bytes"]
        )
        if resumable:
            self.handle = open(self.path, "r+b")
            self.handle.truncate(state["bytes"])
            self.handle.seek(state["bytes"])
            self.chunks_done, self.rows, self.counters = state["chunks_done"], state["rows"], state["counters"]
            print(f"predict: resuming {self.path} after {self.rows:,} committed rows", file=sys.stderr)
        else:
            if state is not None:
                print(f"predict: cannot resume {self.path} (another input, model or settings, or its part file is "
                      "gone); starting over", file=sys.stderr)
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
        write_json_atomically(self.state_path, {
            "version": _STATE_VERSION, "fingerprint": self.fingerprint, "chunks_done": self.chunks_done,
            "rows": self.rows, "bytes": self.handle.tell(), "counters": self.counters,
            "rows_at_start": self.rows_at_start,
        })

    def close(self) -> None:
        self.handle.close()


def _merge_parts(output_path: str, world: int, chunk_size: int, expected_rows: int) -> None:
    """Interleave the parts (chunk k is in part k % world) into ``output_path``, atomically, then remove them."""
    if world == 1:
        os.replace(_part_path(output_path, 0, 1), output_path)
    else:
        tmp = scratch_path(output_path, "merging")
        parts = [open(_part_path(output_path, rank, world), "rb") for rank in range(world)]
        written = 0
        with open(tmp, "wb") as merged:
            for chunk_index in itertools.count():
                lines = list(itertools.islice(parts[chunk_index % world], chunk_size))
                if not lines:
                    break
                merged.writelines(lines)
                written += len(lines)
        leftover = any(part.read(1) for part in parts)
        for part in parts:
            part.close()
        if leftover or written != expected_rows:
            os.remove(tmp)
            raise RuntimeError(f"the parts of {output_path} do not interleave into {expected_rows} rows; rerun to redo them")
        os.replace(tmp, output_path)
    # Also the parts of runs with another number of processes: the output is complete, they are obsolete.
    for path in glob.glob(f"{glob.escape(output_path)}.partial-*"):
        os.remove(path)


def _process_state(device: torch.device) -> PartialState:
    """accelerate's view of the launcher (rank, world size, barrier); CPU processes join a gloo group."""
    return PartialState(cpu=device.type == "cpu", timeout=_BARRIER_TIMEOUT)


def check_prediction_output(output_path: Union[str, os.PathLike], inputs: Sequence[Union[str, os.PathLike, None]]) -> None:
    """One-line refusal of an output that is a directory, or is, contains or sits inside an input (the model too)."""
    refuse_output_overlap(output_path, inputs, "--output")
    if os.path.isdir(output_path):
        raise ValueError(f"--output {os.path.abspath(output_path)} is a directory: give the path of a JSON Lines file")


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
    start = time.perf_counter()
    check_top_k(top_k, threshold)
    classifier.label_thresholds(threshold)  # "auto" without tuned thresholds fails before any input is read
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_row must be one of {', '.join(BAD_ROW_POLICIES)}, got {on_bad_row!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    input_format, files = input_files(input_path, input_format, split)
    output_path = os.path.abspath(output_path)
    check_prediction_output(output_path, [input_path, *files, classifier.source])
    fields = parse_text_fields(text_fields, allowed=None) or default_text_fields(input_format, files)
    model_files = sorted(glob.glob(os.path.join(classifier.source, "*"))) if os.path.isdir(classifier.source or "") else []
    settings = {
        "input": _file_signatures(files), "model": classifier.source, "model_files": _file_signatures(model_files),
        "precision": classifier.precision, "max_length": classifier.max_length, "top_k": top_k,
        "threshold": threshold, "text_fields": fields, "chunk_size": chunk_size, "on_bad_row": on_bad_row,
        # Titles (--titles) and tuned thresholds change rows too.
        "titles": [classifier.label_space.title(code) for code in classifier.label_space.codes],
        "thresholds": None if classifier.thresholds is None else classifier.thresholds.tolist(),
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()

    state = _process_state(classifier.device)
    rank, world = state.process_index, state.num_processes
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    if state.is_main_process:  # what killed runs left half-written: state files, a half-merged output
        remove_stale_scratch(output_path)
        for rank_path in glob.glob(f"{glob.escape(output_path)}.partial-*.state.json"):
            remove_stale_scratch(rank_path)
    part = _PartFile(output_path, rank, world, fingerprint)
    input_counts: Dict[str, int] = {}
    bar = tqdm(total=total_rows(input_format, files), desc="predicting", unit=" rows",
               disable=not (progress and state.is_main_process))
    try:
        rows_in = iter_rows(files, input_format, columns=("id", *fields), counters=input_counts)
        for chunk_index, chunk in enumerate(_chunks(rows_in, chunk_size)):
            bar.update(len(chunk))
            if chunk_index % world != rank or chunk_index // world < part.chunks_done:
                continue  # another process's chunk, or one committed before an interruption
            part.commit(_predict_chunk(classifier, chunk, fields, top_k, threshold, on_bad_row, part.counters))
            bar.set_postfix(truncated=part.counters.get("truncated", 0), refresh=False)
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
        _merge_parts(output_path, world, chunk_size, rows)
    seconds = time.perf_counter() - start
    return {
        "output": output_path,
        "rows": rows,
        "predicted": rows - counters.get("bad_rows", 0),
        "bad_rows": counters.pop("bad_rows", 0),
        "truncated": counters.pop("truncated", 0),
        "empty_lines": counters.pop("empty_lines", 0),
        **dict(sorted(counters.items())),
        "resumed_after_rows": resumed,
        "processes": world,
        "seconds": round(seconds, 3),
        "rows_per_second": round((rows - resumed) / seconds, 1) if seconds > 0 else None,
    }
