"""One loader for every checkpoint, and one line for every checkpoint or row it cannot read.

Every path that loads a model's weights (predict, export-onnx, report --per-label, the recipes) goes through
``model_factory.load_pretrained_weights``, so pickled weights (``pytorch_model.bin``) need ``--allow-pickle``
everywhere; a damaged ``model.safetensors`` and a pickle the restricted unpickler refuses end in one line
(exit status 2), not a SafetensorError or UnpicklingError traceback; JSON nested too deeply for Python is a bad
row, not a RecursionError. README's loading snippet runs without the package and without an interactive prompt.
"""

import ast
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import modernpatent_hf
from modernpatent_hf.cli import main
from modernpatent_hf.data.bad_rows import BadRow
from modernpatent_hf.data.rows import parse_json_row

from testing_utils import SIX_CODES, write_lines

PACKAGE = os.path.dirname(inspect.getsourcefile(modernpatent_hf))
REPO_ROOT = Path(PACKAGE).parent
# Receivers of .from_pretrained that read no weights: configs, tokenizers, and our classifier, which calls the loader.
NO_WEIGHTS = ("Config", "Tokenizer", "TokenizerFast")
LOADER = "load_pretrained_weights"
DEEP = "[" * 100_000


def record(i, code=SIX_CODES[0]):
    return json.dumps({"id": f"US{i}", "title": f"A seed drill {i}", "abstract": "A drill for seeds.", "cpc": [code]})


def run(arguments, capsys):
    """``main(arguments)`` in process: (exit status, stdout, stderr lines without progress bars and warnings)."""
    capsys.readouterr()
    status = main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("modernpatent")]
    assert "Traceback" not in captured.err
    return status, captured.out, lines


def one_line_refusal(arguments, capsys):
    status, _, lines = run(arguments, capsys)
    assert status == 2 and len(lines) == 1, lines
    return lines[0]


def as_pickled_weights(checkpoint, state=None):
    """Replace the checkpoint's model.safetensors by pytorch_model.bin (its state dict, or ``state``)."""
    weights = checkpoint / "model.safetensors"
    torch.save(load_file(weights) if state is None else state, checkpoint / "pytorch_model.bin")
    weights.unlink()
    return checkpoint


