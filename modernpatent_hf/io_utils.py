"""Small helpers shared by the package: atomic file writes, owned outputs (files and directories), per-process scratch paths,
the words for a value of the wrong type in error messages, and the check of a ``max_length`` that training and
prediction both take."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, List, Optional, Union

from .output_lock import output_lock

if TYPE_CHECKING:
    from transformers import TrainingArguments

PathLike = Union[str, os.PathLike]


# What a user calls a value read from JSON, YAML or Parquet: "a int" or "a NoneType" is Python's word, not theirs.
_VALUE_KINDS = {
    bool: "true/false",
    int: "a number",
    float: "a number",
    str: "a string",
    bytes: "bytes",
    list: "a list",
    tuple: "a list",
    dict: "a mapping",
    type(None): "null",
}


def value_kind(value: object) -> str:
    """A value's kind in a user's words, with its article: ``a number``, ``a list``, ``null``, ``a mapping``."""
    return next((name for cls, name in _VALUE_KINDS.items() if type(value) is cls), f"a {type(value).__name__}")


def check_max_length(max_length: Any, max_positions: Optional[int] = None, key: str = "max_length") -> None:
    """A one-line ValueError naming ``key`` unless ``2 <= max_length <= max_positions`` (the model's positions, when known).

    Two tokens are the least a sequence holds ([CLS] and [SEP]); a model has no position beyond its last.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(
            f"{key} must be an integer of at least 2 (a sequence holds [CLS] and [SEP]), got {max_length!r}"
        )
    if max_positions is not None and max_length > max_positions:
        raise ValueError(
            f"{key} {max_length} exceeds the model's max_position_embeddings {max_positions}: lower {key}"
        )


def describe_value(value: object) -> str:
    """A value's kind and a short preview for an error message, e.g. ``a number (42)`` or ``a list (['US1'])``."""
    if value is None:
        return value_kind(value)
    preview = repr(value)
    return f"{value_kind(value)} ({preview if len(preview) <= 40 else preview[:37] + '...'})"


def replace_atomically(path: PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` on a scratch sibling of ``path``, then rename it to ``path``.

    A reader sees the old file or the whole new one, never a part (a rename within one directory is
    atomic); a failing or interrupted ``write`` leaves no scratch file behind.
    """
    tmp = scratch_path(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, os.fspath(path))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomically(path: PathLike, obj: Any, **json_options: Any) -> None:
    """Write ``obj`` as JSON with :func:`replace_atomically`, flushed to disk before the rename.

    ``json_options`` go to ``json.dump`` (default ``indent=1``, ``ensure_ascii=False``), e.g.
    ``sort_keys=True`` or ``default=str``.
    """
    options = {"indent": 1, "ensure_ascii": False, **json_options}

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, **options)
            handle.flush()
            os.fsync(handle.fileno())

    replace_atomically(path, write)


def write_text_atomically(path: PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 with :func:`replace_atomically`."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    replace_atomically(path, write)


def file_signatures(paths: Iterable[PathLike]) -> List[list]:
    """``[path, size, mtime]`` per file: what changes when a file is rewritten, without reading it."""
    return [[os.path.abspath(path), os.path.getsize(path), os.stat(path).st_mtime_ns] for path in paths]


def _is_within(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def refuse_output_overlap(output: PathLike, inputs: Iterable[PathLike], option: str = "the output") -> None:
    """Raise a one-line ValueError when ``output`` is, contains or sits inside an existing local input.

    Writing there would replace or delete the input (a model's weights, a source file, its neighbours), or
    mix the output into what a later run reads. ``inputs`` that do not exist locally (Hub ids) are skipped.
    """
    output = os.path.realpath(os.fspath(output))
    for item in inputs:
        if item is None or not os.path.exists(os.fspath(item)):
            continue
        path = os.path.realpath(os.fspath(item))
        if output == path or _is_within(path, output) or (os.path.isdir(path) and _is_within(output, path)):
            raise ValueError(
                f"{option} {output} would overwrite or sit inside the input {path}: choose a path outside every input (nothing was changed)"
            )


OUTPUT_MARKER = ".modernpatent-output"  # in each directory a command writes: which command, which files


def read_output_marker(directory: PathLike) -> Optional[dict]:
    """The :data:`OUTPUT_MARKER` of a directory a ``modernpatent`` command wrote, or None (none, or unreadable)."""
    try:
        with open(os.path.join(os.fspath(directory), OUTPUT_MARKER), encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("command"), str) else None


def files_under(directory: PathLike) -> List[str]:
    """Every file and link under ``directory`` but the marker, as sorted ``/``-separated relative paths."""
    directory = os.fspath(directory)
    found = []
    for root, subdirs, names in os.walk(directory):
        for name in names + [sub for sub in subdirs if os.path.islink(os.path.join(root, sub))]:
            relative = os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
            if relative != OUTPUT_MARKER:
                found.append(relative)
    return sorted(found)


def write_output_marker(
    directory: PathLike,
    command: str,
    complete: bool = True,
    fingerprint: Optional[Any] = None,
    files: Optional[Iterable[str]] = None,
) -> None:
    """Mark ``directory`` as the output of ``modernpatent COMMAND`` and list the files it wrote there.

    ``files`` (relative, ``/``-separated) defaults to every file the directory holds. ``fingerprint`` (JSON) records
    what the output was made from, for caches keyed by it. A marker that is not ``complete`` belongs to a run that
    stopped while moving its files in: the files it lists may or may not be there, and nothing else is its.
    """
    write_json_atomically(
        os.path.join(os.fspath(directory), OUTPUT_MARKER),
        {
            "command": command,
            "complete": complete,
            "files": sorted(files_under(directory) if files is None else files),
            "fingerprint": fingerprint,
        },
    )


def foreign_files(directory: PathLike) -> List[str]:
    """The files under ``directory`` that its :data:`OUTPUT_MARKER` does not list (all of them without a marker)."""
    marker = read_output_marker(directory)
    listed = set((marker or {}).get("files") or ())
    return [name for name in files_under(directory) if name not in listed]


def refuse_special_file(path: PathLike, option: str = "--output") -> None:
    """A one-line ValueError when ``path`` is a FIFO, a device or a socket: an output is written to a scratch file
    and renamed over its path, which would replace such a file rather than write into it."""
    try:
        mode = os.stat(os.fspath(path)).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(
            f"{option} {os.path.abspath(os.fspath(path))} is a FIFO, device or socket: outputs are regular files "
            "written whole, so give a file path (nothing was changed)"
        )


def check_output_file(
    path: PathLike,
    inputs: Iterable[PathLike] = (),
    overwrite: bool = False,
    option: str = "--output",
    kind: str = "a file",
) -> None:
    """Refuse with one line, before any work, an output file that a command may not write.

    Refused: a path that is, contains or sits inside one of ``inputs`` (:func:`refuse_output_overlap`), a directory,
    a FIFO, device or socket (:func:`refuse_special_file`), and, without ``overwrite``, any existing file (a file
    carries no marker, so whether an earlier run wrote it cannot be told: replacing it is the user's call).
    ``kind`` names what the path should be.
    """
    refuse_output_overlap(path, inputs, option)
    absolute = os.path.abspath(os.fspath(path))
    refuse_special_file(absolute, option)
    if os.path.isdir(absolute):
        raise ValueError(f"{option} {absolute} is a directory: give the path of {kind}")
    if os.path.lexists(absolute) and not overwrite:
        raise ValueError(
            f"{option} {absolute} already exists: pass --overwrite (overwrite=True) to replace it, or give a new path "
            "(nothing was changed)"
        )


def check_output_dir(
    out_dir: PathLike, command: str, inputs: Iterable[PathLike] = (), overwrite: bool = False, option: str = "--out"
) -> None:
    """Refuse with one line, before any work, an output directory that ``modernpatent COMMAND`` may not write.

    Allowed: a new or empty directory, or an earlier output of a ``modernpatent`` command (an
    :data:`OUTPUT_MARKER` that lists every file there), replaced only with ``overwrite`` unless that run
    stopped before it completed. Refused: a file, a FIFO, device or socket, a directory holding any file its
    marker does not list, and a path that is, contains or sits inside one of ``inputs``
    (:func:`refuse_output_overlap`). ``option`` names the path.
    """
    refuse_output_overlap(out_dir, inputs, option)
    path = os.path.abspath(os.fspath(out_dir))
    refuse_special_file(path, option)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        raise ValueError(f"{option} {path} is a file or a link: give a directory path (nothing was changed)")
    if not os.path.isdir(path) or not os.listdir(path):
        return
    marker = read_output_marker(path)
    if marker is None:
        raise ValueError(
            f"{option} {path} already holds files that modernpatent did not write (it has no {OUTPUT_MARKER}), and "
            f"`modernpatent {command}` would replace them: give a new or empty directory (nothing was changed)"
        )
    foreign = foreign_files(path)
    if foreign:
        raise ValueError(
            f"{option} {path} holds {len(foreign)} file(s) that `modernpatent {marker['command']}` did not write "
            f"(e.g. {foreign[0]}): move them out or give a new or empty directory (nothing was changed)"
        )
    if marker.get("complete") and not overwrite:
        raise ValueError(
            f"{option} {path} holds an earlier output of `modernpatent {marker['command']}`: pass --overwrite "
            "(overwrite=True) to replace it, or give a new directory (nothing was changed)"
        )


def remove_listed_files(directory: str, files: Iterable[str]) -> None:
    """Delete the ``files`` (relative, ``/``-separated) under ``directory`` that exist, then the subdirectories
    that leaves empty, and nothing else."""
    for relative in files:
        target = os.path.join(directory, *relative.split("/"))
        if os.path.lexists(target):
            os.remove(target)
    for root, _, _ in sorted(os.walk(directory), key=lambda entry: -len(entry[0])):
        if root != directory and not os.listdir(root):
            os.rmdir(root)


def install_output(scratch: str, out_dir: str, command: str, option: str = "--out", **marker: Any) -> None:
    """Move a finished output from ``scratch`` into ``out_dir``, replacing exactly the files its marker lists.

    Refuses (one line, ``out_dir`` left as it was) when ``out_dir`` holds a file its marker does not list: one
    put there while the command ran. The marker first lists the old and the new files as incomplete, so a run
    killed while moving leaves only files that the next run knows as its own; at the end it lists the new files.
    ``marker`` goes to :func:`write_output_marker` (``fingerprint``).
    """
    new_files = files_under(scratch)
    os.makedirs(out_dir, exist_ok=True)
    foreign = foreign_files(out_dir)
    if foreign:
        raise ValueError(
            f"{option} {out_dir} received {len(foreign)} file(s) that `modernpatent {command}` did not write while it "
            f"ran (e.g. {foreign[0]}): they were left alone and nothing was replaced; move them out and run again"
        )
    old = read_output_marker(out_dir)
    old_files = list((old or {}).get("files") or ())
    write_output_marker(out_dir, command, complete=False, files=set(old_files) | set(new_files), **marker)
    remove_listed_files(out_dir, old_files)
    for relative in new_files:
        target = os.path.join(out_dir, *relative.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(scratch, *relative.split("/")), target)
    write_output_marker(out_dir, command, files=new_files, **marker)


def installed_path(path: PathLike, scratch: str, out_dir: PathLike) -> str:
    """Where a path that a body of :func:`owned_output_dir` wrote under ``scratch`` lies once moved into ``out_dir``
    (any other path comes back as it is): for the paths a command prints."""
    absolute = os.path.abspath(os.fspath(path))
    if not _is_within(absolute, scratch):
        return os.fspath(path)
    return os.path.normpath(os.path.join(os.path.abspath(os.fspath(out_dir)), os.path.relpath(absolute, scratch)))


@contextmanager
def owned_output_dir(
    out_dir: PathLike, command: str, inputs: Iterable[PathLike] = (), overwrite: bool = False, option: str = "--out"
) -> Iterator[str]:
    """A scratch directory for a command's output, moved into ``out_dir`` when the body succeeds.

    The run holds the lock on ``out_dir`` throughout (:func:`~modernpatent_hf.output_lock.output_lock`), and
    :func:`check_output_dir` runs first (a refusal changes nothing). The body writes into an empty scratch sibling
    ``OUT.tmp-HOST-PID``; on success :func:`install_output` replaces exactly the files of the earlier output with
    the new ones. A failed or killed run leaves ``out_dir`` as it was (its scratch is removed, by the next run
    after a kill). Yields the scratch directory's absolute path.
    """
    path = os.path.abspath(os.fspath(out_dir))
    with output_lock(path, command, option):
        check_output_dir(path, command, inputs, overwrite, option)
        remove_stale_scratch(path)
        scratch = scratch_path(path, "tmp")
        os.makedirs(scratch)
        try:
            yield scratch
            install_output(scratch, path, command, option)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def scratch_path(path: PathLike, kind: str) -> str:
    """A sibling of ``path`` private to this process: ``PATH.KIND-HOST-PID`` (``kind``: a word such as ``tmp``).

    The host and process id in the name let :func:`remove_stale_scratch` recognize what a killed run left.
    """
    return f"{os.path.abspath(os.fspath(path))}.{kind}-{socket.gethostname()}-{os.getpid()}"


def _process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_scratch(path: PathLike) -> List[str]:
    """Remove the :func:`scratch_path` siblings of ``path`` whose process (on this host) no longer runs.

    A run killed mid-way (SIGKILL, out of memory) cannot clean up; the next run for the same ``path``
    does it here. Scratch paths of live processes and of other hosts are left alone. Returns the
    removed paths.
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    pattern = re.compile(rf"{re.escape(base)}\.\w+-{re.escape(socket.gethostname())}-(\d+)")
    removed = []
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        match = pattern.fullmatch(name)
        if match is None or _process_is_running(int(match.group(1))):
            continue
        stale = os.path.join(parent, name)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.remove(stale)
        removed.append(stale)
    return removed


def main_process_first(
    training_args: Optional[TrainingArguments], desc: str = "preparing files"
) -> ContextManager[Any]:
    """``training_args.main_process_first(desc)``, or a no-op without training arguments (one process).

    Work done once per run (preparing data, training a tokenizer) runs on the main process while the other
    ranks wait, and is cached in the output directory, so every rank then reads the same files.
    """
    return training_args.main_process_first(desc=desc) if training_args is not None else nullcontext()
