"""Memory and time bounds on hostile checkpoints and texts, and one-line errors for missing checkpoint files.

A huge text is tokenized from a bounded prefix, with the same tokens kept; a config.json that asks for a huge
model is refused from the weights' header before anything is built; a checkpoint without its tokenizer files
names them in one line.
"""

import copy
import json
import shutil

import pytest
from tokenizers import Regex, normalizers

from modernpatent_hf import predictor as predictor_module
from modernpatent_hf.checkpoint_checks import MAX_LABELS, read_safetensors_shapes
from modernpatent_hf.predictor import PatentClassifier, text_budget

from testing_utils import save_tiny_checkpoint, write_jsonl


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("bounds") / "checkpoint")


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return PatentClassifier.from_pretrained(checkpoint, device="cpu", max_length=32)


def recording_tokenizer(classifier, monkeypatch):
    """Record the length of every text the classifier's tokenizer is given."""
    seen = []
    tokenizer = classifier.tokenizer
    original = type(tokenizer).__call__

    def call(self, texts, *args, **kwargs):
        seen.extend(len(text) for text in texts)
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", call)
    return seen


def test_a_huge_text_is_tokenized_from_a_bounded_prefix_with_the_same_tokens(classifier, monkeypatch):
    words = "seed drill soil opener press wheel gearbox shaft semiconductor wafer ".split()
    huge = " ".join(words[index % len(words)] for index in range(400_000))  # about 2.8 million characters
    expected = classifier.tokenizer(huge[:20_000], truncation=True, max_length=classifier.max_length)["input_ids"]
    seen = recording_tokenizer(classifier, monkeypatch)
    before = classifier.truncated_count
    ids = classifier.encode([huge, "valve"])
    assert max(seen) <= text_budget(classifier.tokenizer, classifier.max_length) < len(huge) // 10
    assert ids[0] == expected and len(ids[0]) == classifier.max_length
    assert classifier.truncated_count == before + 1


def test_a_prefix_that_gives_too_few_tokens_is_read_further(classifier, monkeypatch):
    """A normalizer that drops characters (here: whitespace, as BERT's does): the first prefix holds no token, a
    longer one does, and the tokens are those of the whole text."""
    tokenizer = copy.deepcopy(classifier.tokenizer)
    tokenizer.backend_tokenizer.normalizer = normalizers.Replace(Regex(r"\s"), "")
    dropping = PatentClassifier(classifier.model, tokenizer, classifier.label_space, classifier.max_length)
    budget = dropping.text_budget
    text = " " * (3 * budget) + "seed drill with a press wheel"
    expected = tokenizer(text, truncation=True, max_length=dropping.max_length)["input_ids"]
    seen = recording_tokenizer(dropping, monkeypatch)
    assert dropping.encode([text]) == [expected]
    assert seen == [budget, 2 * budget, len(text)]  # the last prefix is the whole text
    assert dropping.truncated_count == 0


def test_a_chunk_is_tokenized_in_bounded_calls_that_make_no_python_overflow_windows(classifier, monkeypatch):
    """Each tokenizer call holds the overflowing windows of all its texts: a chunk goes through in calls of at most
    TOKENIZE_BATCH_TEXTS texts, the windows are never asked for as Python lists, and the ids and the truncation
    count are those of each text tokenized alone."""
    monkeypatch.setattr(predictor_module, "TOKENIZE_BATCH_TEXTS", 4, raising=False)
    texts = [("seed drill press wheel " * (1 + 3 * index))[: 40 + 17 * index] for index in range(11)]
    expected = [classifier.tokenizer(text, truncation=True, max_length=classifier.max_length) for text in texts]
    calls = []
    original = type(classifier.tokenizer).__call__

    def call(self, batch, *args, **kwargs):
        calls.append((len(batch), bool(kwargs.get("return_overflowing_tokens"))))
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(type(classifier.tokenizer), "__call__", call)
    ids, truncated = classifier.encode_counting_truncations(texts)
    assert calls == [(4, False), (4, False), (3, False)]
    assert ids == [row["input_ids"] for row in expected]
    whole = [len(classifier.tokenizer(text)["input_ids"]) for text in texts]
    assert truncated == sum(length > classifier.max_length for length in whole) > 0


def test_predict_on_a_huge_text_row_stays_within_the_prefix(checkpoint, classifier, tmp_path, run_cli):
    """The command end to end: a 30 MB row with --max-length 32 predicts like its first words alone."""
    rows = [{"id": "huge", "abstract": "seed drill " * 3_000_000}, {"id": "short", "abstract": "seed drill " * 100}]
    write_jsonl(tmp_path / "in.jsonl", rows)
    run_cli(
        "predict", "--model", checkpoint, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl",
        "--max-length", "32", "--device", "cpu",
    )  # fmt: skip
    predictions = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["id"] for row in predictions] == ["huge", "short"]
    huge, short = (row["predictions"] for row in predictions)
    assert [entry["code"] for entry in huge] == [entry["code"] for entry in short]
    assert [entry["score"] for entry in huge] == pytest.approx([entry["score"] for entry in short], abs=1e-5)


def hostile_copy(checkpoint, destination, **changes):
    shutil.copytree(checkpoint, destination)
    config_path = destination / "config.json"
    config = json.loads(config_path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    config_path.write_text(json.dumps(config))
    return destination


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_labels": 1_000_000_000, "id2label": None, "label2id": None}, f"more than {MAX_LABELS}"),
        ({"num_labels": 500}, "num_labels 500 but 12 id2label entries"),
        ({"id2label": {str(index): f"A{index:02d}B" for index in range(40)}}, "40 labels but the weights' classifier"),
        ({"vocab_size": 300_000_000}, "vocab_size 300000000 but the weights' token embeddings have 300"),
        ({"hidden_size": 4096}, "hidden_size 4096 but the weights' token embeddings have 32"),
        ({"num_hidden_layers": 4000}, "num_hidden_layers 4000 but the weights have 2 layers"),
    ],
)
def test_a_config_that_does_not_fit_the_weights_is_one_line_before_anything_is_built(
    checkpoint, tmp_path, run_cli, changes, message
):
    hostile = hostile_copy(checkpoint, tmp_path / "hostile", **changes)
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "abstract": "seed drill"}])
    result = run_cli(
        "predict", "--model", hostile, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_header_is_read_without_reading_tensors(checkpoint, tmp_path):
    shapes = read_safetensors_shapes(checkpoint / "model.safetensors")
    assert shapes["classifier.weight"] == [12, 32]
    damaged = tmp_path / "model.safetensors"
    damaged.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    with pytest.raises(OSError, match="a header of"):
        read_safetensors_shapes(damaged)


def test_a_checkpoint_without_its_tokenizer_files_names_them_in_one_line(checkpoint, tmp_path, run_cli):
    broken = tmp_path / "no-tokenizer"
    shutil.copytree(checkpoint, broken)
    (broken / "tokenizer.json").unlink()
    (broken / "tokenizer_config.json").unlink()
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "abstract": "seed drill"}])
    result = run_cli(
        "predict", "--model", broken, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Loading")]
    assert len(lines) == 1, result.stderr
    assert "missing tokenizer.json, tokenizer_config.json" in lines[0]
