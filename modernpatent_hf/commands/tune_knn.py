"""``modernpatent tune-knn``: what the recipe's ``knn_evidence: true`` does after training, for a run trained
without it: index the training split, tune the kNN vote and its fusing weight on validation, compare the
classifier, the vote and the fused scores on test."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

from .arguments import OVERWRITE_HELP, Command


@dataclass
class TuneKnnArguments:
    """The trained run, its splits, and whether the tuned settings are saved with it."""

    model: str = field(metadata={"help": "a fine-tuning run's output directory (checkpoint and its data/ splits)"})
    data: Optional[str] = field(
        default=None, metadata={"help": "prepared dataset directory with train/validation/test (default: MODEL/data)"}
    )
    max_length: Optional[int] = field(
        default=None, metadata={"help": "tokens per text (default: the run's max_length from run_config.json)"}
    )
    device: Optional[str] = field(default=None, metadata={"help": "cpu, cuda, cuda:1... (default: a GPU if any)"})
    save: bool = field(
        default=False,
        metadata={"help": "write the tuned settings into MODEL/knn_scores.json (used by predict --index)"},
    )
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})


def run(args: TuneKnnArguments) -> None:
    from ..data.loading import RUN_DATA_SUBDIR
    from ..data.records import load_dataset_dir
    from ..evidence import LabelledTexts, evaluate_evidence, format_comparison
    from ..knn_scores import KNN_SCORES_FILE, save_knn_scoring
    from ..predictor import PatentClassifier

    target = os.path.join(args.model, KNN_SCORES_FILE)
    if args.save and os.path.exists(target) and not args.overwrite:
        raise FileExistsError(f"{target} exists: pass --overwrite to replace it")
    splits = load_dataset_dir(args.data or os.path.join(args.model, RUN_DATA_SUBDIR))
    for name in ("train", "validation"):
        if name not in splits or not len(splits[name]):
            raise ValueError(f"the run's data has no {name} split: tune-knn needs train and validation")
    classifier = PatentClassifier.from_pretrained(
        args.model, device=args.device, max_length=args.max_length or recorded_max_length(args.model)
    )
    test = LabelledTexts.from_records(splits["test"]) if "test" in splits and len(splits["test"]) else None
    result = evaluate_evidence(
        classifier,
        LabelledTexts.from_records(splits["train"]),
        LabelledTexts.from_records(splits["validation"]),
        test,
    )
    scoring = result["tuned"].scoring
    if args.save:
        save_knn_scoring(args.model, scoring)
    if result["comparison"] is not None:
        print(format_comparison(result["comparison"]))
    print(json.dumps({"scoring": scoring.__dict__, "comparison": result["comparison"]}, indent=1))


def recorded_max_length(model: str) -> Optional[int]:
    """The ``max_length`` the run trained with (its ``run_config.json``), or None."""
    path = os.path.join(model, "run_config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return (json.load(handle).get("DataArguments") or {}).get("max_length")


COMMAND = Command(
    name="tune-knn",
    help="tune and compare the kNN vote and fused scores of a trained run (the recipe's knn_evidence step)",
    description="Embed the run's training split into an index, choose the vote's neighbours, weighting and fusing "
    "weight on validation (F1@1), and print the test P@1, F1@1 and macro F1 of the classifier, the vote alone and the "
    "fused scores with paired bootstrap intervals of the differences. With --save, the settings go to "
    "MODEL/knn_scores.json.",
    example="modernpatent tune-knn --model outputs/real-patents/finetune --save",
    arguments=(TuneKnnArguments,),
    run=run,
)
