"""A Hugging Face hub cache laid out offline: a folder published under a repo id as a download would leave it.

:func:`publish_to_offline_cache` writes ``<HF_HOME>/hub/{models|datasets}--ORG--NAME`` with content-addressed
blobs, snapshot links, ``refs/main`` and huggingface_hub's per-commit file listing, so that with
``HF_HOME=<dir>`` and ``HF_HUB_OFFLINE=1`` the id resolves through the libraries' own code
(``snapshot_download``, ``hf_hub_download``, ``from_pretrained``). The rehearsal of the cluster run
(:mod:`modernpatent_hf.rehearsal_cache`, :mod:`modernpatent_hf.rehearsal_steps`) publishes its stand-ins with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Dict, Tuple

from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import validate_repo_id

from .io_utils import write_json_atomically, write_text_atomically

# Files the Hub stores through Git LFS (its default .gitattributes patterns) and the size above which it always
# does: the cache names an LFS file's blob by its sha256, any other file's blob by its git blob sha1.
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".arrow", ".pt", ".pth", ".h5", ".onnx", ".msgpack", ".model")
LFS_MIN_BYTES = 10 * 1024 * 1024
TREE_CACHE_FORMAT_VERSION = 1  # huggingface_hub's trees/<commit>.json listing (see huggingface_hub._tree_cache)
# In each repo folder this module publishes: it lets a later publish replace the stand-in, never a real download.
STAND_IN_MARKER = ".rehearsal-stand-in.json"
_HASH_CHUNK = 1 << 20


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
                entry = {
                    "size": size,
                    "blob_id": _git_blob_sha1(pointer.encode()),
                    "lfs_sha256": sha256,
                    "lfs_size": size,
                }
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
        raise ValueError(
            f"{storage} holds a download of {repo_id} that is not a rehearsal stand-in; refusing to "
            "replace it: give another hf_home"
        )
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
        {
            "format_version": TREE_CACHE_FORMAT_VERSION,
            "files": {path: entries[path]["tree"] for path in sorted(entries)},
        },
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
