"""Part files of :mod:`~modernpatent_hf.predict_file`: each process's share of the output, committed a chunk at a
time with a state file beside it (so that a rerun resumes after the last committed chunk), and their merge into the
output in input order."""

from __future__ import annotations

import glob
import itertools
import json
import os
import sys
from typing import Callable, Iterator, Optional, Sequence

from .io_utils import scratch_path, write_json_atomically

# Writes the output at a path from the merged JSON Lines rows (bytes, with their newline) and their number.
OutputWriter = Callable[[Iterator[bytes], int, str], None]
STATE_VERSION = 1


def read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def part_path(output_path: str, rank: int, world: int) -> str:
    return f"{output_path}.partial-{rank}-of-{world}"


class PartFile:
    """One process's share of the output: a part file plus a state file, committed a chunk at a time.

    The state records the bytes of the part file that hold whole chunks; on reopening with the same fingerprint,
    anything after them (a chunk cut short by a kill) is truncated away and work continues after the last
    committed chunk.
    """

    def __init__(self, output_path: str, rank: int, world: int, fingerprint: str, task_name: str = "predict"):
        self.path = part_path(output_path, rank, world)
        self.state_path = f"{self.path}.state.json"
        self.fingerprint = fingerprint
        state = read_json(self.state_path)
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
                "version": STATE_VERSION,
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


def merge_parts(
    output_path: str, world: int, chunk_size: int, expected_rows: int, write_output: Optional[OutputWriter] = None
) -> None:
    """Interleave the parts (chunk k is in part k % world) into ``output_path``, atomically, then remove them.

    The output is the interleaved JSON Lines, or what ``write_output(lines, rows, path)`` writes from them.
    """
    if world == 1 and write_output is None:
        os.replace(part_path(output_path, 0, 1), output_path)
    else:
        tmp = scratch_path(output_path, "merging")
        parts = [open(part_path(output_path, rank, world), "rb") for rank in range(world)]
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
