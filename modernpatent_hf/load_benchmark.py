"""Load benchmark: ``modernpatent prepare`` and ``modernpatent predict`` over up to millions of short records.

Both commands stream: ``prepare`` through one memory-mapped Arrow file, ``predict`` a chunk of rows at a time.
This benchmark shows it. For each size (default 100,000 and 1,000,000 rows) it writes that many short generated
records as JSON Lines (a title of 6 words and an abstract of 18, with CPC codes and a date), runs each command
on them in a child process of its own, and reports the child's wall time, rows/s and memory: its peak resident
memory, its peak anonymous memory (without the pages of memory-mapped files; see :func:`measure_command`), and
both sampled at a quarter, half and three quarters of the run. Flat memory means the peaks at 1,000,000 rows
are about the peaks at 100,000.

Each run is also checked for lost rows: ``prepare`` must account for every record (rows written plus the records
it counted as dropped or merged), and ``predict`` must write exactly one output line per input row.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Sequence

from tqdm.auto import tqdm

from .benchmark import save_random_classifier
from .data.splits import RECORDS_NOT_WRITTEN
from .data.synthetic import generate_synthetic_records
from .io_utils import replace_atomically, write_json_atomically

DEFAULT_ROWS = (100_000, 1_000_000)
COMMANDS = ("prepare", "predict")


def short_records(n: int, seed: int = 0) -> Iterable[dict]:
    """``n`` short generated patents (``id``, ``cpc``, ``date``, ``title``, ``abstract``) from the synthetic world.

    Record ``i`` does not depend on ``n``: a smaller file is the head of a larger one.
    """
    for record in generate_synthetic_records(n, seed=seed):
        words = record["text"].split()
        yield {"id": record["id"], "cpc": record["labels"], "date": record["date"],
               "title": " ".join(words[:6]), "abstract": " ".join(words[6:24])}


def write_records(path: str, n: int, seed: int = 0, progress: bool = True) -> str:
    """Write :func:`short_records` to ``path`` as JSON Lines (atomically: a killed write leaves no file)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in tqdm(short_records(n, seed), total=n, desc=f"writing {n:,} records", unit=" records",
                               disable=not progress, mininterval=1.0):
                handle.write(json.dumps(record) + "\n")

    replace_atomically(path, write)
    return path


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


def measure_command(command: Sequence[str], log_path: str, sample_seconds: float = 0.1) -> Dict:
    """Run ``command`` in a child process; its wall time and memory in MiB.

    ``peak_rss_mib``: the child's own high-water mark of resident memory (``VmHWM``, read at every sample, so it
    misses at most what the child grows in its last ``sample_seconds``; ``ru_maxrss`` from ``wait4`` would not
    do, as a child inherits its parent's high-water mark at fork and keeps it through exec). Resident memory
    counts the pages of memory-mapped files the child has read, such as the Arrow files ``datasets`` maps, which
    the kernel can drop at any time; ``peak_anonymous_mib`` leaves them out (the highest sampled ``RssAnon``):
    the memory the child really needs. ``rss_mib_at``/``anonymous_mib_at``: samples at 25/50/75 % of the run.

    The child's stdout is returned as ``stdout``; its stderr goes to ``log_path``. A failing command raises
    ``RuntimeError`` with the end of that log.
    """
    if not os.path.exists(f"/proc/{os.getpid()}/status"):
        raise OSError("the load benchmark reads memory from /proc/PID/status, which only Linux has")
    with open(log_path, "w", encoding="utf-8") as log, tempfile.TemporaryFile("w+", encoding="utf-8") as stdout:
        start = time.perf_counter()
        # The child dies with this process, even when this one is killed: a benchmark stopped half-way must
        # not leave a prediction of a million rows running (and writing) on its own.
        child = subprocess.Popen(list(command), stdout=stdout, stderr=log, preexec_fn=_die_with_parent)
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
    if child.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            tail = log.read()[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed with exit status {child.returncode}:\n{tail}")
    quarters = (0.25, 0.5, 0.75)
    return {
        "seconds": seconds,
        "peak_rss_mib": peak["VmHWM"],
        "peak_anonymous_mib": peak["RssAnon"],
        "rss_mib_at": {f"{int(100 * q)}%": _sample_at(samples, q * seconds, "VmRSS") for q in quarters},
        "anonymous_mib_at": {f"{int(100 * q)}%": _sample_at(samples, q * seconds, "RssAnon") for q in quarters},
        "stdout": output,
    }


def _sample_at(samples: List, when: float, key: str) -> float:
    """``key`` of the memory sampled last at or before ``when`` seconds (0 when none was)."""
    before = [memory[key] for at, memory in samples if at <= when]
    return float(before[-1]) if before else 0.0


def _cli(*arguments: str) -> List[str]:
    return [sys.executable, "-m", "modernpatent_hf.cli", *arguments]


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def run_load_benchmark(
    rows: Sequence[int] = DEFAULT_ROWS,
    commands: Sequence[str] = COMMANDS,
    model: Optional[str] = None,
    work_dir: Optional[str] = None,
    seed: int = 0,
    out: Optional[str] = None,
    progress: bool = True,
) -> Dict:
    """Run ``commands`` on each size in ``rows`` (module docstring); returns the JSON-ready results.

    ``model``: the classifier ``predict`` uses (default: a tiny random ModernBERT classifier, saved once; memory
    use of streaming does not depend on the model's size). ``work_dir`` keeps the generated files and outputs
    (default: a temporary directory, removed at the end). ``out``: a JSON file rewritten after each run.
    """
    rows = sorted(set(int(n) for n in rows))
    if not rows or rows[0] < 1:
        raise ValueError(f"rows must be positive record counts, got {rows}")
    unknown = [name for name in commands if name not in COMMANDS]
    if unknown:
        raise ValueError(f"unknown command {unknown[0]!r}: choose from {', '.join(COMMANDS)}")
    if model is not None and not os.path.isdir(model):
        raise FileNotFoundError(f"model directory {model} does not exist: give a checkpoint saved by this package")
    with tempfile.TemporaryDirectory(prefix="modernpatent-load-") as scratch:
        work_dir = os.path.abspath(work_dir or scratch)
        os.makedirs(work_dir, exist_ok=True)
        if "predict" in commands and model is None:
            model = save_random_classifier("modernbert", os.path.join(work_dir, "tiny-model"), tiny=True)
        results = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "settings": {"rows": rows, "commands": list(commands), "model": model, "seed": seed},
            "runs": [],
        }
        for n in rows:
            source = os.path.join(work_dir, f"records-{n}.jsonl")
            if not os.path.exists(source):
                write_records(source, n, seed, progress=progress)
            for name in commands:
                results["runs"].append(_run_one(name, n, source, model, work_dir))
                if out:
                    write_json_atomically(out, results)
                if progress:
                    run = results["runs"][-1]
                    print(f"{name} {n:,} rows: {run['seconds']:.0f} s, peak RSS {run['peak_rss_mib']:.0f} MiB",
                          file=sys.stderr)
    return results


