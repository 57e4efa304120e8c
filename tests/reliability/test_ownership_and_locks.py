"""Issue 28: the promise "a command never deletes or overwrites a file it did not create" under concurrency, kills,
odd files and odd text. One test per case: existing output files of `predict` and `embed`, replacing exactly the
files a marker lists, the lock on every output, Unicode ids and codes, and special files as outputs."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import unicodedata

import pytest

from modernpatent_hf.cli import main
from modernpatent_hf.io_utils import OUTPUT_MARKER, owned_output_dir, read_output_marker

from testing_utils import REPO_ROOT, SEED_DRILL_RECORDS, read_jsonl, tree_snapshot, write_jsonl


def predict_arguments(checkpoint, source, output, *extra):
    return ["predict", "--model", checkpoint, "--input", source, "--output", output, "--device", "cpu", *extra]


def embed_arguments(checkpoint, source, output, *extra):
    return ["embed", "--model", checkpoint, "--input", source, "--output", output, "--device", "cpu", *extra]


# ------------------------------------------------------------------------------ 1. existing output files
@pytest.mark.parametrize("command", ["predict", "embed"])
def test_predict_and_embed_refuse_an_existing_output_file_unless_overwrite(
    tmp_path, one_line_refusal, tiny_checkpoint, command
):
    source = write_jsonl(tmp_path / "in.jsonl", SEED_DRILL_RECORDS)
    output = tmp_path / ("e.jsonl" if command == "predict" else "x.npy")
    output.write_text("mine")
    arguments = (predict_arguments if command == "predict" else embed_arguments)(tiny_checkpoint, source, output)
    line = one_line_refusal(arguments)
    assert "already exists" in line and "--overwrite" in line and "nothing was changed" in line
    assert output.read_text() == "mine"
    assert main([str(argument) for argument in [*arguments, "--overwrite"]]) == 0  # the user's own call
    assert output.read_bytes() != b"mine" and sorted(os.listdir(tmp_path)) == sorted(
        ["in.jsonl", "model", output.name]
    )


# ------------------------------------------------------------------------------ 2. exactly the listed files
KILLED_RUN = """
import os, signal, sys
from modernpatent_hf.io_utils import owned_output_dir
with owned_output_dir(sys.argv[1], "tokenizer", overwrite=True) as directory:
    with open(os.path.join(directory, "tokenizer.json"), "w") as handle:
        handle.write("half written")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_rerun_after_a_killed_tokenizer_keeps_a_file_the_user_added(tmp_path, one_line_refusal):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a seed drill {i} with a rotor housing" for i in range(200)), encoding="utf-8")
    out = tmp_path / "tok"
    arguments = ["tokenizer", "--corpus", corpus, "--out", out, "--vocab-size", "300", "--min-frequency", "1"]
    assert main([str(argument) for argument in arguments]) == 0
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(out)], cwd=REPO_ROOT)
    assert killed.returncode == -signal.SIGKILL
    (out / "notes.txt").write_text("mine")
    line = one_line_refusal([*arguments, "--overwrite"])
    assert "notes.txt" in line and (out / "notes.txt").read_text() == "mine"


def test_a_file_put_into_the_output_while_the_command_runs_is_never_deleted(tmp_path, monkeypatch, one_line_refusal):
    """prepare (a directory renamed into place) and owned_output_dir (files moved into place) alike."""
    import modernpatent_hf.data.prepare as prepare_module

    source = write_jsonl(tmp_path / "a.jsonl", SEED_DRILL_RECORDS)
    out = tmp_path / "prepared"
    arguments = ["prepare", source, "--out", out, "--validation-fraction", "0"]
    assert main([str(argument) for argument in arguments]) == 0
    before = tree_snapshot(out)
    write = prepare_module.write_dataset_dir

    def write_after_the_user(*args, **kwargs):
        (out / "notes.txt").write_text("mine")  # the user, while prepare runs
        return write(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "write_dataset_dir", write_after_the_user)
    assert "notes.txt" in one_line_refusal([*arguments, "--overwrite"])
    assert tree_snapshot(out) == {**before, (out / "notes.txt").relative_to(out): b"mine"}  # the earlier output whole

    report = tmp_path / "report"
    with owned_output_dir(report, "report") as directory:
        open(os.path.join(directory, "a.txt"), "w").close()
    with pytest.raises(ValueError, match="did not write while it ran"):
        with owned_output_dir(report, "report", overwrite=True) as directory:
            open(os.path.join(directory, "a.txt"), "w").close()
            (report / "notes.txt").write_text("mine")
    assert sorted(os.listdir(report)) == [OUTPUT_MARKER, "a.txt", "notes.txt"]
    assert read_output_marker(report)["files"] == ["a.txt"]


# ------------------------------------------------------------------------------ 3. one run per output
HOLD_LOCK = """
import sys, time
from modernpatent_hf.output_lock import output_lock
with output_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_lock(path, command):
    """A process that holds the lock of ``path`` as `modernpatent COMMAND` would; returns it once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), command], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held", "the holder could not take the lock"
    return holder


