"""What keeps a GPU benchmark run from being lost, checked on the CPU with tiny models: a path or model that raises is a
row with its error while the others go on, the JSON says which attention a packed path ran and how many graphs it
compiled, benchmarks/gpu_table.py merges the per-model runs (one that died is a row saying so), and the smoke step of
benchmarks/gpu.sh runs where `datasets` cannot be imported."""

import contextlib
import io
import json
import subprocess
import sys
import textwrap

import pytest

from modernpatent_hf import benchmark
from modernpatent_hf.benchmark_probes import FLASH_VARLEN, PER_SEGMENT_SDPA, SDPA, attention_verdict
from modernpatent_hf.cli import main

from testing_utils import REPO_ROOT, SINGLE_THREAD

BENCHMARKS = REPO_ROOT / "benchmarks"


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    """One bench run in which the modernbert model fails before its paths and bert's naive path fails in its warm-up:
    ``(exit status, results JSON, printed table, stderr, output folder)``."""
    out_dir = tmp_path_factory.mktemp("bench")
    save_random_classifier = benchmark.save_random_classifier

    def save_or_fail(name, out, tiny):
        if name == "modernbert":
            raise OSError("disk full")
        return save_random_classifier(name, out, tiny)

    def naive_fails(*args, **kwargs):
        raise RuntimeError("boom")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchmark, "save_random_classifier", save_or_fail)
        patch.setattr(benchmark, "naive_logits", naive_fails)
        arguments = ["bench", "--tiny", "--num-samples", "4", "--repeats", "1", "--paths", "naive,ours,packed"]
        arguments += ["--train-steps", "1", "--train-batch-size", "2", "--out", str(out_dir / "bench-bert.json")]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = main(arguments)
    results = json.loads((out_dir / "bench-bert.json").read_text())
    return status, results, stdout.getvalue(), stderr.getvalue(), out_dir


def test_a_failed_model_and_a_failed_path_are_rows_with_their_error_and_the_run_goes_on(failing_run):
    status, results, printed, stderr, _ = failing_run
    assert status == 1 and "failed: modernbert/naive" in stderr
    modernbert, bert = results["models"]
    assert modernbert["error"] == "OSError: disk full"
    assert [row["error"] for row in modernbert["rows"]] == ["OSError: disk full"] * 3
    assert results["training"][0] == {"model": "modernbert", "error": "not run: the model failed", "rows": []}
    naive, ours, packed = bert["rows"]
    assert naive["error"] == "RuntimeError: boom" and "samples_per_s" not in naive
    assert ours["samples_per_s"] > 0 and packed["samples_per_s"] > 0
    assert "speedup_vs_naive" not in packed and packed["max_abs_diff_vs_ours"] < 1e-4
    assert [row["batches"] for row in results["training"][1]["rows"]] == ["padded", "packed"]
    assert "| bert | naive | error: RuntimeError: boom |" in printed
    assert "modernbert: failed before its paths ran: OSError: disk full" in printed
    assert "Traceback" in stderr and "boom" in stderr  # the log keeps what the row leaves out


def test_the_json_says_which_attention_each_path_ran_and_the_graphs_it_compiled(failing_run):
    _, results, printed, _, _ = failing_run
    _, ours, packed = results["models"][1]["rows"]
    assert ours["attention"] == "sdpa"
    # The CPU has no flash varlen attention: packed batches run sdpa once per segment and layer.
    assert packed["attention"] == PER_SEGMENT_SDPA == "per-segment sdpa"
    assert (
        packed["attention_calls"]["varlen_attn"] == 0 and packed["attention_calls"]["scaled_dot_product_attention"] > 2
    )
    assert packed["compiled_graphs"] == packed["graph_breaks"] == packed["graphs_compiled_while_timed"] == 0
    assert "| per-segment sdpa |" in printed


def test_the_attention_verdict_tells_flash_varlen_per_segment_and_padded_sdpa_apart():
    assert attention_verdict(24, 0, 22, "modernpatent_varlen") == FLASH_VARLEN
    assert attention_verdict(0, 23, 22, "modernpatent_varlen") == PER_SEGMENT_SDPA
    assert attention_verdict(0, 22, 22, "sdpa") == SDPA
    assert attention_verdict(0, 0, 22, "eager") == "eager"


def test_gpu_table_merges_the_model_runs_and_reports_one_that_timed_out(failing_run):
    *_, out_dir = failing_run
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_table.py"), str(out_dir), "--run", "bert=1", "--run", "roberta=124"]
        + ["--timeout", "roberta=150"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    merged = json.loads((out_dir / "gpu.json").read_text())
    assert [model["model"] for model in merged["models"]] == ["modernbert", "bert", "roberta"]
    assert merged["models"][2]["error"] == "no results: its run timed out after 150 s and was stopped"
    assert (out_dir / "gpu.md").read_text().strip() == result.stdout.strip()
    assert "roberta: failed before its paths ran: no results: its run timed out after 150 s" in result.stdout


def test_the_smoke_step_runs_on_the_cpu_where_datasets_cannot_be_imported(tmp_path):
    refuse_datasets = textwrap.dedent("""
        import runpy, sys

        class Refuse:  # as if datasets and its helpers were not installed, like on the GPU machine
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name.split(".")[0] in ("datasets", "dill", "multiprocess"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Refuse)
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """)
    arguments = ["--device", "cpu", "--tiny", "--texts", "6", "--variants", "padded,packed"]
    arguments += ["--packed-batch-tokens", "2048", "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-c", refuse_datasets, str(BENCHMARKS / "gpu_smoke.py"), *arguments],
        capture_output=True,
        text=True,
        env=SINGLE_THREAD,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    smoke = json.loads((tmp_path / "smoke.json").read_text())
    assert smoke["versions"]["torch"] and smoke["versions"]["transformers"]
    for model in smoke["models"]:
        padded, packed = model["rows"]
        assert packed["attention"] == "per-segment sdpa" and packed["packed_batches"] == 1
        assert packed["matches_padded"] and packed["max_abs_diff_vs_padded"] < 1e-4
    assert "| modernbert | packed | per-segment sdpa |" in result.stdout
