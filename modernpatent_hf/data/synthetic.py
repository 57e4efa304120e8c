"""The embedded default corpus: seeded, patent-like, multi-label records that need no network.

Records are sampled from the fixed world of :mod:`modernpatent_hf.data.synthetic_world` (taxonomy, label
frequencies, vocabularies); the ``seed`` drives the sampling. Corpora drawn with different seeds therefore share one
label space and vocabulary, so a model (or tokenizer) trained on one seed can be evaluated on another.

A record is a first-claim-like text ("1. A method for ..., comprising: ...; wherein said ...") whose
content words come from generic claim nouns and the vocabularies of its labels' section, class and
subclass, plus words of sibling and of unrelated subclasses. Sibling subclasses share their class vocabulary and
subclass-specific words are a minority of tokens, so siblings are genuinely confusable and knowing the
hierarchy helps. Extra labels of a patent usually sit in the class or section of its first label, as
in real CPC assignments.

Everything is vectorized with numpy over chunks of records (well over 10,000 records per second).
Record ``i`` depends only on ``(seed, i)``, so a smaller corpus is a prefix of a larger one.
:func:`write_synthetic_corpus` writes a corpus as a prepared dataset directory (``modernpatent synth``).
"""

from __future__ import annotations

import time
from itertools import islice
from typing import Dict, Iterable, Iterator, List, Mapping, Optional

import numpy as np

from ..cpc import CpcLabelSpace
from ..io_utils import check_output_dir
from ..output_lock import output_lock
from .synthetic_world import (
    CLAIM_KINDS,
    CLASS_VOCAB,
    END_OF_CLAIM,
    MAX_SUBCLASSES,
    SECTION_VOCAB,
    SUBCLASS_VOCAB,
    SyntheticWorld,
    synthetic_world,
)

# Labels per patent: the first label plus a geometric number of extra ones (USPTO-3M: 1.92 on average).
EXTRA_LABEL_STOP = 0.45  # P(no further extra label) after each label
MAX_LABELS = 8
# Where an extra label comes from: the first label's class, its section, or anywhere.
EXTRA_SAME_CLASS = 0.40
EXTRA_SAME_SECTION = 0.30

# Claim length in whitespace tokens: lognormal with a long tail (p99 ~500 words). USPTO-3M first claims
# have a median of 161 ModernBERT tokens (p99 575); pseudo-words split into more pieces than English,
# so 140 words come to ~200 tokens of a tokenizer trained on this corpus.
LENGTH_MEDIAN = 140
LENGTH_SIGMA = 0.55
LENGTH_RANGE = (30, 2000)

# What fills a content slot of a claim template (the vocabularies' sizes are the world's).
# "sibling" words come from a random subclass of the label's class (possibly itself): siblings blur.
CONTENT_SOURCES = ("generic", "section", "class", "subclass", "sibling", "noise")
CONTENT_MIX = np.array([0.30, 0.17, 0.26, 0.05, 0.10, 0.12])
FIRST_LABEL_WEIGHT = 0.6  # share of label-specific words that describe the first label
WORD_SKEW = 1.6  # word index = size * u**WORD_SKEW: a few words of each vocabulary dominate
CLAIM_KIND_WEIGHTS = np.array([0.4, 0.6])  # shares of method and product claims (CLAIM_KINDS)
_CHUNK = 4096  # records drawn together; record i depends only on (seed, i // _CHUNK, i % _CHUNK)


def _chunk_rng(seed: int, chunk: int, stream: int) -> np.random.Generator:
    # Labels and texts use separate streams so that labels can be drawn without drawing texts.
    return np.random.default_rng([seed, chunk, stream])


def _within_group(cumulative, group, group_start, group_mass, u):
    """Sample an index inside each row's group (a contiguous block) proportionally to the label law."""
    target = group_start[group] + u * group_mass[group]
    return np.searchsorted(cumulative, target, side="right")


