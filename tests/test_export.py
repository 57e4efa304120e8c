"""ONNX export (fp32 and int8) of tiny ModernBERT and BERT classifiers, and the throughput benchmark's pieces."""

import json
import os

import numpy as np
import pytest
import torch

from modernpatent_hf.benchmark_measures import attended_pairs, useful_flops
from modernpatent_hf.benchmark_workload import USPTO3M_CLAIM_TOKENS, claim_like_lengths, save_random_classifier
from modernpatent_hf.cli import main
from modernpatent_hf.data.synthetic import generated_claims
from modernpatent_hf.export import INT8_ONNX_FILE, ONNX_FILE, OnnxPatentClassifier, export_onnx
from modernpatent_hf.predictor import PatentClassifier, pad_token_ids

ARCHITECTURES = ("modernbert", "bert")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """For each architecture: a tiny random checkpoint and its fp32 + int8 ONNX export (done once, it is the slow part)."""
    root = tmp_path_factory.mktemp("export")
    result = {}
    for architecture in ARCHITECTURES:
        checkpoint = save_random_classifier(architecture, str(root / architecture), tiny=True)
        summary = export_onnx(
            checkpoint, str(root / f"{architecture}-onnx"), int8=True, texts=generated_claims(12, seed=3)
        )
        result[architecture] = (checkpoint, str(root / f"{architecture}-onnx"), summary)
    return result


