"""Batch prediction: length buckets, PatentClassifier, predict_file on every input kind, resume, two processes, pipeline."""

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from modernpatent_hf import (
    LABEL_SPACE_FILE,
    CpcLabelSpace,
)
from modernpatent_hf.data.records import write_dataset_dir
from modernpatent_hf.predict_file import predict_file
from modernpatent_hf.predictor import PatentClassifier, length_bucketed_batches, to_device
from modernpatent_hf.thresholds import save_thresholds

from testing_utils import (
    MAX_LENGTH,
    REPO_ROOT,
    SINGLE_THREAD,
    WORDS,
    read_jsonl,
    save_tiny_checkpoint,
    short_records,
    write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread in every test: outputs compare exactly


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random ModernBERT classifier saved as PatentTrainer saves one: model, tokenizer, label space."""
    directory = tmp_path_factory.mktemp("inference") / "checkpoint"
    save_tiny_checkpoint(directory)
    space = CpcLabelSpace.load(directory / LABEL_SPACE_FILE)
    space.with_titles({space.codes[0]: "Title of the first code"}).save(directory / LABEL_SPACE_FILE)
    return directory


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return PatentClassifier.from_pretrained(checkpoint)


def assert_same_rows(actual, expected):
    """Same ids, codes and titles; scores to float32 precision (other chunk boundaries pad batches differently)."""
    assert [row["id"] for row in actual] == [row["id"] for row in expected]
    for got, want in zip(actual, expected):
        assert [{**p, "score": None} for p in got["predictions"]] == [
            {**p, "score": None} for p in want["predictions"]
        ]
        assert [p["score"] for p in got["predictions"]] == pytest.approx(
            [p["score"] for p in want["predictions"]], abs=1e-6
        )


def expected_rows(classifier, rows, top_k=5):
    """What predict_file must write for rows with title + abstract (joined as prepare joins them)."""
    texts = [f"{row['title']}\n{row['abstract']}" for row in rows]
    return [
        {"id": row["id"], "predictions": predictions}
        for row, predictions in zip(rows, classifier.predict(texts, top_k=top_k))
    ]


# ------------------------------------------------------------------------------ length buckets
def test_buckets_hold_every_index_once_within_the_budget_longest_first():
    assert length_bucketed_batches([3, 10, 5, 5, 1], max_batch_tokens=12, max_batch_size=4) == [[1], [2, 3], [0, 4]]
    lengths = np.random.default_rng(0).integers(1, 300, size=500).tolist() + [900]  # one longer than the budget
    for budget, size in ((512, 64), (2048, 8), (4096, 256)):
        batches = length_bucketed_batches(lengths, budget, size)
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        for batch, following in zip(batches, batches[1:] + [None]):
            longest = max(lengths[i] for i in batch)
            assert len(batch) <= size and (len(batch) * longest <= budget or len(batch) == 1)
            assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
            if following:  # greedy: the next item would not have fitted
                assert lengths[following[0]] <= lengths[batch[-1]]
                assert len(batch) == size or (len(batch) + 1) * longest > budget
    with pytest.raises(ValueError, match="max_batch_tokens"):
        length_bucketed_batches([1], 0, 4)


# ------------------------------------------------------------------------------ PatentClassifier
def test_logits_equal_the_model_on_each_text_alone_in_input_order(classifier):
    texts = [" ".join(WORDS[:words]) for words in (3, 9, 1, 6, 12, 2, 5)]
    texts[2] = "seed " * 200  # truncated to MAX_LENGTH tokens
    texts[4] = ""
    assert classifier.max_length == MAX_LENGTH
    lengths = [len(ids) for ids in classifier.encode(texts)]
    assert lengths != sorted(lengths, reverse=True), "the texts must need reordering"
    before = classifier.truncated_count
    logits = classifier.logits(texts)
    assert classifier.truncated_count - before == 1
    assert logits.dtype == np.float32 and logits.shape == (len(texts), len(classifier.label_space))
    tokenizer, model = classifier.tokenizer, classifier.model
    with torch.no_grad():
        for text, row in zip(texts, logits):
            alone = model(**tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")).logits[0]
            assert np.allclose(row, alone.numpy(), atol=1e-5)
    assert classifier.logits([]).shape == (0, len(classifier.label_space))


def count_host_copies(monkeypatch, width):
    """Counts, by method, the calls that bring a float [rows, ``width``] tensor to the host (``cpu``, ``to`` the CPU)
    or to numpy: on a GPU each such copy of a batch's output makes the host wait for the device."""
    counts = {"cpu": 0, "to": 0, "numpy": 0}

    def counted(name, method):
        def wrapper(tensor, *args, **kwargs):
            to_cpu = name != "to" or any(
                isinstance(arg, (str, torch.device)) and torch.device(arg).type == "cpu"
                for arg in (*args, kwargs.get("device"))
            )
            if to_cpu and tensor.is_floating_point() and tensor.dim() == 2 and tensor.shape[-1] == width:
                counts[name] += 1
            return method(tensor, *args, **kwargs)

        return wrapper

    for name in counts:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    return counts


@pytest.mark.parametrize("packing", [False, True])
def test_a_call_copies_its_logits_to_the_host_once_not_once_per_batch(checkpoint, classifier, packing, monkeypatch):
    texts = [" ".join(WORDS[: 1 + index % 12]) for index in range(30)]
    small_batches = PatentClassifier.from_pretrained(
        checkpoint, packing=packing, max_batch_tokens=MAX_LENGTH * 2, max_batch_size=8
    )
    input_ids = small_batches.encode(texts)
    batches = small_batches.packed_batches if packing else small_batches.padded_batches
    assert len(list(batches(input_ids))) >= 4
    expected = classifier.logits(texts)
    # No pinned memory on the CPU: pinning needs an accelerator, and a CPU tensor needs no copy at all.
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda *args, **kwargs: pytest.fail("pinned on the CPU"))
    counts = count_host_copies(monkeypatch, len(classifier.label_space))
    logits = small_batches.logits(texts)
    assert counts["cpu"] + counts["to"] == 1 and counts["numpy"] == 1, counts
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def test_a_file_run_copies_logits_to_the_host_once_per_chunk(checkpoint, tmp_path, monkeypatch):
    small_batches = PatentClassifier.from_pretrained(checkpoint, max_batch_tokens=MAX_LENGTH * 2, max_batch_size=8)
    source = write_jsonl(tmp_path / "in.jsonl", short_records(100, seed=6))
    counts = count_host_copies(monkeypatch, len(small_batches.label_space))
    summary = predict_file(small_batches, source, tmp_path / "out.jsonl", chunk_size=30, progress=False)
    assert summary["rows"] == 100 and counts["cpu"] + counts["to"] == 4, counts  # chunks of 30, 30, 30, 10


