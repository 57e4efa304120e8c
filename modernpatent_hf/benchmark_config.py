"""What ``modernpatent bench`` is asked to time: :class:`BenchmarkConfig` (standard library only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

MODELS = ("modernbert", "bert")
PATHS = ("naive", "ours", "packed", "packed+compile", "int8", "onnx", "onnx-int8")
DTYPES = ["float32", "bfloat16", "float16"]


@dataclass
class BenchmarkConfig:
    """Models, inference paths, inputs, batching and the optional training steps of one throughput benchmark."""

    models: List[str] = field(
        default_factory=lambda: list(MODELS),
        metadata={"comma_separated": True, "help": "comma-separated: modernbert, bert (default: modernbert,bert)"},
    )
    paths: List[str] = field(
        default_factory=lambda: ["naive", "ours", "int8", "onnx", "onnx-int8"],
        metadata={
            "comma_separated": True,
            "help": "comma-separated: naive, ours, packed, packed+compile, int8, onnx, onnx-int8 (the last three on "
            "the CPU only; default: naive,ours,int8,onnx,onnx-int8)",
        },
    )
    modernbert: Optional[str] = field(
        default=None,
        metadata={
            "help": "ModernBERT classifier checkpoint (default: random weights of ModernBertConfig(), i.e. base)"
        },
    )
    bert: Optional[str] = field(
        default=None,
        metadata={"help": "BERT classifier checkpoint (default: random weights of BertConfig(), i.e. base)"},
    )
    tiny: bool = field(default=False, metadata={"help": "tiny random models instead of the base shapes (tests)"})
    dataset: Optional[str] = field(
        default=None,
        metadata={"help": "prepared dataset directory whose texts replace the generated lengths (needs checkpoints)"},
    )
    split: str = field(default="test", metadata={"help": "split of --dataset"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    dtype: Optional[str] = field(
        default=None,
        metadata={"help": "weights' precision (default: bfloat16 on CUDA, float32 on CPU)", "choices": DTYPES},
    )
    num_samples: int = field(default=32, metadata={"help": "texts per timed pass"})
    repeats: int = field(default=3, metadata={"help": "timed passes per path; the figures are medians"})
    max_length: int = field(default=1024, metadata={"help": "longest input in tokens (BERT: at most 512)"})
    threads: Optional[int] = field(
        default=None, metadata={"help": "CPU threads of torch and onnxruntime (default: torch's)"}
    )
    naive_batch_size: int = field(default=32, metadata={"help": "batch size of the naive path"})
    batch_tokens: Optional[int] = field(
        default=None, metadata={"help": "padded tokens per length-bucketed batch (default: 1024 on CPU, 16384 on GPU)"}
    )
    batch_size: int = field(default=256, metadata={"help": "texts per length-bucketed batch at most"})
    packed_batch_tokens: Optional[int] = field(
        default=None,
        metadata={
            "help": "tokens per packed batch (paths packed, packed+compile; default: 65536 on GPU, --batch-tokens on CPU)"
        },
    )
    train_steps: int = field(
        default=0, metadata={"help": "also time this many fine-tuning steps per model, padded and packed"}
    )
    train_batch_size: int = field(default=32, metadata={"help": "patents per timed fine-tuning step"})
    train_max_length: int = field(default=512, metadata={"help": "longest training input in tokens"})
    seed: int = field(default=0, metadata={"help": "seed of the generated lengths and token ids"})
    out: Optional[str] = field(default=None, metadata={"help": "also write the results as JSON to this file"})

    @property
    def checkpoints(self) -> Dict[str, str]:
        """Model name -> checkpoint directory of the benchmarked models that were given one."""
        given = {"modernbert": self.modernbert, "bert": self.bert}
        return {name: path for name, path in given.items() if path and name in self.models}