def _torch_model(checkpoint):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.float32).eval()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_onnx_logits_match_torch_at_other_batch_sizes_and_lengths(exported, architecture):
    import onnxruntime

    checkpoint, onnx_dir, summary = exported[architecture]
    assert summary["max_abs_diff"] <= 1e-4
    assert {ONNX_FILE, "config.json", "label_space.json", "tokenizer.json"} <= set(os.listdir(onnx_dir))
    model = _torch_model(checkpoint)
    session = onnxruntime.InferenceSession(os.path.join(onnx_dir, ONNX_FILE), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    # Neither shape is the traced example's (2 x 16); 70 tokens cross the tiny ModernBERT's 16-token local window.
    for lengths in ([5], [70, 33, 12, 70, 1]):
        ids, mask = pad_token_ids([rng.integers(5, 500, size=length).tolist() for length in lengths], pad_id=3)
        with torch.inference_mode():
            expected = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        got = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        assert got.shape == expected.shape == (len(lengths), 665)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("architecture", ["modernbert"])
def test_onnx_classifier_returns_torch_logits_in_input_order(exported, architecture):
    checkpoint, onnx_dir, _ = exported[architecture]
    texts = [" ".join(generated_claims(6)[: 1 + i % 3]) for i in range(6)]  # different lengths, not sorted
    # A small token budget forces several buckets, so rows really are reordered and put back.
    onnx_logits = OnnxPatentClassifier(onnx_dir, max_batch_tokens=200).logits(texts)
    torch_logits = PatentClassifier.from_pretrained(checkpoint, device="cpu").logits(texts)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_int8_model_runs_and_reports_its_agreement(exported, architecture):
    import onnx

    _, onnx_dir, summary = exported[architecture]
    assert summary["int8_onnx"].endswith(INT8_ONNX_FILE) and summary["agreement_texts"] == 12
    assert isinstance(summary["int8_top1_agreement"], float) and 0.0 <= summary["int8_top1_agreement"] <= 1.0
    operators = {node.op_type for node in onnx.load(os.path.join(onnx_dir, INT8_ONNX_FILE)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= operators
    texts = generated_claims(3)
    int8_logits = OnnxPatentClassifier(onnx_dir, int8=True).logits(texts)
    fp32_logits = OnnxPatentClassifier(onnx_dir).logits(texts)
    assert int8_logits.shape == fp32_logits.shape == (3, 665)
    assert np.isfinite(int8_logits).all() and not np.array_equal(int8_logits, fp32_logits)


def test_export_refuses_a_directory_without_tokenizer(tmp_path):
    save_random_classifier("bert", str(tmp_path), tiny=True)
    os.remove(tmp_path / "tokenizer_config.json")
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        export_onnx(str(tmp_path), str(tmp_path / "onnx"))


def test_claim_lengths_follow_uspto3m_first_claims():
    lengths = claim_like_lengths(4000, max_length=1024)
    assert abs(lengths.mean() - USPTO3M_CLAIM_TOKENS["mean"]) < 0.05 * USPTO3M_CLAIM_TOKENS["mean"]
    assert abs(np.median(lengths) - USPTO3M_CLAIM_TOKENS["median"]) < 0.05 * USPTO3M_CLAIM_TOKENS["median"]
    assert abs(np.percentile(lengths, 99) - USPTO3M_CLAIM_TOKENS["p99"]) < 0.1 * USPTO3M_CLAIM_TOKENS["p99"]
    small = claim_like_lengths(64, max_length=1024)
    assert abs(small.mean() - USPTO3M_CLAIM_TOKENS["mean"]) < 0.1 * USPTO3M_CLAIM_TOKENS["mean"]
    assert not np.array_equal(small, np.sort(small))  # shuffled: the naive path must not get sorted input
    assert claim_like_lengths(500, max_length=256).max() == 256


def test_attention_pairs_and_useful_flops_count_only_real_tokens():
    for length, window in ((10, None), (10, 2), (7, 64), (130, 64)):
        brute = sum(1 for i in range(length) for j in range(length) if window is None or abs(i - j) <= window)
        assert attended_pairs(length, window) == brute
    from transformers import BertConfig

    from modernpatent_hf import CpcLabelSpace, build_patent_classifier

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    model = build_patent_classifier(config, CpcLabelSpace(["A01B", "B65D", "G06F"]))
    # One layer: q, k, v, o (8x8 each) + 8->16 + 16->8 per token; head dense 8x8 + classifier 8x3 per text.
    per_token, per_text = 4 * 64 + 2 * 128, 64 + 24
    expected = 2 * per_token * (3 + 5) + 2 * per_text * 2 + 4 * 8 * (3 * 3 + 5 * 5)
    assert useful_flops(model, [3, 5]) == expected


def test_bench_cli_prints_a_table_and_writes_json(tmp_path, capsys):
    # In this process (not run_cli's subprocess): a second interpreter would spend most of the test importing torch.
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--tiny",
                "--num-samples",
                "6",
                "--repeats",
                "1",
                "--paths",
                "naive,ours,packed,int8,onnx",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| model | path | samples/s |" in printed
    results = json.loads(out.read_text())
    assert set(results) == {"machine", "settings", "models", "training", "comparison"}
    assert "BERT seed setting (batch 32, input order, padded)" in printed and "BERT in our fastest path" in printed
    assert [model["model"] for model in results["models"]] == ["modernbert", "bert"]
    for model in results["models"]:
        assert model["matmul_peak_flops_per_s"] > 0 and model["int8_matmul_speedup"] > 0
        assert model["inputs"]["samples"] == 6
        assert [row["path"] for row in model["rows"]] == ["naive", "ours", "packed", "int8", "onnx"]
        for row in model["rows"]:
            assert row["samples_per_s"] > 0 and row["tokens_per_s"] > 0 and row["peak_percent"] > 0
            assert row["speedup_vs_naive"] > 0 and 0.0 <= row["top1_agreement_vs_ours"] <= 1.0
            assert f"| {model['model']} | {row['path']} |" in printed
        # Same model, same inputs, fp32: the naive, packed and ONNX paths score like ours.
        assert all(
            row["max_abs_diff_vs_ours"] < 1e-4 for row in model["rows"] if row["path"] in ("naive", "packed", "onnx")
        )
        assert all(len(row["seconds_per_repeat"]) == 1 and row["warmup_seconds"] > 0 for row in model["rows"])
        # The CPU runs packed batches through per-segment sdpa, uncompiled.
        packed = model["rows"][2]
        assert packed["attention"] == "per-segment sdpa" and packed["compiled_graphs"] == 0


def test_bench_cli_rejects_unknown_paths_in_one_line(capsys):
    assert main(["bench", "--tiny", "--paths", "naive,fast"]) == 2
    error = capsys.readouterr().err
    assert "unknown model or path 'fast'" in error and len(error.strip().splitlines()) == 1