@pytest.mark.parametrize("command", ["predict", "prepare"])
def test_a_second_run_on_a_locked_output_is_refused_and_a_killed_holder_blocks_nothing(
    tmp_path, one_line_refusal, tiny_checkpoint, command
):
    source = write_jsonl(tmp_path / "in.jsonl", SEED_DRILL_RECORDS)
    if command == "predict":
        output = tmp_path / "pred.jsonl"
        arguments = predict_arguments(tiny_checkpoint, source, output)
    else:
        output = tmp_path / "prepared"
        arguments = ["prepare", source, "--out", output, "--validation-fraction", "0"]
    holder = hold_lock(output, command)
    try:
        line = one_line_refusal(arguments)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in line and "nothing was changed" in line
        assert not output.exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # as a killed run: its lock file stays behind
        holder.wait()
    assert os.path.exists(f"{output}.modernpatent-lock")
    assert main([str(argument) for argument in arguments]) == 0  # the stale lock does not block the rerun
    assert sorted(os.listdir(tmp_path)) == sorted(["in.jsonl", "model", output.name])  # its lock file is gone
    if command == "predict":
        assert [row["id"] for row in read_jsonl(output)] == [record["id"] for record in SEED_DRILL_RECORDS]


# ------------------------------------------------------------------------------ 6. Unicode ids and codes
LOOKALIKE_CODES = ["G06\u0131", "H01\u00df", "A\uff10\uff11B", "B\u0666\u0660K", "A01C\u00a0", "\u0391\u0030\u0031B"]


def test_one_id_in_two_unicode_forms_is_one_record(tmp_path):
    composed, decomposed = "US\u00e91", unicodedata.normalize("NFD", "US\u00e91")
    assert composed != decomposed
    rows = [
        {"id": composed, "title": "A seed drill", "abstract": "For seeds.", "cpc": ["A01C"]},
        {"id": decomposed, "title": "A seed drill", "abstract": "For seeds.", "cpc": ["A01C"]},
        *[{"id": f"US{i}", "title": f"A gearbox {i}", "abstract": "Gears.", "cpc": ["B60K"]} for i in range(5)],
    ]
    source = write_jsonl(tmp_path / "ids.jsonl", rows)
    out = tmp_path / "ids"
    assert main(["prepare", str(source), "--out", str(out), "--validation-fraction", "0", "--test-fraction", "0"]) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["counts"]["records_read"] == 7 and stats["rows_per_split"]["train"] == 6


@pytest.mark.parametrize("on_invalid_code", ["drop", "raise"])
def test_a_code_with_a_character_outside_ascii_is_invalid_never_mapped(tmp_path, one_line_refusal, on_invalid_code):
    rows = [
        {"id": f"EP{i}", "title": f"A gearbox {i}", "abstract": "Gears.", "cpc": ["B60K", code]}
        for i, code in enumerate(LOOKALIKE_CODES)
    ]
    source = write_jsonl(tmp_path / "codes.jsonl", rows)
    out = tmp_path / "codes"
    arguments = ["prepare", source, "--out", out, "--validation-fraction", "0", "--test-fraction", "0"]
    if on_invalid_code == "raise":
        for index, code in enumerate(LOOKALIKE_CODES):  # each alone: every one of them stops the run
            write_jsonl(tmp_path / "one.jsonl", [rows[index]])
            line = one_line_refusal(["prepare", tmp_path / "one.jsonl", "--out", out, "--on-invalid-code", "raise"])
            assert "invalid CPC code" in line and repr(code) in line, (code, line)
        return
    assert main([str(argument) for argument in arguments]) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["counts"]["invalid_codes"] == len(LOOKALIKE_CODES)
    assert json.loads((out / "label_space.json").read_text(encoding="utf-8"))["codes"] == ["B60K"]


# ------------------------------------------------------------------------------ 7. special files
@pytest.mark.parametrize("command", ["predict", "embed", "prepare"])
def test_a_fifo_as_output_is_refused_in_one_line_and_stays_a_fifo(
    tmp_path, one_line_refusal, tiny_checkpoint, command
):
    source = write_jsonl(tmp_path / "in.jsonl", SEED_DRILL_RECORDS)
    fifo = tmp_path / ("out.npy" if command == "embed" else "out")
    os.mkfifo(fifo)
    arguments = {
        "predict": predict_arguments(tiny_checkpoint, source, fifo),
        "embed": embed_arguments(tiny_checkpoint, source, fifo),
        "prepare": ["prepare", source, "--out", fifo],
    }[command]
    for extra in ([], ["--overwrite"]):  # --overwrite replaces a file, never a FIFO
        line = one_line_refusal([*arguments, *extra])
        assert "FIFO, device or socket" in line and "nothing was changed" in line
        assert fifo.is_fifo() and sorted(os.listdir(tmp_path)) == sorted(["in.jsonl", "model", fifo.name])


def test_a_device_as_output_is_refused(tmp_path, one_line_refusal, tiny_checkpoint):
    source = write_jsonl(tmp_path / "in.jsonl", SEED_DRILL_RECORDS)
    device = tmp_path / "null"  # a node of its own: a wrong run never touches the system's /dev/null
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as error:
        pytest.skip(f"cannot make a device node here: {error}")
    for extra in ([], ["--overwrite"]):
        assert "FIFO, device or socket" in one_line_refusal(predict_arguments(tiny_checkpoint, source, device, *extra))
    assert device.is_char_device()
