"""The index of labelled patents (`modernpatent index`, evidence_index) and the kNN scores that use it (knn_scores)."""

import json
import os
import signal
import subprocess
import sys
import time

import datasets
import numpy as np
import pytest
from transformers import ModernBertConfig

from modernpatent_hf.commands.index import KINDS
from modernpatent_hf.evidence_index import (
    FAISS_FILE,
    INDEX_KINDS,
    EvidenceIndex,
    build_index,
    index_batches,
    supporting_neighbours,
    vectors_path,
    write_index,
)
from modernpatent_hf.knn_scores import (
    KnnScoring,
    criterion_score,
    fused_scores,
    knn_vote,
    load_knn_scoring,
    save_knn_scoring,
    tune_knn_scoring,
)
from modernpatent_hf.predictor import PatentClassifier

from testing_utils import (
    HIDDEN,
    REPO_ROOT,
    SINGLE_THREAD,
    refusal_line,
    save_tiny_checkpoint,
    short_records,
    write_jsonl,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread: embeddings compare exactly
CODES = ("A01B", "B60K", "F16H", "G06F", "H01L", "H04W")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("evidence") / "modernbert", ModernBertConfig)


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return PatentClassifier.from_pretrained(checkpoint)


def labelled_records(count, seed=0):
    """``short_records`` with one or two CPC codes each (``cpc``, as JSON Lines sources carry them)."""
    rows = short_records(count, seed=seed)
    for i, row in enumerate(rows):
        row["cpc"] = [CODES[i % len(CODES)]] + ([CODES[(i + 1) % len(CODES)]] if i % 3 == 0 else [])
    return rows


