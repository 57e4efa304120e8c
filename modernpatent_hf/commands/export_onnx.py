"""``modernpatent export-onnx``: a classifier checkpoint as ONNX (dynamic batch and length), optionally int8."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from .arguments import ALLOW_PICKLE_HELP, OVERWRITE_HELP, Command


@dataclass
class ExportOnnxArguments:
    """The checkpoint, the output and the export settings."""

    model: str = field(metadata={"help": "checkpoint directory (model, tokenizer, label_space.json)"})
    out: str = field(metadata={"help": "output directory"})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    opset: Optional[int] = field(default=None, metadata={"help": "ONNX opset (default: the exporter's)"})
    allow_pickle: bool = field(default=False, metadata={"help": ALLOW_PICKLE_HELP})
    int8: bool = field(
        default=False,
        metadata={"help": "also write model.int8.onnx (dynamic int8) and report its top-1 agreement with fp32"},
    )
    dataset: Optional[str] = field(
        default=None,
        metadata={
            "help": "prepared dataset directory whose texts measure the int8 agreement (default: generated texts)"
        },
    )
    split: str = field(default="test", metadata={"help": "split of --dataset"})


def run(args: ExportOnnxArguments) -> None:
    from ..data.records import dataset_texts
    from ..export import export_onnx
    from ..io_utils import installed_path, owned_output_dir

    with owned_output_dir(args.out, "export-onnx", [args.model, args.dataset], overwrite=args.overwrite) as out_dir:
        texts = dataset_texts(args.dataset, args.split) if args.dataset else None
        summary = export_onnx(
            args.model, out_dir, opset=args.opset, int8=args.int8, texts=texts, allow_pickle=args.allow_pickle
        )
    # The export wrote into the scratch directory that owned_output_dir then moved to --out.
    paths = {key: installed_path(value, out_dir, args.out) for key, value in summary.items() if isinstance(value, str)}
    print(json.dumps({**summary, **paths}, indent=1))


COMMAND = Command(
    name="export-onnx",
    help="export a classifier checkpoint to ONNX (dynamic batch and length), optionally int8",
    description="Write model.onnx (inputs input_ids, attention_mask; output logits), the tokenizer, config and "
    "label space to --out, and check onnxruntime's logits against torch's (within 1e-4).",
    example="modernpatent export-onnx --model outputs/demo/finetune --out outputs/demo/onnx --int8",
    arguments=(ExportOnnxArguments,),
    run=run,
)
