"""Packed (unpadded) batches on tiny random models, fp32 on the CPU: the same logits, losses, gradients and metrics
as padded batches, pooling at the sequence boundaries, and the collator that flattens training batches."""

import pytest
import torch
from datasets import Dataset
from transformers import ModernBertConfig, ModernBertForMaskedLM

from modernpatent_hf import (
    LABEL_SPACE_FILE,
    BertForHierarchicalPatentClassification,
    BertPatentConfig,
    CpcLabelSpace,
    ModernBertForHierarchicalPatentClassification,
    ModernBertPatentConfig,
    build_patent_classifier,
    generate_synthetic_records,
    train_patent_tokenizer,
)
from modernpatent_hf.configs import PatentTrainingArguments
from modernpatent_hf.modeling_modernpatent import pool_packed_hidden_states
from modernpatent_hf.packing import (
    PACKED_ATTENTION,
    FlatteningCollator,
    pack_batch,
    packed_attention_mask,
    token_budget_batches,
    use_packed_attention,
    use_packed_batches,
)
from modernpatent_hf.predictor import PatentClassifier, pad_token_ids
from modernpatent_hf.pretraining import SeededMLMCollator
from modernpatent_hf.trainer import PatentTrainer
from modernpatent_hf.training_data import MultiLabelCollator, tokenize_patent_dataset

SPACE = CpcLabelSpace(["A01B", "A01C", "A21D", "B01D", "B65D", "H01L", "H04W", "Y10S"])
LABELS = dict(id2label=dict(SPACE.id2label), label2id=dict(SPACE.label2id))
VOCAB = 120
# local_attention 8: a token of a sliding layer sees 4 tokens each side; the sequences (20-40 tokens) are longer.
TINY_MODERNBERT = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=2,
    pad_token_id=0,
    local_attention=8,
    global_attn_every_n_layers=3,
)
TINY_BERT = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=2,
    pad_token_id=0,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def tiny_classifier(kind="modernbert", **overrides):
    torch.manual_seed(0)
    if kind == "modernbert":
        config = ModernBertPatentConfig(**TINY_MODERNBERT, **LABELS, attn_implementation="sdpa", **overrides)
        return ModernBertForHierarchicalPatentClassification(config)
    config = BertPatentConfig(**TINY_BERT, **LABELS, attn_implementation="sdpa", **overrides)
    return BertForHierarchicalPatentClassification(config)


def token_lists(count=6, shortest=20, longest=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (count,), generator=generator).tolist()
    return [torch.randint(3, VOCAB, (length,), generator=generator).tolist() for length in lengths]


def padded_inputs(sequences):
    ids, mask = pad_token_ids(sequences, 0)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def test_pack_batch_concatenates_with_restarting_positions():
    sequences = [[5, 6, 7], [8], [9, 10]]
    packed = pack_batch(sequences)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1]]
    assert packed["cu_seq_lens_q"].tolist() == [0, 3, 4, 6] and packed["cu_seq_lens_q"].dtype == torch.int32
    assert packed["cu_seq_lens_k"] is packed["cu_seq_lens_q"]
    assert packed["max_length_q"] == packed["max_length_k"] == 3


def test_pack_batch_pads_to_a_static_shape_with_segments_no_longer_than_max_length():
    packed = pack_batch([[5, 6, 7], [8]], pad_id=0, pad_to_tokens=12, pad_to_sequences=8, max_length=4)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8] + [0] * 8]
    # 8 padding tokens as two segments of 4 (max_length), then empty segments up to 8 in all.
    assert packed["cu_seq_lens_q"].tolist() == [0, 3, 4, 8, 12, 12, 12, 12, 12]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1, 2, 3, 0, 1, 2, 3]]
    assert packed["max_length_q"] == 4


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(pad_to_tokens=3), "more than pad_to_tokens"),
        (dict(pad_to_sequences=1), "more than pad_to_sequences"),
        (dict(max_length=2), "below the longest"),
    ],
)
def test_pack_batch_errors_name_the_problem(arguments, message):
    with pytest.raises(ValueError, match=message):
        pack_batch([[5, 6, 7], [8]], **arguments)


