"""Fixtures of the reliability tests: a tiny saved classifier (weights, tokenizer, label space) that `modernpatent predict`
and `export-onnx` load, and a runner of refused commands."""

import shutil

import pytest

TINY_CODES = ("A01C", "B60K", "F16H", "G06F", "H01L", "H04W")
TINY_TEXTS = [f"A seed drill {i} for seeds and a gearbox {i} for vehicles" for i in range(20)]


@pytest.fixture(scope="session")
def tiny_checkpoint_template(tmp_path_factory):
    """A checkpoint directory built once per session; copy it (:func:`tiny_checkpoint`) before changing it."""
    import torch
    from transformers import ModernBertConfig

    from modernpatent_hf import CpcLabelSpace, build_patent_classifier
    from modernpatent_hf.tokenization import train_patent_tokenizer

    tokenizer = train_patent_tokenizer(TINY_TEXTS, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )
    space = CpcLabelSpace(list(TINY_CODES))
    directory = tmp_path_factory.mktemp("tiny-checkpoint") / "model"
    build_patent_classifier(config, space).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    space.save(directory / "label_space.json")
    return directory


@pytest.fixture
def tiny_checkpoint(tiny_checkpoint_template, tmp_path):
    """A fresh copy of the tiny checkpoint in this test's tmp_path (``tmp_path / "model"``)."""
    return shutil.copytree(tiny_checkpoint_template, tmp_path / "model")


@pytest.fixture
def one_line_refusal(capsys):
    """``refuse(arguments)``: run ``modernpatent ARGUMENTS`` in this process, check that it exits with status 2 and
    prints exactly one line on stderr, and return that line."""
    from modernpatent_hf.cli import main

    def refuse(arguments):
        capsys.readouterr()  # what fixtures printed
        status = main([str(argument) for argument in arguments])
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(lines) == 1, lines
        return lines[0]

    return refuse
