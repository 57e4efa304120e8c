"""Small file-system helpers shared by the package: atomic file writes and per-process scratch paths."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, List, Optional, Union

if TYPE_CHECKING:
    from transformers import TrainingArguments

PathLike = Union[str, os.PathLike]


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


def main_process_first(training_args: Optional[TrainingArguments], desc: str = "preparing files") -> ContextManager[Any]:
    """``training_args.main_process_first(desc)``, or a no-op without training arguments (one process).

    Work done once per run (preparing data, training a tokenizer) runs on the main process while the other
    ranks wait, and is cached in the output directory, so every rank then reads the same files.
    """
    return training_args.main_process_first(desc=desc) if training_args is not None else nullcontext()
