"""The patent tokenizer: ModernBERT's special-token layout, lossless byte-level BPE, saving and loading
through AutoTokenizer, and the corpus kinds it trains from."""

import json
import os
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from modernpatent_hf.data.synthetic import generate_synthetic_records, write_synthetic_corpus
from modernpatent_hf.tokenization import SPECIAL_TOKENS, train_patent_tokenizer, train_tokenizer_from_corpus


@pytest.fixture(scope="module")
def texts():
    return [record["text"] for record in generate_synthetic_records(1500, seed=5)]


@pytest.fixture(scope="module")
def tokenizer(texts):
    return train_patent_tokenizer(texts, vocab_size=1200)


def test_special_tokens_are_laid_out_like_modernbert(tokenizer, texts):
    names = ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token")
    assert [getattr(tokenizer, name) for name in names] == ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    ids = [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS]
    assert ids == [0, 1, 2, 3, 4]  # ModernBERT's order: [UNK] [CLS] [SEP] [PAD] [MASK]

    encoding = tokenizer(texts[0])
    assert set(encoding) == {"input_ids", "attention_mask"}  # no token_type_ids
    assert encoding["input_ids"][0] == tokenizer.cls_token_id and encoding["input_ids"][-1] == tokenizer.sep_token_id
    assert tokenizer.sep_token_id not in encoding["input_ids"][1:-1]
    pair = tokenizer("first text", "second text")["input_ids"]
    assert pair[0] == tokenizer.cls_token_id and pair[-1] == tokenizer.sep_token_id
    assert pair.count(tokenizer.sep_token_id) == 2

    batch = tokenizer(["a b", texts[1]], padding=True)
    assert batch["input_ids"][0][-1] == tokenizer.pad_token_id and batch["attention_mask"][0][-1] == 0
    # [MASK] takes the place of a whole word, with its leading space, as in ModernBERT.
    masked = tokenizer.convert_ids_to_tokens(tokenizer("a [MASK] b")["input_ids"])
    assert masked[2] == "[MASK]" and len(masked) == 5
    assert tokenizer.model_max_length == 8192


def test_vocabulary_is_learned_and_encoding_is_lossless(tokenizer, texts):
    assert len(tokenizer) == 1200
    text = texts[2]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text.encode()) / 3  # merges learned from the corpus compress it
    odd = "Fe\u2082O\u2083 at 5 \u00b5m \u2014 \u00c5ngstr\u00f6m \U0001f9ea"  # characters never seen in training
    for sample in (text, odd):
        encoded = tokenizer(sample)["input_ids"]
        assert tokenizer.unk_token_id not in encoded
        assert tokenizer.decode(encoded, skip_special_tokens=True) == sample


def test_saved_tokenizer_round_trips_through_auto_tokenizer(tokenizer, texts, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(texts[:20])["input_ids"] == tokenizer(texts[:20])["input_ids"]
    names = ("unk_token_id", "cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id")
    assert [getattr(loaded, name) for name in names] == [0, 1, 2, 3, 4]
    assert loaded.model_input_names == ["input_ids", "attention_mask"]


def test_trains_from_a_prepared_dataset_directory(tmp_path):
    data = tmp_path / "data"
    write_synthetic_corpus(str(data), n=800, seed=6)
    out = tmp_path / "tokenizer"
    tokenizer = train_tokenizer_from_corpus(str(data), vocab_size=700, out_dir=str(out))
    loaded = AutoTokenizer.from_pretrained(out)
    assert len(loaded) == len(tokenizer) == 700
    assert loaded("1. A method, comprising:")["input_ids"] == tokenizer("1. A method, comprising:")["input_ids"]


def test_cli_trains_from_a_text_file(tmp_path, texts, run_cli):
    corpus = tmp_path / "claims.txt"
    corpus.write_text("\n".join(texts[:600]) + "\n\n", encoding="utf-8")
    out = tmp_path / "tokenizer"
    result = run_cli("tokenizer", "--corpus", corpus, "--vocab-size", 500, "--out", out)
    assert str(out) in result.stdout
    loaded = AutoTokenizer.from_pretrained(out)
    assert len(loaded) == 500
    assert loaded.decode(loaded(texts[0])["input_ids"], skip_special_tokens=True) == texts[0]


def test_trains_from_json_lines(tmp_path, texts):
    pytest.importorskip("modernpatent_hf.data.readers")
    corpus = tmp_path / "records.jsonl"
    with open(corpus, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts[:400]):
            handle.write(json.dumps({"id": f"US{i}", "title": "Claim", "abstract": text, "cpc": ["G06F"]}) + "\n")
    tokenizer = train_tokenizer_from_corpus(str(corpus), vocab_size=500)
    assert len(tokenizer) == 500
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("a comprising")["input_ids"])
    assert pieces[1:-1] == ["a", "\u0120comprising"]  # a word on every record is one token (with its space)


def test_missing_corpus_is_a_one_line_error(tmp_path, run_cli):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl") as error:
        train_tokenizer_from_corpus(str(missing))
    assert "\n" not in str(error.value)
    result = run_cli("tokenizer", "--corpus", missing, "--out", tmp_path / "tok", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nowhere.jsonl" in result.stderr


def test_too_small_vocabulary_is_rejected(texts):
    with pytest.raises(ValueError, match="vocab_size=100 is too small"):
        train_patent_tokenizer(texts[:10], vocab_size=100)


def test_empty_corpus_is_rejected(tmp_path):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="the corpus is empty"):
        train_tokenizer_from_corpus(str(corpus), vocab_size=300)


def test_training_works_with_progress_bars_disabled():
    """The texts are counted whether or not a progress bar shows them (TQDM_DISABLE=1, read when tqdm is imported)."""
    script = (
        "from modernpatent_hf.tokenization import train_patent_tokenizer\n"
        "print(len(train_patent_tokenizer(['a plough with tines', 'a semiconductor wafer'] * 20, vocab_size=300)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip()) > 260
