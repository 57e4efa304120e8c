"""Random input to `modernpatent prepare` and `modernpatent predict`: random bytes, random JSON shapes and
random CPC strings, as JSON Lines files.

Whatever the input: the exit status is 0 or 2 (2 with exactly one error line), stderr never holds a traceback, no
row is lost or duplicated (predict: one output row per input row, predicted or recorded as bad; prepare: every row
read is in a split or counted as not written), and no file outside the output is created or changed (the input,
the model directory and the neighbours stay as they were). Runs in process through ``cli.main`` on a tiny model.
"""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modernpatent_hf.cli import main
from modernpatent_hf.cpc import CpcCodeError, normalize_subclass
from modernpatent_hf.data.splits import RECORDS_NOT_WRITTEN

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
GOOD_ROWS = [
    json.dumps(
        {
            "id": f"US{i}",
            "title": f"A seed drill {i}",
            "abstract": "A drill for seeds.",
            "cpc": ["A01C" if i % 2 else "B60K"],
        }
    )
    for i in range(6)
]

# ------------------------------------------------------------------------------ inputs
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
cpc_strings = st.one_of(
    st.from_regex(r"[A-HY][0-9]{2}[A-Z]( ?[0-9]{1,4}/[0-9]{2,6})?", fullmatch=True),
    st.text(alphabet="ABCDEFGHYZabc0123456789/ -.:", max_size=14),
    st.text(max_size=8),
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=12), st.integers(), json_values),
        "title": st.one_of(st.text(max_size=40), json_values),
        "abstract": st.one_of(st.text(max_size=40), json_values),
        "claims": st.lists(st.text(max_size=20), max_size=3),
        "cpc": st.one_of(st.lists(cpc_strings, max_size=4), json_values),
        "date": st.one_of(st.text(max_size=12), st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True)),
    },
)
# Valid JSON that Python cannot hold (nesting deeper than the recursion limit, integers beyond 4300 digits), and
# what a JSON parser accepts but a record must not hold (NaN, unpaired surrogates).
hostile_json = st.one_of(
    st.integers(900, 100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(900, 20_000).map(lambda depth: '{"id": "US9", "title": ' + '{"a": ' * depth + "1" + "}" * depth + "}"),
    st.integers(4301, 6000).map(lambda digits: '{"id": ' + "7" * digits + "}"),
    st.sampled_from(
        [
            '{"id": NaN, "title": "t"}',
            '{"id": "US8", "title": "\\ud800", "cpc": ["A01C"]}',
            '{"id": "US7", "title": Infinity, "cpc": ["A01C"]}',
            "\ufeff" + GOOD_ROWS[0],
        ]
    ),
)
json_lines = st.lists(st.one_of(json_values.map(json.dumps), record_like.map(json.dumps), hostile_json), max_size=8)
cpc_lines = st.lists(
    st.builds(
        lambda i, codes, title: json.dumps({"id": f"EP{i}", "title": title, "abstract": "A gearbox.", "cpc": codes}),
        st.integers(0, 5),
        st.lists(cpc_strings, max_size=5),
        st.text(max_size=30),
    ),
    max_size=8,
)


def file_bytes(lines, with_good_rows):
    """A JSON Lines file of ``lines`` (str or bytes), after the good rows when ``with_good_rows``."""
    lines = [*GOOD_ROWS, *lines] if with_good_rows else list(lines)
    return b"\n".join(line if isinstance(line, bytes) else line.encode("utf-8") for line in lines) + b"\n"


def expected_rows(data):
    """The rows of a JSON Lines file as documented (rows.iter_rows): lines end at \\n, blank lines are no rows.
    None when a line is not UTF-8 (the whole file is refused)."""
    rows = 0
    for number, raw in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            return None
        rows += bool(line.strip())
    return rows


# ------------------------------------------------------------------------------ running and checking
def snapshot(*directories):
    return {
        os.path.join(root, name): hashlib.sha256(open(os.path.join(root, name), "rb").read()).hexdigest()
        for directory in directories
        for root, _, names in os.walk(directory)
        for name in names
    }


def run(arguments, watched, output):
    """``main(arguments)``: (status, stdout). Checks the exit status, stderr, and that every path created or
    changed under ``watched`` is the output (a file named like it, or inside it)."""
    before = snapshot(*watched)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(argument) for argument in arguments])
    stderr = err.getvalue()
    assert status in (0, 2), stderr
    assert "Traceback" not in stderr, stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("modernpatent") and ": error: " in line]
    assert len(error_lines) == (status == 2), stderr
    after = snapshot(*watched)
    touched = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    assert all(path.startswith(str(output)) for path in touched), touched
    return status, out.getvalue()


