"""Metrics: sklearn agreement, hand-computed @k values, streaming/merging, the evaluate module, bad inputs."""

import json
import os
import shutil
import subprocess
import sys

import evaluate
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

import modernpatent_hf.metrics as metrics
from modernpatent_hf import (
    F1_AT_K_METRIC,
    CpcCodeError,
    MultilabelMetricsAccumulator,
    compute_multilabel_metrics,
    top_k_indices,
)
from modernpatent_hf.cpc import normalize_subclass
from modernpatent_hf.metrics_hub.f1_at_k import multilabel_metrics

from testing_utils import assert_same_metrics

KS = [1, 2, 5]

# Hand example (L = 4). Row 0 ties labels 0 and 2 at 0.5 behind label 1; row 1 ties all four labels:
# with lower-index-wins, row 0's top-2 is {1, 0} (2 hits) and row 1's top-1 is label 0 (a miss),
# top-2 {0, 1} (1 hit). k = 5 exceeds L, so the top-5 holds all four labels.
HAND_PREDICTIONS = [[0.5, 0.9, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2], [0.1, 0.3, 0.7, 0.6]]
HAND_REFERENCES = [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]]
# hits@1 = 1 + 0 + 1, hits@2 = 2 + 1 + 1, hits@5 = 5; |Y| = 2, 1, 2 (5 true labels).
HAND_EXPECTED = {
    "precision@1": 2 / 3,
    "recall@1": (1 / 2 + 0 + 1 / 2) / 3,
    "f1@1": 4 / 9,
    "recall@1_micro": 2 / 5,
    "f1@1_micro": 1 / 2,
    "precision@2": 4 / 6,
    "recall@2": (1 + 1 + 1 / 2) / 3,
    "f1@2": 20 / 27,
    "recall@2_micro": 4 / 5,
    "f1@2_micro": 8 / 11,
    "precision@5": 5 / 15,
    "recall@5": 1.0,
    "f1@5": 1 / 2,
    "recall@5_micro": 1.0,
    "f1@5_micro": 1 / 2,
}


def random_batch(num_patents, num_labels, seed, levels=None):
    """Float32 probabilities (quantized to ``levels`` values to force ties) and sparse multi-hot references
    with some all-zero rows and some label columns that are never true."""
    rng = np.random.default_rng(seed)
    probabilities = rng.random((num_patents, num_labels), dtype=np.float32)
    if levels:
        probabilities = np.round(probabilities * (levels - 1)) / (levels - 1)
    references = (rng.random((num_patents, num_labels)) < 0.15).astype(np.int64)
    references[:, -2:] = 0
    references[rng.random(num_patents) < 0.1] = 0
    return probabilities, references


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_threshold_metrics_equal_sklearn(threshold):
    probabilities, references = random_batch(300, 12, seed=1)
    predicted = (probabilities >= threshold).astype(int)
    results = compute_multilabel_metrics(probabilities, references, threshold=threshold)
    for average in ("micro", "macro"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predicted, average=average, zero_division=0
        )
        assert results[f"{average}_precision"] == pytest.approx(precision)
        assert results[f"{average}_recall"] == pytest.approx(recall)
        assert results[f"{average}_f1"] == pytest.approx(f1)
    assert results["exact_match"] == pytest.approx(accuracy_score(references, predicted))

    accumulator = MultilabelMetricsAccumulator(12, threshold=threshold)
    accumulator.update(probabilities, references)
    per_label = accumulator.per_label()
    precision, recall, f1, support = precision_recall_fscore_support(
        references, predicted, average=None, zero_division=0
    )
    np.testing.assert_allclose(per_label["precision"], precision)
    np.testing.assert_allclose(per_label["recall"], recall)
    np.testing.assert_allclose(per_label["f1"], f1)
    np.testing.assert_array_equal(per_label["support"], support)


def test_exact_match_counts_empty_rows_like_sklearn():
    # Row 1 has no true label and no prediction: a match, as in sklearn's accuracy_score.
    results = compute_multilabel_metrics([[0.9, 0.1], [0.2, 0.4], [0.7, 0.8]], [[1, 0], [0, 0], [1, 0]], k=[1])
    assert results["exact_match"] == pytest.approx(2 / 3)


def test_at_k_hand_example_with_ties_and_k_above_label_count():
    results = compute_multilabel_metrics(HAND_PREDICTIONS, HAND_REFERENCES, k=KS)
    for key, value in HAND_EXPECTED.items():
        assert results[key] == pytest.approx(value), key
    assert results["num_patents"] == 3
    assert results["num_patents_without_labels"] == 0


