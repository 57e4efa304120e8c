"""What ``modernpatent prepare`` is asked to do: :class:`PrepareConfig`, and the split defaults every source shares.

A dataclass of the standard library only: the ``prepare`` command builds its options from it, and
:func:`modernpatent_hf.data.prepare.prepare_dataset` takes it, so each option, its help and its default are
written once. The recipes' :class:`~modernpatent_hf.configs.DataArguments` use the same split defaults.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional

# Upstream's split: dataset.train_test_split(test_size=0.005, seed=42).
VALIDATION_FRACTION = 0.005
SPLIT_SEED = 42

INPUT_FORMATS = ["auto", "hub", "parquet", "tsv", "jsonl"]
INVALID_CODE_POLICIES = ["drop", "raise"]
BAD_ROW_POLICIES = ["skip", "raise"]


@dataclass
class PrepareConfig:
    """Sources, output directory and split settings of one ``prepare`` run."""

    inputs: List[str] = field(
        metadata={"positional": True, "help": "input files, directories, or the hub id MalavP/USPTO-3M"}
    )
    out: str = field(metadata={"help": "output directory"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "replace this command's earlier output in --out (--out must otherwise be new or empty; files "
            "that no modernpatent command wrote are never replaced)"
        },
    )
    text_fields: Optional[str] = field(
        default=None,
        metadata={
            "help": "comma-separated fields joined into the text: title, abstract, claims, first_claim, e.g. "
            "'title,abstract' or 'title,abstract,claims' (default: first_claim for USPTO-3M/TSV, which hold only "
            "it; title,abstract for JSON Lines)"
        },
    )
    format: str = field(
        default="auto", metadata={"help": "input format (default: guessed from the path)", "choices": INPUT_FORMATS}
    )
    min_count: int = field(
        default=1, metadata={"help": "keep subclasses with at least this many training occurrences"}
    )
    validation_fraction: float = field(
        default=VALIDATION_FRACTION, metadata={"help": "share of train held out for validation (upstream: 0.005)"}
    )
    test_input: Optional[List[str]] = field(
        default=None,
        metadata={
            "metavar": "TEST_INPUT",
            "help": "a separate test set (files, directories or a Hub id such as 0zo/google_patentsview_claims_2016) "
            "used as the test split instead of one cut from the inputs; input records sharing an id or text with it "
            "are removed",
        },
    )
    test_year: Optional[int] = field(default=None, metadata={"help": "grant year whose patents form the test split"})
    test_size: Optional[int] = field(
        default=None,
        metadata={
            "help": "sample this many patents of --test-year or --test-input (of all records otherwise), seeded"
        },
    )
    test_fraction: float = field(
        default=0.0,
        metadata={"help": "random seeded share of the records for the test split, instead of --test-year/--test-size"},
    )
    seed: int = field(default=SPLIT_SEED, metadata={"help": "shuffle seed for the splits (upstream: 42)"})
    on_invalid_code: str = field(
        default="drop",
        metadata={
            "help": "drop malformed CPC values and count them, or stop at the first one",
            "choices": INVALID_CODE_POLICIES,
        },
    )
    on_bad_row: str = field(
        default="skip",
        metadata={
            "help": "skip a row without a usable id, date or JSON and count it (bad_rows), or stop at the first one",
            "choices": BAD_ROW_POLICIES,
        },
    )
    titles: Optional[str] = field(
        default=None,
        metadata={
            "help": "code<TAB>title TSV whose titles go into the label space (from Python also a code -> title mapping)"
        },
    )

    def __post_init__(self):
        # One path or Hub id is a list of one, as on the command line.
        if isinstance(self.inputs, str) or hasattr(self.inputs, "__fspath__"):
            self.inputs = [self.inputs]
        if isinstance(self.test_input, str) or hasattr(self.test_input, "__fspath__"):
            self.test_input = [self.test_input]
        self.inputs = list(self.inputs)
        self.test_input = list(self.test_input) if self.test_input else []


# prepare_dataset's keywords, before it took a PrepareConfig, whose field has another name.
RENAMED_KEYWORDS = {"input_format": "format", "test_inputs": "test_input"}


def config_from_keywords(inputs: Any, out_dir: Any = None, **options: Any) -> PrepareConfig:
    """The :class:`PrepareConfig` of the keyword form ``prepare_dataset(inputs, out_dir, **options)``, which is
    deprecated (a FutureWarning): the old keyword names (``input_format``, ``test_inputs``) map to the fields."""
    if isinstance(inputs, PrepareConfig):
        raise TypeError("prepare_dataset takes a PrepareConfig alone: put the output and the settings in its fields")
    if out_dir is None:
        raise TypeError(
            "prepare_dataset(inputs, out_dir, ...) needs out_dir; better: prepare_dataset(PrepareConfig(...))"
        )
    warnings.warn(
        "prepare_dataset(inputs, out_dir, ...) is deprecated and will be removed in the next release: pass "
        "prepare_dataset(PrepareConfig(inputs=..., out=..., ...))",
        FutureWarning,
        stacklevel=3,
    )
    return PrepareConfig(
        inputs=inputs, out=out_dir, **{RENAMED_KEYWORDS.get(key, key): value for key, value in options.items()}
    )