def check_prepare(data, model_dir):
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "in.jsonl")
        with open(source, "wb") as handle:
            handle.write(data)
        out = os.path.join(work, "prepared")
        status, stdout = run(["prepare", source, "--out", out, "--validation-fraction", "0"], [work, model_dir], out)
        if status == 0:
            summary = json.loads(stdout[stdout.index("{") :])
            counts = summary["counts"]
            assert counts["records_read"] == expected_rows(data)
            written = sum(summary["rows_per_split"].values())
            assert written + sum(counts.get(key, 0) for key in RECORDS_NOT_WRITTEN) == counts["records_read"], summary


def check_predict(data, model_dir):
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "in.jsonl")
        with open(source, "wb") as handle:
            handle.write(data)
        output = os.path.join(work, "predictions.jsonl")
        status, stdout = run(
            [
                "predict",
                "--model",
                model_dir,
                "--input",
                source,
                "--output",
                output,
                "--device",
                "cpu",
                "--on-bad-row",
                "record",
                "--chunk-size",
                "3",
                "--top-k",
                "2",
            ],
            [work, model_dir],
            output,
        )
        rows = expected_rows(data)
        if status == 2:
            assert rows is None or rows == 0, "only a file that is not UTF-8 may stop predict --on-bad-row record"
            assert not os.path.exists(output)
            return
        assert rows is not None
        summary = json.loads(stdout[stdout.index("{") :])
        with open(output, encoding="utf-8") as handle:
            written = [json.loads(line) for line in handle]
        assert len(written) == summary["rows"] == rows
        assert summary["predicted"] + summary["bad_rows"] == rows
        assert sum("error" in row for row in written) == summary["bad_rows"]
        for row in written:
            assert ("error" in row) != bool(row["predictions"]), row
            assert "error" in row or isinstance(row["id"], str)


# ------------------------------------------------------------------------------ the properties
@FUZZ
@given(lines=st.lists(st.binary(max_size=60), max_size=6), with_good_rows=st.booleans())
def test_random_bytes(tiny_checkpoint_template, lines, with_good_rows):
    data = file_bytes(lines, with_good_rows)
    check_prepare(data, str(tiny_checkpoint_template))
    check_predict(data, str(tiny_checkpoint_template))


@FUZZ
@given(lines=json_lines, with_good_rows=st.booleans())
def test_random_json_shapes(tiny_checkpoint_template, lines, with_good_rows):
    data = file_bytes(lines, with_good_rows)
    check_prepare(data, str(tiny_checkpoint_template))
    check_predict(data, str(tiny_checkpoint_template))


@FUZZ
@given(lines=cpc_lines, with_good_rows=st.booleans())
def test_random_cpc_strings(tiny_checkpoint_template, lines, with_good_rows):
    data = file_bytes(lines, with_good_rows)
    check_prepare(data, str(tiny_checkpoint_template))
    check_predict(data, str(tiny_checkpoint_template))


# ------------------------------------------------------------------------------ random concurrent pairs on one output
# Two commands started together (the second after a random delay) on one output, each with random settings and
# --overwrite or not. Whatever the timing: each exits 0 or 2 (one error line), at least one succeeds, the output is
# exactly what one successful run writes alone (never a mix), and no lock, part or scratch file is left.
PAIR_FUZZ = settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
VARIANTS = {
    "predict": [["--top-k", "1"], ["--top-k", "3"], ["--top-k", "2", "--chunk-size", "2"]],
    "prepare": [["--validation-fraction", "0"], ["--validation-fraction", "0.3", "--seed", "1"]],
}
_REFERENCES = {}


def command_line(kind, variant, model_dir, source, output, overwrite):
    if kind == "predict":
        arguments = ["predict", "--model", model_dir, "--input", source, "--output", output, "--device", "cpu"]
    else:
        arguments = ["prepare", source, "--out", output, "--test-fraction", "0"]
    return [*arguments, *VARIANTS[kind][variant], *(["--overwrite"] if overwrite else [])]


def output_content(path):
    """A file's bytes, or a directory's files (relative path -> bytes) but for the run-specific stats.json."""
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            return handle.read()
    return {
        os.path.relpath(os.path.join(root, name), path): open(os.path.join(root, name), "rb").read()
        for root, _, names in os.walk(path)
        for name in names
        if name != "stats.json"
    }


def reference(kind, variant, model_dir, source):
    """What the command writes alone (computed once per session, in this process)."""
    if (kind, variant) not in _REFERENCES:
        work = tempfile.mkdtemp(prefix="fuzz-reference-")
        output = os.path.join(work, "out.jsonl" if kind == "predict" else "out")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main([str(part) for part in command_line(kind, variant, model_dir, source, output, False)]) == 0
        _REFERENCES[kind, variant] = output_content(output)
    return _REFERENCES[kind, variant]