def test_patents_without_labels_are_left_out_of_recall_only():
    # A fourth patent whose codes all lie outside the label space: an all-zero reference row.
    results = compute_multilabel_metrics(
        HAND_PREDICTIONS + [[0.3, 0.1, 0.2, 0.4]], HAND_REFERENCES + [[0, 0, 0, 0]], k=KS
    )
    assert results["num_patents"] == 4
    assert results["num_patents_without_labels"] == 1
    assert results["precision@1"] == pytest.approx(2 / 4)
    assert results["precision@2"] == pytest.approx(4 / 8)
    assert results["precision@5"] == pytest.approx(5 / 20)
    for k in KS:
        assert results[f"recall@{k}"] == pytest.approx(HAND_EXPECTED[f"recall@{k}"])
        assert results[f"recall@{k}_micro"] == pytest.approx(HAND_EXPECTED[f"recall@{k}_micro"])
    p, r = 2 / 4, HAND_EXPECTED["recall@1"]
    assert results["f1@1"] == pytest.approx(2 * p * r / (p + r))


def test_top_k_indices_is_a_stable_descending_sort():
    probabilities, _ = random_batch(500, 40, seed=2, levels=6)  # six distinct values: ties everywhere
    for k in (1, 3, 40, 50):
        expected = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_k_indices(probabilities, k), expected)


def test_class_and_section_precision_hand_example():
    label_names = ["A01B", "A01C", "A21D", "H04L", "H04W"]
    predictions = np.full((5, 5), 0.1)
    for row, top1 in enumerate([1, 2, 4, 0, 3]):
        predictions[row, top1] = 0.9
    references = [
        [1, 0, 0, 0, 0],  # top-1 A01C: same class A01 as A01B
        [1, 0, 0, 0, 0],  # top-1 A21D: same section A only
        [1, 0, 0, 1, 0],  # top-1 H04W: same class H04 as H04L
        [0, 0, 0, 1, 0],  # top-1 A01B: another section
        [0, 0, 0, 0, 0],  # no labels: a miss at every level
    ]
    results = compute_multilabel_metrics(predictions, references, k=[1], label_names=label_names)
    assert results["precision@1"] == 0.0
    assert results["precision@1_class"] == pytest.approx(2 / 5)
    assert results["precision@1_section"] == pytest.approx(3 / 5)
    without_names = compute_multilabel_metrics(predictions, references, k=[1])
    assert "precision@1_class" not in without_names and "precision@1_section" not in without_names


def random_label_names(num_labels, seed):
    rng = np.random.default_rng(seed)
    codes = set()
    while len(codes) < num_labels:
        codes.add(f"{rng.choice(list('ABH'))}{rng.integers(1, 4):02d}{rng.choice(list('BCD'))}")
    return sorted(codes)


def test_streaming_in_batches_equals_one_shot(monkeypatch):
    probabilities, references = random_batch(1000, 20, seed=3, levels=50)
    label_names = random_label_names(20, seed=3)
    one_shot = compute_multilabel_metrics(probabilities, references, k=KS, label_names=label_names)
    accumulator = MultilabelMetricsAccumulator(20, k=KS, label_names=label_names)
    bounds = [0, 1, 8, 8, 300, 701, 1000]  # includes an empty batch and a batch of one
    for start, stop in zip(bounds, bounds[1:]):
        accumulator.update(probabilities[start:stop], references[start:stop])
    assert_same_metrics(accumulator.compute(), one_shot)
    # The one-shot function itself streams chunks: a chunk size that splits the rows gives the same.
    monkeypatch.setattr(multilabel_metrics, "ONE_SHOT_CHUNK_ROWS", 64)
    assert_same_metrics(compute_multilabel_metrics(probabilities, references, k=KS, label_names=label_names), one_shot)


def test_merged_accumulators_equal_one_shot():
    probabilities, references = random_batch(400, 15, seed=4)
    label_names = random_label_names(15, seed=4)
    one_shot = compute_multilabel_metrics(probabilities, references, k=KS, label_names=label_names)
    first, second = (MultilabelMetricsAccumulator(15, k=KS, label_names=label_names) for _ in range(2))
    first.update(probabilities[:150], references[:150])
    second.update(probabilities[150:], references[150:])
    assert_same_metrics(first.merge(second).compute(), one_shot)

    # The state is additive, so summing it array by array (an all-reduce) is a merge too.
    summed = MultilabelMetricsAccumulator(15, k=KS, label_names=label_names)
    part = MultilabelMetricsAccumulator(15, k=KS, label_names=label_names)
    part.update(probabilities, references)
    for key, array in summed.state.items():
        array += part.state[key]
    assert_same_metrics(summed.compute(), one_shot)

    with pytest.raises(ValueError, match="different settings"):
        first.merge(MultilabelMetricsAccumulator(15, k=[1]))


