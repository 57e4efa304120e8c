"""Embeddings: AutoModel loads the encoder, feature-extraction gives hidden states, embed() and `modernpatent embed`."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig, ModernBertConfig, pipeline

from modernpatent_hf import (
    BertForHierarchicalPatentClassification,
    BertPatentModel,
    ModernBertForHierarchicalPatentClassification,
    ModernBertPatentModel,
)
from modernpatent_hf.model_factory import checkpoint_config
from modernpatent_hf.predict_file import embed_file
from modernpatent_hf.predictor import PatentClassifier

from testing_utils import (
    HIDDEN,
    REPO_ROOT,
    SINGLE_THREAD,
    run_isolated_script,
    save_tiny_checkpoint,
    short_records,
    write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread in every test: outputs compare exactly
TEXTS = ["valve rotor housing sensor", "antenna blade " * 40, "seed", "pump coil frame wafer layer"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("embeddings") / "modernbert"
    return save_tiny_checkpoint(directory, ModernBertConfig)


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return PatentClassifier.from_pretrained(checkpoint)


def tokenized(checkpoint, texts):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint)(texts, padding=True, truncation=True, return_tensors="pt")


# ------------------------------------------------------------------------------ auto classes
@pytest.mark.parametrize("kind", ["modernbert", "bert"])
def test_auto_model_loads_the_encoder_and_the_sequence_auto_class_the_classifier(kind, checkpoint, tmp_path):
    if kind == "bert":
        checkpoint = save_tiny_checkpoint(tmp_path / "bert", BertConfig)
    encoder_class, classifier_class = {
        "modernbert": (ModernBertPatentModel, ModernBertForHierarchicalPatentClassification),
        "bert": (BertPatentModel, BertForHierarchicalPatentClassification),
    }[kind]
    config = checkpoint_config(checkpoint)  # our config class: the Auto classes then build our classes
    encoder, loading = AutoModel.from_pretrained(checkpoint, config=config, output_loading_info=True)
    assert type(encoder) is encoder_class
    assert not loading["missing_keys"] and not loading["mismatched_keys"]
    classifier = AutoModelForSequenceClassification.from_pretrained(checkpoint, config=config).eval()
    assert type(classifier) is classifier_class
    inputs = tokenized(checkpoint, TEXTS)
    with torch.no_grad():
        output = encoder.eval()(**inputs)
        expected_hidden = classifier.base_model(**inputs).last_hidden_state
        logits = classifier(**inputs).logits
    assert output.last_hidden_state.shape == (len(TEXTS), inputs["input_ids"].shape[1], HIDDEN)
    assert torch.equal(output.last_hidden_state, expected_hidden)  # the classifier's own encoder weights
    assert output.pooler_output.shape == (len(TEXTS), HIDDEN)
    assert logits.shape == (len(TEXTS), classifier.config.num_labels) and classifier.config.num_labels != HIDDEN


def test_pipeline_feature_extraction_returns_hidden_states(checkpoint):
    extract = pipeline("feature-extraction", model=str(checkpoint))
    features = extract(TEXTS[:3], truncation=True)
    for text, feature in zip(TEXTS, features):
        length = len(tokenized(checkpoint, [text])["input_ids"][0])
        assert np.asarray(feature).shape == (1, length, HIDDEN)
    encoder = AutoModel.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        expected = encoder(**tokenized(checkpoint, [TEXTS[0]])).last_hidden_state
    assert np.asarray(features[0]) == pytest.approx(expected.numpy(), abs=1e-6)


# Runs after the script_without_package preamble: remote code only.
REMOTE_BODY = """
    import torch
    from transformers import AutoModel, pipeline

    torch.set_num_threads(1)
    encoder = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
    extract = pipeline("feature-extraction", model=sys.argv[1], trust_remote_code=True)
    print(json.dumps({"encoder": type(encoder).__name__, "module": type(encoder).__module__,
                      "features": extract(json.loads(sys.argv[2]))}))
    """


def test_feature_extraction_with_remote_code_and_no_package(checkpoint, tmp_path, script_without_package):
    (tmp_path / "extract.py").write_text(script_without_package(REMOTE_BODY))
    texts = TEXTS[:2]
    clean = run_isolated_script(
        tmp_path / "extract.py", checkpoint, json.dumps(texts), cwd=tmp_path, environment=SINGLE_THREAD
    )
    assert clean.returncode == 0, clean.stderr[-3000:]
    remote = json.loads(clean.stdout.strip().splitlines()[-1])
    assert remote["encoder"] == "ModernBertPatentModel" and remote["module"].startswith("transformers_modules.")
    expected = pipeline("feature-extraction", model=str(checkpoint))(texts)
    for got, want in zip(remote["features"], expected):
        assert np.asarray(got).shape[-1] == HIDDEN
        assert np.asarray(got) == pytest.approx(np.asarray(want), abs=1e-6)


# ------------------------------------------------------------------------------ PatentClassifier.embed
def test_embed_gives_unit_vectors_of_the_encoders_pooled_output_in_input_order(checkpoint, classifier):
    embeddings = classifier.embed(TEXTS)  # batched together, padded to the longest
    raw = classifier.embed(TEXTS, normalize=False)
    assert embeddings.shape == (len(TEXTS), HIDDEN) and embeddings.dtype == np.float32
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx(np.ones(len(TEXTS)), abs=1e-6)
    encoder = AutoModel.from_pretrained(checkpoint, config=checkpoint_config(checkpoint)).eval()  # ours: pooled
    for text, embedding, pooled in zip(TEXTS, embeddings, raw):
        with torch.no_grad():  # each text alone, without padding
            expected = encoder(**tokenized(checkpoint, [text])).pooler_output[0].numpy()
        assert pooled == pytest.approx(expected, abs=1e-5)
        assert embedding == pytest.approx(expected / np.linalg.norm(expected), abs=1e-5)
    assert not np.allclose(embeddings[0], embeddings[2])


def test_embed_copies_its_vectors_to_the_host_once_not_once_per_batch(checkpoint, classifier, monkeypatch):
    texts = [" ".join(TEXTS[index % len(TEXTS)].split()[: 1 + index]) for index in range(24)]
    small_batches = PatentClassifier.from_pretrained(checkpoint, max_batch_tokens=64, max_batch_size=4)
    assert len(list(small_batches.padded_batches(small_batches.encode(texts)))) >= 4
    expected = classifier.embed(texts)
    copies = []
    for name in ("cpu", "to", "numpy"):
        method = getattr(torch.Tensor, name)

        def counted(tensor, *args, _name=name, _method=method, **kwargs):
            # Float [rows, HIDDEN] tensors brought to the host: on a GPU each such copy waits for the device.
            to_cpu = _name != "to" or "cpu" in [str(arg) for arg in (*args, kwargs.get("device"))]
            if to_cpu and tensor.is_floating_point() and tensor.dim() == 2 and tensor.shape[-1] == HIDDEN:
                copies.append(_name)
            return _method(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    embeddings = small_batches.embed(texts)
    assert sorted(copies) == ["cpu", "numpy"]
    assert embeddings == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("packing", [False, True])
def test_one_pass_gives_the_logits_and_the_embeddings_of_two(checkpoint, classifier, packing, monkeypatch):
    one_pass = PatentClassifier.from_pretrained(checkpoint, packing=packing, max_batch_tokens=64, max_batch_size=4)
    input_ids = one_pass.encode(TEXTS * 3)
    expected_logits, expected_vectors = classifier.logits_from_ids(input_ids), classifier.embed_from_ids(input_ids)
    raw_vectors = classifier.embed_from_ids(input_ids, normalize=False)
    forwards, encoder_runs = [], []
    original = one_pass._forward
    monkeypatch.setattr(one_pass, "_forward", lambda **inputs: forwards.append(1) or original(**inputs))
    one_pass.model.base_model.register_forward_hook(lambda *_: encoder_runs.append(1))
    logits, vectors = one_pass.logits_and_embeddings_from_ids(input_ids)
    assert len(encoder_runs) == len(forwards) >= 3  # one pass of the encoder per batch gives both outputs
    _, raw = one_pass.logits_and_embeddings_from_ids(input_ids, normalize=False)
    assert logits == pytest.approx(expected_logits, abs=1e-5)
    assert vectors == pytest.approx(expected_vectors, abs=1e-5)
    assert raw == pytest.approx(raw_vectors, abs=1e-5)


# ------------------------------------------------------------------------------ modernpatent embed
def test_embed_file_writes_parquet_and_npy_rows_in_input_order_with_bad_rows_recorded(classifier, tmp_path):
    rows = short_records(30, seed=1)
    rows[4] = {"id": "P-BAD", "title": "", "abstract": ""}
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = embed_file(
        classifier, source, tmp_path / "out.parquet", chunk_size=7, progress=False, on_bad_row="record"
    )
    assert summary["rows"] == 30 and summary["embedded"] == 29 and summary["bad_rows"] == 1
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [row["id"] for row in table] == [row["id"] for row in rows]
    good = [index for index in range(30) if index != 4]
    expected = classifier.embed([f"{rows[i]['title']}\n{rows[i]['abstract']}" for i in good])
    assert np.array([table[i]["embedding"] for i in good], dtype=np.float32) == pytest.approx(expected, abs=1e-6)
    assert table[4]["embedding"] is None and "empty text" in table[4]["error"] and table[0]["error"] is None
    embed_file(classifier, source, tmp_path / "out.npy", chunk_size=7, progress=False, on_bad_row="record")
    matrix = np.load(tmp_path / "out.npy")
    assert matrix.shape == (30, HIDDEN) and np.isnan(matrix[4]).all()
    assert matrix[good] == pytest.approx(np.array([table[i]["embedding"] for i in good]), abs=0)
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.npy", "out.parquet"]
    with pytest.raises(ValueError, match=r"must end in \.parquet or \.npy") as error:
        embed_file(classifier, source, tmp_path / "out.csv", progress=False)
    assert "\n" not in str(error.value)


def test_killed_embed_resumes_into_the_uninterrupted_output(classifier, checkpoint, tmp_path):
    rows = short_records(3000, seed=4)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    reference = tmp_path / "reference" / "vectors.parquet"
    embed_file(classifier, source, reference, chunk_size=200, progress=False)
    output = tmp_path / "out" / "vectors.parquet"
    output.parent.mkdir()
    state_file = output.parent / "vectors.parquet.partial-0-of-1.state.json"
    command = [
        sys.executable,
        "-m",
        "modernpatent_hf.cli",
        "embed",
        "--model",
        str(checkpoint),
        "--input",
        str(source),
        "--output",
        str(output),
        "--chunk-size",
        "200",
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=SINGLE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while process.poll() is None and time.time() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["rows"] >= 1:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads(state_file.read_text())
    assert 1 <= state["rows"] < 3000 and not output.exists(), "the kill came too late"
    with open(output.parent / "vectors.parquet.partial-0-of-1", "ab") as part:
        part.write(b'{"id": "P0123')  # a chunk cut short: must be truncated away
    resumed = subprocess.run(command, cwd=REPO_ROOT, env=SINGLE_THREAD, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"after {state['rows']:,} committed rows" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["rows"] == 3000 and summary["resumed_after_rows"] == state["rows"]
    resumed_table, reference_table = pq.read_table(output), pq.read_table(reference)
    assert resumed_table.column("id").to_pylist() == [row["id"] for row in rows]
    assert resumed_table.equals(reference_table)
    assert sorted(os.listdir(output.parent)) == ["vectors.parquet"]


# ------------------------------------------------------------------------------ example
def test_nearest_patents_example_runs_on_the_real_records(checkpoint, shared_data):
    data = shared_data / "patents_us_gpatents_ai.jsonl.gz"
    if not data.is_file():
        pytest.skip(f"{data} is not present")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "nearest_patents.py"),
            "--model",
            str(checkpoint),
            "--data",
            str(data),
            "--limit",
            "300",
            "--top",
            "3",
            "--query",
            "face recognition with neural networks",
        ],
        cwd=REPO_ROOT,
        env=SINGLE_THREAD,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "query: face recognition with neural networks" and len(lines) == 4
    scores = [float(line.split()[0]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= score <= 1.0 + 1e-6 for score in scores)
    assert all(line.split()[1].startswith("US") for line in lines[1:])
