"""Batch prediction: length-bucketed top-k CPC codes, and resumable, multi-process prediction over files.

:class:`PatentClassifier` wraps a saved checkpoint (model, tokenizer, label space). Texts are
tokenized once, sorted by length and cut into batches under a token budget
(:func:`length_bucketed_batches`); each batch is padded only to its own longest text, so short
patents never pay for long ones, and the logits come back in input order.

:func:`predict_file` streams JSON Lines, CSV, Parquet or a directory written by
``modernpatent prepare`` into a JSON Lines file with one output row per input row, in input order::
    {"id": "US10002286B1", "predictions": [{"code": "G06V", "score": 0.93, "class": "G06", "section": "G"}, ...]}

Rows. An empty line of a JSON Lines file is not a row: it is skipped and counted (``empty_lines``).
Every other input row gives exactly one output row. A bad row (invalid JSON, not an object, no
``id``, no text in the chosen fields) stops the run with a one-line error naming its line or row
(``on_bad_row="raise"``, the default), or with ``on_bad_row="record"`` becomes an output row
``{"id": ... or null, "predictions": [], "error": "<what is wrong, where>"}`` counted in
``bad_rows``. Texts longer than the classifier's ``max_length`` tokens are truncated and counted
(``truncated``).

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

import csv
import datetime
import glob
import gzip
import hashlib
import io
import itertools
import json
import os
import sys
import time
import warnings
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .configuration_modernpatent import named_labels
from .cpc import LABEL_SPACE_FILE, CpcLabelSpace, class_of, section_of
from .data.readers import (
    DEFAULT_TEXT_FIELDS,
    build_record,
    jsonl_text_fields,
    normalize_record_id,
    numbered_lines,
    one_line,
    parquet_files,
    refuse_surrogates,
)
from .data.records import SHARDS_SUBDIR, SPLIT_ORDER
from .io_utils import remove_stale_scratch, scratch_path, write_json_atomically
from .model_factory import load_pretrained_weights

DEFAULT_MAX_BATCH_TOKENS = 16384
DEFAULT_MAX_BATCH_SIZE = 256
DEFAULT_CHUNK_SIZE = 10_000
BAD_ROW_POLICIES = ("raise", "record")
PREDICT_FORMATS = ("auto", "jsonl", "csv", "parquet")
# Columnar inputs (USPTO-3M, prepared directories) hold the patent text in "text"; JSON Lines default as in prepare.
TEXT_COLUMN = "text"
_STATE_VERSION = 1
# A process that finished its share waits at the barrier for the others: a long job must not time it out.
_BARRIER_TIMEOUT = datetime.timedelta(days=7)


def length_bucketed_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int) -> List[List[int]]:
    """Indices grouped into batches of similar length, longest first.

    Indices are sorted by length, descending (ties keep input order), and cut so that each batch's padded size
    ``len(batch) * max(length in batch)`` stays within ``max_batch_tokens`` and a batch holds at most
    ``max_batch_size`` items. A single item longer than the budget gets a batch of its own. Every index appears
    exactly once.
    """
    if max_batch_tokens < 1 or max_batch_size < 1:
        raise ValueError(
            f"max_batch_tokens ({max_batch_tokens}) and max_batch_size ({max_batch_size}) must be at least 1"
        )
    batches: List[List[int]] = []
    batch: List[int] = []
    longest = 0
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batch and ((len(batch) + 1) * longest > max_batch_tokens or len(batch) == max_batch_size):
            batches.append(batch)
            batch = []
        if not batch:
            longest = max(int(lengths[index]), 1)  # the first item of a batch is its longest
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches


def _torch_dtype(dtype, device: torch.device) -> torch.dtype:
    """``None`` -> bf16 on CUDA, fp32 elsewhere (bf16 is several times slower than fp32 on CPUs)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype {dtype!r} is not a floating-point torch dtype: use float32, bfloat16 or float16")
    return resolved