def test_evaluate_module_loads_offline_and_gives_the_same_dict(tmp_path):
    probabilities, references = random_batch(60, 10, seed=5, levels=20)
    label_names = random_label_names(10, seed=5)
    expected = compute_multilabel_metrics(probabilities, references, k=[1, 3], label_names=label_names)
    module = evaluate.load(F1_AT_K_METRIC, cache_dir=str(tmp_path))
    results = module.compute(
        predictions=probabilities.tolist(), references=references.tolist(), k=[1, 3], label_names=label_names
    )
    assert_same_metrics(results, expected)
    # Batch by batch through evaluate's own add_batch, with the defaults k=[1, 5] and no label names.
    module.add_batch(predictions=probabilities[:25].tolist(), references=references[:25].tolist())
    module.add_batch(predictions=probabilities[25:].tolist(), references=references[25:].tolist())
    assert_same_metrics(module.compute(), compute_multilabel_metrics(probabilities, references))


@pytest.mark.parametrize(
    "predictions, references, kwargs, message",
    [
        ([[0.1, 0.9]], [[0, 1, 0]], {}, "same shape"),
        ([0.1, 0.9], [0, 1], {}, "2-D"),
        ([[0.1, 0.9]], [[0, 2]], {}, "multi-hot"),
        ([[0.1, float("nan")]], [[0, 1]], {}, "NaN"),
        ([[-2.3, 4.1]], [[0, 1]], {}, "sigmoid"),
        ([[0.1, 0.9]], [[0, 1]], {"k": [0]}, "k must be"),
        ([[0.1, 0.9]], [[0, 1]], {"k": [1, -5]}, "k must be"),
        ([[0.1, 0.9]], [[0, 1]], {"label_names": ["A01B"]}, "label_names has 1"),
        (np.zeros((0, 2)), np.zeros((0, 2)), {}, "no patents"),
    ],
)
def test_bad_inputs_raise_one_line_errors(predictions, references, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        compute_multilabel_metrics(predictions, references, **kwargs)
    assert "\n" not in str(error.value)


def test_label_names_must_be_cpc_codes():
    # The metric module cannot import the package, so a bad name is a plain one-line ValueError, not a CpcCodeError.
    with pytest.raises(ValueError, match="invalid CPC code 'not-a-code' in label_names") as error:
        MultilabelMetricsAccumulator(2, label_names=["A01B", "not-a-code"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="invalid CPC code 42 in label_names \\(a number, not a string\\)"):
        compute_multilabel_metrics([[0.1, 0.9]], [[0, 1]], label_names=["A01B", 42])


LABEL_NAME_SPELLINGS = [
    "A01B",
    "a01b",
    " H01L ",
    "h01l\t",
    "A01B 1/00",
    "A01B1/00",
    "A01B 1/00 (2006.01)",
    "A01B 1/00(2006-01-01)",
    "H01L 21 / 02",
    "A 01 B",
    "Y10S 901/02",
    "G06F 16/35 20130101",
    "A01B 12345",
    "",
    "A01",
    "A01BC",
    "I01B",
    "USPC 123/456",
    "A\u0660\u0661B",
    "H01L 21/",
    "A01B (2006.01",
    "A01B,C11D",
    7,
    None,
]


@pytest.mark.parametrize("value", LABEL_NAME_SPELLINGS)
def test_metric_module_reads_label_names_like_the_cpc_parser(value):
    """The metric module's own small CPC reader accepts exactly the spellings of cpc.normalize_subclass."""
    try:
        expected = normalize_subclass(value)
    except CpcCodeError:
        with pytest.raises(ValueError, match="invalid CPC code"):
            multilabel_metrics.subclass_code(value)
    else:
        assert multilabel_metrics.subclass_code(value) == expected


def test_the_package_metrics_are_the_metric_modules_one_implementation(monkeypatch):
    assert metrics.MultilabelMetricsAccumulator is multilabel_metrics.MultilabelMetricsAccumulator
    assert metrics.top_k_indices is multilabel_metrics.top_k_indices
    assert MultilabelMetricsAccumulator is multilabel_metrics.MultilabelMetricsAccumulator
    # compute_multilabel_metrics only adds a tqdm bar: it hands every argument to the module's function.
    calls = []

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return {"from": "metric module"}

    monkeypatch.setattr(multilabel_metrics, "compute_multilabel_metrics", recording)
    assert compute_multilabel_metrics([[0.2]], [[1]], k=[1], label_names=["A01B"], threshold=0.3) == {
        "from": "metric module"
    }
    ((args, kwargs),) = calls
    assert args == ([[0.2]], [[1]])
    assert kwargs["k"] == [1] and kwargs["label_names"] == ["A01B"] and kwargs["threshold"] == 0.3
    progress = kwargs["progress"]
    assert list(progress(range(0, 3))) == [0, 1, 2]


def test_progress_callback_sees_the_chunks_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(multilabel_metrics, "ONE_SHOT_CHUNK_ROWS", 16)
    probabilities, references = random_batch(50, 6, seed=6)
    seen = []

    def progress(starts):
        seen.append(list(starts))
        return starts

    with_progress = multilabel_metrics.compute_multilabel_metrics(probabilities, references, progress=progress)
    assert seen == [[0, 16, 32, 48]]
    assert_same_metrics(with_progress, multilabel_metrics.compute_multilabel_metrics(probabilities, references))
    assert_same_metrics(with_progress, compute_multilabel_metrics(probabilities, references))


# Run after the script_without_package preamble in a clean interpreter: loads a copy of the metric folder with
# evaluate and writes what it computes on the small example below.
LOAD_COPY_BODY = """
    import os
    import evaluate

    folder, result_path = sys.argv[1], sys.argv[2]
    try:
        import modernpatent_hf  # noqa: F401
        package_importable = True
    except ImportError:
        package_importable = False
    f1_at_k = evaluate.load(folder, cache_dir=os.environ["EVALUATE_CACHE_DIR"])
    results = f1_at_k.compute(
        predictions=[[0.9, 0.6, 0.1], [0.2, 0.3, 0.8], [0.1, 0.7, 0.2]],
        references=[[1, 0, 1], [0, 0, 1], [1, 0, 0]],
        k=[1, 2],
        label_names=["a01b", "A01C 1/00", " H04L 12/28 (2006.01) "],
    )
    with open(result_path, "w") as handle:
        json.dump({
            "package_importable": package_importable,
            "loaded_package_modules": sorted(name for name in sys.modules if name.startswith("modernpatent_hf")),
            "metric_module": type(f1_at_k).__module__,
            "results": results,
        }, handle)
"""

# By hand, threshold 0.5. Top-1: row 0 label 0 (hit), row 1 label 2 (hit), row 2 label 1 (miss, but A01C shares class
# A01 and section A with the true A01B); top-2: {0, 1} 1 hit, {2, 1} 1 hit, {1, 2} 0 hits; |Y| = 2, 1, 1 (4 labels).
# Predicted sets {0, 1}, {2}, {1}: label 0 TP 1 FN 1, label 1 FP 2, label 2 TP 1 FN 1; one exact match (row 1).
COPY_EXPECTED = {
    "precision@1": 2 / 3,
    "recall@1": (1 / 2 + 1 + 0) / 3,
    "f1@1": 4 / 7,
    "recall@1_micro": 2 / 4,
    "f1@1_micro": 4 / 7,
    "precision@2": 2 / 6,
    "recall@2": (1 / 2 + 1 + 0) / 3,
    "f1@2": 2 / 5,
    "recall@2_micro": 2 / 4,
    "f1@2_micro": 2 / 5,
    "micro_f1": 1 / 2,
    "macro_f1": (2 / 3 + 0 + 2 / 3) / 3,
    "micro_precision": 2 / 4,
    "macro_precision": (1 + 0 + 1) / 3,
    "micro_recall": 2 / 4,
    "macro_recall": (1 / 2 + 0 + 1 / 2) / 3,
    "exact_match": 1 / 3,
    "precision@1_class": 1.0,
    "precision@1_section": 1.0,
    "num_patents": 3,
    "num_patents_without_labels": 0,
}


def load_metric_copy_without_package(folder, tmp_path, script_without_package):
    """Run LOAD_COPY_BODY on ``folder`` in ``python -I`` that refuses modernpatent_hf; the completed process and result."""
    script = tmp_path / "load_copy.py"
    script.write_text(script_without_package(LOAD_COPY_BODY))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        EVALUATE_CACHE_DIR=str(tmp_path / "evaluate-cache"),
    )
    completed = subprocess.run(
        [sys.executable, "-I", str(script), str(folder), str(tmp_path / "result.json")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads((tmp_path / "result.json").read_text()) if completed.returncode == 0 else None
    return completed, result


def test_a_copy_of_the_metric_folder_loads_and_computes_without_the_package(tmp_path, script_without_package):
    copy = tmp_path / "f1_at_k"
    shutil.copytree(F1_AT_K_METRIC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    completed, result = load_metric_copy_without_package(copy, tmp_path, script_without_package)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert result["package_importable"] is False
    assert result["loaded_package_modules"] == []
    assert result["metric_module"].startswith("evaluate_modules.")
    assert result["results"].keys() == COPY_EXPECTED.keys()
    for key, value in COPY_EXPECTED.items():
        assert result["results"][key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
