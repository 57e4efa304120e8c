"""Leakage between splits: the same patent, or the same text, in train and in validation/test.

Definitions (used by ``modernpatent prepare``, :func:`~modernpatent_hf.data.records.write_dataset_dir`
and the training data loader alike):

* **normalized text**: the text casefolded, runs of whitespace collapsed to one space, ends stripped
  (``" ".join(text.casefold().split())``).
* **exact duplicates**: records with the same normalized text, compared by a 64-bit BLAKE2b digest of
  it (8 bytes per record, so millions of records fit in memory; a chance collision at 3.2M records
  has a probability below 1e-6).
* **near duplicates**: records whose normalized texts have the same first and last
  :data:`EDGE_WORDS` words (the whole text when it has at most ``2 * EDGE_WORDS`` words), again as a
  64-bit digest. This catches copies that differ inside, such as a claim with one element reworded,
  at the cost of the exact check; it misses copies whose first or last words differ. They are
  counted, not removed: two claims may legitimately share their opening and closing words.

Within one split, repeated texts are allowed (they do not leak); across splits, ``prepare`` puts every
copy of an exactly duplicated text in train, and a written split layout is refused if one remains.
"""

from __future__ import annotations

import hashlib
from array import array
from typing import Dict, Iterable, Mapping, Optional, Tuple

import datasets
import numpy as np
from tqdm.auto import tqdm

EDGE_WORDS = 10
ROW_BATCH = 10_000


def normalize_text(text: str) -> str:
    """The text two records must share to be exact duplicates (see the module docstring)."""
    return " ".join(text.casefold().split())


def digest64(value: str) -> int:
    """A 64-bit BLAKE2b digest of a string: stable across processes and runs, unlike ``hash``."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little")


def text_key(text: str) -> int:
    """The exact-duplicate key of one text."""
    return digest64(normalize_text(text))


def duplicate_keys(
    texts: Iterable[str], total: Optional[int] = None, progress: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact- and near-duplicate keys (two uint64 arrays) of ``texts``, in order."""
    exact, near = array("Q"), array("Q")  # 8 bytes a key, not a Python int each
    for text in tqdm(
        texts, total=total, desc="hashing texts for the leakage check", unit=" texts", disable=not progress
    ):
        words = text.casefold().split()  # normalize_text, split once for both keys
        exact.append(digest64(" ".join(words)))
        edges = words if len(words) <= 2 * EDGE_WORDS else words[:EDGE_WORDS] + ["..."] + words[-EDGE_WORDS:]
        near.append(digest64(" ".join(edges)))
    return np.frombuffer(exact, dtype=np.uint64), np.frombuffer(near, dtype=np.uint64)


def shared_across_splits(keys_by_split: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """For each split, a boolean mask of its rows whose key also occurs in another split."""
    names = list(keys_by_split)
    sizes = [len(keys_by_split[name]) for name in names]
    if sum(sizes) == 0:
        return {name: np.zeros(0, dtype=bool) for name in names}
    keys = np.concatenate([np.asarray(keys_by_split[name], dtype=np.uint64) for name in names])
    split = np.repeat(np.arange(len(names), dtype=np.int16), sizes)
    _, group = np.unique(keys, return_inverse=True)
    lowest = np.full(group.max() + 1, len(names), dtype=np.int16)
    highest = np.full(group.max() + 1, -1, dtype=np.int16)
    np.minimum.at(lowest, group, split)
    np.maximum.at(highest, group, split)
    shared = (lowest != highest)[group]
    bounds = np.cumsum([0, *sizes])
    return {name: shared[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}


def move_shared_texts_to_train(
    exact_keys: np.ndarray, positions: Mapping[str, np.ndarray]
) -> Tuple[Dict[str, np.ndarray], int]:
    """Split row positions with every exactly duplicated text that spans two splits moved to ``train``.

    ``exact_keys[i]`` is row ``i``'s exact-duplicate key; ``positions`` maps split names (``train``
    among them) to sorted row indices. Returns the new positions (sorted) and the number of rows moved.
    The rule is deterministic and does not depend on row order: all copies end in train.
    """
    shared = shared_across_splits({name: exact_keys[rows] for name, rows in positions.items()})
    moved = [rows[shared[name]] for name, rows in positions.items() if name != "train"]
    n_moved = sum(len(rows) for rows in moved)
    if not n_moved:
        return dict(positions), 0
    result = {name: rows[~shared[name]] for name, rows in positions.items()}
    result["train"] = np.sort(np.concatenate([positions["train"], *moved]))
    return result, n_moved


def count_shared(keys: np.ndarray, positions: Mapping[str, np.ndarray]) -> int:
    """Rows (of all splits) whose key occurs in another split as well."""
    shared = shared_across_splits({name: keys[rows] for name, rows in positions.items()})
    return int(sum(mask.sum() for mask in shared.values()))


def split_overlap(splits: Mapping[str, datasets.Dataset]) -> Dict[str, object]:
    """Ids and exact-duplicate texts that a ``DatasetDict`` (or dict of datasets) shares between splits.

    Returns ``{"shared_ids": n, "shared_texts": m, "example": (split, id) or None}``: ``n`` rows whose id
    and ``m`` rows whose normalized text also occur in another split, and one such row.
    """
    ids, texts = {}, {}
    for name, dataset in splits.items():
        id_keys, text_keys = [], []
        for batch in dataset.select_columns(["id", "text"]).iter(batch_size=ROW_BATCH):
            id_keys.extend(digest64(str(record_id)) for record_id in batch["id"])
            text_keys.extend(text_key(text) for text in batch["text"])
        ids[name], texts[name] = np.array(id_keys, dtype=np.uint64), np.array(text_keys, dtype=np.uint64)
    shared_ids, shared_texts = shared_across_splits(ids), shared_across_splits(texts)
    example = next(
        (
            (name, splits[name][int(np.flatnonzero(mask)[0])]["id"])
            for shared in (shared_ids, shared_texts)
            for name, mask in shared.items()
            if mask.any()
        ),
        None,
    )
    return {
        "shared_ids": int(sum(mask.sum() for mask in shared_ids.values())),
        "shared_texts": int(sum(mask.sum() for mask in shared_texts.values())),
        "example": example,
    }


def leakage_report(counters: Mapping[str, int]) -> Dict[str, object]:
    """What the leakage check of ``prepare`` found (zeros included), with the definitions it used."""
    return {
        "duplicate_texts_moved_to_train": counters.get("duplicate_texts_moved_to_train", 0),
        "near_duplicates_across_splits": counters.get("near_duplicates_across_splits", 0),
        "normalized_text": "casefolded, whitespace runs collapsed to one space, stripped",
        "near_duplicate": f"same first and last {EDGE_WORDS} normalized words",
    }