def unit_vectors(count, dim, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_index_kinds_of_the_command_are_the_librarys():
    assert tuple(KINDS) == INDEX_KINDS


def test_index_command_builds_an_index_that_saves_and_reloads(checkpoint, classifier, tmp_path, capsys):
    from modernpatent_hf.cli import main

    rows = labelled_records(60)
    rows.append({"id": "NOCODE", "title": "valve", "abstract": "rotor", "cpc": []})  # left out: no evidence
    source = write_jsonl(tmp_path / "corpus.jsonl", rows)
    out = tmp_path / "index"
    assert main(["index", "--model", str(checkpoint), "--data", str(source), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "flat" and summary["rows"] == 60 and summary["left_out_without_codes"] == 1
    assert sorted(os.listdir(out)) == [".modernpatent-output", "dataset", FAISS_FILE, "index.json"]
    assert not os.path.exists(vectors_path(out))

    index = EvidenceIndex.load(out)
    assert len(index) == 60 and index.dim == HIDDEN and index.info["built_from"]["model"] == str(checkpoint)
    assert index.dataset["id"] == [row["id"] for row in rows[:60]]
    assert index.dataset["codes"] == [row["cpc"] for row in rows[:60]]
    texts = [f"{row['title']}\n{row['abstract']}" for row in rows[:60]]
    vectors = classifier.embed(texts)
    np.testing.assert_allclose(np.asarray(index.dataset["embeddings"]), vectors, atol=1e-6)
    # Each patent's own vector finds the patent (or an identical text) first, at similarity 1.
    neighbours = index.search(vectors, k=3)
    assert np.allclose(neighbours.similarities[:, 0], 1.0, atol=1e-5)
    first = [texts[position] for position in neighbours.positions[:, 0]]
    assert first == texts
    # The directory is a plain datasets index too: the rows with load_from_disk, the vectors' index with
    # load_faiss_index, finding what EvidenceIndex finds.
    plain = datasets.load_from_disk(str(out / "dataset"))
    plain.load_faiss_index("embeddings", str(out / FAISS_FILE))
    found = plain.search_batch("embeddings", vectors, k=3)
    np.testing.assert_array_equal(np.asarray(found.total_indices), neighbours.positions)
    np.testing.assert_allclose(np.asarray(found.total_scores), neighbours.similarities, atol=1e-6)

    refused = refusal_line(["index", "--model", str(checkpoint), "--data", str(source), "--out", str(out)], capsys)
    assert "--overwrite" in refused


def test_evidence_rows_name_the_real_nearest_neighbours_with_their_codes(tmp_path):
    vectors = unit_vectors(500, 16)
    ids = [f"US{i}" for i in range(500)]
    codes = [[CODES[i % 6]] + ([CODES[(i + 2) % 6]] if i % 4 == 0 else []) for i in range(500)]
    write_index(index_batches(ids, codes, vectors), tmp_path / "index", kind="flat", progress=False)
    index = EvidenceIndex.load(tmp_path / "index")
    queries = unit_vectors(7, 16, seed=1)
    neighbours = index.search(queries, k=5)
    expected = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(neighbours.positions, expected)
    np.testing.assert_allclose(
        neighbours.similarities, np.take_along_axis(queries @ vectors.T, expected, 1), atol=1e-5
    )

    evidence = index.evidence(neighbours)
    for query, rows in enumerate(evidence):
        assert [row["id"] for row in rows] == [ids[position] for position in expected[query]]
        assert [row["codes"] for row in rows] == [codes[position] for position in expected[query]]
        assert [row["similarity"] for row in rows] == pytest.approx(neighbours.similarities[query], abs=1e-6)
    carried = supporting_neighbours(evidence[0], ["A01B", "H04W"])
    assert carried == {code: [row["id"] for row in evidence[0] if code in row["codes"]] for code in ("A01B", "H04W")}

    labels = index.label_matrix(neighbours, CODES)
    for query, rank in np.ndindex(*expected.shape):
        assert [CODES[c] for c in np.flatnonzero(labels[query, rank])] == sorted(
            codes[expected[query, rank]], key=CODES.index
        )


def test_a_patent_and_its_near_duplicates_never_count_as_their_own_evidence(tmp_path):
    words = [f"word{i}" for i in range(40)]
    text = " ".join(words)
    near_copy = " ".join(words[:10] + ["reworded"] * 20 + words[-10:])  # same first and last 10 words
    others = [f"other patent {i} about a valve" for i in range(200)]
    texts = [text, text.upper(), near_copy, *others]
    ids = ["P", "P-COPY", "P-NEAR", *[f"O{i}" for i in range(200)]]
    base = unit_vectors(1, 32, seed=5)[0]
    noise = unit_vectors(203, 32, seed=6)
    vectors = np.vstack([base, base + 0.01 * noise[1], base + 0.02 * noise[2], noise[3:]]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = [["H01L"]] * len(ids)
    write_index(index_batches(ids, codes, vectors, texts), tmp_path / "index", kind="flat", progress=False)
    index = EvidenceIndex.load(tmp_path / "index")

    plain = index.search(base[None], k=5)
    assert [ids[p] for p in plain.positions[0, :3]] == ["P", "P-COPY", "P-NEAR"]  # the copies are the nearest
    excluded = index.search(base[None], k=5, exclude_ids=["P"], exclude_texts=[text])
    found = [ids[p] for p in excluded.positions[0]]
    assert len(found) == 5 and not {"P", "P-COPY", "P-NEAR"} & set(found)
    expected = [ids[p] for p in index.search(base[None], k=8).positions[0] if ids[p] not in ("P", "P-COPY", "P-NEAR")]
    assert found == expected[:5]
    # The id alone leaves out only the row with that id.
    assert [ids[p] for p in index.search(base[None], k=3, exclude_ids=["P"]).positions[0]] == [
        "P-COPY",
        "P-NEAR",
        ids[plain.positions[0, 3]],
    ]


def test_search_reaches_further_when_exclusions_eat_the_margin(tmp_path):
    vectors = unit_vectors(1, 8)
    same = np.repeat(vectors, 30, axis=0) + 1e-3 * unit_vectors(30, 8, seed=2)
    rest = unit_vectors(20, 8, seed=3)
    ids = ["P"] * 30 + [f"O{i}" for i in range(20)]  # thirty rows of the query's own id come first
    write_index(index_batches(ids, [["A01B"]] * 50, np.vstack([same, rest])), tmp_path / "i", "flat", progress=False)
    index = EvidenceIndex.load(tmp_path / "i")
    neighbours = index.search(vectors, k=4, exclude_ids=["P"])
    assert all(index.dataset[int(p)]["id"] != "P" for p in neighbours.positions[0])
    assert (neighbours.positions >= 0).all()


def test_each_index_kind_finds_an_indexed_vector_itself(tmp_path):
    vectors = unit_vectors(12_000, 64)
    ids = [f"P{i}" for i in range(12_000)]
    for kind in ("ivf", "hnsw", "ivfpq"):
        info = write_index(index_batches(ids, [["A01B"]] * 12_000, vectors), tmp_path / kind, kind, progress=False)
        assert info["kind"] == kind and info["rows"] == 12_000
        neighbours = EvidenceIndex.load(tmp_path / kind).search(vectors[:20], k=3)
        # ivfpq's scores are approximate (8 dimensions in a byte): the vector itself is among its first three.
        assert (neighbours.positions == np.arange(20)[:, None]).any(axis=1).mean() >= 0.9, kind


def test_a_corpus_too_small_for_ivfpq_is_refused_in_one_line(tmp_path):
    vectors = unit_vectors(100, 16)
    with pytest.raises(ValueError, match="ivfpq index trains its codebooks on at least"):
        write_index(index_batches([str(i) for i in range(100)], [["A01B"]] * 100, vectors), tmp_path / "i", "ivfpq")


def test_index_without_data_or_a_recorded_training_split_is_refused_in_one_line(checkpoint, tmp_path, capsys):
    line = refusal_line(["index", "--model", str(checkpoint), "--out", str(tmp_path / "index")], capsys)
    assert "records no training split: give the labelled corpus with --data" in line


def test_knn_vote_and_fused_scores_equal_the_formula():
    rng = np.random.default_rng(0)
    similarities = np.sort(rng.uniform(-0.2, 1.0, (6, 8)).astype(np.float32), axis=1)[:, ::-1]
    labels = rng.random((6, 8, 5)) < 0.4
    probabilities = rng.random((6, 5)).astype(np.float32)
    votes = knn_vote(similarities, labels, neighbours=5, power=3.0)
    for n in range(6):
        weights = [max(float(s), 0.0) ** 3.0 for s in similarities[n, :5]]
        for code in range(5):
            expected = sum(w for w, carries in zip(weights, labels[n, :5, code]) if carries) / sum(weights)
            assert votes[n, code] == pytest.approx(expected, rel=1e-5)
    fused = fused_scores(probabilities, votes, 0.7)
    np.testing.assert_allclose(fused, 0.7 * probabilities + 0.3 * votes, rtol=1e-6)
    assert not knn_vote(np.full((1, 3), -0.5), np.ones((1, 3, 2), bool)).any()  # no positive similarity: no vote
    scoring = KnnScoring(neighbours=5, power=3.0, weight=0.7)
    np.testing.assert_allclose(scoring.scores(probabilities, similarities, labels), fused)


def test_tuned_knn_scoring_is_the_best_of_its_grid_and_saves_and_loads(tmp_path):
    rng = np.random.default_rng(1)
    count, labels_count, neighbours = 300, 6, 10
    truth = np.eye(labels_count, dtype=bool)[rng.integers(0, labels_count, count)]
    # A weak classifier and neighbours that mostly carry the true code: the vote must earn a weight.
    probabilities = np.clip(0.3 * truth + rng.random((count, labels_count)) * 0.8, 0, 1).astype(np.float32)
    carries = rng.random((count, neighbours)) < 0.7
    neighbour_labels = np.where(carries[..., None], truth[:, None, :], np.roll(truth, 1, axis=1)[:, None, :])
    similarities = np.sort(rng.uniform(0.2, 0.9, (count, neighbours)).astype(np.float32), axis=1)[:, ::-1]
    grids = {"neighbour_grid": (3, 10), "power_grid": (1.0, 4.0), "weight_grid": (0.0, 0.5, 1.0)}
    scoring = tune_knn_scoring(probabilities, similarities, neighbour_labels, truth, progress=False, **grids)
    scores = {
        (k, p, w): criterion_score(KnnScoring(k, p, w).scores(probabilities, similarities, neighbour_labels), truth)
        for k in grids["neighbour_grid"]
        for p in grids["power_grid"]
        for w in grids["weight_grid"]
    }
    assert scoring.validation["fused"] == max(scores.values())
    assert scores[(scoring.neighbours, scoring.power, scoring.weight)] == max(scores.values())
    assert scoring.validation["fused"] > scoring.validation["classifier"]
    assert scoring.validation["classifier"] == criterion_score(probabilities, truth)
    assert load_knn_scoring(str(tmp_path)) is None
    save_knn_scoring(str(tmp_path), scoring)
    assert load_knn_scoring(str(tmp_path)) == scoring
    (tmp_path / "knn_scores.json").write_text('{"neighbours": 0}')
    with pytest.raises(ValueError, match="is not a kNN scoring file"):
        load_knn_scoring(str(tmp_path))


def test_killed_index_resumes_into_the_same_index(classifier, checkpoint, tmp_path):
    source = write_jsonl(tmp_path / "corpus.jsonl", labelled_records(3000, seed=4))
    reference = tmp_path / "reference"
    build_index(classifier, source, reference, kind="flat", chunk_size=200, progress=False)
    out = tmp_path / "out" / "index"
    state_file = f"{vectors_path(out)}.partial-0-of-1.state.json"
    command = [sys.executable, "-m", "modernpatent_hf.cli", "index", "--model", str(checkpoint)]
    command += ["--data", str(source), "--out", str(out), "--kind", "flat", "--chunk-size", "200"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=SINGLE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while process.poll() is None and time.time() < deadline:
        if os.path.exists(state_file) and json.loads(open(state_file).read())["rows"] >= 1:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads(open(state_file).read())
    assert 1 <= state["rows"] < 3000 and not out.exists(), "the kill came too late"

    resumed = subprocess.run(command, cwd=REPO_ROOT, env=SINGLE_THREAD, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"after {state['rows']:,} committed rows" in resumed.stderr
    assert json.loads(resumed.stdout)["resumed_after_rows"] == state["rows"]
    assert sorted(os.listdir(out.parent)) == ["index"]  # no vectors or part files left beside it
    again, first = EvidenceIndex.load(out), EvidenceIndex.load(reference)
    assert again.dataset.data.table.equals(first.dataset.data.table)
    assert (out / FAISS_FILE).read_bytes() == (reference / FAISS_FILE).read_bytes()
