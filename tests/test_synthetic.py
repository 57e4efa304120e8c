"""The embedded synthetic corpus: USPTO-3M-like label statistics, claim-like lengths, a learnable but
hierarchy-confusable signal, determinism, and a directory that `datasets.load_dataset` reads."""

import json
import time
from collections import Counter

import numpy as np
import pytest

from modernpatent_hf.cpc import CpcLabelSpace, class_of, section_of
from modernpatent_hf.data.records import label_statistics, load_dataset_dir
from modernpatent_hf.data.synthetic import generate_synthetic_records, write_synthetic_corpus
from modernpatent_hf.data.synthetic_world import synthetic_world


@pytest.fixture(scope="module")
def corpus():
    """50,000 records of seed 0, generated once; the rate is printed (see with `pytest -s`), never asserted."""
    synthetic_world(665)  # built once and cached; not part of the generation rate
    started = time.perf_counter()
    records = list(generate_synthetic_records(50_000, seed=0))
    seconds = time.perf_counter() - started
    print(f"\nsynthetic corpus: {len(records):,} records in {seconds:.2f} s = {len(records) / seconds:,.0f} records/s")
    return records


def test_label_statistics_follow_uspto3m(corpus):
    stats = label_statistics(record["labels"] for record in corpus)
    assert 0.40 <= stats["top30_share"] <= 0.56  # USPTO-3M: 48.4 %
    assert 1.6 <= stats["labels_per_record"] <= 2.3  # USPTO-3M: 1.918
    assert stats["sections"] == 9
    assert 100 <= stats["classes"] <= 140  # USPTO-3M: 128
    assert stats["records_without_labels"] == 0
    # A long tail: most of the 665 subclasses occur, hundreds of them rarely.
    assert stats["subclasses"] >= 550
    assert stats["subclasses_below_100"] >= 200


def test_lengths_look_like_first_claims(corpus):
    lengths = np.array([len(record["text"].split()) for record in corpus])
    assert 120 <= np.median(lengths) <= 220
    assert np.percentile(lengths, 99) >= 450  # a long tail of long claims
    assert all(record["text"].startswith("1. A") and record["text"].endswith(".") for record in corpus[:1000])


def test_extra_labels_cluster_around_the_first_label(corpus):
    pairs = [(record["labels"][0], extra) for record in corpus[:20_000] for extra in record["labels"][1:]]
    same_section = np.mean([section_of(first) == section_of(extra) for first, extra in pairs])
    same_class = np.mean([class_of(first) == class_of(extra) for first, extra in pairs])
    # Independent draws from the label law would share a section ~16 % and a class ~3 % of the time.
    assert same_section > 0.5
    assert same_class > 0.25