class WritesAFile:
    """Unpickled, it would open (create) ``path``: proof that the pickle ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


# ------------------------------------------------------------------------------ one loader
def weight_loads_outside_the_loader(source):
    """``(line, receiver)`` of every ``X.from_pretrained(...)`` that may read weights, outside ``load_pretrained_weights``."""
    tree = ast.parse(source)
    inside_loader = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef) and function.name == LOADER
        for node in ast.walk(function)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            receiver = ast.unparse(node.func.value)
            if not (receiver.endswith(NO_WEIGHTS) or receiver == "PatentClassifier" or id(node) in inside_loader):
                found.append((node.lineno, receiver))
    return found


def test_every_weight_load_in_the_package_goes_through_the_one_loader():
    # The check can fail: a model class's from_pretrained is found, a tokenizer's or the loader's own is not.
    assert weight_loads_outside_the_loader("m = AutoModelForSequenceClassification.from_pretrained(path)\n") == [
        (1, "AutoModelForSequenceClassification")
    ]
    assert (
        weight_loads_outside_the_loader(
            f"t = AutoTokenizer.from_pretrained(p)\ndef {LOADER}(model_class, p):\n    return model_class.from_pretrained(p)\n"
        )
        == []
    )
    offenders = []
    for root, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as handle:
                    offenders += [
                        (os.path.relpath(path, PACKAGE), *found)
                        for found in weight_loads_outside_the_loader(handle.read())
                    ]
    assert offenders == []


def test_export_onnx_reads_pickled_weights_only_with_allow_pickle(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    checkpoint = as_pickled_weights(tiny_checkpoint)
    line = one_line_refusal(["export-onnx", "--model", checkpoint, "--out", tmp_path / "onnx"], capsys)
    assert "no safetensors weights" in line and "--allow-pickle" in line
    assert not (tmp_path / "onnx" / "model.onnx").exists()
    status, out, _ = run(
        ["export-onnx", "--model", checkpoint, "--out", tmp_path / "opted-in", "--allow-pickle"], capsys
    )
    assert status == 0 and json.loads(out)["max_abs_diff"] <= 1e-4


def test_report_per_label_reads_pickled_weights_only_with_allow_pickle(tiny_checkpoint, tmp_path, capsys):
    """A run directory (saved model, trainer_state.json, prepared data/) whose weights are pytorch_model.bin only."""
    run_dir = as_pickled_weights(tiny_checkpoint)
    records = write_lines(tmp_path / "records.jsonl", [record(i, SIX_CODES[i % 2]) for i in range(24)])
    assert (
        main(
            [
                "prepare",
                str(records),
                "--out",
                str(run_dir / "data"),
                "--test-fraction",
                "0.25",
                "--validation-fraction",
                "0",
            ]
        )
        == 0
    )
    (run_dir / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))

    status, out, _ = run(["report", "--runs", run_dir, "--per-label", "--out", tmp_path / "refused"], capsys)
    notes = [line for line in out.splitlines() if line.startswith("note: per-label")]
    assert status == 0 and len(notes) == 1 and "no safetensors weights" in notes[0] and "--allow-pickle" in notes[0]
    assert not list((tmp_path / "refused").glob("per_label_*.tsv"))

    status, out, _ = run(
        ["report", "--runs", run_dir, "--per-label", "--allow-pickle", "--out", tmp_path / "opted-in"], capsys
    )
    assert status == 0 and "note: per-label" not in out
    assert (tmp_path / "opted-in" / "per_label_model.tsv").read_text().startswith("code\ttitle\ttrain_count")


# ------------------------------------------------------------------------------ weights that cannot be read
def damage(weights, how):
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": bytes(range(256)) * 16}[how])


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
@pytest.mark.parametrize("command", ["predict", "export-onnx"])
def test_damaged_safetensors_is_one_line(tiny_checkpoint, tmp_path, capsys, how, command):
    damage(tiny_checkpoint / "model.safetensors", how)
    source = write_lines(tmp_path / "in.jsonl", [record(1)])
    arguments = {
        "predict": ["predict", "--model", tiny_checkpoint, "--input", source, "--output", tmp_path / "out.jsonl"],
        "export-onnx": ["export-onnx", "--model", tiny_checkpoint, "--out", tmp_path / "onnx"],
    }[command]
    line = one_line_refusal(arguments, capsys)
    assert str(tiny_checkpoint) in line and "model.safetensors is damaged or incomplete" in line
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "onnx" / "model.onnx").exists()


@pytest.mark.parametrize("command", ["predict", "export-onnx"])
def test_allow_pickle_on_a_pickle_that_would_run_code_is_one_line_and_runs_nothing(
    tiny_checkpoint, tmp_path, capsys, command
):
    marker = tmp_path / "the-pickle-ran"
    checkpoint = as_pickled_weights(
        tiny_checkpoint, state={"model.embeddings.tok_embeddings.weight": WritesAFile(marker)}
    )
    source = write_lines(tmp_path / "in.jsonl", [record(1)])
    arguments = {
        "predict": ["predict", "--model", checkpoint, "--input", source, "--output", tmp_path / "out.jsonl"],
        "export-onnx": ["export-onnx", "--model", checkpoint, "--out", tmp_path / "onnx"],
    }[command]
    line = one_line_refusal([*arguments, "--allow-pickle"], capsys)
    assert (
        "refused to unpickle" in line
        and "GLOBAL io.open was not an allowed global" in line
        and str(checkpoint) in line
    )
    assert "add_safe_globals" not in line  # torch's advice to allow it is left out
    assert not marker.exists()


# ------------------------------------------------------------------------------ rows Python cannot hold
@pytest.mark.parametrize(
    "line, words",
    [
        (DEEP, "nested too deeply"),
        ('{"id": "US9", "title": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
        ('{"id": ' + "1" * 5000 + "}", "4300 digits"),
    ],
)
def test_json_python_cannot_hold_is_a_bad_row(line, words):
    with pytest.raises(BadRow, match=words) as error:
        parse_json_row("rows.jsonl:7", line)
    assert str(error.value).startswith("rows.jsonl:7: ") and "\n" not in str(error.value)


def test_deeply_nested_json_stops_prepare_with_one_line(tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [record(1), DEEP, record(3)])
    line = one_line_refusal(["prepare", source, "--out", tmp_path / "data", "--on-bad-row", "raise"], capsys)
    assert f"{source}:2: JSON nested too deeply" in line


def test_deeply_nested_json_in_predict_is_one_line_or_a_recorded_bad_row(tiny_checkpoint, tmp_path, capsys):
    source = write_lines(tmp_path / "in.jsonl", [record(1), DEEP, record(3)])
    line = one_line_refusal(
        ["predict", "--model", tiny_checkpoint, "--input", source, "--output", tmp_path / "a.jsonl"], capsys
    )
    assert f"{source}:2: JSON nested too deeply" in line and "--on-bad-row record" in line

    output = tmp_path / "b.jsonl"
    status, out, _ = run(
        ["predict", "--model", tiny_checkpoint, "--input", source, "--output", output, "--on-bad-row", "record"],
        capsys,
    )
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert status == 0 and json.loads(out)["bad_rows"] == 1
    assert [row["id"] for row in rows] == ["US1", None, "US3"]
    assert "nested too deeply" in rows[1]["error"] and rows[1]["predictions"] == []
    assert all(rows[i]["predictions"] for i in (0, 2))


# ------------------------------------------------------------------------------ the documented loading snippets (case 13)
def doc_python_block(page, section):
    """The first ```python block under the heading ``section`` of ``page`` (a path under the repository)."""
    text = (REPO_ROOT / page).read_text(encoding="utf-8")
    after = text[text.index(f"\n{section}\n") :]
    return after[after.index("```python\n") + len("```python\n") :].split("\n```", 1)[0]


