"""The load benchmark (`modernpatent bench-load`): its memory measurement, a small run of prepare and predict, and
small runs of the USPTO-3M source (prepare with a year split, tokenize, the time to a missing test year's error).

The 1,000,000-row and 3,198,360-row figures themselves are a benchmark (docs/benchmarks.md), not a test.
"""

import json
import os
import sys

import pytest

from modernpatent_hf.cli import main
from modernpatent_hf.load_benchmark import (
    format_load_results,
    memory_ratios,
    parquet_rows,
    run_load_benchmark,
    short_records,
)
from modernpatent_hf.load_benchmark_config import LoadBenchmarkConfig
from modernpatent_hf.process_memory import TIMELINE_POINTS, measure_command


def test_peak_memory_is_the_child_s_own(tmp_path):
    allocate = "b = b'x' * (300 * 1024 * 1024); import time; time.sleep(0.5); print('done')"
    measured = measure_command([sys.executable, "-c", allocate], str(tmp_path / "log"))
    assert measured["stdout"] == "done\n"
    # 300 MiB written plus the interpreter; the parent's own memory (hundreds of MiB here) does not count.
    assert 300 <= measured["peak_anonymous_mib"] <= measured["peak_rss_mib"] < 400
    assert measured["seconds"] > 0 and set(measured["rss_mib_at"]) == set(measured["anonymous_mib_at"]) == {
        "25%",
        "50%",
        "75%",
    }


def test_a_failing_command_raises_with_the_end_of_its_log(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)exit status 3.*went wrong"):
        measure_command(
            [sys.executable, "-c", "import sys; sys.stderr.write('went wrong'); sys.exit(3)"], str(tmp_path / "log")
        )


