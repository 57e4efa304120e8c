"""Fine-tuning leaves the label prior: on an easy generated task a few dozen steps already read the text.

Before the classifier bias started at the label log-odds (and before the hierarchical term was put on BCE's
per-label scale), runs on real patents ended where this test's old-code run ended: the same top-1 subclass for
every patent, the most frequent one. Each generated patent here names its subclass with a keyword among random
filler words; subclass frequencies follow a long tail (1/rank), as CPC subclasses do.
"""

import itertools
import random

import datasets
import numpy as np
import pytest
import torch
import transformers

from modernpatent_hf.configs import ModelArguments, PatentTrainingArguments
from modernpatent_hf.cpc import CpcLabelSpace
from modernpatent_hf.model_factory import build_classifier
from modernpatent_hf.tokenization import load_or_train_tokenizer
from modernpatent_hf.trainer import PatentTrainer, is_head_parameter
from modernpatent_hf.training_data import tokenize_patent_dataset

NUM_LABELS = 40
CODES = [f"{'ABCDEFGH'[i % 8]}{10 + i // 8:02d}{'BCDFHKLMNPQRSTW'[i % 15]}" for i in range(NUM_LABELS)]
KEYWORDS = [
    "".join(letters)
    for letters in itertools.islice(
        itertools.product("bdfgklmnprstvz", "aeiou", "bdfgklmnprstvz", "aeiou"), 0, None, 37
    )
][:NUM_LABELS]
FILLER = [f"w{i}" for i in range(200)]
TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "global_attn_every_n_layers": 1,
}


def keyword_patents(n, rng, first_id):
    rows = []
    for i in range(n):
        label = rng.choices(range(NUM_LABELS), [1 / (rank + 1) for rank in range(NUM_LABELS)])[0]
        words = rng.sample(FILLER, 12) + [KEYWORDS[label]] * 2
        rng.shuffle(words)
        rows.append({"id": str(first_id + i), "text": " ".join(words), "labels": [CODES[label]]})
    return datasets.Dataset.from_list(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """40 steps of batch 16 with the recipe defaults (hierarchical loss, prior-initialized bias)."""
    out = tmp_path_factory.mktemp("label-prior")
    rng = random.Random(0)
    train, test = keyword_patents(1600, rng, 0), keyword_patents(400, rng, 10_000)
    label_space = CpcLabelSpace.from_label_lists(train["labels"])
    transformers.set_seed(0)
    model_args = ModelArguments(
        model_name_or_path=None, tokenizer_name_or_path="train", tokenizer_vocab_size=400, model_config=TINY_MODEL
    )
    tokenizer = load_or_train_tokenizer(model_args, train["text"], str(out))
    counts = np.array(
        [sum(code in labels for labels in train["labels"]) for code in label_space.codes], dtype=np.float64
    )
    model = build_classifier(model_args, tokenizer, label_space, label_frequencies=counts / len(train))
    args = PatentTrainingArguments(
        output_dir=str(out / "run"),
        max_steps=40,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        warmup_steps=0.1,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        seed=0,
        use_cpu=True,
        dataloader_pin_memory=False,
    )
    train_tokens, _ = tokenize_patent_dataset(train, tokenizer, label_space, 32)
    test_tokens, _ = tokenize_patent_dataset(test, tokenizer, label_space, 32)
    trainer = PatentTrainer(
        model=model, args=args, label_space=label_space, processing_class=tokenizer, train_dataset=train_tokens
    )
    trainer.train()
    truth = np.array([label_space.label2id[labels[0]] for labels in test["labels"]])
    return {"trainer": trainer, "test_tokens": test_tokens, "truth": truth, "prior_top1": int(np.argmax(counts))}


def test_a_few_dozen_steps_read_the_text_and_beat_the_label_prior(trained):
    top1 = trained["trainer"].predict(trained["test_tokens"]).predictions.argmax(-1)
    prior_accuracy = float(np.mean(trained["truth"] == trained["prior_top1"]))
    accuracy = float(np.mean(top1 == trained["truth"]))
    assert len(set(top1.tolist())) >= 5, f"top-1 takes only {sorted(set(top1.tolist()))} across 400 patents"
    assert accuracy > prior_accuracy + 0.1, (
        f"top-1 accuracy {accuracy:.3f} vs the most frequent label's {prior_accuracy:.3f}"
    )


def test_predict_returns_rows_in_dataset_order(trained):
    """group_by_length sorts training batches by length; predictions must still line up with the dataset rows."""
    trainer, rows = trained["trainer"], trained["test_tokens"]
    predicted = trainer.predict(rows).predictions
    model = trainer.model.eval()
    batch = trainer.data_collator([rows[i] for i in range(32)])
    with torch.no_grad():
        direct = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.numpy()
    np.testing.assert_allclose(predicted[:32], direct, rtol=1e-4, atol=1e-5)


def test_a_new_classifier_starts_at_the_label_log_odds_and_a_head_learning_rate_has_its_own_group(tmp_path):
    label_space = CpcLabelSpace(CODES[:3])
    model_args = ModelArguments(
        model_name_or_path=None, tokenizer_name_or_path="train", tokenizer_vocab_size=300, model_config=TINY_MODEL
    )
    tokenizer = load_or_train_tokenizer(model_args, [f"w{i} w{i + 1}" for i in range(50)], str(tmp_path))
    model = build_classifier(model_args, tokenizer, label_space, label_frequencies=[0.5, 0.1, 0.0])
    expected = torch.tensor([0.0, np.log(0.1 / 0.9), np.log(1e-6 / (1 - 1e-6))], dtype=torch.float32)
    torch.testing.assert_close(model.classifier.bias.detach(), expected)
    off = ModelArguments(**{**model_args.__dict__, "init_bias_from_prior": False})
    assert (
        torch.count_nonzero(
            build_classifier(off, tokenizer, label_space, label_frequencies=[0.5, 0.1, 0.0]).classifier.bias
        )
        == 0
    )

    args = PatentTrainingArguments(
        output_dir=str(tmp_path / "run"),
        learning_rate=1e-4,
        head_learning_rate=1e-2,
        weight_decay=0.1,
        report_to="none",
        use_cpu=True,
    )
    optimizer = PatentTrainer(
        model=model, args=args, label_space=label_space, processing_class=tokenizer
    ).create_optimizer()
    head_groups = [group for group in optimizer.param_groups if group["lr"] == 1e-2]
    assert len(head_groups) == 1 and head_groups[0]["weight_decay"] == 0.0
    head_names = {name for name, _ in model.named_parameters() if is_head_parameter(name)}
    assert head_names and all(name.startswith(("head.", "classifier.")) for name in head_names)
    assert len(head_groups[0]["params"]) == len(head_names)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))
