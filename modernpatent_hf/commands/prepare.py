"""``modernpatent prepare``: patent records from any supported source -> normalized Parquet splits and a label space."""

from __future__ import annotations

import json

from ..data.prepare_config import PrepareConfig
from .arguments import Command


def run(config: PrepareConfig) -> None:
    from ..data.prepare import prepare_dataset

    print(json.dumps(prepare_dataset(config), indent=1))


COMMAND = Command(
    name="prepare",
    help="normalize patent records into Parquet splits + label space loadable with datasets.load_dataset",
    description="Read USPTO-3M (hub id or local Parquet copy), PatentBERT-style TSV or JSON Lines records "
    "and write normalized Parquet splits, label_space.json and stats.json to --out.",
    example="modernpatent prepare patents.jsonl.gz --out data/patents "
    "--text-fields title,abstract --test-fraction 0.1",
    arguments=(PrepareConfig,),
    run=run,
)
