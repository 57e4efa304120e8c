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
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modernpatent_hf.cli import main
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
