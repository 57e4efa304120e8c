"""The wall time and memory of a command run in a child process, read from Linux's ``/proc`` (:func:`measure_command`).

What ``modernpatent bench-load`` measures each data command with (:mod:`modernpatent_hf.load_benchmark`). The
child dies with the process that measures it, even when that one is killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence

TIMELINE_POINTS = 300  # memory samples kept per run


def _memory_mib(pid: int) -> Dict[str, float]:
    """Resident memory of ``pid`` in MiB from /proc: ``VmRSS`` (now), ``VmHWM`` (its peak since exec), and
    ``RssAnon`` (now: the heap and other memory of its own, without the pages of memory-mapped files)."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                values[key] = int(value.split()[0]) / 1024.0  # kB
    return values


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when its parent dies (``PR_SET_PDEATHSIG``)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def measure_command(
    command: Sequence[str],
    log_path: str,
    sample_seconds: float = 0.1,
    env: Optional[Mapping[str, str]] = None,
    returncode: int = 0,
) -> Dict:
    """Run ``command`` in a child process; its wall time and memory in MiB.

    ``peak_rss_mib``: the child's own high-water mark of resident memory (``VmHWM``, read at every sample, so it
    misses at most what the child grows in its last ``sample_seconds``; ``ru_maxrss`` from ``wait4`` would not
    do, as a child inherits its parent's high-water mark at fork and keeps it through exec). Resident memory
    counts the pages of memory-mapped files the child has read, such as the Arrow files ``datasets`` maps, which
    the kernel can drop at any time; ``peak_anonymous_mib`` leaves them out (the highest sampled ``RssAnon``):
    the memory the child really needs. ``rss_mib_at``/``anonymous_mib_at``: samples at 25/50/75 % of the run;
    ``timeline``: at most :data:`TIMELINE_POINTS` samples ``[seconds, RSS, anonymous]`` spread over the run.

    ``env``: variables set for the child on top of this process's environment. The child's stdout is returned
    as ``stdout``; its stderr goes to ``log_path``. A command that exits with another status than ``returncode``
    raises ``RuntimeError`` with the end of that log.
    """
    if not os.path.exists(f"/proc/{os.getpid()}/status"):
        raise OSError("the load benchmark reads memory from /proc/PID/status, which only Linux has")
    environment = None if env is None else {**os.environ, **env}
    with open(log_path, "w", encoding="utf-8") as log, tempfile.TemporaryFile("w+", encoding="utf-8") as stdout:
        start = time.perf_counter()
        # The child dies with this process, even when this one is killed: a benchmark stopped half-way must
        # not leave a prediction of a million rows running (and writing) on its own.
        child = subprocess.Popen(
            list(command), stdout=stdout, stderr=log, preexec_fn=_die_with_parent, env=environment
        )
        samples, peak = [], {"VmHWM": 0.0, "RssAnon": 0.0}
        try:
            while child.poll() is None:
                try:
                    memory = _memory_mib(child.pid)
                except OSError:  # it was reaped between poll() and the read
                    break
                if len(memory) < 3:  # it ended: a zombie has no memory lines left
                    break
                samples.append((time.perf_counter() - start, memory))
                peak = {key: max(value, memory[key]) for key, value in peak.items()}
                time.sleep(sample_seconds)
        except BaseException:  # e.g. Ctrl-C: stop the child too
            child.kill()
            raise
        finally:
            child.wait()
        seconds = time.perf_counter() - start
        stdout.seek(0)
        output = stdout.read()
    if child.returncode != returncode:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            tail = log.read()[-2000:]
        expected = "" if returncode == 0 else f" (expected {returncode})"
        raise RuntimeError(f"{' '.join(command)} failed with exit status {child.returncode}{expected}:\n{tail}")
    quarters = (0.25, 0.5, 0.75)
    step = max(1, -(-len(samples) // TIMELINE_POINTS))
    return {
        "seconds": seconds,
        "peak_rss_mib": peak["VmHWM"],
        "peak_anonymous_mib": peak["RssAnon"],
        "rss_mib_at": {f"{int(100 * q)}%": _sample_at(samples, q * seconds, "VmRSS") for q in quarters},
        "anonymous_mib_at": {f"{int(100 * q)}%": _sample_at(samples, q * seconds, "RssAnon") for q in quarters},
        "timeline": [
            [round(at, 1), round(memory["VmRSS"]), round(memory["RssAnon"])] for at, memory in samples[::step]
        ],
        "returncode": child.returncode,
        "stdout": output,
    }


def _sample_at(samples: List, when: float, key: str) -> float:
    """``key`` of the memory sampled last at or before ``when`` seconds (0 when none was)."""
    before = [memory[key] for at, memory in samples if at <= when]
    return float(before[-1]) if before else 0.0