def test_a_file_run_tokenizes_the_next_chunk_while_the_model_runs_on_this_one(classifier, tmp_path, monkeypatch):
    tokenizing_threads = []
    next_chunk_tokenized = threading.Event()
    encode, logits_from_ids = classifier.encode_counting_truncations, classifier.logits_from_ids

    def recording_encode(texts):
        tokenizing_threads.append(threading.current_thread().name)
        if len(tokenizing_threads) == 2:
            next_chunk_tokenized.set()
        return encode(texts)

    overlapped = []

    def waiting_logits(input_ids):
        # The model's first chunk waits until the second chunk has been tokenized: only a prefetch gets there.
        overlapped.append(next_chunk_tokenized.wait(timeout=60))
        return logits_from_ids(input_ids)

    monkeypatch.setattr(classifier, "encode_counting_truncations", recording_encode)
    monkeypatch.setattr(classifier, "logits_from_ids", waiting_logits)
    rows = short_records(50, seed=7)
    predict_file(
        classifier, write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", chunk_size=20, progress=False
    )
    assert overlapped == [True, True, True] and len(tokenizing_threads) == 3
    assert threading.current_thread().name not in tokenizing_threads
    monkeypatch.undo()
    assert_same_rows(read_jsonl(tmp_path / "out.jsonl"), expected_rows(classifier, rows))


def test_inputs_reach_a_gpu_through_pinned_memory_without_blocking_the_host(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: calls.append("pin_memory") or tensor)
    monkeypatch.setattr(torch.Tensor, "to", lambda tensor, *args, **kwargs: calls.append((args, kwargs)) or tensor)
    cuda = torch.device("cuda", 0)
    to_device(torch.zeros(3), cuda)
    assert calls == ["pin_memory", ((cuda,), {"non_blocking": True})]


