"""Fixtures of the reliability tests: a tiny saved classifier (weights, tokenizer, label space) that `modernpatent predict`
and `export-onnx` load, and a runner of refused commands. The helpers behind them are in testing_utils.py."""

import shutil

import pytest

import testing_utils


@pytest.fixture(scope="session")
def tiny_checkpoint_template(tmp_path_factory):
    """:func:`testing_utils.save_six_code_checkpoint`, built once per session; copy it (:func:`tiny_checkpoint`)
    before changing it."""
    return testing_utils.save_six_code_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint") / "model")


@pytest.fixture
def tiny_checkpoint(tiny_checkpoint_template, tmp_path):
    """A fresh copy of the tiny checkpoint in this test's tmp_path (``tmp_path / "model"``)."""
    return shutil.copytree(tiny_checkpoint_template, tmp_path / "model")


@pytest.fixture
def one_line_refusal(capsys):
    """``refuse(arguments)``: :func:`testing_utils.refusal_line` of ``modernpatent ARGUMENTS`` run in this process
    (exit status 2, exactly one line on stderr)."""
    return lambda arguments: testing_utils.refusal_line(arguments, capsys)
