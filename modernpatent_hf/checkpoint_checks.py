"""Checks of a checkpoint's files before anything is built from them.

A ``config.json`` decides what transformers allocates: ``num_labels: 1000000000`` builds a label table and then a
model of gigabytes before the weights are read and found not to fit. :func:`check_checkpoint_files` reads the raw
``config.json`` and the shapes in the weights' safetensors header (the header only, no tensor is read) and
compares the sizes that decide the allocation (labels, vocabulary, hidden size, layers) in well under a second:
a damaged or hostile config is a one-line :class:`CheckpointFilesMismatch` (a ValueError) before any model is built.
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any, Dict, List, Mapping, Optional, Union

from transformers.utils import cached_file

from .io_utils import describe_value

# A safetensors header is JSON of a few kilobytes per tensor; a larger length prefix is a damaged or hostile file.
MAX_HEADER_BYTES = 100 * 2**20
# More labels than any classification of patents has (CPC has about 250,000 groups at its finest level).
MAX_LABELS = 1_000_000
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
# Tensor-name suffixes of the token embeddings (ModernBERT, BERT) and the classifier's output layer.
EMBEDDING_SUFFIXES = ("embeddings.tok_embeddings.weight", "embeddings.word_embeddings.weight")
CLASSIFIER_WEIGHT = "classifier.weight"
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|layer)\.(\d+)\.")


class CheckpointFilesMismatch(ValueError):
    """A checkpoint's config.json that does not describe its weights (a one-line message naming the field)."""


def read_safetensors_shapes(path: Union[str, os.PathLike]) -> Dict[str, List[int]]:
    """The shape of every tensor in a safetensors file, from its header (8-byte length, then JSON); no tensor is
    read. A header that cannot be read is a one-line OSError."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise OSError(f"{os.fspath(path)} is not a safetensors file (shorter than its header length)")
        (size,) = struct.unpack("<Q", prefix)
        if size > MAX_HEADER_BYTES:
            raise OSError(f"{os.fspath(path)} is not a safetensors file (a header of {size} bytes)")
        try:
            header = json.loads(handle.read(size))
        except (UnicodeDecodeError, ValueError):
            raise OSError(f"{os.fspath(path)} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise OSError(f"{os.fspath(path)} is not a safetensors file (its header is not a JSON object)")
    return {
        name: list(entry["shape"])
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("shape"), list)
    }


def _local_file(model_name_or_path: str, name: str) -> Optional[str]:
    """The path of ``name`` in a checkpoint directory or the Hub cache, without downloading; None if absent."""
    return cached_file(
        model_name_or_path,
        name,
        local_files_only=True,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )


def local_weight_shapes(model_name_or_path: Union[str, os.PathLike]) -> Optional[Dict[str, List[int]]]:
    """The tensor shapes of a checkpoint's safetensors weights (one file or shards with their index), when they are
    on this machine; None otherwise (not downloaded yet, or pickled weights only)."""
    path = os.fspath(model_name_or_path)
    single = _local_file(path, WEIGHTS_FILE)
    if single:
        return read_safetensors_shapes(single)
    index = _local_file(path, WEIGHTS_INDEX_FILE)
    if not index:
        return None
    with open(index, encoding="utf-8") as handle:
        weight_map = json.load(handle).get("weight_map") or {}
    shapes: Dict[str, List[int]] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = _local_file(path, shard)
        if not shard_path:
            return None
        shapes.update(read_safetensors_shapes(shard_path))
    return shapes


def check_config_against_weights(config: Mapping[str, Any], shapes: Optional[Mapping[str, List[int]]], source: str):
    """A one-line :class:`CheckpointFilesMismatch` naming the field when the raw ``config`` cannot describe the weights of ``shapes`` (or,
    without weights, asks for an implausible number of labels)."""
    labels = _label_count(config, source)
    if labels > MAX_LABELS:
        raise CheckpointFilesMismatch(
            f"{source}: config.json asks for {labels} labels (more than {MAX_LABELS}): a damaged config"
        )
    if not shapes:
        return
    classifier = shapes.get(CLASSIFIER_WEIGHT)
    if classifier and ("id2label" in config or "num_labels" in config) and classifier[0] != labels:
        raise CheckpointFilesMismatch(
            f"{source}: config.json has {labels} labels but the weights' classifier has {classifier[0]} outputs"
        )
    embedding = next((shape for name, shape in shapes.items() if name.endswith(EMBEDDING_SUFFIXES)), None)
    if embedding and len(embedding) == 2:
        for key, size in (("vocab_size", embedding[0]), ("hidden_size", embedding[1])):
            value = config.get(key)
            if value is not None and value != size:
                raise CheckpointFilesMismatch(
                    f"{source}: config.json has {key} {value!r} but the weights' token embeddings have {size}"
                )
    layers = {int(match.group(1)) for name in shapes for match in [LAYER_INDEX.search(name)] if match}
    value = config.get("num_hidden_layers")
    if layers and value is not None and value != max(layers) + 1:
        raise CheckpointFilesMismatch(
            f"{source}: config.json has num_hidden_layers {value!r} but the weights have {max(layers) + 1} layers"
        )


def _label_count(config: Mapping[str, Any], source: str) -> int:
    id2label, num_labels = config.get("id2label"), config.get("num_labels")
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 0):
        raise CheckpointFilesMismatch(
            f"{source}: config.json has num_labels {describe_value(num_labels)}, not a label count"
        )
    if id2label is not None:
        if not isinstance(id2label, dict):
            raise CheckpointFilesMismatch(
                f"{source}: config.json has id2label {describe_value(id2label)}, not a mapping"
            )
        if num_labels is not None and num_labels != len(id2label):
            raise CheckpointFilesMismatch(
                f"{source}: config.json has num_labels {num_labels} but {len(id2label)} id2label entries"
            )
        return len(id2label)
    return 2 if num_labels is None else num_labels  # transformers' default


def check_checkpoint_files(model_name_or_path: Union[str, os.PathLike]) -> None:
    """Compare a checkpoint's ``config.json`` with its weights' header (see the module docstring), when both are on
    this machine; what is not there is left to the loading that follows (which downloads or reports it)."""
    path = os.fspath(model_name_or_path)
    config_path = _local_file(path, "config.json")
    if not config_path:
        return
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (UnicodeDecodeError, ValueError):
        return  # not JSON: AutoConfig's own one-line error follows
    try:
        shapes = local_weight_shapes(path)
    except OSError:  # a damaged weights file: the loading that follows says so, naming the file
        shapes = None
    if isinstance(config, dict):
        check_config_against_weights(config, shapes, path)
