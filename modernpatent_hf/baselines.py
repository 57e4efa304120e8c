"""Reference predictors that every model is compared with on the same split.

Each returns an N x L score matrix in [0, 1] over a :class:`~modernpatent_hf.cpc.CpcLabelSpace`, so they
go through exactly the metric code the models go through: the label prior, TF-IDF + a linear model, and
a frozen pretrained encoder + a linear head (embed once, fit the head in seconds: a baseline for
fine-tuning and a fast path on a CPU).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from .cpc import CpcLabelSpace
from .losses import label_log_odds
from .model_factory import load_pretrained_weights
from .modeling_modernpatent import pool_hidden_states
from .predictor import length_bucketed_batches, pad_token_ids


def most_frequent_label_scores(
    train_labels: Sequence[Sequence[str]], label_space: CpcLabelSpace, n: int
) -> np.ndarray:
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


@torch.no_grad()
def embed_texts(
    model_name_or_path: str, texts: Sequence[str], max_length: int = 128, max_batch_tokens: int = 8192
) -> np.ndarray:
    """Mean-pooled last hidden states of a frozen encoder ([N, H] float32), texts truncated to ``max_length`` tokens.

    Texts are batched by length (little padding); weights are read from safetensors only.
    """
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    encoder = load_pretrained_weights(AutoModel, model_name_or_path).eval()
    input_ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    features = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    batches = length_bucketed_batches([len(ids) for ids in input_ids], max_batch_tokens, max_batch_size=256)
    with tqdm(total=len(texts), desc="embedding with the frozen encoder", unit=" texts") as progress:
        for batch in batches:
            ids, mask = pad_token_ids([input_ids[i] for i in batch], tokenizer.pad_token_id)
            ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            features[batch] = pool_hidden_states(hidden, mask, "mean").float().numpy()
            progress.update(len(batch))
    return features


def linear_head_scores(
    train_features: np.ndarray,
    train_labels: Sequence[Sequence[str]],
    test_features: np.ndarray,
    label_space: CpcLabelSpace,
    epochs: int = 300,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> np.ndarray:
    """A linear multi-label head (per-label sigmoids, BCE) fitted full-batch with Adam on fixed features.

    Features are standardized with the training mean and deviation; the bias starts at the label log-odds, as
    the fine-tuned classifier's does. Seconds on a CPU for tens of thousands of patents.
    """
    generator = torch.Generator().manual_seed(seed)
    mean, std = train_features.mean(axis=0), train_features.std(axis=0) + 1e-6
    inputs = torch.from_numpy((train_features - mean) / std).float()
    targets = torch.from_numpy(label_space.encode_batch(train_labels)).float()
    head = torch.nn.Linear(inputs.shape[1], len(label_space))
    with torch.no_grad():
        head.weight.normal_(0.0, 0.01, generator=generator)
        head.bias.copy_(label_log_odds(targets.mean(dim=0)))
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(head(inputs), targets).backward()
        optimizer.step()
    with torch.no_grad():
        return torch.sigmoid(head(torch.from_numpy((test_features - mean) / std).float())).numpy()


def frozen_encoder_linear_scores(
    model_name_or_path: str,
    train_texts: Sequence[str],
    train_labels: Sequence[Sequence[str]],
    test_texts: Sequence[str],
    label_space: CpcLabelSpace,
    max_length: int = 128,
) -> np.ndarray:
    """A frozen pretrained encoder's mean-pooled embeddings (:func:`embed_texts`) + :func:`linear_head_scores`."""
    features = embed_texts(model_name_or_path, [*train_texts, *test_texts], max_length=max_length)
    return linear_head_scores(features[: len(train_texts)], train_labels, features[len(train_texts) :], label_space)