def test_an_expected_exit_status_is_measured_and_another_one_raises(tmp_path):
    fail = [sys.executable, "-c", "import sys; sys.stderr.write('went wrong'); sys.exit(2)"]
    measured = measure_command(fail, str(tmp_path / "log"), returncode=2, env={"MODERNPATENT_PROBE": "x"})
    assert measured["returncode"] == 2 and (tmp_path / "log").read_text() == "went wrong"
    assert len(measured["timeline"]) <= TIMELINE_POINTS
    with pytest.raises(RuntimeError, match=r"exit status 0 \(expected 2\)"):
        measure_command([sys.executable, "-c", "pass"], str(tmp_path / "log"), returncode=2)
    seen = measure_command(
        [sys.executable, "-c", "import os; print(os.environ['MODERNPATENT_PROBE'])"],
        str(tmp_path / "log"),
        env={"MODERNPATENT_PROBE": "given"},
    )
    assert seen["stdout"] == "given\n"


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
        ("prepare", 150),
        ("predict", 150),
        ("prepare", 300),
        ("predict", 300),
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
        run_load_benchmark(LoadBenchmarkConfig(rows=[10], commands=["train"], work_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="positive"):
        run_load_benchmark(LoadBenchmarkConfig(rows=[0], work_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_load_benchmark(LoadBenchmarkConfig(rows=[10], model=str(tmp_path / "missing"), work_dir=str(tmp_path)))
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
        "import sys\nfrom modernpatent_hf.process_memory import measure_command\n"
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


@pytest.fixture(scope="module")
def uspto3m_run(tmp_path_factory):
    """`modernpatent bench-load --source uspto3m` on a copy of 12,000 rows (two row groups of prepare's train shard): its work dir, JSON results and table."""
    import contextlib
    import io

    work = tmp_path_factory.mktemp("uspto3m-load") / "work"
    out = work.parent / "load.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(
            [
                "bench-load",
                "--source",
                "uspto3m",
                "--rows",
                "12000",
                "--commands",
                "prepare,tokenize,test-year-error",
                "--error-repeats",
                "1",
                "--work-dir",
                str(work),
                "--out",
                str(out),
            ]
        )
    assert status == 0
    return work, json.loads(out.read_text()), printed.getvalue()


def test_the_uspto3m_source_prepares_a_year_split_tokenizes_it_and_times_the_missing_year(uspto3m_run):
    """--source uspto3m on a tiny copy: the copy is written in the schema of USPTO-3M (bad rows included) and counted
    in full by prepare, the test split is the scaled test size of 2015 grants, tokenize gives one row per training
    row from a fresh datasets cache, and a missing test year ends in one line with exit status 2."""
    import pyarrow.parquet as pq

    work, results, table = uspto3m_run
    runs = {run["command"]: run for run in results["runs"]}
    assert list(runs) == ["prepare", "tokenize", "test-year-error"] and all(
        run["rows"] == 12000 for run in runs.values()
    )

    copy = work / "uspto3m-12000"
    assert parquet_rows(str(copy)) == 12000
    assert pq.read_schema(next((copy / "data").glob("*.parquet"))).names == ["cpc_ids", "id", "date", "text"]
    prepare = runs["prepare"]
    assert prepare["summary"]["counts"]["bad_rows"] >= 2  # the copy's bad date and empty id, skipped and counted
    assert prepare["rows_written"] + prepare["records_not_written"] == 12000 and prepare["records_not_written"] >= 4
    test_size = round(150_000 * 12000 / 3_198_360)
    test_rows = prepare["summary"]["rows_per_split"][
        "test"
    ]  # a test record whose codes are all outside train's is dropped
    assert test_size - prepare["summary"]["counts"].get("no_labels_in_space", 0) <= test_rows <= test_size
    prepared = work / "prepared-uspto3m-12000"
    test_dates = pq.ParquetDataset(sorted(str(path) for path in (prepared / "data").glob("test-*.parquet"))).read(
        columns=["date"]
    )
    assert test_dates.num_rows == test_rows and {str(date)[:4] for date in test_dates.column("date").to_pylist()} == {
        "2015"
    }

    tokenize = runs["tokenize"]
    train_rows = prepare["summary"]["rows_per_split"]["train"]
    assert tokenize["rows_written"] == tokenize["summary"]["rows_in"] == tokenize["rows_measured"] == train_rows
    assert tokenize["summary"]["tokens"] > 10 * train_rows and tokenize["tokens_per_second"] > 0
    assert tokenize["summary"]["max_length"] == 1024 and tokenize["datasets_cache_mib"] > 0
    assert (work / "tokenizer" / "tokenizer.json").is_file() and not (work / "tokenize-cache-12000").exists()
    assert tokenize["summary"]["arrow_files"] == 1

    error = runs["test-year-error"]
    assert error["exit_status"] == 2 and error["rows_written"] is None
    assert "dated in 2016" in error["summary"]["error"] and "2015 (" in error["summary"]["error"]
    assert not (work / "test-year-error-12000").exists()
    for run in runs.values():
        assert run["peak_rss_mib"] >= run["peak_anonymous_mib"] > 50 and run["rows_per_second"] > 0 and run["timeline"]
    assert "| tokenize | 12,000 |" in table and "| test-year-error | 12,000 |" in table and "none (exit 2)" in table
    assert "tokens/s" in table


def test_tokenize_measures_a_split_that_datasets_caches_in_several_arrow_files(uspto3m_run, tmp_path):
    """USPTO-3M's train split is cached by datasets in several Arrow files (over its 500 MB shard size); here a 1 MB
    shard size gives several files from 12,000 rows (one per row group). The fine-tuning script's loader
    (load_dataset_dir) loads them, and every training row is tokenized into the same tokens as from one file."""
    import subprocess

    work, results, _ = uspto3m_run
    single = next(run for run in results["runs"] if run["command"] == "tokenize")["summary"]
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "modernpatent_hf.load_benchmark_tokenize",
            str(work / "prepared-uspto3m-12000"),
            "--tokenizer",
            str(work / "tokenizer"),
            "--max-shard-size",
            "1MB",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")},
    )
    assert child.returncode == 0, child.stderr[-2000:]
    summary = json.loads(child.stdout)
    assert summary["arrow_files"] > 1
    assert summary["rows"] == summary["rows_in"] == single["rows"] and summary["tokens"] == single["tokens"]


def test_a_given_copy_is_used_as_it_is_and_a_year_it_has_is_no_error(tmp_path, capsys):
    from modernpatent_hf.data.standins import write_uspto3m_copy

    copy, work = tmp_path / "copy", tmp_path / "work"
    write_uspto3m_copy(str(copy), 1000)
    with pytest.raises(RuntimeError, match=r"exit status 0 \(expected 2\)"):  # 2015 is there: prepare succeeds
        run_load_benchmark(
            LoadBenchmarkConfig(
                source="uspto3m",
                uspto3m_copy=[f"1000={copy}"],
                commands=["test-year-error"],
                missing_test_year=2015,
                error_repeats=1,
                work_dir=str(work),
            ),
            progress=False,
        )
    results = run_load_benchmark(
        LoadBenchmarkConfig(
            source="uspto3m",
            uspto3m_copy=[f"1000={copy}"],
            commands=["test-year-error"],
            error_repeats=2,
            work_dir=str(work),
        ),
        progress=False,
    )
    (run,) = results["runs"]
    assert results["settings"]["rows"] == [1000] and run["repeats"] == 2 and len(run["tries"]) == 2
    assert sorted(run["tries"], key=lambda one: one["seconds"])[0]["seconds"] <= run["seconds"]
    assert str(copy) in run["summary"]["error"] and not (work / "uspto3m-1000").exists()
    assert "median of 2 tries" in format_load_results(results)


def test_bad_uspto3m_arguments_are_refused_before_any_work(tmp_path):
    from modernpatent_hf.data.standins import write_uspto3m_copy

    copy, work = tmp_path / "copy", tmp_path / "work"
    write_uspto3m_copy(str(copy), 500)
    with pytest.raises(ValueError, match="has 500 rows, not 600"):
        run_load_benchmark(LoadBenchmarkConfig(source="uspto3m", uspto3m_copy=[f"600={copy}"], work_dir=str(work)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_load_benchmark(
            LoadBenchmarkConfig(source="uspto3m", uspto3m_copy=[f"600={tmp_path / 'missing'}"], work_dir=str(work))
        )
    with pytest.raises(ValueError, match="source='uspto3m'"):
        run_load_benchmark(LoadBenchmarkConfig(uspto3m_copy=[f"500={copy}"], work_dir=str(work)))
    with pytest.raises(ValueError, match="bad rows need at least"):
        run_load_benchmark(LoadBenchmarkConfig(source="uspto3m", rows=[10], work_dir=str(work)))
    with pytest.raises(ValueError, match="list prepare before it"):
        run_load_benchmark(LoadBenchmarkConfig(source="uspto3m", rows=[1000], commands=["tokenize", "prepare"]))
    with pytest.raises(ValueError, match="unknown source"):
        run_load_benchmark(LoadBenchmarkConfig(source="hub", work_dir=str(work)))
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        run_load_benchmark(
            LoadBenchmarkConfig(source="uspto3m", rows=[1000], tokenizer=str(tmp_path), work_dir=str(work))
        )
    assert not work.exists()
    assert main(["bench-load", "--source", "uspto3m", "--uspto3m-copy", str(copy)]) == 2  # not ROWS=DIR
    with pytest.raises(
        ValueError, match=r"--uspto3m-copy takes ROWS=DIR \(e\.g\. 3198360=/data/uspto3m\), got '1000'"
    ):
        run_load_benchmark(LoadBenchmarkConfig(source="uspto3m", uspto3m_copy=["1000"], work_dir=str(work)))
    assert not work.exists()


def test_memory_ratios_say_flat_only_within_the_bound():
    def run(command, rows, rss, anonymous):
        return {
            "command": command,
            "rows": rows,
            "seconds": 10.0,
            "rows_per_second": rows / 10,
            "peak_rss_mib": rss,
            "peak_anonymous_mib": anonymous,
            "anonymous_mib_at": {"25%": 1, "50%": 2, "75%": 3},
            "rows_written": rows,
        }

    results = {
        "runs": [
            run("prepare", 300_000, 1000, 400),
            run("prepare", 3_198_360, 1100, 480),
            run("tokenize", 300_000, 800, 400),
            run("tokenize", 3_198_360, 2400, 450),
            run("test-year-error", 300_000, 500, 300),
            run("test-year-error", 3_198_360, 900, 700),
        ]
    }
    ratios = memory_ratios(results)
    assert ratios["prepare"]["flat"] and ratios["prepare"]["peak_anonymous"] == pytest.approx(1.2)
    assert not ratios["tokenize"]["flat"] and ratios["tokenize"]["anonymous_flat"]
    assert not ratios["test-year-error"]["anonymous_flat"] and ratios["test-year-error"]["peak_rss"] == pytest.approx(
        1.8
    )
    table = format_load_results(results)
    assert (
        "prepare: at 3,198,360 rows (10.7x the rows of 300,000), peak RSS 1.10x and peak anonymous memory 1.20x"
        in table
    )
    assert "test-year-error: at 3,198,360 rows" in table and "NOT flat" in table and "RSS grows" in table