def test_pooling_takes_each_segments_first_token_and_mean_at_the_boundaries():
    # Token t's hidden state is (t, 10 t): a pooled row tells exactly which tokens went into it.
    tokens = torch.arange(9, dtype=torch.float32)
    hidden = torch.stack([tokens, 10 * tokens], dim=-1).unsqueeze(0)
    cu_seq_lens = torch.tensor([0, 2, 3, 7, 9, 9, 9], dtype=torch.int32)  # lengths 2, 1, 4, 2 and two empty
    cls = pool_packed_hidden_states(hidden, cu_seq_lens, "cls")
    assert cls[:4, 0].tolist() == [0, 2, 3, 7]
    mean = pool_packed_hidden_states(hidden, cu_seq_lens, "mean")
    assert mean[:4, 0].tolist() == [0.5, 2.0, 4.5, 7.5]
    assert mean[:4, 1].tolist() == [5.0, 20.0, 45.0, 75.0]
    assert mean.shape == (6, 2) and torch.isfinite(mean).all() and torch.isfinite(cls).all()


@pytest.mark.parametrize(
    "kind, pooling", [("modernbert", "mean"), ("modernbert", "cls"), ("bert", "cls"), ("bert", "mean")]
)
def test_packed_logits_equal_padded_logits(kind, pooling):
    model = tiny_classifier(kind, pooling=pooling).eval()
    if kind == "modernbert":
        assert "sliding_attention" in model.config.layer_types and model.config.local_attention < 20
    sequences = token_lists()
    with torch.no_grad():
        padded = model(**padded_inputs(sequences))
        use_packed_attention(model)
        assert model.config._attn_implementation == PACKED_ATTENTION
        packed = model(**pack_batch(sequences))
        # Static shapes (what the compiled GPU path runs): padding segments after the real ones change nothing.
        static = model(**pack_batch(sequences, pad_to_tokens=400, pad_to_sequences=32, max_length=64))
        # The same model still serves padded batches correctly.
        padded_again = model(**padded_inputs(sequences))
    assert packed.logits.shape == padded.logits.shape == (len(sequences), len(SPACE))
    torch.testing.assert_close(packed.logits, padded.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed.section_logits, padded.section_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(static.logits[: len(sequences)], padded.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded_again.logits, padded.logits, atol=1e-6, rtol=0)


def test_packed_positions_are_derived_when_not_given():
    model = use_packed_attention(tiny_classifier().eval())
    sequences = token_lists(count=3)
    packed = pack_batch(sequences)
    with torch.no_grad():
        given = model(**packed).logits
        derived = model(**{key: value for key, value in packed.items() if key != "position_ids"}).logits
    torch.testing.assert_close(derived, given, atol=0, rtol=0)


def labelled_features(sequences, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "label_ids": sorted(set(torch.randint(len(SPACE), (2,), generator=generator).tolist())),
        }
        for ids in sequences
    ]


class PadOnly:
    """The tokenizer interface MultiLabelCollator uses (``pad``), for token id lists of the tiny models."""

    pad_token_id = 0

    def pad(self, inputs, padding=True, pad_to_multiple_of=None, return_tensors="pt"):
        ids, mask = pad_token_ids([feature["input_ids"] for feature in inputs], self.pad_token_id)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def test_flattening_collator_keeps_labels_per_patent_and_drops_every_pad():
    sequences = [[5, 6, 7], [8], [9, 10]]
    model = tiny_classifier()
    padded = MultiLabelCollator(PadOnly(), len(SPACE))(labelled_features(sequences))
    flat = FlatteningCollator(MultiLabelCollator(PadOnly(), len(SPACE)), model.config)(labelled_features(sequences))
    assert flat["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10]]
    assert flat["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1]]
    assert flat["cu_seq_lens_q"].tolist() == [0, 3, 4, 6] and flat["max_length_q"] == 3
    assert torch.equal(flat["labels"], padded["labels"]) and flat["labels"].shape == (3, len(SPACE))
    assert (
        flat["attention_mask"]
        == packed_attention_mask(model.config)
        == {"full_attention": None, "sliding_attention": None}
    )
    bert = FlatteningCollator(MultiLabelCollator(PadOnly(), len(SPACE)), tiny_classifier("bert").config)(
        labelled_features(sequences)
    )
    assert bert["attention_mask"] is None and bert["token_type_ids"].tolist() == [[0] * 6]


@pytest.mark.parametrize("kind", ["modernbert", "bert"])
def test_packed_training_step_has_the_padded_loss_and_gradients(kind):
    sequences = token_lists(count=5)
    results = []
    for packed in (False, True):
        model = tiny_classifier(kind).train()
        collator = MultiLabelCollator(PadOnly(), len(SPACE))
        if packed:
            collator = use_packed_batches(model, collator)
        output = model(**collator(labelled_features(sequences)))
        output.loss.backward()
        results.append(
            (
                output.loss.detach(),
                {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None},
            )
        )
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-6, rtol=1e-6)
    assert packed_grads.keys() == padded_grads.keys() and len(padded_grads) > 10
    for name, gradient in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], gradient, atol=1e-5, rtol=1e-4, msg=name)


