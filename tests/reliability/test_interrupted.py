"""Interrupted writes: `modernpatent prepare` killed mid-way, atomic JSON files, cleanup of what a kill leaves.

A prepare killed with SIGKILL leaves no output that looks complete, and a rerun equals one run.

The killed run is a fork of this test process that runs the CLI's ``main`` (the same code as the
``modernpatent`` command, without paying the package import again in a new interpreter).
"""

import contextlib
import io
import json
import os
import random
import signal
import time

import pytest

from modernpatent_hf.cli import main
from modernpatent_hf.data.records import is_prepared_dir, load_dataset_dir
from modernpatent_hf.data.synthetic import generate_synthetic_records
from modernpatent_hf.io_utils import remove_stale_scratch, write_json_atomically

pytestmark = pytest.mark.slow  # minutes: `pytest -m "not slow"` leaves these out

RECORDS = 20_000
OLD_RECORDS = 2_000


def prepare_arguments(source, out):
    return [
        "prepare",
        str(source),
        "--out",
        str(out),
        "--text-fields",
        "first_claim",
        "--test-fraction",
        "0.1",
        "--overwrite",
    ]


def run_prepare(source, out):
    """The command in this process; returns its summary."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert main(prepare_arguments(source, out)) == 0
    return json.loads(printed.getvalue())


def snapshot(out):
    """Everything that makes a prepared directory what it is: rows per split, label space, stats, fingerprint."""
    dataset = load_dataset_dir(str(out))
    return {
        "ids": {name: list(split["id"]) for name, split in dataset.items()},
        **{name: (out / name).read_text(encoding="utf-8") for name in ("label_space.json", "stats.json", "README.md")},
    }


def leftovers(out):
    """Scratch siblings of the output (``OUT.tmp-*``, ``OUT.staging-*``, ``OUT.old-*``)."""
    return sorted(name for name in os.listdir(out.parent) if name.startswith(out.name + "."))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("interrupted")
    source, old_source = tmp_path / "patents.jsonl", tmp_path / "old.jsonl"
    with open(source, "w", encoding="utf-8") as handle, open(old_source, "w", encoding="utf-8") as old:
        for index, record in enumerate(generate_synthetic_records(RECORDS, seed=1)):
            line = (
                json.dumps(
                    {
                        "id": record["id"],
                        "cpc": record["labels"],
                        "date": record["date"],
                        "first_claim": record["text"],
                    }
                )
                + "\n"
            )
            handle.write(line)
            if index < OLD_RECORDS:
                old.write(line)
    run_prepare(source, tmp_path / "reference")
    return source, old_source, snapshot(tmp_path / "reference")


def kill_prepare_when(source, out, started, extra_delay):
    """Fork a child running the command; SIGKILL it ``extra_delay`` s after ``started(out)`` first holds."""
    pid = os.fork()
    if pid == 0:  # the child: quiet, and gone without running the parent's cleanup
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        status = 3
        try:
            status = main(prepare_arguments(source, out))
        finally:
            os._exit(status)
    deadline = time.monotonic() + 300
    while not started(out) and time.monotonic() < deadline:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        assert finished == 0, "prepare ended before the kill point"
        time.sleep(0.005)
    time.sleep(extra_delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "prepare ended before the kill"


def scratch_exists(kind):
    return lambda out: any(name.startswith(f"{out.name}.{kind}-") for name in os.listdir(out.parent))


@pytest.mark.parametrize("kill_point", ["while reading the input", "while writing over an older output"])
def test_a_killed_prepare_leaves_nothing_that_looks_complete_and_a_rerun_equals_one_run(corpus, tmp_path, kill_point):
    source, old_source, reference = corpus
    out = tmp_path / "prepared"
    rng = random.Random(kill_point)
    if kill_point == "while reading the input":
        kill_prepare_when(source, out, scratch_exists("staging"), extra_delay=rng.uniform(0.1, 1.0))
        assert not out.exists() and not is_prepared_dir(str(out))
        with pytest.raises(FileNotFoundError):
            load_dataset_dir(str(out))
    else:
        run_prepare(old_source, out)
        old = snapshot(out)
        kill_prepare_when(source, out, scratch_exists("tmp"), extra_delay=rng.uniform(0.0, 0.05))
        # The older output is still whole: the new one never replaces it part by part.
        assert is_prepared_dir(str(out)) and snapshot(out) == old
    assert leftovers(out), "the kill came too late to leave scratch files behind"

    summary = run_prepare(source, out)  # the same command again
    assert snapshot(out) == reference
    assert sum(summary["rows_per_split"].values()) == sum(len(ids) for ids in reference["ids"].values())
    assert leftovers(out) == [], "the rerun must remove what the killed run left"


def test_json_files_are_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "stats.json"
    write_json_atomically(path, {"rows": 1})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"rows": 2, "oops": object()})  # fails half-way through serializing
    assert json.loads(path.read_text()) == {"rows": 1}
    assert os.listdir(tmp_path) == ["stats.json"]


def test_only_scratch_of_dead_processes_on_this_host_is_removed(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out, host = tmp_path / "prepared", socket.gethostname()
    names = {
        "dead": f"prepared.tmp-{host}-{dead.stdout.strip()}",
        "alive": f"prepared.staging-{host}-{os.getpid()}",
        "other host": f"prepared.tmp-{host}x-{dead.stdout.strip()}",
        "not scratch": "prepared.tmp-notes",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
    assert remove_stale_scratch(out) == [str(tmp_path / names["dead"])]
    assert sorted(os.listdir(tmp_path)) == sorted(name for key, name in names.items() if key != "dead")