def _default_device() -> torch.device:
    """The GPU of this process (LOCAL_RANK under a multi-process launcher) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def load_checkpoint_label_space(path_or_hub_id: str, config) -> CpcLabelSpace:
    """The label space of a checkpoint: its ``label_space.json``, else the CPC codes of ``config.id2label``.

    Raises a one-line ValueError when neither gives CPC codes, or when they disagree with the model's outputs.
    """
    from transformers.utils import cached_file

    names = named_labels(config)
    label_file = cached_file(
        path_or_hub_id, LABEL_SPACE_FILE,
        _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
    )
    if label_file is not None:
        label_space = CpcLabelSpace.load(label_file)
    else:
        try:
            label_space = CpcLabelSpace(names) if names else None
        except ValueError:  # labels that are not CPC codes
            label_space = None
        if label_space is None:
            raise ValueError(
                f"model directory {path_or_hub_id} lacks a label space: no {LABEL_SPACE_FILE} and its config's "
                "id2label holds no CPC codes; save the checkpoint with PatentTrainer or copy the training data's "
                f"{LABEL_SPACE_FILE} next to it"
            )
    if len(label_space) != config.num_labels or (names is not None and names != list(label_space.codes)):
        raise ValueError(
            f"{path_or_hub_id}: the model predicts {config.num_labels} labels but its label space "
            f"({LABEL_SPACE_FILE} or config id2label) lists {len(label_space)} codes in another order or set; "
            "use the label space the model was trained with"
        )
    return label_space


class PatentClassifier:
    """A CPC classifier ready for batch prediction: ``model``, ``tokenizer``, ``label_space``, ``device``.

    Build it with :meth:`from_pretrained`. :meth:`logits` and :meth:`predict` take any number of texts and
    batch them by length under ``max_batch_tokens``; texts longer than ``max_length`` tokens are truncated and
    counted in ``truncated_count`` (cumulative over calls).
    """

    def __init__(
        self,
        model,
        tokenizer,
        label_space: CpcLabelSpace,
        max_length: int,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        compile: bool = False,
        source: Optional[str] = None,
        precision: Optional[str] = None,
    ):
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 tokens, got {max_length}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.label_space = label_space
        self.max_length = int(max_length)
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_batch_size = int(max_batch_size)
        self.device = next(model.parameters()).device
        self.source = source
        # What the weights compute in ("float32", "bfloat16", "int8"): resumed prediction files must not mix them.
        self.precision = precision or str(next(model.parameters()).dtype).removeprefix("torch.")
        self.truncated_count = 0
        # Recompiling for every new batch shape would cost more than it saves: one dynamic-shape graph.
        self._forward = torch.compile(model, dynamic=True) if compile else model
        # Padding positions are masked out, so any id works when a tokenizer defines none.
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str,
        device=None,
        dtype=None,
        int8: bool = False,
        compile: bool = False,
        max_length: Optional[int] = None,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        titles: Union[str, os.PathLike, Mapping[str, str], None] = None,
        allow_pickle: bool = False,
    ) -> "PatentClassifier":
        """Load a checkpoint saved by this package (or any sequence classifier whose labels are CPC codes).

        device: default the process's GPU when there is one, else the CPU. dtype: default bf16 on CUDA, fp32 on
        the CPU. int8: dynamic int8 quantization of every ``nn.Linear`` (CPU, fp32 only). compile: ``torch.compile``
        with dynamic shapes. max_length: default the smaller of the tokenizer's ``model_max_length`` and the model's
        ``max_position_embeddings`` (pass the training max length to match training). titles: a ``code<TAB>title``
        TSV or a mapping, added to the predictions (the label space's own titles otherwise). allow_pickle: also read
        pickled weights (``pytorch_model.bin``); by default only safetensors are read.
        """
        # Importing this package registered its model types with these Auto classes.
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        device = torch.device(device) if device is not None else _default_device()
        dtype = _torch_dtype(dtype, device)
        if int8 and (device.type != "cpu" or dtype != torch.float32):
            raise ValueError(
                f"int8 dynamic quantization runs on the CPU in float32 only (asked: device {device}, dtype {dtype}); "
                "drop int8 or use device='cpu' with dtype float32"
            )
        try:
            config = AutoConfig.from_pretrained(path_or_hub_id)
        except (OSError, ValueError) as error:  # hub errors are OSErrors, malformed ids ValueErrors, both long
            raise OSError(
                f"cannot load a model from {os.fspath(path_or_hub_id)!r} ({one_line(error)}); give a checkpoint "
                "directory with config.json, or a Hub id where the Hub is reachable"
            ) from None
        label_space = load_checkpoint_label_space(path_or_hub_id, config)
        if titles is not None:
            label_space = label_space.with_titles(titles)
        tokenizer = AutoTokenizer.from_pretrained(path_or_hub_id)
        model = load_pretrained_weights(AutoModelForSequenceClassification, path_or_hub_id, allow_pickle=allow_pickle, config=config, dtype=dtype)
        model = model.to(device).eval()
        if int8:
            with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        if max_length is None:
            limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
            max_length = min(limit for limit in limits if limit)
        return cls(model, tokenizer, label_space, max_length, max_batch_tokens, max_batch_size, compile=compile,
                   source=str(path_or_hub_id), precision="int8" if int8 else None)

    # ----------------------------------------------------------------- tokens
    def encode(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids of each text, truncated to ``max_length`` (truncations are added to ``truncated_count``)."""
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"text {index} is a {type(text).__name__}, not a string")
        if not texts:
            return []
        # The overflow rows tell which texts did not fit; only each text's first window is kept.
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, return_overflowing_tokens=True,
            return_attention_mask=False, return_token_type_ids=False,
        )
        input_ids: List[Optional[List[int]]] = [None] * len(texts)
        for ids, text_index in zip(encoded["input_ids"], encoded["overflow_to_sample_mapping"]):
            if input_ids[text_index] is None:
                input_ids[text_index] = ids
        windows = np.bincount(encoded["overflow_to_sample_mapping"], minlength=len(texts))
        self.truncated_count += int((windows > 1).sum())
        return input_ids

    def padded_batches(self, input_ids: Sequence[Sequence[int]]) -> Iterator[Tuple[List[int], torch.Tensor, torch.Tensor]]:
        """``(indices, input_ids, attention_mask)`` per length bucket, right-padded to the bucket's longest, on
        ``device``."""
        lengths = [len(ids) for ids in input_ids]
        for batch in length_bucketed_batches(lengths, self.max_batch_tokens, self.max_batch_size):
            ids = np.full((len(batch), lengths[batch[0]]), self._pad_id, dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = input_ids[index]
                mask[row, : lengths[index]] = 1
            yield batch, torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    # ----------------------------------------------------------------- scores
    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Subclass logits ``[len(texts), num_labels]`` (float32), rows in input order."""
        input_ids = self.encode(texts)
        logits = np.zeros((len(input_ids), len(self.label_space)), dtype=np.float32)
        with torch.inference_mode():
            for batch, ids, mask in self.padded_batches(input_ids):
                output = self._forward(input_ids=ids, attention_mask=mask)
                logits[batch] = output.logits.float().cpu().numpy()
        return logits

    def predict(self, texts: Sequence[str], top_k: int = 5, threshold: Optional[float] = None) -> List[List[dict]]:
        """The ``top_k`` most likely subclasses of each text, best first.

        Each prediction is ``{"code", "score", "class", "section"}`` (plus ``"title"`` when the label space has
        one); ``score`` is the sigmoid probability. With ``threshold``, codes scoring below it are left out, but
        the best code is always kept: every patent has at least one subclass, so a text never comes back
        without a prediction (its low score says how unsure it is).
        """
        _check_top_k(top_k, threshold)
        probabilities = torch.from_numpy(self.logits(texts)).sigmoid().numpy()
        # Stable sort: equal scores keep label order, as in the transformers pipeline, so ties resolve alike.
        best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        predictions = []
        for row, indices in zip(probabilities, best):
            kept = [i for rank, i in enumerate(indices) if rank == 0 or threshold is None or row[i] >= threshold]
            predictions.append([self._prediction(int(i), float(row[i])) for i in kept])
        return predictions

    def _prediction(self, index: int, score: float) -> dict:
        code = self.label_space.codes[index]
        prediction = {"code": code, "score": score, "class": class_of(code), "section": section_of(code)}
        title = self.label_space.title(code)
        if title is not None:
            prediction["title"] = title
        return prediction


def _check_top_k(top_k: int, threshold: Optional[float]) -> None:
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")


# ============================================================================== files
class _BadRow(ValueError):
    """An input row that cannot be predicted; the message names its file and line (or row)."""

    def __init__(self, message: str, record_id: Optional[str] = None):
        super().__init__(message)
        self.record_id = record_id


_SUFFIXES = {"jsonl": (".jsonl", ".jsonl.gz"), "csv": (".csv", ".csv.gz"), "parquet": (".parquet",)}
_PARQUET_BATCH_ROWS = 10_000


def _input_files(path, input_format: str, split: Optional[str]) -> Tuple[str, List[str]]:
    """``(format, files)``: a .jsonl/.jsonl.gz, .csv/.csv.gz or .parquet file, a directory written by
    ``modernpatent prepare`` (all its splits in order, or ``split``), or a directory of Parquet files."""
    path = os.fspath(path)
    if input_format not in PREDICT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}: choose from {', '.join(PREDICT_FORMATS)}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such input file or directory: {path!r}")
    if os.path.isdir(path):
        if input_format not in ("auto", "parquet"):
            raise ValueError(f"{path} is a directory: only Parquet files are read from directories, not {input_format}")
        if os.path.isfile(os.path.join(path, "README.md")) and os.path.isdir(os.path.join(path, SHARDS_SUBDIR)):
            return "parquet", _prepared_split_files(path, split)
        files = parquet_files(path)
    else:
        lower = path.lower()
        detected = next((name for name, suffixes in _SUFFIXES.items() if lower.endswith(suffixes)), None)
        input_format = detected if input_format == "auto" else input_format
        if input_format == "auto":
            raise ValueError(f"cannot tell the format of {path!r} from its name; pass --format jsonl, csv or parquet")
        files = [path]
    if split is not None:
        raise ValueError(f"a split ({split!r}) can only be chosen in a directory written by `modernpatent prepare`; {path} is not one")
    return input_format, files


def _prepared_split_files(path: str, split: Optional[str]) -> List[str]:
    """The Parquet shards of a prepared dataset directory: train, validation, test (then any other split)."""
    by_split: Dict[str, List[str]] = {}
    for file in sorted(glob.glob(os.path.join(path, SHARDS_SUBDIR, "*.parquet"))):
        by_split.setdefault(os.path.basename(file).rsplit("-", 1)[0], []).append(file)
    order = [name for name in SPLIT_ORDER if name in by_split] + sorted(set(by_split) - set(SPLIT_ORDER))
    if split is None:
        return [file for name in order for file in by_split[name]]
    if split not in by_split:
        raise ValueError(f"{path} has no split {split!r} with rows (splits: {', '.join(order) or 'none'})")
    return by_split[split]


def _columns(input_format: str, file: str) -> Optional[List[str]]:
    """Column names of a CSV or Parquet file (None for JSON Lines, whose rows each carry their own fields)."""
    if input_format == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(file).names
    if input_format == "csv":
        with _open_text(file) as handle:
            return next(csv.reader(handle), [])
    return None


def _open_text(path: str) -> io.TextIOBase:
    return gzip.open(path, "rt", encoding="utf-8", newline="") if path.lower().endswith(".gz") else open(
        path, encoding="utf-8", newline=""
    )


def _check_columns(columns: Sequence[str], source: str, fields: Sequence[str]) -> None:
    for name in ("id", *fields):
        if name not in columns:
            raise ValueError(
                f"{source} has no column {name!r} (columns: {', '.join(columns)}); "
                + ("every row needs an 'id'" if name == "id" else "choose --text-fields from its columns")
            )


def _parse_text_fields(text_fields: Union[str, Sequence[str], None]) -> Optional[Tuple[str, ...]]:
    """``"title,abstract"`` or a list -> a tuple of field names, repeats dropped; ``None`` stays ``None``."""
    if text_fields is None:
        return None
    names = text_fields.split(",") if isinstance(text_fields, str) else list(text_fields)
    fields = tuple(dict.fromkeys(name.strip() for name in names if name.strip()))
    if not fields:
        raise ValueError(f"no text field given in {text_fields!r}: name the fields joined into the text, e.g. title,abstract")
    return fields


def _default_text_fields(input_format: str, files: Sequence[str]) -> Tuple[str, ...]:
    """``text`` when a CSV/Parquet input has that column (USPTO-3M, prepared directories), else title + abstract."""
    columns = _columns(input_format, files[0]) if files else None
    return (TEXT_COLUMN,) if columns and TEXT_COLUMN in columns else DEFAULT_TEXT_FIELDS["jsonl"]


def _input_rows(input_format: str, files: Sequence[str], fields: Sequence[str], counts: Dict[str, int]):
    """``(where, row)`` for every input row: ``where`` names its file and line/row, ``row`` is a dict or (JSON
    Lines) the raw line, parsed only when its chunk is predicted. Empty JSON Lines lines are counted, not rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for file in files:
        if input_format == "jsonl":
            for line_number, line in numbered_lines(file):
                if line.strip():
                    yield f"{file}:{line_number}", line
                else:
                    counts["empty_lines"] = counts.get("empty_lines", 0) + 1
        elif input_format == "csv":
            # Patent texts outgrow csv's default 128 KiB field limit.
            csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
            try:
                with _open_text(file) as handle:
                    reader = csv.DictReader(handle)
                    _check_columns(reader.fieldnames or [], file, fields)
                    for row_number, row in enumerate(reader, start=1):
                        yield f"{file} row {row_number}", row
            except (csv.Error, UnicodeDecodeError, EOFError) as error:
                raise ValueError(f"cannot read {file} as UTF-8 CSV ({error}); is the file complete?") from None
        else:
            try:
                parquet = pq.ParquetFile(file)
                _check_columns(parquet.schema_arrow.names, file, fields)
                batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=list(dict.fromkeys(("id", *fields))))
                row_number = 0
                for batch in batches:
                    for row in batch.to_pylist():
                        row_number += 1
                        yield f"{file} row {row_number}", row
            except (pa.ArrowException, OSError) as error:
                raise ValueError(f"cannot read {file} as Parquet ({error}); is the file complete?") from None


