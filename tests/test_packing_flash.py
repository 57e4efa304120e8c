"""The CUDA branch of packed attention, run on the CPU: a CPU kernel for the op behind ``varlen_attn`` checks the flash
kernel's contract (half precision, strides, int32 ``cu_seq_lens``, head size, ``max_length``, window) and computes
exact attention, and ``FLASH_VARLEN_DEVICE_TYPES`` routes the package's flash branch to it. Then the compiled packed
predictor is checked as it runs on a GPU: one graph per static shape, no recompiles, the padded logits, no per-segment
fallback; and the CUDA refusals (fp32, attention dropout) are checked where no GPU is."""

import pytest
import torch
from transformers import AutoModel, BertConfig, ModernBertConfig

from modernpatent_hf import packing
from modernpatent_hf.packing import pack_batch, segment_attention, use_packed_attention
from modernpatent_hf.predictor import PatentClassifier

from testing_utils import save_tiny_checkpoint

# The custom op torch.nn.attention.varlen.varlen_attn calls (its CUDA kernel is aten._flash_attention_forward).
VARLEN_OP = "torch_attn::_varlen_attn"
FLASH_HEAD_DIM_MULTIPLE = 8
FLASH_MAX_HEAD_DIM = 256


def check_flash_contract(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, window_size, enable_gqa, extras):
    """Fail with the broken rule unless the arguments are what the flash varlen kernel accepts and computes right."""
    assert query.dtype in (torch.bfloat16, torch.float16), f"flash runs in bf16/fp16, got {query.dtype}"
    assert key.dtype == value.dtype == query.dtype, "query, key and value must share a dtype"
    assert query.dim() == key.dim() == value.dim() == 3, "query, key and value must be [T, H, D]"
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        assert tensor.stride(-1) == 1, f"{name}'s last dimension must have stride 1, got strides {tensor.stride()}"
    head_dim = query.shape[-1]
    assert key.shape[-1] == value.shape[-1] == head_dim, "query, key and value must share the head size"
    assert head_dim % FLASH_HEAD_DIM_MULTIPLE == 0, f"head size {head_dim} is not a multiple of 8"
    assert head_dim <= FLASH_MAX_HEAD_DIM, f"head size {head_dim} is over 256"
    assert key.shape == value.shape and key.shape[0] == query.shape[0], "key/value must be [T, H, D] like the query"
    assert enable_gqa or key.shape[1] == query.shape[1], "without GQA query and key need the same number of heads"
    assert all(extra is None for extra in extras), "seqused_k, block_table and num_splits are not used here"
    for name, cu_seq, maximum in (("cu_seq_q", cu_seq_q, max_q), ("cu_seq_k", cu_seq_k, max_k)):
        assert cu_seq is not None and cu_seq.dtype == torch.int32, f"{name} must be int32"
        assert cu_seq.dim() == 1 and cu_seq.is_contiguous(), f"{name} must be one contiguous dimension"
        assert cu_seq.device == query.device, f"{name} must be on the query's device"
        lengths = cu_seq.diff()
        assert int(cu_seq[0]) == 0 and bool((lengths >= 0).all()), f"{name} must start at 0 and never decrease"
        assert int(cu_seq[-1]) <= query.shape[0], f"{name} ends past the tokens"
        assert int(lengths.max()) <= maximum, f"{name}'s longest segment ({int(lengths.max())}) exceeds max {maximum}"
    assert torch.equal(cu_seq_q, cu_seq_k), "packed self-attention has the same segments for queries and keys"
    assert len(window_size) == 2 and all(side >= -1 for side in window_size), f"bad window_size {window_size}"


