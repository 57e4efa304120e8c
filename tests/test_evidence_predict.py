"""Predictions with evidence (PatentClassifier.predict(evidence=K), predict --index --evidence), fused scores, and
the kNN tuning and comparison at the end of training (knn_evidence, modernpatent tune-knn)."""

import json

import numpy as np
import pytest
from transformers import ModernBertConfig

from modernpatent_hf.data.leakage import duplicate_keys
from modernpatent_hf.evidence import LabelledTexts, SplitScores, TunedEvidence, attach_index, compare_scorers
from modernpatent_hf.evidence_index import EvidenceIndex, index_batches, write_index
from modernpatent_hf.knn_scores import KNN_SCORES_FILE, KnnScoring, load_knn_scoring
from modernpatent_hf.metrics import compute_multilabel_metrics
from modernpatent_hf.predictor import PatentClassifier

from testing_utils import REPO_ROOT, save_tiny_checkpoint, short_records, tiny_finetune_args, write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")  # torch on one thread: embeddings compare exactly


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("evidence-predict") / "modernbert", ModernBertConfig)


@pytest.fixture(scope="module")
def corpus(checkpoint):
    """Labelled rows over the checkpoint's own codes; row 1 is a copy of row 0's text under another id."""
    codes = PatentClassifier.from_pretrained(checkpoint).label_space.codes
    rows = short_records(40, seed=5)
    for index, row in enumerate(rows):
        row["cpc"] = [codes[index % len(codes)]] + ([codes[(index + 3) % len(codes)]] if index % 4 == 0 else [])
    rows[1]["title"], rows[1]["abstract"] = rows[0]["title"], rows[0]["abstract"]
    return rows


def texts_of(rows):
    return [f"{row['title']}\n{row['abstract']}" for row in rows]


@pytest.fixture(scope="module")
def index(checkpoint, corpus, tmp_path_factory):
    classifier = PatentClassifier.from_pretrained(checkpoint)
    texts = texts_of(corpus)
    out = tmp_path_factory.mktemp("index") / "index"
    ids, codes = [row["id"] for row in corpus], [row["cpc"] for row in corpus]
    write_index(index_batches(ids, codes, classifier.embed(texts), texts), out, kind="flat", progress=False)
    return EvidenceIndex.load(out)


def test_evidence_rows_name_the_nearest_labelled_patents_and_never_the_patent_or_its_copy(checkpoint, corpus, index):
    classifier = attach_index(PatentClassifier.from_pretrained(checkpoint), index)
    texts, ids = texts_of(corpus), [row["id"] for row in corpus]
    rows = classifier.predict(texts[:6], top_k=3, evidence=4, ids=ids[:6])
    vectors = classifier.embed(texts)
    near = duplicate_keys(texts)[1]
    codes_of = {row["id"]: row["cpc"] for row in corpus}
    for query, row in enumerate(rows):
        neighbour_ids = [neighbour["id"] for neighbour in row["neighbours"]]
        assert len(neighbour_ids) == 4 and ids[query] not in neighbour_ids
        # Exactly the 4 most similar rows whose text is not a near duplicate of the query's.
        allowed = [other for other in range(len(texts)) if other != query and near[other] != near[query]]
        similarity = vectors[allowed] @ vectors[query]
        expected = [ids[allowed[position]] for position in np.argsort(-similarity, kind="stable")[:4]]
        assert neighbour_ids == expected
        for neighbour in row["neighbours"]:
            assert neighbour["codes"] == codes_of[neighbour["id"]]
        for prediction in row["predictions"]:
            carrying = [n["id"] for n in row["neighbours"] if prediction["code"] in n["codes"]]
            assert prediction["evidence"] == carrying
    # Row 1 copies row 0's text: neither is the other's evidence.
    assert ids[1] not in [n["id"] for n in rows[0]["neighbours"]]
    assert ids[0] not in [n["id"] for n in rows[1]["neighbours"]]
    # Without evidence, predict is the plain classifier's, as before.
    assert classifier.predict(texts[:2], top_k=3) == PatentClassifier.from_pretrained(checkpoint).predict(
        texts[:2], top_k=3
    )


def test_fused_scores_equal_the_formula(checkpoint, corpus, index):
    classifier = PatentClassifier.from_pretrained(checkpoint)
    classifier.knn_scoring = KnnScoring(neighbours=5, power=2.0, weight=0.7, threshold=0.2)
    attach_index(classifier, index, fuse=True)
    texts, ids = texts_of(corpus)[:5], [row["id"] for row in corpus][:5]
    rows = classifier.predict(texts, top_k=4, evidence=5, ids=ids)
    probabilities = 1 / (1 + np.exp(-classifier.logits(texts).astype(np.float64)))
    codes = list(classifier.label_space.codes)
    for query, row in enumerate(rows):
        weights = np.array([max(n["similarity"], 0.0) ** 2 for n in row["neighbours"]])
        for prediction in row["predictions"]:
            carries = np.array([prediction["code"] in n["codes"] for n in row["neighbours"]])
            vote = float((weights * carries).sum() / weights.sum())
            probability = probabilities[query, codes.index(prediction["code"])]
            assert prediction["knn_vote"] == pytest.approx(vote, abs=1e-5)
            assert prediction["classifier_score"] == pytest.approx(probability, abs=1e-5)
            assert prediction["score"] == pytest.approx(0.7 * probability + 0.3 * vote, abs=1e-5)
        scores = [prediction["score"] for prediction in row["predictions"]]
        assert scores == sorted(scores, reverse=True)
    auto = classifier.predict(texts, top_k=4, threshold="auto", evidence=5, ids=ids)
    for row in auto:
        assert all(p["score"] >= 0.2 for p in row["predictions"][1:])


