"""Decision thresholds: tuned on validation, saved with the checkpoint, read back by `predict --threshold auto`."""

import json

import numpy as np
import pytest

from modernpatent_hf.thresholds import (
    THRESHOLDS_FILE,
    load_thresholds,
    save_thresholds,
    threshold_scores,
    tune_thresholds,
)


def scored_patents(rng, n=400):
    """Label 0: positives score about 0.3, negatives about 0.05 (a cut near 0.15-0.25 is best, 0.5 finds none).
    Label 1: positives about 0.8, negatives about 0.4. Label 2: only 3 positives."""
    references = np.zeros((n, 3), dtype=np.float32)
    references[: n // 4, 0] = 1
    references[n // 8 : n // 2, 1] = 1
    references[[5, 50, 300], 2] = 1
    probabilities = np.where(references[:, :2] > 0, [0.3, 0.8], [0.05, 0.4]) + rng.normal(0, 0.02, (n, 2))
    probabilities = np.column_stack([probabilities, np.where(references[:, 2] > 0, 0.9, 0.1)])
    return np.clip(probabilities, 0, 1), references


def test_tuned_thresholds_beat_one_half_and_rare_labels_keep_the_global_one():
    probabilities, references = scored_patents(np.random.default_rng(0))
    tuned = tune_thresholds(probabilities, references, min_positives=10)
    assert tuned["tuned_labels"] == 2
    assert 0.075 <= tuned["per_label"][0] <= 0.275 and 0.425 <= tuned["per_label"][1] <= 0.775
    assert tuned["per_label"][2] == tuned["global"]
    at_half = threshold_scores(probabilities, references, 0.5)
    at_tuned = threshold_scores(probabilities, references, tuned["per_label"])
    assert at_half["macro_f1"] < 0.7 and at_tuned["macro_f1"] > 0.95 and at_tuned["micro_f1"] > at_half["micro_f1"]
    # The global cut maximizes micro F1 over the candidates.
    assert threshold_scores(probabilities, references, tuned["global"])["micro_f1"] >= max(
        threshold_scores(probabilities, references, cut)["micro_f1"] for cut in (0.1, 0.3, 0.5, 0.7)
    )


def test_tuning_refuses_mismatched_shapes_and_empty_input():
    with pytest.raises(ValueError, match="same non-empty"):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="same non-empty"):
        tune_thresholds(np.zeros((0, 2)), np.zeros((0, 2)))


def test_saved_thresholds_load_by_code_in_any_order_and_bad_files_are_one_line_errors(tmp_path):
    tuned = {"global": 0.3, "per_label": np.array([0.2, 0.6, 0.3]), "tuned_labels": 2}
    save_thresholds(str(tmp_path), tuned, ["A01B", "G06F", "H01L"], validation_size=400, min_positives=10)
    saved = json.loads((tmp_path / THRESHOLDS_FILE).read_text())
    assert saved["tuned_on"] == {
        "split": "validation",
        "patents": 400,
        "min_positives": 10,
        "labels_with_own_threshold": 2,
    }
    np.testing.assert_allclose(load_thresholds(str(tmp_path), ["H01L", "A01B", "G06F", "Y02E"]), [0.3, 0.2, 0.6, 0.3])
    assert load_thresholds(str(tmp_path / "nowhere"), ["A01B"]) is None
    (tmp_path / THRESHOLDS_FILE).write_text('{"per_label": {"A01B": 7}, "global": 0.5}')
    with pytest.raises(ValueError, match="outside"):
        load_thresholds(str(tmp_path), ["A01B"])
    (tmp_path / THRESHOLDS_FILE).write_text("not json")
    with pytest.raises(ValueError, match="not a thresholds file"):
        load_thresholds(str(tmp_path), ["A01B"])
