"""Where a source is and what it is: its format (:func:`detect_format`, :func:`resolve_format`), the Hub ids of
USPTO-3M and its published test sets, and the local Parquet files of a Hub dataset (:func:`hub_dataset_snapshot`,
:func:`local_source`).
"""

from __future__ import annotations

import glob
import os
import re
from typing import Tuple, Union

from huggingface_hub import snapshot_download

from ..errors import one_line

USPTO3M_HUB_ID = "MalavP/USPTO-3M"
# The seed work's test sets: not inside USPTO-3M (grants of about 2000-2015) but published on their own, 150,000
# first claims each in USPTO-3M's columns, sampled from the grants of 2016 (the set behind its F1@1) and of
# January-August 2017.
TEST_2016_HUB_ID = "0zo/google_patentsview_claims_2016"
TEST_2017B_HUB_ID = "0zo/google_patentsview_claims_2017-B"
INPUT_FORMATS = ("auto", "hub", "parquet", "tsv", "jsonl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def detect_format(path: Union[str, os.PathLike]) -> str:
    """Guess the input format from a path: ``jsonl``, ``tsv``, ``parquet`` (file or directory) or ``hub``."""
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if lower.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    if lower.endswith(".parquet") or os.path.isdir(path):
        return "parquet"
    if not os.path.exists(path):
        if _HUB_ID.match(path):
            return "hub"
        raise FileNotFoundError(
            f"no such file or directory: {path!r}; give a .jsonl/.jsonl.gz, .tsv or .parquet file, "
            f"a directory of Parquet files, or a Hub dataset id such as {USPTO3M_HUB_ID!r}"
        )
    raise ValueError(f"cannot tell the format of {path!r} from its name; pass --format jsonl, tsv or parquet")


def resolve_format(path: Union[str, os.PathLike], input_format: str = "auto") -> str:
    """The format to read ``path`` with; raises a one-line error for unknown formats and missing files."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}: choose from {', '.join(INPUT_FORMATS)}")
    resolved = detect_format(path) if input_format == "auto" else input_format
    if resolved != "hub" and not os.path.exists(path):
        raise FileNotFoundError(f"no such file or directory: {os.fspath(path)!r}")
    return resolved


# The Hub converts every dataset it can read to Parquet on this revision: a dataset published as CSV or JSON
# Lines (the seed's test sets may be) is read from there.
HUB_PARQUET_REVISION = "refs/convert/parquet"
_PARQUET_PATTERNS = ["*.parquet", "**/*.parquet"]


def hub_dataset_snapshot(repo_id: str) -> str:
    """The local folder of a Hub dataset's Parquet files, downloaded into the Hugging Face cache when missing.

    Through ``huggingface_hub.snapshot_download``, so ``HF_HUB_OFFLINE=1`` with a cache filled beforehand (``hf
    download ID --repo-type dataset`` on a machine with network, as cluster nodes without one need) resolves the
    id from the cache; ``datasets.load_dataset`` would want its own prepared cache instead, a second copy of the
    data. A repo without Parquet files on its main branch is read from the Hub's Parquet conversion
    (:data:`HUB_PARQUET_REVISION`). A Hub that cannot be reached and a cache without the files are one-line
    ``ConnectionError``s.
    """
    try:
        folder = snapshot_download(repo_id, repo_type="dataset", allow_patterns=_PARQUET_PATTERNS)
        if not glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True):
            folder = snapshot_download(
                repo_id, repo_type="dataset", revision=HUB_PARQUET_REVISION, allow_patterns=_PARQUET_PATTERNS
            )
    except Exception as error:  # offline mode, DNS failures, missing repos and cache misses all end here
        raise ConnectionError(
            f"cannot load {repo_id!r} from the Hugging Face Hub ({one_line(error)}); where the Hub is reachable run "
            f"`hf download {repo_id} --repo-type dataset` (or with --local-dir DIR, then pass DIR instead)"
        ) from None
    return folder


def local_source(path: Union[str, os.PathLike], input_format: str) -> Tuple[str, str]:
    """``(local path, format)`` to read a source from: a Hub dataset id becomes its snapshot's Parquet files (a local
    copy named with ``input_format="hub"`` is read as the Parquet files it holds)."""
    if input_format == "hub":
        return (os.fspath(path) if os.path.exists(path) else hub_dataset_snapshot(os.fspath(path))), "parquet"
    return os.fspath(path), input_format