def run_snippet(script, cwd):
    # stdin closed: a prompt would read end-of-file; its text on the output is what shows that one was asked.
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "[y/N]" not in result.stdout + result.stderr and "custom code" not in result.stdout + result.stderr
    printed = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    # Codes, or the pipeline's {"label": code, "score": ...} entries.
    codes = [entry["label"] if isinstance(entry, dict) else entry for entry in printed]
    assert len(codes) == 5 and set(codes) <= set(SIX_CODES)


def test_the_documented_snippet_loads_a_checkpoint_without_the_package_and_without_a_prompt(
    tiny_checkpoint,
    tmp_path,
    script_without_package,
):
    snippet = doc_python_block("docs/prediction.md", "## Using a trained model")
    # A stock ModernBERT classifier checkpoint: plain transformers, no remote code, no prompt.
    assert 'from_pretrained("outputs/demo/finetune"' in snippet and "trust_remote_code" not in snippet
    shutil.copytree(tiny_checkpoint, tmp_path / "outputs" / "demo" / "finetune")
    script = (
        script_without_package(
            "try:\n    import modernpatent_hf\nexcept ModuleNotFoundError:\n    pass\nelse:\n    raise SystemExit('the package is importable')\n"
        )
        + snippet
    )
    run_snippet(script, tmp_path)


def test_the_readme_serving_snippet_runs_without_the_package(tiny_checkpoint, tmp_path, script_without_package):
    snippet = doc_python_block("README.md", "## Serving")
    assert snippet.startswith("from transformers import pipeline") and "trust_remote_code" not in snippet
    shutil.copytree(tiny_checkpoint, tmp_path / "outputs" / "demo" / "finetune")
    run_snippet(script_without_package(snippet), tmp_path)