@PAIR_FUZZ
@given(
    kind=st.sampled_from(sorted(VARIANTS)),
    variants=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    overwrite=st.tuples(st.booleans(), st.booleans()),
    delay=st.sampled_from([0.0, 0.5, 3.0]),
)
def test_random_concurrent_pairs_of_commands_on_one_output(tiny_checkpoint_template, kind, variants, overwrite, delay):
    variants = tuple(variant % len(VARIANTS[kind]) for variant in variants)
    source = os.path.join(tempfile.gettempdir(), "modernpatent-fuzz-pairs-input.jsonl")
    with open(source, "wb") as handle:
        handle.write(file_bytes([], with_good_rows=True) * 1)
    model_dir = str(tiny_checkpoint_template)
    references = [reference(kind, variant, model_dir, source) for variant in variants]
    with tempfile.TemporaryDirectory() as work:
        output = os.path.join(work, "out.jsonl" if kind == "predict" else "out")
        processes = []
        for variant, flag in zip(variants, overwrite):
            command = [sys.executable, "-m", "modernpatent_hf.cli"]
            command += [str(part) for part in command_line(kind, variant, model_dir, source, output, flag)]
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            time.sleep(delay)
        results = [(process.wait(timeout=300), *process.communicate()) for process in processes]
        for status, _, stderr in results:
            assert status in (0, 2) and "Traceback" not in stderr, stderr
            error_lines = [
                line for line in stderr.splitlines() if line.startswith("modernpatent") and ": error: " in line
            ]
            assert len(error_lines) == (status == 2), stderr
        succeeded = [index for index, (status, _, _) in enumerate(results) if status == 0]
        assert succeeded, results
        assert output_content(output) in [references[index] for index in succeeded]
        assert sorted(os.listdir(work)) == [os.path.basename(output)]


# ------------------------------------------------------------------------------ random Unicode in ids and codes
# Ids and codes of random Unicode (combining marks, lookalike letters and digits, other scripts): every id comes out
# in NFC, one id in two Unicode forms is one record, every label is the subclass of an ASCII code of that record, and
# every code with a character outside ASCII is counted as invalid, never mapped.
UNICODE_FUZZ = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
SEPARATOR_FREE = st.characters(blacklist_characters=",;|\n\t\r", blacklist_categories=("Cs",))
unicode_ids = st.text(alphabet=st.sampled_from("e\u0301\u00e9A\u030a\u00c5\u0131I\u00df1"), min_size=1, max_size=4)
unicode_codes = st.one_of(
    st.from_regex(r"[A-HY][0-9]{2}[A-Z]", fullmatch=True),
    st.builds(
        lambda code, position, character: code[:position] + character + code[position + 1 :],
        st.from_regex(r"[A-HY][0-9]{2}[A-Z]", fullmatch=True),
        st.integers(0, 3),
        st.sampled_from("\u0131\u0130\u00df\uff21\uff10\u0660\u0966\u0391\u00a0\u2003e\u0301"),
    ),
    st.text(alphabet=SEPARATOR_FREE, max_size=6),
)
unicode_rows = st.lists(
    st.fixed_dictionaries(
        {"id": unicode_ids.map(lambda text: f"US{text}"), "cpc": st.lists(unicode_codes, min_size=1, max_size=3)}
    ),
    min_size=1,
    max_size=8,
)


def ascii_subclass(code):
    """The subclass of an ASCII code, None for an invalid one (the rule: any character outside ASCII is invalid)."""
    if not code.isascii():
        return None
    try:
        return normalize_subclass(code)
    except CpcCodeError:
        return None


@UNICODE_FUZZ
@given(rows=unicode_rows)
def test_random_unicode_in_ids_and_codes_is_never_lost_mixed_or_silently_mapped(tiny_checkpoint_template, rows):
    records = [{**row, "title": f"A seed drill {index}", "abstract": "A drill."} for index, row in enumerate(rows)]
    allowed = {}  # NFC id -> the subclasses its ASCII codes name
    for row in rows:
        subclasses = {ascii_subclass(code) for code in row["cpc"]} - {None}
        allowed.setdefault(unicodedata.normalize("NFC", row["id"]), set()).update(subclasses)
    invalid = sum(ascii_subclass(code) is None for row in rows for code in row["cpc"] if code.strip())
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "in.jsonl")
        with open(source, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
        out = os.path.join(work, "prepared")
        arguments = ["prepare", source, "--out", out, "--validation-fraction", "0", "--test-fraction", "0"]
        status, stdout = run(arguments, [work, str(tiny_checkpoint_template)], out)
        if not any(allowed.values()):
            assert status == 2  # no record has a valid code: nothing to write
            return
        assert status == 0
        summary = json.loads(stdout[stdout.index("{") :])
        assert summary["counts"]["records_read"] == len(rows)
        assert summary["counts"].get("invalid_codes", 0) == invalid
        table = pq.read_table(os.path.join(out, "data")).to_pylist()
        codes = json.load(open(os.path.join(out, "label_space.json"), encoding="utf-8"))["codes"]
    ids = [row["id"] for row in table]
    assert len(ids) == len(set(ids)) and all(unicodedata.is_normalized("NFC", value) for value in ids)
    assert set(ids) == {record_id for record_id, subclasses in allowed.items() if subclasses}
    for row in table:
        labels = {codes[index] for index in row["labels"]}  # indices into the label space
        assert labels <= allowed[row["id"]], (row, allowed)
