"""``modernpatent convert``: a ModernBERT checkpoint saved in the older format, rewritten as a stock classifier."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field

from .arguments import ALLOW_PICKLE_HELP, OVERWRITE_HELP, Command


@dataclass
class ConvertArguments:
    """The checkpoint to convert and the new directory."""

    model: str = field(metadata={"help": "checkpoint directory saved by this package (read, never changed)"})
    out: str = field(metadata={"help": "new output directory for the converted checkpoint"})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    allow_pickle: bool = field(default=False, metadata={"help": ALLOW_PICKLE_HELP})


def run(args: ConvertArguments) -> None:
    from ..io_utils import owned_output_dir
    from ..stock_format import convert_checkpoint

    # stdout holds the summary alone: libraries that log to stdout while saving (DeepSpeed, imported by accelerate's
    # unwrapping when installed) log to stderr here.
    with contextlib.redirect_stdout(sys.stderr):
        with owned_output_dir(args.out, "convert", [args.model], overwrite=args.overwrite) as out_dir:
            summary = convert_checkpoint(args.model, out_dir, allow_pickle=args.allow_pickle)
    print(json.dumps({**summary, "out": args.out}, indent=1))


COMMAND = Command(
    name="convert",
    help="rewrite a ModernBERT checkpoint of the older format (model_type modernpatent) as a stock classifier",
    description="Write the checkpoint into --out as a stock ModernBertForSequenceClassification checkpoint (model_type "
    "modernbert, with an auto_map to this package's classes): config, weights and remote code saved anew, the "
    "tokenizer, label space and other top-level files copied. The source is only read.",
    example="modernpatent convert --model outputs/demo/finetune --out outputs/demo/finetune-stock",
    arguments=(ConvertArguments,),
    run=run,
)
