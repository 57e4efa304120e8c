"""Reference predictors that every model is compared with on the same split.

Both return an N x L score matrix in [0, 1] over a :class:`~modernpatent_hf.cpc.CpcLabelSpace`, so they
go through exactly the metric code the models go through.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .cpc import CpcLabelSpace


def most_frequent_label_scores(train_labels: Sequence[Sequence[str]], label_space: CpcLabelSpace, n: int) -> np.ndarray:
    """Every patent gets each label's training frequency as its score (the top-1 is the majority label)."""
    frequency = label_space.encode_batch(train_labels).mean(axis=0)
    return np.broadcast_to(frequency, (n, len(label_space))).astype(np.float32)


def tfidf_linear_scores(
    train_texts: Sequence[str],
    train_labels: Sequence[Sequence[str]],
    test_texts: Sequence[str],
    label_space: CpcLabelSpace,
    max_features: int = 100_000,
    alpha: float = 1e-5,
    epochs: int = 10,
    n_jobs: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """TF-IDF (word 1-2 grams, sublinear tf) + one-vs-rest logistic regression trained by SGD; per-label probabilities.

    Labels that never occur in ``train_labels`` get probability 0 (a one-vs-rest model cannot learn them).
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.multiclass import OneVsRestClassifier

    # int32, not int8: sklearn's LabelBinarizer scrambles the columns of an int8 indicator matrix.
    targets = sparse.csr_matrix(label_space.encode_batch(train_labels), dtype=np.int32)
    occurrences = np.asarray(targets.sum(axis=0)).ravel()
    learnable = np.flatnonzero((occurrences > 0) & (occurrences < targets.shape[0]))
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=max_features)
    train_matrix = vectorizer.fit_transform(train_texts)
    classifier = OneVsRestClassifier(
        SGDClassifier(loss="log_loss", alpha=alpha, max_iter=epochs, tol=None, random_state=seed), n_jobs=n_jobs
    )
    classifier.fit(train_matrix, targets[:, learnable])
    scores = np.zeros((len(test_texts), len(label_space)), dtype=np.float32)
    scores[:, learnable] = classifier.predict_proba(vectorizer.transform(test_texts))
    return scores
