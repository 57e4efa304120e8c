"""The load benchmark (`modernpatent bench-load`): its memory measurement and a small run of both commands.

The 1,000,000-row figures themselves are a benchmark (docs/benchmarks.md), not a test.
"""

import json
import sys

import pytest

from modernpatent_hf.cli import main
from modernpatent_hf.load_benchmark import measure_command, run_load_benchmark, short_records


def test_peak_memory_is_the_child_s_own(tmp_path):
    allocate = "b = b'x' * (300 * 1024 * 1024); import time; time.sleep(0.5); print('done')"
    measured = measure_command([sys.executable, "-c", allocate], str(tmp_path / "log"))
    assert measured["stdout"] == "done\n"
    # 300 MiB written plus the interpreter; the parent's own memory (hundreds of MiB here) does not count.
    assert 300 <= measured["peak_anonymous_mib"] <= measured["peak_rss_mib"] < 400
    assert measured["seconds"] > 0 and set(measured["rss_mib_at"]) == set(measured["anonymous_mib_at"]) == {"25%", "50%", "75%"}


def test_a_failing_command_raises_with_the_end_of_its_log(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)exit status 3.*went wrong"):
        measure_command([sys.executable, "-c", "import sys; sys.stderr.write('went wrong'); sys.exit(3)"], str(tmp_path / "log"))


def test_short_records_are_short_and_a_smaller_set_is_the_head_of_a_larger(tmp_path):
    small, large = list(short_records(5)), list(short_records(50))
    assert small == large[:5]
    assert all(record["cpc"] and record["title"] and len(record["abstract"].split()) <= 18 for record in large)


def test_a_small_run_accounts_for_every_row_and_prints_its_table(tmp_path, capsys):
    out = tmp_path / "load.json"
    assert main(["bench-load", "--rows", "300,150", "--work-dir", str(tmp_path / "work"), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert [(run["command"], run["rows"]) for run in results["runs"]] == [
        ("prepare", 150), ("predict", 150), ("prepare", 300), ("predict", 300)
    ]
    for run in results["runs"]:
        assert run["peak_rss_mib"] >= run["peak_anonymous_mib"] > 50 and run["rows_per_second"] > 0
        if run["command"] == "predict":
            assert run["rows_written"] == run["rows"] == run["summary"]["predicted"]
        else:
            assert run["rows_written"] + run["records_not_written"] == run["rows"]
    lines = (tmp_path / "work" / "predictions-300.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [record["id"] for record in short_records(300)]
    assert "| predict | 300 |" in table and "predict: at 300 rows (2x the rows of 150), peak RSS" in table


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown command 'train'"):
        run_load_benchmark(rows=[10], commands=["train"], work_dir=str(tmp_path))
    with pytest.raises(ValueError, match="positive"):
        run_load_benchmark(rows=[0], work_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_load_benchmark(rows=[10], model=str(tmp_path / "missing"), work_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_the_child_dies_with_the_benchmark(tmp_path):
    """A benchmark killed half-way leaves no command running on its own."""
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    benchmark = tmp_path / "benchmark.py"
    benchmark.write_text(
        "import sys\nfrom modernpatent_hf.load_benchmark import measure_command\n"
        f"measure_command([sys.executable, {str(sleeper)!r}], {str(tmp_path / 'log')!r})\n"
    )
    parent = subprocess.Popen([sys.executable, str(benchmark)])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive():  # a zombie (dead, not yet reaped by whoever adopted it) counts as dead
        try:
            with open(f"/proc/{child}/status") as status:
                return not any(line.startswith("State:") and "Z" in line for line in status)
        except FileNotFoundError:
            return False

    deadline = time.time() + 10
    while alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not alive()
