"""The patent classifiers on tiny random models: outputs, attention backends, padding, training, loading, LoRA."""

import math

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertModel,
)

from modernpatent_hf import (
    BertForHierarchicalPatentClassification,
    BertPatentConfig,
    CpcLabelSpace,
    ModernBertForHierarchicalPatentClassification,
    ModernBertPatentConfig,
    build_patent_classifier,
)
from modernpatent_hf.model_factory import checkpoint_config

SPACE = CpcLabelSpace(["A01B", "A01C", "A21D", "B01D", "B65D", "H01L", "H04W", "Y10S"])
PAD = 0
TINY_MODERNBERT = dict(
    vocab_size=120,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=2,
    pad_token_id=PAD,
    bos_token_id=1,
    eos_token_id=2,
    cls_token_id=1,
    sep_token_id=2,
    local_attention=8,  # layer 1 is a sliding-window layer; inputs of 16 tokens exceed the window
)
TINY_BERT = dict(
    vocab_size=120,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=2,
    pad_token_id=PAD,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
LABELS = dict(id2label=dict(SPACE.id2label), label2id=dict(SPACE.label2id))


def tiny_model(attn_implementation="sdpa", **overrides):
    torch.manual_seed(0)
    config = ModernBertPatentConfig(**TINY_MODERNBERT, **LABELS, attn_implementation=attn_implementation, **overrides)
    return ModernBertForHierarchicalPatentClassification(config)


def batch(size=3, length=16, seed=1):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, TINY_MODERNBERT["vocab_size"], (size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    # Right padding of different lengths, as a tokenizer makes for a batch.
    for row in range(1, size):
        input_ids[row, length - 3 * row :] = PAD
        attention_mask[row, length - 3 * row :] = 0
    labels = torch.zeros(size, len(SPACE))
    for row in range(size):
        labels[row, torch.randint(len(SPACE), (1 + row % 2,), generator=generator)] = 1.0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def test_forward_returns_loss_and_hierarchy_level_scores():
    model = tiny_model().eval()
    inputs = batch()
    output = model(**inputs)
    assert output.loss.ndim == 0 and math.isfinite(output.loss.item())
    assert output.logits.shape == (3, len(SPACE))
    assert output.class_logits.shape == (3, len(SPACE.classes))
    assert output.section_logits.shape == (3, len(SPACE.sections))
    # Each class / section score is the max over its member subclasses' logits.
    for level, names, logits in ((2, SPACE.classes, output.class_logits), (0, SPACE.sections, output.section_logits)):
        for index, name in enumerate(names):
            members = [i for i, code in enumerate(SPACE.codes) if code[: level + 1] == name]
            assert torch.equal(logits[:, index], output.logits[:, members].amax(dim=1))
    assert model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).loss is None


def test_the_loss_follows_the_config_at_every_forward():
    model = tiny_model(loss_type="bce").eval()
    inputs = batch()
    with torch.no_grad():
        plain = model(**inputs).loss.item()
        model.config.class_weights = [2.0] * len(SPACE)
        assert model(**inputs).loss.item() == pytest.approx(2 * plain, rel=1e-6)
        model.config.loss_type, model.config.hierarchy_weight = "hierarchical", 1.0
        assert model(**inputs).loss.item() > 2 * plain + 1e-3


def test_hierarchy_buffers_are_not_in_the_state_dict_and_the_config_stores_no_hierarchy():
    model = tiny_model()
    assert not any(name in model.state_dict() for name in ("subclass_to_class", "subclass_to_section"))
    assert not {"classes", "sections", "subclass_to_class"} & set(model.config.to_dict())
    assert model.subclass_to_class.tolist() == SPACE.subclass_to_class.tolist()
    assert model.subclass_to_section.tolist() == SPACE.subclass_to_section.tolist()


def test_sdpa_and_eager_attention_give_the_same_logits():
    inputs = batch()
    sdpa = tiny_model("sdpa").eval()
    eager = tiny_model("eager").eval()
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    with torch.no_grad():
        difference = (sdpa(**inputs).logits - eager(**inputs).logits).abs().max().item()
    assert difference < 1e-5


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_a_sequence_does_not_change_its_logits(pooling):
    model = tiny_model(pooling=pooling).eval()
    input_ids = torch.randint(3, 120, (1, 11), generator=torch.Generator().manual_seed(3))
    padded = torch.cat([input_ids, torch.full((1, 5), PAD)], dim=1)
    padded_mask = torch.cat([torch.ones(1, 11, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        alone = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
        in_padding = model(input_ids=padded, attention_mask=padded_mask).logits
        unmasked = model(input_ids=padded, attention_mask=torch.ones_like(padded)).logits
    assert torch.allclose(alone, in_padding, atol=1e-5)
    # The check can fail: attending to (or averaging) the padding does change the logits.
    assert not torch.allclose(alone, unmasked, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    inputs = batch()
    gradients = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.activation_checkpointing_enable()
        layer_calls = []
        model.model.layers[0].attn.Wqkv.register_forward_hook(lambda *args: layer_calls.append(1))
        model(**inputs).loss.backward()
        # Checkpointing recomputes the layer's forward during the backward pass (so Wqkv runs twice).
        assert len(layer_calls) == (2 if checkpointing else 1)
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-6), name


def test_bf16_forward_on_cpu():
    model = tiny_model().to(torch.bfloat16).eval()
    output = model(**batch())
    assert output.logits.dtype == torch.bfloat16
    assert output.class_logits.dtype == torch.bfloat16
    assert math.isfinite(output.loss.item())


@pytest.mark.parametrize("loss_type", ["bce", "hierarchical", "upstream_hierarchical"])
def test_training_changes_every_parameter_and_lowers_the_loss(loss_type):
    weights = [0.5 + i / len(SPACE) for i in range(len(SPACE))]
    model = tiny_model(loss_type=loss_type, class_weights=weights).train()
    inputs = batch()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # The pad token's embedding row gets no gradient by design (padding_idx); every parameter tensor must move.
    unchanged = [name for name, p in model.named_parameters() if torch.equal(before[name], p.detach())]
    assert unchanged == []


def test_trainer_scales_the_mean_loss_for_gradient_accumulation(tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], gradient_accumulation_steps=2)
    # False: the Trainer divides our (mean) loss by the accumulation steps instead of passing num_items_in_batch.
    assert Trainer(model=tiny_model(), args=args).model_accepts_loss_kwargs is False


def test_bert_counterpart_shares_head_pooling_and_loss():
    torch.manual_seed(0)
    model = BertForHierarchicalPatentClassification(BertPatentConfig(**TINY_BERT, **LABELS)).eval()
    assert model.config.pooling == "cls"
    assert type(model.head) is type(tiny_model().head)
    inputs = batch()
    output = model(**inputs)
    assert output.logits.shape == (3, len(SPACE)) and output.section_logits.shape == (3, len(SPACE.sections))
    expected = model.compute_loss(output.logits, inputs["labels"])
    assert output.loss.item() == pytest.approx(expected.item())
    with torch.no_grad():
        eager = BertForHierarchicalPatentClassification(
            BertPatentConfig(**TINY_BERT, **LABELS, attn_implementation="eager")
        )
        eager.load_state_dict(model.state_dict())
        assert torch.allclose(eager.eval()(**inputs).logits, output.logits, atol=1e-5)


@pytest.mark.parametrize("stock_class", [ModernBertForMaskedLM, ModernBertModel])
def test_from_pretrained_on_a_stock_checkpoint_loads_the_encoder(tmp_path, stock_class):
    torch.manual_seed(0)
    stock = stock_class(ModernBertConfig(**TINY_MODERNBERT))
    stock.save_pretrained(tmp_path)
    model, info = ModernBertForHierarchicalPatentClassification.from_pretrained(
        tmp_path, output_loading_info=True, **LABELS
    )
    # Only the head may be missing (an MLM checkpoint also provides head.dense / head.norm, as stock classifiers use).
    assert info["missing_keys"] and all(key.startswith(("head.", "classifier.")) for key in info["missing_keys"])
    expected_missing = {"classifier.weight", "classifier.bias"}
    if stock_class is ModernBertModel:
        expected_missing |= {"head.dense.weight", "head.norm.weight"}
    assert info["missing_keys"] == expected_missing
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    stock_weights = stock.state_dict()
    encoder = {name: tensor for name, tensor in model.state_dict().items() if name.startswith("model.")}
    assert len(encoder) == len([n for n in stock_weights if not n.startswith(("head.", "decoder."))])
    for name, tensor in encoder.items():
        stock_name = name if stock_class is ModernBertForMaskedLM else name.removeprefix("model.")
        assert torch.equal(tensor, stock_weights[stock_name]), name


def test_build_patent_classifier_converts_a_stock_modernbert_config(tmp_path):
    ModernBertForMaskedLM(ModernBertConfig(**TINY_MODERNBERT)).save_pretrained(tmp_path)
    model = build_patent_classifier(tmp_path, SPACE, attn_implementation="eager", loss_type="bce", pooling="cls")
    assert isinstance(model, ModernBertForHierarchicalPatentClassification)
    assert model.config.model_type == "modernbert" and "model_type" not in vars(model.config)
    assert model.config.id2label == SPACE.id2label and model.config.label2id == SPACE.label2id
    assert (model.config.loss_type, model.config.pooling) == ("bce", "cls")
    assert model.config._attn_implementation == "eager"
    assert model.config.hidden_size == TINY_MODERNBERT["hidden_size"]


def test_build_patent_classifier_reinitializes_a_stock_classifier_of_another_size(tmp_path):
    from transformers import ModernBertForSequenceClassification

    torch.manual_seed(0)
    stock = ModernBertForSequenceClassification(ModernBertConfig(**TINY_MODERNBERT, num_labels=3))
    stock.save_pretrained(tmp_path)
    model = build_patent_classifier(tmp_path, SPACE)
    assert model.classifier.weight.shape == (len(SPACE), TINY_MODERNBERT["hidden_size"])
    assert torch.equal(model.head.dense.weight, stock.head.dense.weight)
    assert torch.equal(model.model.layers[1].attn.Wqkv.weight, stock.model.layers[1].attn.Wqkv.weight)


def test_build_patent_classifier_detects_bert(tmp_path):
    torch.manual_seed(0)
    stock = BertForMaskedLM(BertConfig(**TINY_BERT))
    stock.save_pretrained(tmp_path)
    model = build_patent_classifier(tmp_path, SPACE)
    assert isinstance(model, BertForHierarchicalPatentClassification)
    assert model.config.model_type == "bertpatent" and model.config.pooling == "cls"
    stock_weights = stock.state_dict()
    for name, tensor in model.bert.state_dict().items():
        assert torch.equal(tensor, stock_weights[f"bert.{name}"]), name


def test_build_patent_classifier_from_a_config_gives_a_random_model():
    model = build_patent_classifier(ModernBertConfig(**TINY_MODERNBERT), SPACE, hierarchy_weight=0.2)
    assert isinstance(model, ModernBertForHierarchicalPatentClassification)
    assert model.config.hierarchy_weight == 0.2 and model.config.num_labels == len(SPACE)


def test_saved_checkpoint_round_trips_through_the_auto_classes(tmp_path):
    model = tiny_model(loss_type="upstream_hierarchical", class_weights=[1.5] * len(SPACE)).eval()
    model.save_pretrained(tmp_path)
    # Saved as a stock ModernBERT classifier; checkpoint_config reads it back as ours, and the Auto classes build
    # our class for our config.
    assert type(AutoConfig.from_pretrained(tmp_path)) is ModernBertConfig
    config = checkpoint_config(tmp_path)
    assert isinstance(config, ModernBertPatentConfig)
    inputs = batch()
    with torch.no_grad():
        expected = model(**inputs)
        loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, config=config).eval()
        assert type(loaded) is ModernBertForHierarchicalPatentClassification
        assert loaded.config.class_weights == [1.5] * len(SPACE)
        assert loaded.config.loss_type == "upstream_hierarchical"
        output = loaded(**inputs)
        assert torch.equal(output.logits, expected.logits) and torch.equal(output.loss, expected.loss)
        # AutoModel loads the encoder (stock ModernBertModel here): the classifier's own encoder weights.
        encoder = AutoModel.from_pretrained(tmp_path).eval()
        assert torch.equal(encoder(**inputs).last_hidden_state, model.model(**inputs).last_hidden_state)
    # Continuing from a saved patent checkpoint with the same label space keeps its head.
    again = build_patent_classifier(tmp_path, SPACE, loss_type="bce")
    assert torch.equal(again.classifier.weight, model.classifier.weight) and again.config.loss_type == "bce"


def test_build_patent_classifier_rejects_other_labels_and_other_models(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    other = CpcLabelSpace(["A01B", "C07D"])
    with pytest.raises(ValueError, match="predicts 8 labels but the label space has 2 subclasses") as error:
        build_patent_classifier(tmp_path, other)
    assert "\n" not in str(error.value) and "C07D" in str(error.value)
    with pytest.raises(ValueError, match="model_type 'gpt2'") as error:
        build_patent_classifier(GPT2Config(n_layer=1, n_embd=32, n_head=2), SPACE)
    assert "\n" not in str(error.value)


def test_lora_wrap_trains_only_adapters_head_and_classifier():
    peft = pytest.importorskip("peft")
    model = tiny_model()
    lora = peft.LoraConfig(r=4, target_modules=["Wqkv", "Wo", "Wi"], modules_to_save=["head", "classifier"])
    wrapped = peft.get_peft_model(model, lora)
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable
    for name in trainable:
        assert ".lora_A." in name or ".lora_B." in name or ".modules_to_save." in name, name
    assert any(".head.modules_to_save." in n for n in trainable)
    assert any(".classifier.modules_to_save." in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable if ".lora_" in n} == {"Wqkv", "Wo", "Wi"}
    wrapped(**batch()).loss.backward()
    frozen_with_gradient = [n for n, p in wrapped.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen_with_gradient == []
    assert all(wrapped.get_parameter(n).grad is not None for n in trainable)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (dict(loss_type="focal"), "unknown loss_type 'focal'"),
        (dict(pooling="max"), "unknown pooling 'max'"),
        (dict(class_weights=[1.0, 2.0]), "class_weights has 2 entries but the config has 8 labels"),
        (dict(class_weights=[1.0] * 7 + [-1.0]), "class_weights must hold finite non-negative numbers"),
        (dict(distance_weights=[1.0, 0.5]), "distance_weights [1.0, 0.5] must hold 3 numbers"),
        (dict(hierarchy_weight=-0.5), "hierarchy_weight must hold finite non-negative numbers"),
        (dict(id2label={0: "A01B", 1: "H01"}, label2id={"A01B": 0, "H01": 1}), "label 1 is 'H01'"),
        (dict(id2label={0: "A01B", 1: "a01c"}, label2id={"A01B": 0, "a01c": 1}), "label 1 is 'a01c'"),
        (dict(problem_type="single_label_classification"), "problem_type 'single_label_classification'"),
    ],
)
def test_bad_config_values_are_one_line_errors(bad, fragment):
    values = {**TINY_MODERNBERT, **LABELS, **bad}
    for config_class in (ModernBertPatentConfig, BertPatentConfig):
        with pytest.raises(ValueError) as error:
            config_class(**{k: v for k, v in values.items() if k in bad or k in LABELS or k == "vocab_size"})
        assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_model_needs_cpc_labels():
    with pytest.raises(ValueError, match="has no CPC labels") as error:
        ModernBertForHierarchicalPatentClassification(ModernBertPatentConfig(**TINY_MODERNBERT))
    assert "\n" not in str(error.value)


def test_flash_attention_2_matches_sdpa_where_installed():
    from transformers.utils import is_flash_attn_2_available

    if not (torch.cuda.is_available() and is_flash_attn_2_available()):
        pytest.skip("flash_attention_2 needs CUDA and the flash-attn package")
    inputs = {key: value.cuda() for key, value in batch().items()}
    sdpa = tiny_model("sdpa").to("cuda", torch.bfloat16).eval()
    flash = tiny_model("flash_attention_2").to("cuda", torch.bfloat16).eval()
    with torch.no_grad():
        assert torch.allclose(sdpa(**inputs).logits.float(), flash(**inputs).logits.float(), atol=2e-2)