def _run_one(name: str, n: int, source: str, model: Optional[str], work_dir: str) -> Dict:
    log = os.path.join(work_dir, f"{name}-{n}.log")
    if name == "prepare":
        out_dir = os.path.join(work_dir, f"prepared-{n}")
        measured = measure_command(_cli("prepare", source, "--out", out_dir, "--test-fraction", "0.1", "--overwrite"), log)
        summary = json.loads(measured.pop("stdout"))
        written = sum(summary["rows_per_split"].values())
        not_written = sum(summary["counts"].get(key, 0) for key in RECORDS_NOT_WRITTEN)
        check = {"rows_written": written, "records_not_written": not_written}
        if written + not_written != n:
            raise RuntimeError(f"prepare wrote {written:,} rows and counted {not_written:,} records not written, "
                               f"for {n:,} input records: see {log}")
    else:
        output = os.path.join(work_dir, f"predictions-{n}.jsonl")
        measured = measure_command(_cli("predict", "--model", model, "--input", source, "--output", output), log)
        summary = json.loads(measured.pop("stdout"))
        written = _count_lines(output)
        check = {"rows_written": written}
        if written != n:
            raise RuntimeError(f"predict wrote {written:,} rows for {n:,} input rows: see {log}")
    return {"command": name, "rows": n, **measured, "rows_per_second": n / measured["seconds"], **check,
            "summary": summary}


def format_load_results(results: Dict) -> str:
    """A markdown table of the runs, and per command how its peaks at the largest size compare to the smallest."""
    lines = [
        "| command | rows | seconds | rows/s | peak RSS (MiB) | peak anonymous (MiB) | anonymous at 25 / 50 / 75 % (MiB) | rows written |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for run in results["runs"]:
        at = " / ".join(f"{value:.0f}" for value in run["anonymous_mib_at"].values())
        lines.append(f"| {run['command']} | {run['rows']:,} | {run['seconds']:.0f} | {run['rows_per_second']:,.0f} | "
                     f"{run['peak_rss_mib']:.0f} | {run['peak_anonymous_mib']:.0f} | {at} | {run['rows_written']:,} |")
    for name, runs in itertools.groupby(sorted(results["runs"], key=lambda run: (run["command"], run["rows"])),
                                        key=lambda run: run["command"]):
        runs = list(runs)
        if len(runs) > 1:
            small, large = runs[0], runs[-1]
            lines.append("")
            lines.append(
                f"{name}: at {large['rows']:,} rows ({large['rows'] / small['rows']:.0f}x the rows of {small['rows']:,}), "
                f"peak RSS {large['peak_rss_mib'] / small['peak_rss_mib']:.2f}x and peak anonymous memory "
                f"{large['peak_anonymous_mib'] / small['peak_anonymous_mib']:.2f}x those at {small['rows']:,}."
            )
    return "\n".join(lines)