def test_padding_free_mlm_loss_equals_the_padded_loss():
    records = list(generate_synthetic_records(40, seed=1, num_subclasses=6))
    tokenizer = train_patent_tokenizer(
        [r["text"] for r in records], vocab_size=300, min_frequency=1, model_max_length=64
    )
    config = dict(TINY_MODERNBERT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    features = [
        {"input_ids": ids}
        for ids in tokenizer([r["text"] for r in records[:6]], truncation=True, max_length=64)["input_ids"]
    ]
    assert max(len(f["input_ids"]) for f in features) > 2 * config["local_attention"]
    losses = []
    for padding_free in (False, True):
        torch.manual_seed(0)
        model = ModernBertForMaskedLM(ModernBertConfig(**config, attn_implementation="sdpa")).eval()
        collator = SeededMLMCollator(tokenizer, seed=3)
        if padding_free:
            collator = use_packed_batches(model, collator, token_labels=True)
        batch = collator(features)
        with torch.no_grad():
            losses.append(model(**batch).loss)
    assert batch["labels"].shape == batch["input_ids"].shape and batch["input_ids"].shape[0] == 1
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)


def test_trainer_on_packed_batches_logs_the_padded_losses_and_metrics(tmp_path):
    records = list(generate_synthetic_records(48, seed=2, num_subclasses=8))
    space = CpcLabelSpace.from_label_lists(record["labels"] for record in records)
    tokenizer = train_patent_tokenizer(
        [r["text"] for r in records], vocab_size=300, min_frequency=1, model_max_length=48
    )
    dataset, _ = tokenize_patent_dataset(Dataset.from_list(records), tokenizer, space, max_length=48)
    runs = []
    for packing in (False, True):
        torch.manual_seed(0)
        config = ModernBertPatentConfig(
            **dict(TINY_MODERNBERT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
            id2label=dict(space.id2label),
            label2id=dict(space.label2id),
            attn_implementation="sdpa",
        )
        model = ModernBertForHierarchicalPatentClassification(config)
        args = PatentTrainingArguments(
            output_dir=str(tmp_path / str(packing)),
            max_steps=3,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=8,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            train_sampling_strategy="sequential",
            use_cpu=True,
            packing=packing,
        )
        collator = MultiLabelCollator(tokenizer, len(space))
        if args.packing:
            collator = use_packed_batches(model, collator)
        trainer = PatentTrainer(
            model=model,
            args=args,
            label_space=space,
            processing_class=tokenizer,
            data_collator=collator,
            train_dataset=dataset.select(range(24)),
            eval_dataset=dataset.select(range(24, 48)),
        )
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        metrics = trainer.evaluate()
        runs.append((losses, metrics))
    (padded_losses, padded_metrics), (packed_losses, packed_metrics) = runs
    assert len(padded_losses) == 3
    assert packed_losses == pytest.approx(padded_losses, rel=1e-5, abs=1e-6)
    scores = [
        key for key in padded_metrics if key.startswith("eval_") and "runtime" not in key and "per_second" not in key
    ]
    assert "eval_f1@1" in scores and "eval_loss" in scores
    for key in scores:
        assert packed_metrics[key] == pytest.approx(padded_metrics[key], rel=1e-5, abs=1e-6), key


def test_token_budget_batches_keep_input_order_within_both_limits():
    lengths = [5, 3, 9, 2, 2, 2, 12, 1]
    batches = token_budget_batches(lengths, max_tokens=10, max_sequences=3)
    assert [index for batch in batches for index in batch] == list(range(len(lengths)))
    assert batches == [[0, 1], [2], [3, 4, 5], [6], [7]]  # 12 tokens exceed the budget: a batch of its own


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    directory = tmp_path_factory.mktemp("packing") / "checkpoint"
    records = list(generate_synthetic_records(120, seed=4, num_subclasses=12))
    space = CpcLabelSpace.from_label_lists(record["labels"] for record in records)
    tokenizer = train_patent_tokenizer(
        [r["text"] for r in records], vocab_size=300, min_frequency=1, model_max_length=48
    )
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=2,
        max_position_embeddings=48,
        local_attention=8,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    build_patent_classifier(config, space).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    space.save(directory / LABEL_SPACE_FILE)
    return directory, [record["text"][: 12 + 2 * index] for index, record in enumerate(records[:40])]


def test_prediction_output_is_unchanged_by_packing(saved_classifier):
    directory, texts = saved_classifier
    padded = PatentClassifier.from_pretrained(directory, device="cpu")
    assert padded.packing is False and padded.compile is False  # the CPU default: padded length buckets
    # A small budget: several packed batches, the last one padded to the same static budget.
    packed = PatentClassifier.from_pretrained(
        directory, device="cpu", packing=True, max_batch_tokens=256, max_batch_size=8
    )
    assert packed.packing and packed.model.config._attn_implementation == PACKED_ATTENTION
    lengths = [len(ids) for ids in packed.encode(texts)]
    assert len(set(lengths)) > 8 and max(lengths) > 16
    assert len(list(packed.packed_batches(packed.encode(texts)))) > 2
    # Few texts: one batch padded to the budget, the one static shape that a compiled model compiles for.
    assert [inputs["input_ids"].shape[1] for _, inputs in packed.packed_batches(packed.encode(texts[:2]))] == [256]
    for some in (texts, texts[:2]):
        torch.testing.assert_close(
            torch.from_numpy(packed.logits(some)), torch.from_numpy(padded.logits(some)), atol=1e-5, rtol=0
        )
    expected, actual = padded.predict(texts, top_k=3), packed.predict(texts, top_k=3)
    assert [[p["code"] for p in row] for row in actual] == [[p["code"] for p in row] for row in expected]
    for actual_row, expected_row in zip(actual, expected):
        assert [p["score"] for p in actual_row] == pytest.approx([p["score"] for p in expected_row], abs=1e-5)


def reference_pack(sequences, pad_id, pad_to_tokens, pad_to_sequences, max_length):
    """pack_batch written out token by token: the ids, positions and segment lengths of the packed row."""
    lengths = [len(ids) for ids in sequences]
    spare = pad_to_tokens - sum(lengths)
    while spare > 0:
        lengths.append(min(spare, max_length))
        spare -= lengths[-1]
    lengths += [0] * (pad_to_sequences - len(lengths))
    ids = [token for sequence in sequences for token in sequence] + [pad_id] * (
        pad_to_tokens - sum(map(len, sequences))
    )
    positions = [position for length in lengths for position in range(length)]
    return ids, positions, lengths


@pytest.mark.parametrize("seed", range(5))
def test_pack_batch_equals_a_token_by_token_reference_on_random_lengths(seed):
    generator = torch.Generator().manual_seed(seed)
    count = int(torch.randint(1, 30, (1,), generator=generator))
    max_length = int(torch.randint(1, 50, (1,), generator=generator))
    sequences = [
        torch.randint(1, VOCAB, (int(length),), generator=generator).tolist()
        for length in torch.randint(1, max_length + 1, (count,), generator=generator)
    ]
    pad_to_tokens = sum(map(len, sequences)) + int(torch.randint(0, 3 * max_length, (1,), generator=generator))
    pad_to_sequences = count + -(-pad_to_tokens // max_length) + seed
    packed = pack_batch(sequences, 7, pad_to_tokens, pad_to_sequences, max_length)
    ids, positions, lengths = reference_pack(sequences, 7, pad_to_tokens, pad_to_sequences, max_length)
    assert packed["input_ids"].tolist() == [ids] and packed["input_ids"].dtype == torch.long
    assert packed["position_ids"].tolist() == [positions] and packed["position_ids"].dtype == torch.long
    assert packed["cu_seq_lens_q"].tolist() == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    assert packed["cu_seq_lens_q"].dtype == torch.int32 and packed["cu_seq_lens_k"] is packed["cu_seq_lens_q"]
    assert packed["max_length_q"] == packed["max_length_k"] == max_length
    unpadded = pack_batch(sequences)
    assert unpadded["cu_seq_lens_q"].tolist() == [0, *torch.tensor(list(map(len, sequences))).cumsum(0).tolist()]
    assert unpadded["max_length_q"] == max(map(len, sequences))