def test_packed_and_padded_batches_have_their_own_default_budgets(checkpoint, classifier):
    assert (classifier.max_batch_tokens, classifier.max_batch_size) == (16384, 256)  # padded length buckets
    packed = PatentClassifier.from_pretrained(checkpoint, packing=True)
    # 65,536 tokens, room for 512 texts (65,536 / 128), and a padding segment per MAX_LENGTH tokens of padding.
    assert (packed.max_batch_tokens, packed.max_batch_size) == (65536, 512)
    assert packed.packed_shape == (65536, 512 + -(-65536 // MAX_LENGTH))
    explicit = PatentClassifier.from_pretrained(checkpoint, packing=True, max_batch_tokens=160, max_batch_size=100)
    # Never more text slots than 16-token texts fill: 160 / 16.
    assert explicit.packed_shape == (160, 10 + -(-160 // MAX_LENGTH))


def test_every_packed_batch_of_a_call_has_one_static_shape_the_last_too(checkpoint, classifier):
    packed = PatentClassifier.from_pretrained(checkpoint, packing=True, max_batch_tokens=160)
    texts = ["seed " * words for words in range(1, 40)] + ["x"] * 30  # texts of 3 tokens too: more than 10 a batch
    input_ids = packed.encode(texts)
    batches = list(packed.packed_batches(input_ids))
    shapes = {
        (inputs["input_ids"].shape, inputs["cu_seq_lens_q"].shape, inputs["max_length_q"]) for _, inputs in batches
    }
    assert len(batches) > 4 and shapes == {
        (torch.Size([1, 160]), torch.Size([packed.packed_shape[1] + 1]), MAX_LENGTH)
    }
    assert sum(len(indices) for indices, _ in batches) == len(texts)
    np.testing.assert_allclose(packed.logits(texts), classifier.logits(texts), atol=1e-5, rtol=0)


def test_predict_sorts_scores_decodes_codes_and_applies_the_threshold(classifier):
    texts = ["valve rotor housing", "antenna blade", "seed signal circuit layer wafer"]
    space = classifier.label_space
    probabilities = 1 / (1 + np.exp(-classifier.logits(texts).astype(np.float64)))
    for row, predictions in zip(probabilities, classifier.predict(texts, top_k=4)):
        assert [p["code"] for p in predictions] == [space.codes[i] for i in np.argsort(-row)[:4]]
        scores = [p["score"] for p in predictions]
        assert scores == sorted(scores, reverse=True)
        for prediction in predictions:
            code = prediction["code"]
            assert prediction["score"] == pytest.approx(row[space.label2id[code]], abs=1e-6)
            assert (prediction["class"], prediction["section"]) == (code[:3], code[0])
            assert prediction.get("title") == space.title(code)
    assert any("title" in p for predictions in classifier.predict(texts, top_k=len(space)) for p in predictions)
    middle = float(np.median(probabilities[0]))
    kept = classifier.predict(texts[:1], top_k=len(space), threshold=middle)[0]
    assert [p["code"] for p in kept] == [
        space.codes[i] for i in np.argsort(-probabilities[0]) if probabilities[0][i] >= middle
    ]
    # Nothing reaches 1.0: the best code alone is kept, never an empty list.
    assert [len(p) for p in classifier.predict(texts, top_k=5, threshold=1.0)] == [1, 1, 1]
    with pytest.raises(ValueError, match="top_k"):
        classifier.predict(texts, top_k=0)


def test_threshold_auto_applies_each_codes_tuned_threshold_from_the_checkpoint(checkpoint, classifier, tmp_path):
    texts = ["valve rotor housing", "antenna blade", "seed signal circuit layer wafer"]
    space = classifier.label_space
    with pytest.raises(ValueError, match="threshold 'auto' needs the tuned thresholds"):
        classifier.predict(texts, threshold="auto")
    with pytest.raises(ValueError, match="or 'auto'"):
        classifier.predict(texts, threshold="best")
    probabilities = 1 / (1 + np.exp(-classifier.logits(texts).astype(np.float64)))
    # Every code's cut sits just above its score in the first text, except the best two codes, whose cut is 0.
    cuts = np.minimum(probabilities[0] + 1e-3, 1.0)
    best_two = np.argsort(-probabilities[0])[:2]
    cuts[best_two] = 0.0
    tuned_dir = tmp_path / "tuned"
    shutil.copytree(checkpoint, tuned_dir)
    save_thresholds(str(tuned_dir), {"global": 0.5, "per_label": cuts, "tuned_labels": len(space)}, space.codes, 10, 1)
    tuned = PatentClassifier.from_pretrained(tuned_dir)
    kept = tuned.predict(texts[:1], top_k=len(space), threshold="auto")[0]
    assert [p["code"] for p in kept] == [space.codes[i] for i in best_two]
    # The command line takes it too: a thresholds file the model lacks is a one-line error.
    source = write_jsonl(tmp_path / "in.jsonl", short_records(3))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modernpatent_hf.cli",
            "predict",
            "--model",
            str(checkpoint),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--threshold",
            "auto",
        ],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode != 0
        and "threshold 'auto' needs the tuned thresholds" in result.stderr.strip().splitlines()[-1]
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_int8_is_close_to_float32_and_refused_off_the_cpu(checkpoint, classifier):
    texts = ["valve rotor housing sensor", "antenna"]
    int8 = PatentClassifier.from_pretrained(checkpoint, int8=True)
    assert int8.precision == "int8" and classifier.precision == "float32"
    assert any("quantized" in type(module).__module__ for module in int8.model.modules())
    assert np.allclose(int8.logits(texts), classifier.logits(texts), atol=0.1)
    with pytest.raises(ValueError, match="int8 dynamic quantization runs on the CPU"):
        PatentClassifier.from_pretrained(checkpoint, device="cuda", int8=True)


def test_label_space_falls_back_to_the_config_and_its_absence_is_one_clear_error(checkpoint, classifier, tmp_path):
    without_file = tmp_path / "no-label-file"
    shutil.copytree(checkpoint, without_file)
    (without_file / LABEL_SPACE_FILE).unlink()
    code = classifier.label_space.codes[1]
    (tmp_path / "titles.tsv").write_text(f"code\ttitle\n{code}\tA title from the TSV\n")
    fallback = PatentClassifier.from_pretrained(without_file, titles=tmp_path / "titles.tsv")
    assert (
        fallback.label_space == classifier.label_space and fallback.label_space.title(code) == "A title from the TSV"
    )
    config = json.loads((without_file / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(config["id2label"]))}
    config["label2id"] = {name: int(i) for i, name in config["id2label"].items()}
    (without_file / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"^model directory .* lacks a label space: no label_space\.json") as error:
        PatentClassifier.from_pretrained(without_file)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------ predict_file
def test_predict_file_jsonl_writes_one_row_per_input_row_in_order(classifier, tmp_path):
    rows = short_records(130, seed=1)
    summary = predict_file(
        classifier,
        write_jsonl(tmp_path / "in.jsonl", rows),
        tmp_path / "out" / "pred.jsonl",
        top_k=3,
        chunk_size=40,
        progress=False,
    )
    assert_same_rows(read_jsonl(tmp_path / "out" / "pred.jsonl"), expected_rows(classifier, rows, top_k=3))
    assert summary["rows"] == summary["predicted"] == 130 and summary["bad_rows"] == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["pred.jsonl"]  # no part or state file left


def test_predict_file_on_real_records(classifier, shared_data, tmp_path):
    source = tmp_path / "first200.jsonl.gz"
    with gzip.open(shared_data / "patents_us_gpatents_ai.jsonl.gz", "rt", encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(200)]
    with gzip.open(source, "wt", encoding="utf-8") as handle:
        handle.writelines(lines)
    summary = predict_file(classifier, source, tmp_path / "pred.jsonl", chunk_size=64, progress=False)
    output = read_jsonl(tmp_path / "pred.jsonl")
    assert [row["id"] for row in output] == [json.loads(line)["id"] for line in lines]
    assert all(len(row["predictions"]) == 5 for row in output)
    assert summary["rows"] == 200 and summary["truncated"] > 0  # real abstracts exceed 48 tokens


def test_csv_parquet_and_prepared_directories_give_the_same_predictions(classifier, tmp_path):
    import pandas as pd

    rows = short_records(60, seed=2)
    frame = pd.DataFrame({"id": [r["id"] for r in rows], "text": [f"{r['title']}\n{r['abstract']}" for r in rows]})
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet")
    expected = expected_rows(classifier, rows)
    (tmp_path / "parquet_dir").mkdir()
    frame[:30].to_parquet(tmp_path / "parquet_dir" / "part-0.parquet")
    frame[30:].to_parquet(tmp_path / "parquet_dir" / "part-1.parquet")
    for name in ("in.csv", "in.parquet", "parquet_dir"):  # a directory of Parquet files: its format is Parquet
        predict_file(classifier, tmp_path / name, tmp_path / f"{name}.out.jsonl", chunk_size=25, progress=False)
        assert_same_rows(read_jsonl(tmp_path / f"{name}.out.jsonl"), expected)
    records = [{"id": r["id"], "text": f"{r['title']}\n{r['abstract']}", "labels": ["A01B"]} for r in rows]
    write_dataset_dir(
        str(tmp_path / "prepared"),
        {"train": records[:40], "test": records[40:]},
        CpcLabelSpace(["A01B"]),
        progress=False,
    )
    predict_file(classifier, tmp_path / "prepared", tmp_path / "all.jsonl", progress=False)
    assert_same_rows(read_jsonl(tmp_path / "all.jsonl"), expected)
    predict_file(classifier, tmp_path / "prepared", tmp_path / "test.jsonl", split="test", progress=False)
    assert_same_rows(read_jsonl(tmp_path / "test.jsonl"), expected[40:])
    with pytest.raises(ValueError, match="has no split 'validation'"):
        predict_file(classifier, tmp_path / "prepared", tmp_path / "x.jsonl", split="validation", progress=False)


def test_bad_rows_stop_with_their_line_or_become_counted_error_rows(classifier, tmp_path):
    good = short_records(3, seed=3)
    lines = [
        json.dumps(good[0]),
        "",  # line 2: not a row
        '{"id": "broken", "title": ',  # line 3: invalid JSON
        json.dumps({"id": "P-no-text", "claims": "x"}),  # line 4: neither title nor abstract
        json.dumps({"title": "valve"}),  # line 5: no id
        json.dumps({"id": "P-long", "title": "valve " * 300, "abstract": "rotor"}),
        json.dumps(good[1]),
        "   ",
        json.dumps({"id": "P-only-title", "title": "antenna"}),
        '{"id": "P-surrogate", "title": "\\ud800 valve"}',  # line 10: not text
    ]
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: not valid JSON .*--on-bad-row record") as stopped:
        predict_file(classifier, source, tmp_path / "stopped.jsonl", progress=False)
    assert "\n" not in str(stopped.value) and not (tmp_path / "stopped.jsonl").exists()

    summary = predict_file(classifier, source, tmp_path / "recorded.jsonl", on_bad_row="record", progress=False)
    output = read_jsonl(tmp_path / "recorded.jsonl")
    assert len(output) == 8 and summary["rows"] == 8  # every non-empty line, in order
    assert [row["id"] for row in output] == [
        good[0]["id"],
        None,
        "P-no-text",
        None,
        "P-long",
        good[1]["id"],
        "P-only-title",
        "P-surrogate",
    ]
    errors = {index: row["error"] for index, row in enumerate(output) if "error" in row}
    assert set(errors) == {1, 2, 3, 7} and all(output[i]["predictions"] == [] for i in errors)
    assert "bad.jsonl:10:" in errors[7] and "unpaired surrogate" in errors[7]
    assert "bad.jsonl:3: not valid JSON" in errors[1]
    assert "bad.jsonl:4:" in errors[2] and "'title'" in errors[2]
    assert "bad.jsonl:5: record has no 'id'" in errors[3]
    assert len(output[4]["predictions"]) == 5 and len(output[6]["predictions"]) == 5
    assert summary["bad_rows"] == 4 and summary["predicted"] == 4 and summary["empty_lines"] == 2
    assert summary["truncated"] == 1 and summary["missing_abstract"] == 1


# ------------------------------------------------------------------------------ resume, processes
@pytest.fixture(scope="module")
def reference_prediction(classifier, tmp_path_factory):
    """20,000 rows and their uninterrupted predictions."""
    directory = tmp_path_factory.mktemp("reference")
    source = write_jsonl(directory / "in.jsonl", short_records(20_000, seed=4))
    predict_file(classifier, source, directory / "reference.jsonl", chunk_size=1000, progress=False)
    return source, directory / "reference.jsonl"


# Killed once the first chunk is committed, and once half the rows are.
@pytest.mark.parametrize("kill_after_rows", [1, 10_000])
def test_killed_prediction_resumes_into_the_uninterrupted_output(
    reference_prediction, checkpoint, tmp_path, kill_after_rows
):
    source, reference = reference_prediction
    output = tmp_path / "pred.jsonl"
    state_file = tmp_path / "pred.jsonl.partial-0-of-1.state.json"
    command = [
        sys.executable,
        "-m",
        "modernpatent_hf.cli",
        "predict",
        "--model",
        str(checkpoint),
        "--input",
        str(source),
        "--output",
        str(output),
        "--chunk-size",
        "1000",
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=SINGLE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while process.poll() is None and time.time() < deadline:
        state = json.loads(state_file.read_text()) if state_file.exists() else {"rows": 0}
        if state["rows"] >= kill_after_rows:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads(state_file.read_text())
    assert kill_after_rows <= state["rows"] < 20_000 and not output.exists(), "the kill came too late"
    with open(tmp_path / "pred.jsonl.partial-0-of-1", "ab") as part:
        part.write(b'{"id": "P0123')  # a chunk cut short: must be truncated away
    resumed = subprocess.run(command, cwd=REPO_ROOT, env=SINGLE_THREAD, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"after {state['rows']:,} committed rows" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["rows"] == 20_000 and summary["resumed_after_rows"] == state["rows"]
    assert output.read_bytes() == reference.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["pred.jsonl"]


def test_two_processes_write_the_same_output_as_one(classifier, checkpoint, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", short_records(2_000, seed=5))
    predict_file(classifier, source, tmp_path / "one.jsonl", chunk_size=300, progress=False)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(REPO_ROOT / "accelerate_configs" / "cpu_ddp.yaml"),
            "--main_process_port",
            str(port),
            "-m",
            "modernpatent_hf.cli",
            "predict",
            "--model",
            str(checkpoint),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "two.jsonl"),
            "--chunk-size",
            "300",
        ],
        cwd=REPO_ROOT,
        env=SINGLE_THREAD,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # printed once, by process 0
    assert summary["processes"] == 2 and summary["rows"] == 2_000
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "one.jsonl", "two.jsonl"]


# ------------------------------------------------------------------------------ pipeline
PIPELINE_BODY = (  # run after the script_without_package preamble
    """
    import torch
    from transformers import pipeline

    torch.set_num_threads(1)
    classify = pipeline("text-classification", model=sys.argv[1], top_k=5, function_to_apply="sigmoid",
                        trust_remote_code=True)
    print(json.dumps({"module": type(classify.model).__module__,
                      "results": classify(json.loads(sys.argv[2]), truncation=True)}))
    """
)


def test_pipeline_top5_equals_patent_classifier(classifier, checkpoint, tmp_path, script_without_package):
    from transformers import pipeline

    texts = ["valve rotor housing sensor", "antenna blade " * 40, "seed"]
    expected = [[p["code"] for p in predictions] for predictions in classifier.predict(texts, top_k=5)]
    classify = pipeline("text-classification", model=str(checkpoint), top_k=5, function_to_apply="sigmoid")
    results = classify(texts, truncation=True)
    assert [[r["label"] for r in result] for result in results] == expected
    assert results[0][0]["score"] == pytest.approx(classifier.predict(texts[:1])[0][0]["score"], abs=1e-6)

    (tmp_path / "pipeline.py").write_text(script_without_package(PIPELINE_BODY))
    environment = {key: value for key, value in SINGLE_THREAD.items() if key != "PYTHONPATH"}
    environment["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    clean = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "pipeline.py"), str(checkpoint), json.dumps(texts)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert clean.returncode == 0, clean.stderr[-3000:]
    remote = json.loads(clean.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules.")
    assert [[r["label"] for r in result] for result in remote["results"]] == expected
