"""What ``modernpatent bench-load`` is asked to measure: :class:`LoadBenchmarkConfig` (standard library only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

DEFAULT_ROWS = (100_000, 1_000_000)
USPTO3M_ROWS = 3_198_360  # rows of MalavP/USPTO-3M
DEFAULT_USPTO3M_ROWS = (300_000, USPTO3M_ROWS)
COMMANDS = ("prepare", "predict", "tokenize", "test-year-error")
DEFAULT_COMMANDS = {"generated": ("prepare", "predict"), "uspto3m": ("prepare", "tokenize", "test-year-error")}
LOAD_BENCHMARK_SOURCES = list(DEFAULT_COMMANDS)

# The year-split recipe (config_year_split.yaml): 150,000 test grants of 2015, USPTO-3M's last year.
TEST_YEAR = 2015
TEST_SIZE = 150_000
MISSING_TEST_YEAR = 2016  # a year USPTO-3M does not have (the seed's test set is 2016 grants)
MAX_LENGTH = 1024  # the recipes' max_length


@dataclass
class LoadBenchmarkConfig:
    """Which commands run on which sources and sizes, and how often.

    :func:`modernpatent_hf.load_benchmark.run_load_benchmark` takes one and checks it before any work; it runs
    on a copy with the defaults filled in (:meth:`uspto3m_copies`, the sizes, the commands, the work directory).
    """

    source: str = field(
        default="generated",
        metadata={
            "choices": LOAD_BENCHMARK_SOURCES,
            "help": "generated: short JSON Lines records; uspto3m: a USPTO-3M-schema Parquet copy, written into "
            "--work-dir per size (python -m modernpatent_hf.rehearsal write-uspto3m) or --uspto3m-copy",
        },
    )
    rows: Optional[List[int]] = field(
        default=None,
        metadata={
            "comma_separated": True,
            "metavar": "ROWS",
            "help": "comma-separated record counts (default: 100000,1000000; --source uspto3m: the --uspto3m-copy "
            "sizes, else 300000,3198360)",
        },
    )
    uspto3m_copy: Optional[List[str]] = field(
        default=None,
        metadata={
            "repeatable": True,
            "metavar": "ROWS=DIR",
            "help": "reuse an existing USPTO-3M copy of ROWS rows (checked against its Parquet metadata); repeat for "
            "several sizes, which join --rows",
        },
    )
    commands: Optional[List[str]] = field(
        default=None,
        metadata={
            "comma_separated": True,
            "help": "comma-separated: prepare, predict, tokenize, test-year-error (default: prepare,predict; "
            "--source uspto3m: prepare,tokenize,test-year-error)",
        },
    )
    model: Optional[str] = field(
        default=None,
        metadata={"help": "classifier checkpoint for predict (default: a tiny random ModernBERT classifier)"},
    )
    tokenizer: Optional[str] = field(
        default=None,
        metadata={
            "help": "tokenizer directory for tokenize (default: a 16,000-token byte-level BPE trained once on the "
            "first 20,000 training texts, saved in the work dir)"
        },
    )
    max_length: int = field(default=MAX_LENGTH, metadata={"help": "tokenize: longest input in tokens, as the recipes"})
    test_year: int = field(default=TEST_YEAR, metadata={"help": "--source uspto3m: prepare's test year"})
    test_size: Optional[int] = field(
        default=None,
        metadata={
            "help": "--source uspto3m: prepare's test size (default: 150000 scaled to the rows, 150000 x rows / 3198360)"
        },
    )
    missing_test_year: int = field(
        default=MISSING_TEST_YEAR,
        metadata={"help": "test-year-error: a year the source lacks, whose one-line error is timed"},
    )
    repeats: int = field(default=1, metadata={"help": "runs of each command per size; the figures are medians"})
    error_repeats: int = field(default=3, metadata={"help": "runs of test-year-error per size (medians)"})
    work_dir: Optional[str] = field(
        default=None,
        metadata={"help": "keep the sources, outputs, tokenizer and logs here (default: a temporary directory)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the generated records and copies"})
    out: Optional[str] = field(default=None, metadata={"help": "also write the results as JSON to this file"})

    def uspto3m_copies(self) -> Dict[int, str]:
        """``uspto3m_copy`` (``ROWS=DIR`` each) as ``{rows: directory}``; a value of another form is a ValueError."""
        copies = {}
        for given in self.uspto3m_copy or []:
            rows, separator, path = given.partition("=")
            if not separator or not rows.strip().isdigit() or not path:
                raise ValueError(f"--uspto3m-copy takes ROWS=DIR (e.g. 3198360=/data/uspto3m), got {given!r}")
            copies[int(rows)] = path
        return copies

    def test_size_for(self, n: int) -> int:
        """The test size of ``n`` rows: ``test_size`` as given, else the recipe's 150,000 scaled to the rows."""
        return self.test_size if self.test_size is not None else max(1, round(TEST_SIZE * n / USPTO3M_ROWS))

    def prepared_dir(self, n: int) -> str:
        """Where ``prepare`` writes the split of ``n`` rows in ``work_dir``."""
        name = f"prepared-{n}" if self.source == "generated" else f"prepared-uspto3m-{n}"
        return os.path.join(self.work_dir or "", name)