def test_sibling_subclasses_share_vocabulary(corpus):
    """Word profiles of subclasses in one class are closer than those of subclasses in other sections."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts_by_code = {}
    for record in corpus:
        if len(record["labels"]) == 1:
            texts_by_code.setdefault(record["labels"][0], []).append(record["text"])
    codes = [code for code, texts in texts_by_code.items() if len(texts) >= 100]
    # One TF-IDF row per subclass: words every subclass uses (claim boilerplate) weigh nothing.
    profiles = TfidfVectorizer().fit_transform(" ".join(texts_by_code[code]) for code in codes)
    similarity = (profiles @ profiles.T).toarray()
    same_class, other_section = [], []
    for i, a in enumerate(codes):
        for j, b in enumerate(codes[:i]):
            if class_of(a) == class_of(b):
                same_class.append(similarity[i, j])
            elif section_of(a) != section_of(b):
                other_section.append(similarity[i, j])
    assert len(same_class) >= 10
    assert np.mean(same_class) > np.mean(other_section) + 0.05


def test_tfidf_linear_model_learns_it_but_errs_within_sections(corpus):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier

    train, held_out = corpus[:8000], corpus[8000:10_000]
    first_labels = np.array([record["labels"][0] for record in train])
    # Subclasses seen fewer than 10 times as first label cannot be learned from 8,000 records; leaving
    # them out keeps the one-vs-rest fit to a few seconds.
    frequent = Counter(first_labels)
    learnable = np.array([frequent[code] >= 10 for code in first_labels])
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2)
    features = vectorizer.fit_transform(record["text"] for record in train)
    model = SGDClassifier(loss="hinge", alpha=1e-4, max_iter=5, tol=None, random_state=0)
    model.fit(features[learnable], first_labels[learnable])
    top1 = model.classes_[model.decision_function(vectorizer.transform(r["text"] for r in held_out)).argmax(axis=1)]

    hits = np.array([code in record["labels"] for code, record in zip(top1, held_out)])
    majority = Counter(code for record in train for code in record["labels"]).most_common(1)[0][0]
    majority_p1 = np.mean([majority in record["labels"] for record in held_out])
    wrong_in_section = np.mean(
        [
            any(section_of(code) == section_of(label) for label in record["labels"])
            for code, record, hit in zip(top1, held_out, hits)
            if not hit
        ]
    )
    print(
        f"\nTF-IDF + linear SVM P@1 {hits.mean():.3f} vs majority {majority_p1:.3f}; "
        f"wrong top-1 in a true label's section: {wrong_in_section:.3f}"
    )
    assert hits.mean() >= majority_p1 + 0.20
    assert hits.mean() < 0.9  # not trivially separable
    assert wrong_in_section > 0.5


def test_same_seed_same_records_other_seed_differs():
    first = list(generate_synthetic_records(300, seed=7))
    assert first == list(generate_synthetic_records(300, seed=7))
    # Record i does not depend on n: a small corpus is a prefix of a larger one.
    assert first[:50] == list(generate_synthetic_records(50, seed=7))
    other = list(generate_synthetic_records(300, seed=8))
    assert sum(a["text"] != b["text"] for a, b in zip(first, other)) == 300
    assert sum(a["labels"] != b["labels"] for a, b in zip(first, other)) > 200
    assert len({record["id"] for record in first}) == 300


def test_smaller_label_space_is_the_head_of_the_full_one():
    full, small = synthetic_world(665), synthetic_world(100)
    assert len(small.codes) == 100 and set(small.codes) < set(full.codes)
    records = generate_synthetic_records(3000, seed=1, num_subclasses=100)
    used = {code for record in records for code in record["labels"]}
    assert used <= set(small.codes) and len(used) > 80
    with pytest.raises(ValueError, match="num_subclasses must be between 1 and 665, got 700"):
        synthetic_world(700)


def test_write_synthetic_corpus_splits_and_label_space(tmp_path):
    out = tmp_path / "synthetic"
    summary = write_synthetic_corpus(str(out), n=3000, seed=2, validation_fraction=0.1, test_fraction=0.2)
    assert summary["rows_per_split"]["train"] == 2100
    dataset = load_dataset_dir(str(out))  # labels as their codes (load_dataset gives class-label indices)
    train_codes = {code for labels in dataset["train"]["labels"] for code in labels}
    label_space = CpcLabelSpace.load(out)
    assert set(label_space.codes) == train_codes
    ids = Counter()
    for split in ("train", "validation", "test"):
        assert len(dataset[split]) == summary["rows_per_split"][split]
        assert all(record["id"] and record["text"] and record["labels"] for record in dataset[split])
        assert all(set(labels) <= train_codes for labels in dataset[split]["labels"])
        ids.update(dataset[split]["id"])
    assert max(ids.values()) == 1
    assert (
        summary["rows_per_split"]["validation"]
        + summary["dropped"]["records_without_train_labels"]
        + summary["rows_per_split"]["test"]
        == 900
    )
    stats = json.loads((out / "stats.json").read_text())
    assert stats["train"]["records"] == 2100


def test_write_synthetic_corpus_rejects_fractions_that_leave_no_train(tmp_path):
    with pytest.raises(ValueError, match="leaves no training records"):
        write_synthetic_corpus(str(tmp_path / "x"), n=10, validation_fraction=0.5, test_fraction=0.5)


def test_cli_synth_writes_a_loadable_directory(tmp_path, run_cli):
    out = tmp_path / "cli"
    result = run_cli(
        "synth", "--n", 1500, "--seed", 4, "--validation-fraction", 0.2, "--test-fraction", 0, "--out", out
    )
    summary = json.loads(result.stdout)
    assert summary["rows_per_split"]["train"] == 1200 and summary["rows_per_split"]["test"] == 0
    from datasets import load_dataset

    dataset = load_dataset(str(out))  # an empty split has no files, so datasets does not list it
    assert {split: len(rows) for split, rows in dataset.items()} == {
        split: rows for split, rows in summary["rows_per_split"].items() if rows
    }
    assert dataset["train"][0]["id"] == "SYN4-00000000"
    assert load_dataset_dir(str(out))["train"][0] == next(generate_synthetic_records(1, seed=4))