def flash_contract_attention(
    query,
    key,
    value,
    cu_seq_q,
    cu_seq_k,
    max_q,
    max_k,
    is_causal=False,
    scale=None,
    window_size=None,
    enable_gqa=False,
    seqused_k=None,
    block_table=None,
    num_splits=None,
):
    """A CPU kernel of :data:`VARLEN_OP`: the flash contract checked, then exact attention in float32 per segment,
        where key j is seen from query i when ``i - left <= j <= i + right`` (-1: unbounded). Tokens past the last
        segment are NaN (flash leaves them unwritten). Returns ``(output [T, H, D], logsumexp [H, T], rng_state)``, the
    output laid out like the query, as flash allocates it."""
    window_size = [-1, -1] if window_size is None else list(window_size)
    check_flash_contract(
        query,
        key,
        value,
        cu_seq_q,
        cu_seq_k,
        max_q,
        max_k,
        window_size,
        enable_gqa,
        (seqused_k, block_table, num_splits),
    )
    left, right = window_size[0], 0 if is_causal else window_size[1]
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    output = torch.full(query.shape, float("nan"), dtype=torch.float32)
    logsumexp = torch.full(query.shape[:2], float("nan"), dtype=torch.float32).T.contiguous()
    if enable_gqa:
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    boundaries = cu_seq_q.tolist()
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        if end == start:
            continue
        q, k, v = (tensor[start:end].float().transpose(0, 1) for tensor in (query, key, value))  # [H, L, D]
        scores = q @ k.transpose(1, 2) * scale
        offsets = torch.arange(end - start)[None, :] - torch.arange(end - start)[:, None]  # key index - query index
        hidden = torch.zeros_like(offsets, dtype=torch.bool)
        if left >= 0:
            hidden |= offsets < -left
        if right >= 0:
            hidden |= offsets > right
        scores = scores.masked_fill(hidden, float("-inf"))
        logsumexp[:, start:end] = scores.logsumexp(dim=-1)
        output[start:end] = (scores.softmax(dim=-1) @ v).transpose(0, 1)
    FLASH_CALLS.append((tuple(query.shape), query.dtype, tuple(window_size)))
    return torch.empty_like(query).copy_(output), logsumexp, torch.zeros(2, dtype=torch.uint64)


FLASH_CALLS = []


@pytest.fixture
def flash_on_cpu(monkeypatch):
    """The package's flash branch on the CPU, into :func:`flash_contract_attention`; the per-segment path fails.

    Yields the list of the contract kernel's calls (shape, dtype, window)."""
    FLASH_CALLS.clear()

    def refuse_segment_attention(*args, **kwargs):
        raise AssertionError("the per-segment attention ran where flash varlen attention serves")

    monkeypatch.setattr(packing, "FLASH_VARLEN_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(packing, "segment_attention", refuse_segment_attention)
    with torch.library._scoped_library("torch_attn", "IMPL") as library:
        library.impl(VARLEN_OP.split("::")[1], flash_contract_attention, "CPU")
        yield FLASH_CALLS
    torch._dynamo.reset()


def random_packed_attention(head_dim=16, heads=2, lengths=(5, 1, 12, 9), dtype=torch.bfloat16):
    generator = torch.Generator().manual_seed(0)
    total = sum(lengths)
    qkv = torch.randn(3, 1, heads, total, head_dim, generator=generator).to(dtype)
    cu_seq_lens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return qkv, cu_seq_lens, max(lengths)


@pytest.mark.parametrize("sliding_window", [None, 4])
def test_the_flash_branch_on_the_contract_kernel_equals_the_per_segment_attention(flash_on_cpu, sliding_window):
    (query, key, value), cu_seq_lens, longest = random_packed_attention()
    module = torch.nn.Module()
    flash, _ = packing.packed_attention_forward(
        module, query, key, value, None, 0.3, 0.0, sliding_window, cu_seq_lens, cu_seq_lens, longest, longest
    )
    assert len(flash_on_cpu) == 1 and flash_on_cpu[0][2] == ((-1, -1) if sliding_window is None else (3, 3))
    # The per-segment attention in float32 (the fixture only replaced the module's name for it).
    exact = segment_attention(
        *(tensor[0].transpose(0, 1).float() for tensor in (query, key, value)),
        cu_seq_lens,
        0.3,
        -1 if sliding_window is None else sliding_window - 1,
    )
    assert flash.dtype == torch.bfloat16 and flash.shape == (1, *exact.shape)
    torch.testing.assert_close(flash[0].float(), exact, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dtype=torch.float32), "bf16/fp16"),
        (dict(head_dim=12), "multiple of 8"),
        (dict(head_dim=264), "over 256"),
        (dict(cu_dtype=torch.int64), "int32"),
        (dict(max_length=11), "exceeds max"),
        (dict(strided=True), "stride 1"),
    ],
)
def test_the_contract_kernel_refuses_what_flash_refuses(flash_on_cpu, change, message):
    (query, key, value), cu_seq_lens, longest = random_packed_attention(
        head_dim=change.get("head_dim", 16), dtype=change.get("dtype", torch.bfloat16)
    )
    query, key, value = (tensor[0].transpose(0, 1) for tensor in (query, key, value))  # [T, H, D]
    if change.get("strided"):
        query = torch.cat([query, query], dim=-1)[..., ::2]
    cu_seq_lens = cu_seq_lens.to(change.get("cu_dtype", torch.int32))
    max_length = change.get("max_length", longest)
    with pytest.raises(AssertionError, match=message):
        torch.nn.attention.varlen.varlen_attn(query, key, value, cu_seq_lens, cu_seq_lens, max_length, max_length)


