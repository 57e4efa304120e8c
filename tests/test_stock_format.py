"""One checkpoint, two readers: a recipe's ModernBERT checkpoint is a stock ModernBertForSequenceClassification for
plain transformers (and the engines that load that class), and our hierarchical classifier with trust_remote_code
or through the package; checkpoints of the older format still load and convert; BERT checkpoints say what they are.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from modernpatent_hf import ModernBertForHierarchicalPatentClassification, PatentClassifier
from modernpatent_hf.stock_format import BERT_NOT_STOCK, convert_checkpoint

from testing_utils import REPO_ROOT, run_isolated_script, save_tiny_checkpoint, tiny_finetune_args, write_older_format

TEXTS = ["a seed drill with a soil opener and a press wheel", "a semiconductor wafer with a gate oxide", "valve"]

# Runs with the package refused: stock classes only, then the same checkpoint with trust_remote_code=True.
STOCK_READER = """
import json, sys
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, pipeline

torch.set_num_threads(1)
checkpoint, texts, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
config = AutoConfig.from_pretrained(checkpoint)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None, function_to_apply="sigmoid")
remote = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
with torch.no_grad():
    remote_output = remote(**batch)
json.dump({
    "config_class": type(config).__name__,
    "model_class": type(model).__name__,
    "problem_type": config.problem_type,
    "classifier_pooling": config.classifier_pooling,
    "logits": logits.tolist(),
    "pipeline": classify([texts[0]])[0],
    "remote_class": type(remote).__name__,
    "remote_module": type(remote).__module__,
    "remote_logits": remote_output.logits.tolist(),
    "remote_class_logits": list(remote_output.class_logits.shape),
    "remote_section_logits": list(remote_output.section_logits.shape),
    "package_modules": sorted(name for name in sys.modules if name.split(".")[0] == "modernpatent_hf"),
}, open(out, "w"))
"""


@pytest.fixture(scope="module")
def recipe_checkpoint(tmp_path_factory):
    """A checkpoint written by recipes/finetune.py (a few steps of the demo recipe on a tiny model)."""
    output_dir = tmp_path_factory.mktemp("finetune")
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "recipes" / "finetune.py"), *tiny_finetune_args(output_dir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        check=True,
    )
    return output_dir


def our_logits(checkpoint, texts=TEXTS):
    """Logits of our class on ``texts``, one thread (the reduction order the stock reader uses)."""
    model = ModernBertForHierarchicalPatentClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return model(**batch).logits
    finally:
        torch.set_num_threads(threads)


def test_recipe_checkpoint_is_a_stock_modernbert_classifier_and_ours_with_remote_code(
    recipe_checkpoint, tmp_path, script_without_package
):
    config = json.loads((recipe_checkpoint / "config.json").read_text())
    assert config["model_type"] == "modernbert"
    assert config["architectures"] == ["ModernBertForSequenceClassification"]
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith(
        "ModernBertForHierarchicalPatentClassification"
    )
    (tmp_path / "reader.py").write_text(script_without_package(STOCK_READER))
    completed = run_isolated_script("reader.py", recipe_checkpoint, json.dumps(TEXTS), "result.json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["package_modules"] == []
    assert result["config_class"] == "ModernBertConfig"
    assert result["model_class"] == "ModernBertForSequenceClassification"
    assert result["problem_type"] == "multi_label_classification"
    assert result["classifier_pooling"] == config["pooling"]

    expected = our_logits(recipe_checkpoint)
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, rtol=0, atol=1e-6)
    codes = [config["id2label"][str(index)] for index in range(len(config["id2label"]))]
    scores = {entry["label"]: entry["score"] for entry in result["pipeline"]}
    assert set(scores) == set(codes)
    for index, code in enumerate(codes):
        assert scores[code] == pytest.approx(torch.sigmoid(expected[0, index]).item(), abs=1e-5)

    assert result["remote_class"] == "ModernBertForHierarchicalPatentClassification"
    assert result["remote_module"].startswith("transformers_modules.")
    torch.testing.assert_close(torch.tensor(result["remote_logits"]), expected, rtol=0, atol=1e-6)
    hierarchy_sizes = (len({code[:3] for code in codes}), len({code[0] for code in codes}))
    assert result["remote_class_logits"] == [len(TEXTS), hierarchy_sizes[0]]
    assert result["remote_section_logits"] == [len(TEXTS), hierarchy_sizes[1]]


def test_the_package_loads_its_class_and_plain_auto_loads_the_stock_class(recipe_checkpoint):
    """Importing the package changes nothing for stock code: plain Auto gives the stock class, the package's own
    loaders give ours (with the hierarchy outputs and packed batches)."""
    assert type(AutoModelForSequenceClassification.from_pretrained(recipe_checkpoint)).__name__ == (
        "ModernBertForSequenceClassification"
    )
    predictor = PatentClassifier.from_pretrained(recipe_checkpoint, device="cpu")
    assert isinstance(predictor.model, ModernBertForHierarchicalPatentClassification)


def tree_digest(directory):
    digest = hashlib.sha256()
    for root, _, names in sorted(os.walk(directory)):
        for name in sorted(names):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, directory).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def test_an_older_checkpoint_loads_and_converts_into_a_new_directory(recipe_checkpoint, tmp_path, run_cli):
    older = write_older_format(recipe_checkpoint, tmp_path / "older")
    expected = our_logits(recipe_checkpoint)
    # Still loads: our class, the Auto classes once the package is imported, the predictor.
    torch.testing.assert_close(our_logits(older), expected, rtol=0, atol=0)
    assert isinstance(
        AutoModelForSequenceClassification.from_pretrained(older), ModernBertForHierarchicalPatentClassification
    )
    assert isinstance(
        PatentClassifier.from_pretrained(older, device="cpu").model, ModernBertForHierarchicalPatentClassification
    )

    before = tree_digest(older)
    result = run_cli("convert", "--model", str(older), "--out", str(tmp_path / "converted"))
    summary = json.loads(result.stdout)
    assert summary["architectures"] == ["ModernBertForSequenceClassification"]
    assert tree_digest(older) == before, "convert changed its source"
    converted = tmp_path / "converted"
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "modernbert" and config["architectures"] == ["ModernBertForSequenceClassification"]
    assert config["auto_map"]["AutoConfig"] == "configuration_modernpatent.ModernBertPatentConfig"
    for name in ("tokenizer.json", "label_space.json"):
        assert (converted / name).read_bytes() == (older / name).read_bytes(), name
    torch.testing.assert_close(our_logits(converted), expected, rtol=0, atol=0)

    # A directory holding someone else's file is refused in one line, and the file stays.
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    refused = run_cli("convert", "--model", str(older), "--out", str(occupied), check=False)
    assert refused.returncode != 0
    assert len([line for line in refused.stderr.splitlines() if "error" in line]) == 1, refused.stderr
    assert (occupied / "notes.txt").read_text() == "mine"


def test_a_bert_checkpoint_says_what_it_can_be_served_as(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "bert", BertConfig)
    with pytest.raises(ValueError) as error:
        convert_checkpoint(checkpoint, tmp_path / "out")
    assert BERT_NOT_STOCK in str(error.value) and "\n" not in str(error.value)
