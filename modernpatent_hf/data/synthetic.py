"""The embedded default corpus: seeded, patent-like, multi-label records that need no network.

The generator lives in a fixed *world*: a CPC-shaped taxonomy (9 sections, 128 classes, up to 665
subclasses with codes such as ``G47K``), label frequencies that follow the long tail of USPTO-3M, and
section-, class- and subclass-specific vocabularies of pseudo-words. The world depends only on
``num_subclasses``; the ``seed`` drives the sampling of records. Corpora drawn with different seeds
therefore share one label space and vocabulary, so a model (or tokenizer) trained on one seed can be
evaluated on another.

A record is a first-claim-like text ("1. A method for ..., comprising: ...; wherein said ...") whose
content words come from generic claim nouns and the vocabularies of its labels' section, class and
subclass, plus words of sibling and of unrelated subclasses. Sibling subclasses share their class vocabulary and
subclass-specific words are a minority of tokens, so siblings are genuinely confusable and knowing the
hierarchy helps. Extra labels of a patent usually sit in the class or section of its first label, as
in real CPC assignments.

Everything is vectorized with numpy over chunks of records (well over 10,000 records per second).
Record ``i`` depends only on ``(seed, i)``, so a smaller corpus is a prefix of a larger one.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from itertools import islice
from statistics import NormalDist
from typing import Dict, Iterable, Iterator, List, Mapping, Optional

import numpy as np

from ..cpc import SECTIONS, CpcLabelSpace
from ..io_utils import check_output_dir
from .records import label_statistics, write_dataset_dir

MAX_SUBCLASSES = 665

# Shape of the real CPC tree under USPTO-3M (figures from DESIGN.md / the USPTO-3M label counts):
# subclasses and classes per section, and each section's share of label occurrences.
SECTION_SUBCLASSES = {"A": 85, "B": 171, "C": 88, "D": 40, "E": 31, "F": 103, "G": 86, "H": 50, "Y": 11}
SECTION_CLASSES = {"A": 15, "B": 37, "C": 20, "D": 9, "E": 7, "F": 18, "G": 14, "H": 5, "Y": 3}
SECTION_SHARE = {
    "A": 0.121, "B": 0.127, "C": 0.103, "D": 0.007, "E": 0.019, "F": 0.068, "G": 0.220, "H": 0.221, "Y": 0.113,
}

# Label frequency by rank r of N subclasses: a lognormal rank law, p(r) ~ exp(SIGMA * z(r)) with z the
# standard normal quantile of 1 - (r - 0.5 + OFFSET) / (N + OFFSET). SIGMA sets the long tail, OFFSET
# flattens the head. Fitted to the USPTO-3M label counts (least squares on the cumulative shares gives
# SIGMA 1.73: top-30 48.2 %, real 48.4 %); SIGMA is set a little higher because extra labels that
# repeat one already drawn are dropped, which thins the head. Generated corpora then show top-1 ~5.5 %
# (real 5.1), top-30 ~48 % (48.4) of label occurrences.
RANK_LAW_SIGMA = 1.80
RANK_LAW_OFFSET = 0.33

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

# What fills a content slot of a claim template, and how many words each vocabulary has.
# "sibling" words come from a random subclass of the label's class (possibly itself): siblings blur.
CONTENT_SOURCES = ("generic", "section", "class", "subclass", "sibling", "noise")
CONTENT_MIX = np.array([0.30, 0.17, 0.26, 0.05, 0.10, 0.12])
SECTION_VOCAB, CLASS_VOCAB, SUBCLASS_VOCAB = 300, 120, 24
FIRST_LABEL_WEIGHT = 0.6  # share of label-specific words that describe the first label
WORD_SKEW = 1.6  # word index = size * u**WORD_SKEW: a few words of each vocabulary dominate

WORLD_SEED = 20_240_611  # the world is the same for every corpus; only the records vary with the seed

GENERIC_WORDS = (
    "member portion surface unit element layer body housing signal device module assembly end region frame "
    "plate data value controller sensor circuit material composition structure section support wall opening "
    "channel axis line position direction connection interface component system mechanism substrate "
    "first second third plurality outer inner upper lower predetermined respective adjacent corresponding "
    "electrical mechanical fluid rotating movable fixed flexible elongated annular lateral longitudinal "
    "output input control processing storage memory network user terminal image light power voltage "
    "current temperature pressure flow rate amount level distance angle shaft spring cavity chamber "
    "coupling engagement"
).split()

# Claim templates: '#' is a content slot. Method claims take steps, product claims take elements.
PREAMBLES = {
    "method": "1. A method for # # # , comprising :",
    "product": "1. A # # # , comprising :",
}
CLAUSES = {
    "method": (
        "receiving , by a # # , a # # ;",
        "determining a # # based on the # ;",
        "# the # # with a # # ;",
        "providing a # # having a # # ;",
        "applying a # to the # # at a # # ;",
        "wherein said # # is # by the # ,",
        "wherein the # # comprises a # and a # # ;",
        "generating a # # from the # # and the # ;",
        "and # the # # to obtain a # # ;",
        "wherein the # is selected from the group consisting of # , # , # and # ;",
    ),
    "product": (
        "a # # ;",
        "a # # coupled to the # # ;",
        "at least one # configured to # the # # ;",
        "a plurality of # # disposed on said # ;",
        "said # # being # between the # and the # # ;",
        "a # # in communication with the # ,",
        "the # having a first # # and a second # # ;",
        "wherein said # # is # to the # # ,",
        "wherein the # comprises # # , # # and # ;",
        "wherein the # is selected from the group consisting of # , # , # and # ;",
    ),
}
CLAIM_KINDS = ("method", "product")
CLAIM_KIND_WEIGHTS = np.array([0.4, 0.6])
SLOT = "#"

# Pseudo-word parts; each section has its own suffixes, so words carry a trace of their section.
_ONSETS = "b c d f g h k l m n p r s t v z br cr dr fl gr pl pr st tr th ch sh sp qu".split()
_VOWELS = "a e i o u ae io ou ei y".split()
_CODAS = ["", "", "", "n", "r", "l", "s", "x", "m", "t"]
_SECTION_SUFFIXES = {
    "A": ["ant", "ose", "ary", "al"], "B": ["er", "ing", "or", "le"], "C": ["ide", "ene", "ate", "ol"],
    "D": ["een", "ile", "ure"], "E": ["ment", "ard", "ock"], "F": ["ston", "ator", "ive"],
    "G": ["ic", "ix", "ode", "ron"], "H": ["tron", "istor", "ance", "ode"], "Y": ["ity", "ism", "ional"],
}
# Punctuation is glued to the word before it: the vocabulary holds every word with each mark and its
# following space, so a chunk's texts are one gather of bytes. A claim ends with ".\n", which also
# separates the records of a chunk.
_MARKS = (" ", ", ", "; ", ": ", ".\n")
_END_OF_CLAIM = _MARKS.index(".\n")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # CPC subclass letters (no I or O)
_CHUNK = 4096  # records drawn together; record i depends only on (seed, i // _CHUNK, i % _CHUNK)


@dataclass(frozen=True)
class SyntheticWorld:
    """The fixed taxonomy, label frequencies and vocabulary that every synthetic corpus is drawn from.

    Per-label arrays are aligned with ``codes`` (sorted, so each class and section is a contiguous
    block). Word id ``w + m * vocabulary_size`` is word ``w`` followed by mark ``m``; its bytes are
    ``word_bytes[word_offset[id]:word_offset[id] + word_length[id]]``.
    """

    codes: np.ndarray  # [L] subclass codes
    probabilities: np.ndarray  # [L] share of label occurrences
    class_index: np.ndarray  # [L] index of the subclass's class (within this world)
    section_index: np.ndarray  # [L] index of the subclass's section (within this world)
    word_bytes: np.ndarray  # uint8: every word a text can contain, with each mark, concatenated
    word_offset: np.ndarray  # [V * len(_MARKS)]
    word_length: np.ndarray  # [V * len(_MARKS)]
    vocabulary_size: int  # V
    template_tokens: np.ndarray  # flat word ids of all templates, -1 for a content slot
    template_marks: np.ndarray  # mark after each template token
    template_start: np.ndarray
    template_length: np.ndarray
    clause_ids: Dict[str, np.ndarray]  # template ids of the clauses of each claim kind
    preamble_ids: Dict[str, int]
    generic_words: np.ndarray  # word ids of the generic vocabulary
    section_base: np.ndarray  # [L] first word id of the subclass's section vocabulary
    class_base: np.ndarray  # [L] first word id of its class vocabulary
    subclass_base: np.ndarray  # [L] first word id of its own vocabulary
    titles: Dict[str, str]

    @property
    def num_labels(self) -> int:
        return len(self.codes)


def _taxonomy(rng):
    """All 665 subclass codes of the full world, with their section and class codes."""
    codes = []
    for section in SECTIONS:
        n_classes, n_subclasses = SECTION_CLASSES[section], SECTION_SUBCLASSES[section]
        class_numbers = np.sort(rng.choice(np.arange(1, 100), size=n_classes, replace=False))
        while True:  # class sizes: at least one subclass, skewed like real CPC classes (1 to ~19)
            sizes = 1 + rng.multinomial(n_subclasses - n_classes, rng.dirichlet(np.full(n_classes, 1.0)))
            if sizes.max() <= len(_LETTERS):
                break
        for number, size in zip(class_numbers, sizes):
            letters = np.sort(rng.choice(list(_LETTERS), size=size, replace=False))
            codes.extend(f"{section}{number:02d}{letter}" for letter in letters)
    return np.array(codes)


def _rank_law(n: int) -> np.ndarray:
    """Label-occurrence shares of ranks 1..n of the full USPTO-3M-shaped law (the head of 665 ranks)."""
    quantile = NormalDist().inv_cdf
    total = MAX_SUBCLASSES + RANK_LAW_OFFSET
    z = np.array([quantile(1 - (rank - 0.5 + RANK_LAW_OFFSET) / total) for rank in range(1, n + 1)])
    shares = np.exp(RANK_LAW_SIGMA * z)
    return shares / shares.sum()


def _pseudo_words(rng, count: int, suffixes: List[str], taken: set) -> List[str]:
    """``count`` new pronounceable pseudo-words ending in one of ``suffixes``, none already ``taken``."""
    words: List[str] = []
    while len(words) < count:
        n = 2 * (count - len(words))
        syllables = rng.integers(1, 3, size=n)
        parts = [
            rng.choice(_ONSETS, size=(n, 3)), rng.choice(_VOWELS, size=(n, 3)), rng.choice(_CODAS, size=(n, 3)),
        ]
        ends = rng.choice(suffixes, size=n)
        for i in range(n):
            word = "".join(parts[0][i, j] + parts[1][i, j] + parts[2][i, j] for j in range(syllables[i])) + ends[i]
            if word not in taken:
                taken.add(word)
                words.append(word)
                if len(words) == count:
                    break
    return words


def _frequency_ranks(rng, codes: np.ndarray) -> np.ndarray:
    """Rank (0 = most frequent) of each subclass of the full world.

    A latent score per subclass (section offset + class effect + own scatter) is sorted descending; the
    section offsets are calibrated so that, under the rank law, each section gets its real share of
    label occurrences.
    """
    section_number = np.array([SECTIONS.index(code[0]) for code in codes])
    class_number = np.unique([code[:3] for code in codes], return_inverse=True)[1]
    scatter = rng.normal(0.0, 0.6, size=class_number.max() + 1)[class_number] + rng.normal(0.0, 0.8, size=len(codes))
    target_share = np.array([SECTION_SHARE[s] for s in SECTIONS])
    law = _rank_law(MAX_SUBCLASSES)
    section_offset = np.zeros(len(SECTIONS))
    ranks = np.empty(len(codes), dtype=np.int64)
    for _ in range(50):
        ranks[np.argsort(-(section_offset[section_number] + scatter))] = np.arange(len(codes))
        share = np.bincount(section_number, weights=law[ranks], minlength=len(SECTIONS))
        section_offset += 0.5 * np.log(target_share / share)
    return ranks


def _templates(word_id: Dict[str, int]):
    """Flatten the claim templates into word ids (-1 for a slot) and the mark after each token."""
    texts = [PREAMBLES[kind] for kind in CLAIM_KINDS] + [clause for kind in CLAIM_KINDS for clause in CLAUSES[kind]]
    mark_symbols = [mark.strip() for mark in _MARKS]
    tokens, marks, lengths = [], [], []
    for text in texts:
        words = text.split()
        for word in words:
            if word in mark_symbols:
                marks[-1] = mark_symbols.index(word)
            else:
                tokens.append(word_id.get(word, -1))
                marks.append(0)
        lengths.append(sum(word not in mark_symbols for word in words))
    lengths = np.array(lengths)
    first_clause = len(CLAIM_KINDS) + np.cumsum([0] + [len(CLAUSES[kind]) for kind in CLAIM_KINDS])
    return {
        "template_tokens": np.array(tokens),
        "template_marks": np.array(marks),
        "template_start": np.cumsum(lengths) - lengths,
        "template_length": lengths,
        "preamble_ids": {kind: i for i, kind in enumerate(CLAIM_KINDS)},
        "clause_ids": {kind: np.arange(first_clause[i], first_clause[i + 1]) for i, kind in enumerate(CLAIM_KINDS)},
    }


def _template_words() -> List[str]:
    texts = list(PREAMBLES.values()) + [clause for clauses in CLAUSES.values() for clause in clauses]
    mark_symbols = {mark.strip() for mark in _MARKS}
    return sorted({word for text in texts for word in text.split() if word != SLOT and word not in mark_symbols})


@functools.lru_cache(maxsize=4)
def synthetic_world(num_subclasses: int = MAX_SUBCLASSES) -> SyntheticWorld:
    """The world of the ``num_subclasses`` most frequent subclasses (1 to 665) of the full synthetic world.

    Deterministic (a fixed internal seed) and cached. A smaller world is the head of the full one, so its
    label frequencies keep the long-tail shape of the real head.
    """
    if not 1 <= num_subclasses <= MAX_SUBCLASSES:
        raise ValueError(f"num_subclasses must be between 1 and {MAX_SUBCLASSES}, got {num_subclasses}")
    rng = np.random.default_rng(WORLD_SEED)
    all_codes = _taxonomy(rng)
    all_sections = np.array([SECTIONS.index(code[0]) for code in all_codes])
    all_classes = np.unique([code[:3] for code in all_codes], return_inverse=True)[1]
    ranks = _frequency_ranks(rng, all_codes)
    kept = np.sort(np.flatnonzero(ranks < num_subclasses))  # sorted positions keep the codes sorted
    probabilities = _rank_law(num_subclasses)[ranks[kept]]

    # Vocabulary: template words, generic claim words, then section / class / subclass blocks of
    # pseudo-words (built for the full world, so that a smaller world uses the same words).
    function_words = _template_words()
    taken = set(function_words) | set(GENERIC_WORDS)
    section_words = [_pseudo_words(rng, SECTION_VOCAB, _SECTION_SUFFIXES[s], taken) for s in SECTIONS]
    class_section = np.zeros(all_classes.max() + 1, dtype=np.int64)
    class_section[all_classes] = all_sections
    class_words = [_pseudo_words(rng, CLASS_VOCAB, _SECTION_SUFFIXES[SECTIONS[s]], taken) for s in class_section]
    subclass_words = [_pseudo_words(rng, SUBCLASS_VOCAB, _SECTION_SUFFIXES[code[0]], taken) for code in all_codes]
    words = function_words + list(GENERIC_WORDS)
    section_start = len(words)
    class_start = section_start + SECTION_VOCAB * len(SECTIONS)
    subclass_start = class_start + CLASS_VOCAB * len(class_words)
    words += [w for block in section_words + class_words + subclass_words for w in block]
    encoded = [(word + mark).encode("ascii") for mark in _MARKS for word in words]
    word_length = np.array([len(b) for b in encoded])

    codes = all_codes[kept]
    return SyntheticWorld(
        codes=codes,
        probabilities=probabilities / probabilities.sum(),
        class_index=np.unique(all_classes[kept], return_inverse=True)[1],
        section_index=np.unique(all_sections[kept], return_inverse=True)[1],
        word_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        word_offset=np.cumsum(word_length) - word_length,
        word_length=word_length,
        vocabulary_size=len(words),
        **_templates({word: i for i, word in enumerate(function_words)}),
        generic_words=np.arange(len(function_words), section_start),
        section_base=section_start + SECTION_VOCAB * all_sections[kept],
        class_base=class_start + CLASS_VOCAB * all_classes[kept],
        subclass_base=subclass_start + SUBCLASS_VOCAB * kept,
        titles={
            code: f"{subclass_words[k][0]} and {subclass_words[k][1]} {class_words[all_classes[k]][0]}".upper()
            for code, k in zip(codes.tolist(), kept)
        },
    )


# ----------------------------------------------------------------------------- sampling
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
    marks[record_end - 1] = _END_OF_CLAIM  # the last clause ends the claim

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
    bases = np.stack([
        np.zeros(n, dtype=np.int64),
        world.section_base[label],
        world.class_base[label],
        world.subclass_base[label],
        world.subclass_base[sibling],
        world.subclass_base[noise_label],
    ])
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
    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
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
        command="synth", fingerprint=fingerprint,
    )
    return {
        "out_dir": out_dir,
        "rows_per_split": rows,
        "label_space": {
            "subclasses": len(label_space), "classes": len(label_space.classes), "sections": len(label_space.sections),
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
