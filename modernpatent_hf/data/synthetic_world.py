"""The fixed *world* every synthetic corpus is drawn from (:func:`synthetic_world`, a :class:`SyntheticWorld`).

A CPC-shaped taxonomy (9 sections, 128 classes, up to 665 subclasses with codes such as ``G47K``), label
frequencies that follow the long tail of USPTO-3M, section-, class- and subclass-specific vocabularies of
pseudo-words, and the claim templates whose content slots the sampler fills
(:mod:`modernpatent_hf.data.synthetic`). The world depends only on ``num_subclasses`` (a fixed internal seed), so
corpora drawn with different seeds share one label space and vocabulary.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from statistics import NormalDist
from typing import Dict, List

import numpy as np

from ..cpc import SECTIONS

MAX_SUBCLASSES = 665

# Shape of the real CPC tree under USPTO-3M (figures from the USPTO-3M label counts):
# subclasses and classes per section, and each section's share of label occurrences.
SECTION_SUBCLASSES = {"A": 85, "B": 171, "C": 88, "D": 40, "E": 31, "F": 103, "G": 86, "H": 50, "Y": 11}
SECTION_CLASSES = {"A": 15, "B": 37, "C": 20, "D": 9, "E": 7, "F": 18, "G": 14, "H": 5, "Y": 3}
SECTION_SHARE = {
    "A": 0.121,
    "B": 0.127,
    "C": 0.103,
    "D": 0.007,
    "E": 0.019,
    "F": 0.068,
    "G": 0.220,
    "H": 0.221,
    "Y": 0.113,
}

# Label frequency by rank r of N subclasses: a lognormal rank law, p(r) ~ exp(SIGMA * z(r)) with z the
# standard normal quantile of 1 - (r - 0.5 + OFFSET) / (N + OFFSET). SIGMA sets the long tail, OFFSET
# flattens the head. Fitted to the USPTO-3M label counts (least squares on the cumulative shares gives
# SIGMA 1.73: top-30 48.2 %, real 48.4 %); SIGMA is set a little higher because extra labels that
# repeat one already drawn are dropped, which thins the head. Generated corpora then show top-1 ~5.5 %
# (real 5.1), top-30 ~48 % (48.4) of label occurrences.
RANK_LAW_SIGMA = 1.80
RANK_LAW_OFFSET = 0.33

# How many words each vocabulary has (section, class, subclass).
SECTION_VOCAB, CLASS_VOCAB, SUBCLASS_VOCAB = 300, 120, 24

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
SLOT = "#"

# Pseudo-word parts; each section has its own suffixes, so words carry a trace of their section.
_ONSETS = "b c d f g h k l m n p r s t v z br cr dr fl gr pl pr st tr th ch sh sp qu".split()
_VOWELS = "a e i o u ae io ou ei y".split()
_CODAS = ["", "", "", "n", "r", "l", "s", "x", "m", "t"]
_SECTION_SUFFIXES = {
    "A": ["ant", "ose", "ary", "al"],
    "B": ["er", "ing", "or", "le"],
    "C": ["ide", "ene", "ate", "ol"],
    "D": ["een", "ile", "ure"],
    "E": ["ment", "ard", "ock"],
    "F": ["ston", "ator", "ive"],
    "G": ["ic", "ix", "ode", "ron"],
    "H": ["tron", "istor", "ance", "ode"],
    "Y": ["ity", "ism", "ional"],
}
# Punctuation is glued to the word before it: the vocabulary holds every word with each mark and its
# following space, so a chunk's texts are one gather of bytes. A claim ends with ".\n", which also
# separates the records of a chunk.
_MARKS = (" ", ", ", "; ", ": ", ".\n")
END_OF_CLAIM = _MARKS.index(".\n")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # CPC subclass letters (no I or O)


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
            rng.choice(_ONSETS, size=(n, 3)),
            rng.choice(_VOWELS, size=(n, 3)),
            rng.choice(_CODAS, size=(n, 3)),
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
