"""``modernpatent tokenizer``: a byte-level BPE tokenizer with ModernBERT's special tokens, trained offline."""

from __future__ import annotations

from dataclasses import dataclass, field

from .arguments import OVERWRITE_HELP, Command


@dataclass
class TokenizerArguments:
    """The corpus, the vocabulary and where the tokenizer goes."""

    corpus: str = field(
        metadata={
            "help": "dataset directory from `prepare`/`synth` (its train split), a .jsonl/.jsonl.gz/.parquet/.tsv "
            "file, or a .txt file with one text per line"
        }
    )
    out: str = field(metadata={"help": "output directory (a PreTrainedTokenizerFast)"})
    vocab_size: int = field(default=16000, metadata={"help": "vocabulary size"})
    min_frequency: int = field(default=2, metadata={"help": "minimum frequency of a merged token"})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})


def run(args: TokenizerArguments) -> None:
    from ..io_utils import owned_output_dir
    from ..tokenization import train_tokenizer_from_corpus

    with owned_output_dir(args.out, "tokenizer", [args.corpus], overwrite=args.overwrite) as out_dir:
        tokenizer = train_tokenizer_from_corpus(
            args.corpus, vocab_size=args.vocab_size, out_dir=out_dir, min_frequency=args.min_frequency
        )
    print(f"trained a byte-level BPE tokenizer of {len(tokenizer):,} tokens and saved it to {args.out}")


COMMAND = Command(
    name="tokenizer",
    help="train a patent tokenizer offline (ModernBERT special tokens)",
    example="modernpatent tokenizer --corpus data/synthetic --vocab-size 16000 --out tokenizers/synthetic",
    arguments=(TokenizerArguments,),
    run=run,
)