@pytest.mark.parametrize(
    "dtype, dropout, message", [(torch.float32, 0.0, "bfloat16 or float16"), (None, 0.1, "dropout")]
)
def test_on_a_flash_device_the_per_segment_path_is_refused_in_one_line(flash_on_cpu, dtype, dropout, message):
    (query, key, value), cu_seq_lens, longest = random_packed_attention(dtype=dtype or torch.bfloat16)
    with pytest.raises(ValueError, match=message) as refusal:
        packing.packed_attention_forward(
            torch.nn.Module(), query, key, value, None, None, dropout, None, cu_seq_lens, cu_seq_lens, longest, longest
        )
    assert "\n" not in str(refusal.value) and "padded batches" in str(refusal.value)
    assert not flash_on_cpu


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given and hands them to ``backend``."""

    def __init__(self, backend):
        self.backend = torch._dynamo.lookup_backend(backend)
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return self.backend(graph_module, example_inputs)


@pytest.fixture
def compile_calls(monkeypatch):
    """``torch.compile`` as the predictor calls it, recorded; ``compile_calls.backend`` (a name) is put in its place,
    wrapped in a :class:`CountingBackend` (``compile_calls.counter``)."""

    class CompileCalls(list):
        backend = "aot_eager"
        counter = None

    calls = CompileCalls()
    compile_function = torch.compile

    def recording_compile(model, **options):
        calls.append(options)
        calls.counter = CountingBackend(calls.backend)
        # fullgraph: a graph break fails here instead of passing as one more graph.
        return compile_function(model, **{**options, "backend": calls.counter, "fullgraph": True})

    monkeypatch.setattr(torch, "compile", recording_compile)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


@pytest.fixture(scope="module", params=[ModernBertConfig, BertConfig], ids=["modernbert", "bert"])
def tiny_checkpoint(request, tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp(request.param.__name__) / "checkpoint", request.param)


TEXTS = [
    " ".join(["a rotor blade for a pump housing with a sensor coil"] * (1 + index % 5) + [f"variant {index}"])
    for index in range(40)
]


# Calls of one to many texts: several packed batches, and a last one padded to its static shape.
CALLS = [TEXTS, TEXTS[:1], TEXTS[:3]]


def packed_shapes(classifier, calls):
    """The shapes of the packed ``input_ids`` of ``calls``: the static shapes the compiled model meets."""
    return {
        tuple(inputs["input_ids"].shape)
        for texts in calls
        for _, inputs in classifier.packed_batches(classifier.encode(texts))
    }


def compiled_flash_logits_equal_padded_logits(checkpoint, compile_calls, flash_calls):
    padded = PatentClassifier.from_pretrained(checkpoint, device="cpu", dtype="bfloat16", packing=False)
    packed = PatentClassifier.from_pretrained(
        checkpoint, device="cpu", dtype="bfloat16", packing=True, compile=True, max_batch_tokens=256, max_batch_size=8
    )
    assert len(compile_calls) == 1 and compile_calls[0].get("dynamic") is False
    warm_up = [packed.logits(texts) for texts in CALLS]
    assert compile_calls.counter.graphs == len(packed_shapes(packed, CALLS))  # one graph per static shape
    assert flash_calls and {dtype for _, dtype, _ in flash_calls} == {torch.bfloat16}
    if isinstance(packed.model.config, ModernBertConfig):  # its sliding layers reach the kernel with their window
        half = packed.model.config.local_attention // 2
        assert {window for _, _, window in flash_calls} == {(-1, -1), (half, half)}
    with torch._dynamo.config.patch(error_on_recompile=True):
        again = [packed.logits(texts) for texts in CALLS]
    assert compile_calls.counter.graphs == len(packed_shapes(packed, CALLS))
    for texts, first, second in zip(CALLS, warm_up, again):
        assert (first == second).all()
        expected = padded.logits(texts)
        assert abs(expected).max() > 0.05
        torch.testing.assert_close(torch.from_numpy(first), torch.from_numpy(expected), atol=3e-2, rtol=3e-2)


def test_compiled_packed_prediction_runs_the_flash_branch_once_per_budget(
    tiny_checkpoint, compile_calls, flash_on_cpu
):
    compiled_flash_logits_equal_padded_logits(tiny_checkpoint, compile_calls, flash_on_cpu)


@pytest.mark.slow
def test_compiled_packed_prediction_lowers_the_flash_branch_through_inductor(tmp_path, compile_calls, flash_on_cpu):
    compile_calls.backend = "inductor"
    compiled_flash_logits_equal_padded_logits(
        save_tiny_checkpoint(tmp_path / "checkpoint"), compile_calls, flash_on_cpu
    )


def test_the_predictor_compiles_its_flash_packed_model_as_one_graph(tiny_checkpoint, compile_calls, flash_on_cpu):
    PatentClassifier.from_pretrained(tiny_checkpoint, device="cpu", dtype="bfloat16", packing=True, compile=True)
    assert compile_calls[0].get("fullgraph") is True


def test_packed_attention_sets_attention_dropout_to_zero_with_one_warning(caplog, flash_on_cpu):
    sizes = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2)
    configs = {
        "attention_dropout": ModernBertConfig(
            **sizes,
            attention_dropout=0.2,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            cls_token_id=1,
            sep_token_id=2,
        ),
        "attention_probs_dropout_prob": BertConfig(**sizes, attention_probs_dropout_prob=0.2),
    }
    for field, config in configs.items():
        model = AutoModel.from_config(config, attn_implementation="sdpa", dtype=torch.bfloat16).train()
        with caplog.at_level("WARNING", logger=packing.__name__):
            caplog.clear()
            use_packed_attention(model)
            use_packed_attention(model)  # already 0: no second warning
        assert [record.getMessage() for record in caplog.records] == [
            f"packed attention has no attention dropout: {field} 0.2 set to 0"
        ]
        assert getattr(model.config, field) == 0.0
        if isinstance(config, ModernBertConfig):
            assert {layer.attn.attention_dropout for layer in model.layers} == {0.0}
        else:
            assert {layer.attention.self.dropout.p for layer in model.encoder.layer} == {0.0}
        # A training-mode packed forward on a flash device runs (with dropout it would be refused).
        output = model(**pack_batch([[5, 6, 7], [8, 9]]))
        assert output.last_hidden_state.shape == (1, 5, 32) and len(flash_on_cpu) == 1
        flash_on_cpu.clear()


def test_a_flash_device_packs_half_precision_by_default_and_refuses_packed_fp32(tiny_checkpoint, flash_on_cpu):
    """Where packed attention is flash attention, fp32 gets padded buckets by default and a one-line refusal when
    packing is asked for (rather than an error at the first forward)."""
    assert PatentClassifier.from_pretrained(tiny_checkpoint, device="cpu", dtype="bfloat16", compile=False).packing
    assert not PatentClassifier.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32", compile=False).packing
    with pytest.raises(ValueError, match="needs bfloat16 or float16 weights, not float32"):
        PatentClassifier.from_pretrained(tiny_checkpoint, device="cpu", dtype="float32", packing=True, compile=False)
