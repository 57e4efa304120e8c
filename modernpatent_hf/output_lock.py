"""The exclusive lock every command takes on its output for its whole run: :func:`output_lock`.

Two runs writing one output at once mix their rows or replace each other's finished work; the second run is refused
in one line that names the holder instead. The lock is an OS file lock (``flock`` through the ``filelock`` package)
on a sibling of the output, ``OUTPUT.modernpatent-lock``, which holds the holder's pid, host and command. The
kernel drops the lock when its process ends, however it ends, so a run killed with SIGKILL leaves a lock file that
blocks nothing: the next run takes it over. A run that ends removes the lock file.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import ExitStack, contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

from filelock import FileLock, Timeout

PathLike = Union[str, os.PathLike]
LOCK_SUFFIX = ".modernpatent-lock"

# Locks this process holds, by lock path, with how many nested output_lock calls hold each: a command that hands
# its output to a helper that locks it too (a run's data directory, then `prepare` into it) must not refuse itself.
_HELD: Dict[str, Tuple[FileLock, int]] = {}


def lock_path(output: PathLike) -> str:
    """Where the lock of ``output`` lives: ``OUTPUT.modernpatent-lock``, beside it."""
    return os.path.abspath(os.fspath(output)).rstrip(os.sep) + LOCK_SUFFIX


def _write_holder(command: str) -> Callable[[int], None]:
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command}).encode("utf-8")

    def write(descriptor: int) -> None:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, record, 0)

    return write


def describe_holder(path: str) -> str:
    """The holder recorded in a lock file, in words: ``pid 123 on host h (`modernpatent predict`)``."""
    try:
        with open(path, encoding="utf-8") as handle:
            holder = json.load(handle)
        return f"pid {holder['pid']} on host {holder['host']} (`modernpatent {holder['command']}`)"
    except (OSError, ValueError, KeyError, TypeError):  # the holder is still writing its record
        return "another process"


@contextmanager
def output_lock(output: PathLike, command: str, option: str = "--output") -> Iterator[str]:
    """Hold the exclusive lock on ``output`` for the body; refuse with a one-line ValueError if another run holds it.

    ``command`` (``predict``, ``prepare``...) is recorded for the message a second run gives. Nested calls for the
    same output in one process share the lock. Yields the lock file's path.
    """
    path = lock_path(output)
    if path in _HELD:
        lock, depth = _HELD[path]
        _HELD[path] = (lock, depth + 1)
        try:
            yield path
        finally:
            _HELD[path] = (lock, _HELD[path][1] - 1)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = FileLock(path, timeout=0, on_acquired=_write_holder(command))
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(
            f"{option} {os.path.abspath(os.fspath(output))} is being written by {describe_holder(path)}: wait for "
            f"that run to end or choose another path (nothing was changed; the lock is {path})"
        ) from None
    _HELD[path] = (lock, 1)
    try:
        yield path
    finally:
        del _HELD[path]
        # Unlinked while still held: a run that opened the old file waits on an unlinked inode, which filelock
        # detects and retries on a new file, so two runs never both hold the lock.
        try:
            os.remove(path)
        except OSError as error:
            print(f"could not remove the lock file {path}: {error}", file=sys.stderr)
        lock.release()


@contextmanager
def shared_output_lock(
    output: PathLike,
    command: str,
    holds: bool,
    broadcast: Callable[[List[Optional[str]]], List[Optional[str]]],
    option: str = "--output",
) -> Iterator[None]:
    """:func:`output_lock` for the processes of one launched run: the process that ``holds`` (the main one) takes the
    lock, and ``broadcast`` (a list of one object -> the main process's list, on every process) tells the others
    whether it could. Every process then refuses with the same line, or runs with the run's lock held."""
    with ExitStack() as stack:
        refusal = None
        if holds:
            try:
                stack.enter_context(output_lock(output, command, option))
            except ValueError as error:
                refusal = str(error)
        refusal = broadcast([refusal])[0]
        if refusal is not None:
            raise ValueError(refusal)
        yield