def test_fuse_without_tuned_settings_and_evidence_without_an_index_are_one_line_errors(checkpoint, index):
    classifier = PatentClassifier.from_pretrained(checkpoint)
    with pytest.raises(ValueError, match="evidence needs an index"):
        classifier.predict(["a seed drill"], evidence=3)
    with pytest.raises(ValueError, match="knn_scores.json"):
        attach_index(classifier, index, fuse=True)


def test_predict_command_writes_evidence_rows(checkpoint, corpus, index, tmp_path, run_cli):
    write_jsonl(tmp_path / "in.jsonl", corpus[:8])
    run_cli(
        "predict", "--model", checkpoint, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl",
        "--index", index.path, "--evidence", "3", "--top-k", "2",
    )  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [row["id"] for row in corpus[:8]]
    for row in rows:
        assert len(row["neighbours"]) == 3 and row["id"] not in [n["id"] for n in row["neighbours"]]
        assert all("evidence" in prediction for prediction in row["predictions"])
    refused = run_cli(
        "predict", "--model", checkpoint, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "other.jsonl",
        "--evidence", "3", check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "--index and --evidence go together" in refused.stderr


def test_the_comparison_matches_the_metrics_and_its_intervals_hold_the_difference():
    rng = np.random.default_rng(0)
    references = rng.random((300, 12)) < 0.15
    references[np.arange(300), rng.integers(0, 12, 300)] = True
    probabilities = np.clip(references * 0.3 + rng.random((300, 12)) * 0.7, 0, 1).astype(np.float32)
    similarities = np.sort(rng.random((300, 10)).astype(np.float32), axis=1)[:, ::-1]
    neighbour_labels = rng.random((300, 10, 12)) < 0.2
    neighbour_labels |= references[:, None, :] & (rng.random((300, 10, 1)) < 0.5)
    scores = SplitScores(probabilities, similarities, neighbour_labels, references)
    tuned = TunedEvidence(
        KnnScoring(neighbours=10, power=1.0, weight=0.5), {"classifier": 0.5, "knn": 0.5, "fused": 0.5}
    )
    comparison = compare_scorers(scores, tuned, samples=200)
    expected = compute_multilabel_metrics(probabilities, references, k=(1,), threshold=0.5)
    for metric in ("precision@1", "f1@1", "macro_f1"):  # the figures the metrics give, on the same definitions
        assert comparison["classifier"][metric] == pytest.approx(100 * expected[metric]), metric
    for scorer in ("knn", "fused"):
        for metric in ("precision@1", "f1@1", "macro_f1"):
            low, high = comparison[scorer][f"{metric}_interval"]
            difference = comparison[scorer][f"{metric}_difference"]
            assert low <= difference <= high and low < high


def test_labelled_texts_from_records_keep_the_row_order():
    rows = [{"id": 7, "text": "a", "labels": ["A01B"]}, {"id": "x", "text": "b", "labels": ["H01L", "A01B"]}]
    texts = LabelledTexts.from_records(rows)
    assert texts.ids == ["7", "x"] and texts.texts == ["a", "b"]
    assert texts.references(["A01B", "H01L"]).tolist() == [[True, False], [True, True]]


@pytest.mark.slow
def test_the_recipe_tunes_saves_and_compares_the_knn_scores_and_tune_knn_repeats_it(tmp_path, run_cli):
    import subprocess
    import sys

    output_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "recipes" / "finetune.py"), *tiny_finetune_args(output_dir),
         "--knn_evidence", "true"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    scoring = load_knn_scoring(str(output_dir))
    assert scoring is not None and scoring.threshold is not None
    assert set(scoring.validation) >= {"classifier", "knn", "fused"}
    metrics = json.loads((output_dir / "all_results.json").read_text())
    assert {"test_fused_f1@1", "test_knn_precision@1", "test_fused_macro_f1"} <= set(metrics)
    assert "| fused |" in result.stdout
    # The same step for a finished run: the same settings (the same model, splits and grid).
    again = run_cli("tune-knn", "--model", output_dir, "--device", "cpu")
    assert "| fused |" in again.stdout
    refused = run_cli("tune-knn", "--model", output_dir, "--save", check=False)
    assert refused.returncode == 2 and KNN_SCORES_FILE in refused.stderr
    summary = json.loads(again.stdout[again.stdout.index("{") :])
    assert summary["scoring"]["neighbours"] == scoring.neighbours and summary["scoring"]["weight"] == scoring.weight