def _chunk_labels(world: SyntheticWorld, seed: int, chunk: int) -> np.ndarray:
    """``[_CHUNK, MAX_LABELS]`` label indices of one chunk, -1 where a record has fewer labels."""
    rng = _chunk_rng(seed, chunk, 0)
    cumulative = np.cumsum(world.probabilities)
    cumulative[-1] = 1.0
    starts = np.concatenate([[0.0], cumulative[:-1]])
    class_start = np.full(world.class_index.max() + 1, 2.0)
    np.minimum.at(class_start, world.class_index, starts)
    class_mass = np.bincount(world.class_index, weights=world.probabilities)
    section_start = np.full(world.section_index.max() + 1, 2.0)
    np.minimum.at(section_start, world.section_index, starts)
    section_mass = np.bincount(world.section_index, weights=world.probabilities)

    first = np.searchsorted(cumulative, rng.random(_CHUNK), side="right")
    labels = np.full((_CHUNK, MAX_LABELS), -1, dtype=np.int64)
    labels[:, 0] = first
    n_labels = np.minimum(rng.geometric(EXTRA_LABEL_STOP, size=_CHUNK), MAX_LABELS)
    for slot in range(1, MAX_LABELS):
        u, mode = rng.random(_CHUNK), rng.random(_CHUNK)
        extra = np.where(
            mode < EXTRA_SAME_CLASS,
            _within_group(cumulative, world.class_index[first], class_start, class_mass, u),
            np.where(
                mode < EXTRA_SAME_CLASS + EXTRA_SAME_SECTION,
                _within_group(cumulative, world.section_index[first], section_start, section_mass, u),
                np.searchsorted(cumulative, u, side="right"),
            ),
        )
        extra = np.minimum(extra, world.num_labels - 1)  # guards the float edge of the last block
        duplicate = (labels[:, :slot] == extra[:, None]).any(axis=1)
        labels[:, slot] = np.where((slot < n_labels) & ~duplicate, extra, -1)
    return labels


def _chunk_texts(world: SyntheticWorld, seed: int, chunk: int, labels: np.ndarray) -> List[str]:
    """Claim-like texts of one chunk, each drawing on the vocabularies of its labels."""
    rng = _chunk_rng(seed, chunk, 1)
    kind = rng.choice(len(CLAIM_KINDS), size=_CHUNK, p=CLAIM_KIND_WEIGHTS)
    target = np.clip(rng.lognormal(np.log(LENGTH_MEDIAN), LENGTH_SIGMA, size=_CHUNK), *LENGTH_RANGE)
    clause_lengths = {k: world.template_length[world.clause_ids[k]].mean() for k in CLAIM_KINDS}
    mean_clause = np.array([clause_lengths[k] for k in CLAIM_KINDS])[kind]
    preamble = np.array([world.preamble_ids[k] for k in CLAIM_KINDS])[kind]
    n_clauses = np.maximum(1, np.round((target - world.template_length[preamble]) / mean_clause)).astype(np.int64)

    # Template sequence: each record's preamble followed by its clauses, drawn within its claim kind.
    record_of_clause = np.repeat(np.arange(_CHUNK), n_clauses)
    clause_kind = kind[record_of_clause]
    clause = np.empty(len(record_of_clause), dtype=np.int64)
    for k, name in enumerate(CLAIM_KINDS):
        mask = clause_kind == k
        clause[mask] = rng.choice(world.clause_ids[name], size=mask.sum())
    first_clause = np.concatenate([[0], np.cumsum(n_clauses)[:-1]])
    templates = np.insert(clause, first_clause, preamble)
    template_record = np.insert(record_of_clause, first_clause, np.arange(_CHUNK))

    # Expand templates to tokens.
    lengths = world.template_length[templates]
    within_template = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.repeat(world.template_start[templates], lengths) + within_template
    tokens, marks = world.template_tokens[positions], world.template_marks[positions]
    token_record = np.repeat(template_record, lengths)
    record_end = np.cumsum(np.bincount(token_record, minlength=_CHUNK))
    marks[record_end - 1] = END_OF_CLAIM  # the last clause ends the claim

    # Fill the content slots.
    slots = np.flatnonzero(tokens < 0)
    slot_record = token_record[slots]
    n = len(slots)
    n_labels = (labels >= 0).sum(axis=1)
    any_label = (rng.random(n) * n_labels[slot_record]).astype(np.int64)
    label_slot = np.where(rng.random(n) < FIRST_LABEL_WEIGHT, 0, any_label)
    label = labels[slot_record, label_slot]
    source = rng.choice(len(CONTENT_SOURCES), size=n, p=CONTENT_MIX)
    u = rng.random(n) ** WORD_SKEW
    noise_label = rng.integers(0, world.num_labels, size=n)
    _, class_first, class_size = np.unique(world.class_index, return_index=True, return_counts=True)
    label_class = world.class_index[label]
    sibling = class_first[label_class] + (rng.random(n) * class_size[label_class]).astype(np.int64)
    bases = np.stack(
        [
            np.zeros(n, dtype=np.int64),
            world.section_base[label],
            world.class_base[label],
            world.subclass_base[label],
            world.subclass_base[sibling],
            world.subclass_base[noise_label],
        ]
    )
    sizes = np.array([len(world.generic_words), SECTION_VOCAB, CLASS_VOCAB] + [SUBCLASS_VOCAB] * 3)
    word = bases[source, np.arange(n)] + (u * sizes[source]).astype(np.int64)
    generic = source == 0
    word[generic] = world.generic_words[word[generic]]
    tokens[slots] = word

    # Gather the bytes of all words of the chunk in one go (no Python object per word): the source
    # index advances by one within a word and jumps to the next word's offset at each word start.
    word_ids = tokens + marks * world.vocabulary_size
    offsets, lengths = world.word_offset[word_ids], world.word_length[word_ids]
    word_start = np.cumsum(lengths) - lengths
    step = np.ones(word_start[-1] + lengths[-1], dtype=np.int64)
    step[word_start[1:]] = offsets[1:] - (offsets[:-1] + lengths[:-1] - 1)
    step[0] = offsets[0]
    text_bytes = world.word_bytes[np.cumsum(step)]
    return text_bytes.tobytes().decode("ascii").split("\n")[:-1]