def _total_rows(input_format: str, files: Sequence[str]) -> Optional[int]:
    """The number of rows when the input says it cheaply (Parquet metadata), for the progress bar."""
    if input_format != "parquet":
        return None
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(file).metadata.num_rows for file in files)


def _id_and_text(where: str, row, fields: Sequence[str], counters: Dict[str, int]) -> Tuple[str, str]:
    """The id and the text of one input row (text built as ``prepare`` builds it); raises :class:`_BadRow`."""
    line = row if isinstance(row, str) else None
    if line is not None:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise _BadRow(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None
        if not isinstance(row, dict):
            raise _BadRow(f"{where}: expected a JSON object, got a {type(row).__name__}")
    try:
        record_id = normalize_record_id(row.get("id"), where)
    except ValueError as error:
        raise _BadRow(str(error)) from None
    known = jsonl_text_fields(row)  # adds first_claim from a claims list, as prepare does
    sources = {name: known[name] if name in known else row[name] for name in fields if name in known or name in row}
    try:
        if line is not None and "\\u" in line:  # only a JSON escape can make an unpaired surrogate
            refuse_surrogates(sources, f"record {record_id!r}")
        record, _ = build_record(record_id, None, sources, fields, counters=counters)
    except ValueError as error:
        raise _BadRow(f"{where}: {error}", record_id) from None
    if not record["text"]:
        raise _BadRow(f"{where}: record {record_id!r} has an empty text (fields {','.join(fields)})", record_id)
    return record_id, record["text"]


def _predict_chunk(classifier: PatentClassifier, chunk, fields, top_k, threshold, on_bad_row, counters) -> List[str]:
    """The output lines of one chunk of ``(where, row)`` input rows, one per row, in order."""
    rows: List[dict] = []
    texts: List[str] = []
    positions: List[int] = []
    for where, row in chunk:
        try:
            record_id, text = _id_and_text(where, row, fields, counters)
        except _BadRow as bad:
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


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
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


def _process_state(device: torch.device):
    """accelerate's view of the launcher (rank, world size, barrier); CPU processes join a gloo group."""
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu", timeout=_BARRIER_TIMEOUT)


def predict_file(
    classifier: PatentClassifier,
    input_path: Union[str, os.PathLike],
    output_path: Union[str, os.PathLike],
    top_k: int = 5,
    threshold: Optional[float] = None,
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
    _check_top_k(top_k, threshold)
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_row must be one of {', '.join(BAD_ROW_POLICIES)}, got {on_bad_row!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    input_format, files = _input_files(input_path, input_format, split)
    output_path = os.path.abspath(output_path)
    if output_path in {os.path.abspath(file) for file in files}:
        raise ValueError(f"the output {output_path} is also an input file: write the predictions elsewhere")
    fields = _parse_text_fields(text_fields) or _default_text_fields(input_format, files)
    model_files = sorted(glob.glob(os.path.join(classifier.source, "*"))) if os.path.isdir(classifier.source or "") else []
    settings = {
        "input": _file_signatures(files), "model": classifier.source, "model_files": _file_signatures(model_files),
        "precision": classifier.precision, "max_length": classifier.max_length, "top_k": top_k,
        "threshold": threshold, "text_fields": fields, "chunk_size": chunk_size, "on_bad_row": on_bad_row,
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()

    from tqdm.auto import tqdm

    state = _process_state(classifier.device)
    rank, world = state.process_index, state.num_processes
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    if state.is_main_process:  # what killed runs left half-written: state files, a half-merged output
        remove_stale_scratch(output_path)
        for rank_path in glob.glob(f"{glob.escape(output_path)}.partial-*.state.json"):
            remove_stale_scratch(rank_path)
    part = _PartFile(output_path, rank, world, fingerprint)
    input_counts: Dict[str, int] = {}
    bar = tqdm(total=_total_rows(input_format, files), desc="predicting", unit=" rows",
               disable=not (progress and state.is_main_process))
    try:
        for chunk_index, chunk in enumerate(_chunks(_input_rows(input_format, files, fields, input_counts), chunk_size)):
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
