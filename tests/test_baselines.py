"""The reference predictors: they must learn what is learnable and score through the shared metric code."""

import numpy as np
from transformers import BertConfig, BertModel

from modernpatent_hf.baselines import embed_texts, linear_head_scores, most_frequent_label_scores, tfidf_linear_scores
from modernpatent_hf.cpc import CpcLabelSpace
from modernpatent_hf.metrics import compute_multilabel_metrics
from modernpatent_hf.tokenization import train_patent_tokenizer


def toy_corpus(n, seed):
    """Each label has its own words; a patent's text holds the words of its labels plus shared filler."""
    rng = np.random.default_rng(seed)
    codes = ["A01B", "A01C", "B60K", "G06F", "H01L", "H04W"]
    weights = np.array([0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    texts, labels = [], []
    for _ in range(n):
        chosen = sorted(set(rng.choice(codes, size=rng.integers(1, 3), p=weights)))
        words = [f"{code.lower()}word{rng.integers(3)}" for code in chosen for _ in range(3)]
        words += [f"filler{rng.integers(50)}" for _ in range(10)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(chosen)
    return texts, labels, CpcLabelSpace(codes)


def test_most_frequent_label_ranks_labels_by_training_frequency():
    _, labels, space = toy_corpus(300, 0)
    scores = most_frequent_label_scores(labels, space, 4)
    assert scores.shape == (4, len(space))
    counts = space.encode_batch(labels).sum(axis=0)
    assert np.argmax(scores[0]) == np.argmax(counts)
    assert np.allclose(scores[0], counts / len(labels))


def test_tfidf_linear_model_learns_label_words_and_beats_the_majority():
    train_texts, train_labels, space = toy_corpus(600, 1)
    test_texts, test_labels, _ = toy_corpus(200, 2)
    references = space.encode_batch(test_labels)
    tfidf = compute_multilabel_metrics(
        tfidf_linear_scores(train_texts, train_labels, test_texts, space, n_jobs=1), references
    )
    majority = compute_multilabel_metrics(most_frequent_label_scores(train_labels, space, len(test_texts)), references)
    assert tfidf["precision@1"] > 0.95
    assert tfidf["precision@1"] > majority["precision@1"] + 0.3


def test_labels_never_seen_in_training_get_zero():
    texts, labels, _ = toy_corpus(200, 3)
    space = CpcLabelSpace(["A01B", "A01C", "B60K", "G06F", "H01L", "H04W", "Y10S"])
    scores = tfidf_linear_scores(texts, labels, texts[:5], space, n_jobs=1)
    assert np.all(scores[:, space.label2id["Y10S"]] == 0)


def word_counts(texts, vocabulary):
    index = {word: i for i, word in enumerate(vocabulary)}
    features = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.split():
            features[row, index[word]] += 1
    return features


def test_linear_head_on_fixed_features_learns_the_labels_and_beats_the_majority():
    train_texts, train_labels, space = toy_corpus(600, 1)
    test_texts, test_labels, _ = toy_corpus(200, 2)
    vocabulary = sorted({word for text in train_texts + test_texts for word in text.split()})
    scores = linear_head_scores(
        word_counts(train_texts, vocabulary), train_labels, word_counts(test_texts, vocabulary), space
    )
    assert scores.shape == (200, len(space)) and np.all((scores >= 0) & (scores <= 1))
    references = space.encode_batch(test_labels)
    head = compute_multilabel_metrics(scores, references)
    majority = compute_multilabel_metrics(most_frequent_label_scores(train_labels, space, len(test_texts)), references)
    assert head["precision@1"] > 0.95 and head["precision@1"] > majority["precision@1"] + 0.3


def test_frozen_embeddings_do_not_depend_on_batch_companions_or_padding(tmp_path):
    texts, _, _ = toy_corpus(40, 4)
    tokenizer = train_patent_tokenizer(texts, vocab_size=300)
    tokenizer.save_pretrained(tmp_path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(tmp_path)
    long_text = texts[0] + " " + texts[1]
    alone = embed_texts(str(tmp_path), [texts[2]], max_length=64)
    together = embed_texts(str(tmp_path), [long_text, texts[2], texts[3]], max_length=64)
    assert together.shape == (3, 32) and np.isfinite(together).all()
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(together[0], together[1])