def _chunk_dates(seed: int, chunk: int) -> np.ndarray:
    rng = _chunk_rng(seed, chunk, 2)
    days = rng.integers(0, 9 * 365, size=_CHUNK)  # grant dates spread over 2010-2018
    return np.datetime_as_string(np.datetime64("2010-01-01") + days.astype("timedelta64[D]"))


def _chunk_sizes(n: int) -> Iterator[tuple]:
    """``(chunk index, records used from it)``; chunks are always drawn whole so record i never depends on n."""
    for chunk, start in enumerate(range(0, n, _CHUNK)):
        yield chunk, min(_CHUNK, n - start)


def generate_synthetic_records(n: int, seed: int = 0, num_subclasses: int = MAX_SUBCLASSES) -> Iterator[dict]:
    """Yield ``n`` synthetic normalized records (``id``, ``text``, ``labels``, ``date``; no title/abstract).

    Same ``(seed, num_subclasses)`` -> identical records; record ``i`` does not depend on ``n``.
    """
    if n < 0:
        raise ValueError(f"the number of records must be >= 0, got n={n}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    world = synthetic_world(num_subclasses)
    codes = world.codes.tolist()
    for chunk, used in _chunk_sizes(n):
        labels = _chunk_labels(world, seed, chunk)
        texts = _chunk_texts(world, seed, chunk, labels)
        dates = _chunk_dates(seed, chunk).tolist()
        for i, row in enumerate(labels[:used].tolist()):
            yield {
                "id": f"SYN{seed}-{chunk * _CHUNK + i:08d}",
                "text": texts[i],
                "labels": [codes[j] for j in row if j >= 0],
                "date": dates[i],
                "title": None,
                "abstract": None,
            }


def _restricted_to(records: Iterable[dict], label_space: CpcLabelSpace, dropped: Dict[str, int]) -> Iterator[dict]:
    """Keep only labels inside ``label_space``; a record left without labels is dropped (and counted)."""
    for record in records:
        known, unknown = label_space.split_known(record["labels"])
        dropped["labels_outside_train"] += len(unknown)
        if known:
            yield {**record, "labels": known}
        else:
            dropped["records_without_train_labels"] += 1


def write_synthetic_corpus(
    out_dir: str,
    n: int,
    seed: int = 0,
    num_subclasses: int = MAX_SUBCLASSES,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.1,
    overwrite: bool = False,
    fingerprint: Optional[Mapping] = None,
) -> dict:
    """Write ``n`` synthetic records as a dataset directory with train/validation/test splits.

    ``out_dir`` must be new, empty, or an earlier output of a command (replaced only with ``overwrite``:
    :func:`~modernpatent_hf.io_utils.check_output_dir`); ``fingerprint`` is recorded in its marker.

    Uses :func:`records.write_dataset_dir`; the label space is the set of codes that occur in train (with
    their counts and synthetic titles). Labels of validation/test records outside it are dropped, as
    are records left without labels. Returns a summary: rows per split, the label space's size, label
    statistics per split, what was dropped, and the seconds it took.
    """
    # Here, not at the top: generating claims (random benchmark models, the ONNX export's check texts) needs no
    # `datasets`, which only writing a dataset directory does.
    from .records import label_statistics, write_dataset_dir

    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    with output_lock(out_dir, "synth", "--out"):  # held until the output is in place
        check_output_dir(out_dir, "synth", overwrite=overwrite)
        n_validation, n_test = round(n * validation_fraction), round(n * test_fraction)
        n_train = n - n_validation - n_test
        if n_train < 1:
            raise ValueError(
                f"n={n} with validation_fraction={validation_fraction} and test_fraction={test_fraction} "
                "leaves no training records; use a larger --n or smaller fractions"
            )
        world = synthetic_world(num_subclasses)
        started = time.perf_counter()
        train_labels = [
            world.codes[row[row >= 0]].tolist()
            for chunk, used in _chunk_sizes(n_train)
            for row in _chunk_labels(world, seed, chunk)[:used]
        ]
        label_space = CpcLabelSpace.from_label_lists(train_labels, titles=world.titles)

        # One generator feeds the splits in order: write_dataset_dir consumes each split completely before
        # the next, so records [0, n_train) go to train, the next n_validation to validation, the rest to test.
        records = generate_synthetic_records(n, seed=seed, num_subclasses=num_subclasses)
        dropped = {"labels_outside_train": 0, "records_without_train_labels": 0}
        split_labels = {"validation": [], "test": []}

        def kept(split: str, count: int) -> Iterator[dict]:
            for record in _restricted_to(islice(records, count), label_space, dropped):
                split_labels[split].append(record["labels"])
                yield record

        rows = write_dataset_dir(
            out_dir,
            {
                "train": islice(records, n_train),
                "validation": kept("validation", n_validation),
                "test": kept("test", n_test),
            },
            label_space,
            stats={
                "generator": {"seed": seed, "n": n, "num_subclasses": num_subclasses},
                "train": label_statistics(train_labels),
            },
            description=f"Synthetic CPC-labelled patent claims (modernpatent_hf.data.synthetic, seed {seed}, n {n}).",
            command="synth",
            fingerprint=fingerprint,
        )
        return {
            "out_dir": out_dir,
            "rows_per_split": rows,
            "label_space": {
                "subclasses": len(label_space),
                "classes": len(label_space.classes),
                "sections": len(label_space.sections),
            },
            "label_statistics": {
                split: {k: v for k, v in label_statistics(labels).items() if not isinstance(v, (list, dict))}
                for split, labels in [("train", train_labels), *split_labels.items()]
            },
            "dropped": dropped,
            "seconds": round(time.perf_counter() - started, 2),
        }


def generated_claims(count: int, seed: int = 0) -> List[str]:
    """``count`` claim-like texts from the synthetic generator, for checks that need some text."""
    return [record["text"] for record in generate_synthetic_records(count, seed=seed)]
