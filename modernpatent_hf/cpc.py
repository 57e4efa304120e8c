"""CPC codes: parsing, normalization, the section > class > subclass hierarchy, and the label space.

A CPC symbol such as ``H01L 21/02`` names, from left to right, a section (``H``), a class (``H01``),
a subclass (``H01L``) and a group (``21/02``). This package classifies patents into *subclasses*,
so every spelling found in the wild is reduced to its four-character subclass code.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from .io_utils import value_kind, write_json_atomically
from .metrics_hub.f1_at_k.multilabel_metrics import CPC_SYMBOL  # the one pattern of a CPC symbol (numpy-only module)

if TYPE_CHECKING:
    import torch

SECTIONS = "ABCDEFGHY"

# Distance between two subclasses that differ at the given level (the seed work's penalty table).
DEFAULT_DISTANCE_WEIGHTS = (1.0, 0.5, 0.25)  # (different section, same section only, same class only)

# Separators between several symbols in one string: upstream joins subclasses with commas.
_SEPARATORS = re.compile(r"[,;|\n\t]+")

CodeInput = Union[str, Sequence[str], None]


class CpcCodeError(ValueError):
    """A value that is not a CPC symbol. The message names the value and, when known, the record."""

    def __init__(self, value: object, record_id: Optional[str] = None, reason: str = ""):
        self.value = value
        self.record_id = record_id
        where = f" in record {record_id!r}" if record_id is not None else ""
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"invalid CPC code {value!r}{where}{why}: expected a CPC symbol such as 'A01B', "
            f"'H01L 21/02' or a comma-joined list like 'C11D,Y10S'"
        )


def normalize_subclass(value: object, record_id: Optional[str] = None) -> str:
    """Reduce one CPC symbol in any common spelling to its subclass code.

    ``'a01b'``, ``' A01B '``, ``'A01B 1/00'``, ``'A01B1/00'``, ``'A01B 1/00 (2006.01)'`` -> ``'A01B'``.
    Raises :class:`CpcCodeError` for anything else (USPC ``'123/456'``, numbers, empty strings, any character outside
    ASCII: a lookalike letter or digit is never mapped to a code).
    """
    if not isinstance(value, str):
        raise CpcCodeError(value, record_id, f"{value_kind(value)}, not a string")
    if not value.isascii():  # upper() and \d would map lookalikes ('ı', 'ß', fullwidth or Arabic digits) to a code
        raise CpcCodeError(value, record_id, "a character outside ASCII")
    match = CPC_SYMBOL.match(value.strip().upper())
    if match is None:
        raise CpcCodeError(value, record_id)
    return match.group("section") + match.group("cls") + match.group("subclass")


def _symbols(value, record_id) -> List:
    """Split one field value into its individual symbols (strings split on separators)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [piece for piece in _SEPARATORS.split(value) if piece.strip()]
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        symbols = []
        for item in value:
            symbols.extend(_symbols(item, record_id) if isinstance(item, str) else [item])
        return symbols
    raise CpcCodeError(value, record_id, f"{value_kind(value)}; expected a string or a list of strings")


def parse_cpc_codes(
    value: CodeInput, record_id: Optional[str] = None, errors: str = "raise"
) -> Tuple[List[str], List]:
    """Parse a field holding CPC symbols into deduplicated subclass codes, first-seen order kept.

    ``value`` is a string (one symbol or several joined by ``,`` ``;`` ``|``), a list of such strings,
    or ``None``. With ``errors="raise"`` the first invalid symbol raises :class:`CpcCodeError`; with
    ``errors="drop"`` invalid symbols are skipped and returned as the second element so that callers
    can count (and report) them.
    """
    if errors not in ("raise", "drop"):
        raise ValueError(f"errors must be 'raise' or 'drop', got {errors!r}")
    if errors == "drop" and not isinstance(value, (str, list, tuple, np.ndarray, type(None))):
        return [], [value]
    codes: Dict[str, None] = {}
    invalid = []
    for symbol in _symbols(value, record_id):
        try:
            codes[normalize_subclass(symbol, record_id)] = None
        except CpcCodeError:
            if errors == "raise":
                raise
            invalid.append(symbol)
    return list(codes), invalid


def section_of(code: str) -> str:
    """``'A01B'`` -> ``'A'``."""
    return code[0]


def class_of(code: str) -> str:
    """``'A01B'`` -> ``'A01'``."""
    return code[:3]


def hierarchical_distance(a: str, b: str, weights: Sequence[float] = DEFAULT_DISTANCE_WEIGHTS) -> float:
    """Distance between two subclass codes in the CPC tree.

    0 for the same subclass, ``weights[2]`` (0.25) within one class, ``weights[1]`` (0.5) within one
    section, ``weights[0]`` (1.0) across sections.
    """
    if a == b:
        return 0.0
    if class_of(a) == class_of(b):
        return float(weights[2])
    if section_of(a) == section_of(b):
        return float(weights[1])
    return float(weights[0])


def read_titles_tsv(path: Union[str, os.PathLike]) -> Dict[str, str]:
    """Read a ``code<TAB>title`` file (a header row ``code<TAB>title`` is skipped) into a dict."""
    titles = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: a byte order mark is skipped
        for line_number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (line_number == 1 and row[0].strip().lower() == "code"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{line_number}: expected 'code<TAB>title', got {row!r}")
            titles[normalize_subclass(row[0], record_id=f"{path}:{line_number}")] = row[1].strip()
    return titles


def read_counts_tsv(path: Union[str, os.PathLike]) -> Dict[str, int]:
    """Read a ``code<TAB>count`` file such as ``uspto3m_label_counts.tsv`` (header row skipped)."""
    counts = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: a byte order mark is skipped
        for line_number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (line_number == 1 and not row[1].strip().isdigit()):
                continue
            counts[normalize_subclass(row[0], record_id=f"{path}:{line_number}")] = int(row[1])
    return counts


class CpcLabelSpace:
    """The ordered set of subclass codes a model predicts, with the CPC hierarchy above them.

    Codes are sorted alphabetically (as upstream), so index ``i`` of a model's logits is ``codes[i]``.
    Classes and sections are derived from the codes, also sorted. ``counts`` (label occurrences in the
    data the space was built from) and ``titles`` are optional and travel with the JSON file.
    """

    FORMAT = "modernpatent-cpc-label-space"
    VERSION = 1

    def __init__(
        self,
        codes: Iterable[str],
        counts: Optional[Mapping[str, int]] = None,
        titles: Optional[Mapping[str, str]] = None,
    ):
        normalized = sorted({normalize_subclass(code) for code in codes})
        if not normalized:
            raise ValueError("a CPC label space needs at least one subclass code")
        self.codes: Tuple[str, ...] = tuple(normalized)
        self.label2id: Dict[str, int] = {code: i for i, code in enumerate(self.codes)}
        self.id2label: Dict[int, str] = dict(enumerate(self.codes))
        self.classes: Tuple[str, ...] = tuple(sorted({class_of(c) for c in self.codes}))
        self.sections: Tuple[str, ...] = tuple(sorted({section_of(c) for c in self.codes}))
        class_index = {c: i for i, c in enumerate(self.classes)}
        section_index = {s: i for i, s in enumerate(self.sections)}
        self.subclass_to_class = np.array([class_index[class_of(c)] for c in self.codes], dtype=np.int64)
        self.class_to_section = np.array([section_index[section_of(c)] for c in self.classes], dtype=np.int64)
        self.subclass_to_section = self.class_to_section[self.subclass_to_class]
        self.counts: Optional[Dict[str, int]] = (
            {code: int(counts.get(code, 0)) for code in self.codes} if counts is not None else None
        )
        self.titles: Dict[str, str] = {c: t for c, t in (titles or {}).items() if c in self.label2id}

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], min_count: int = 1, titles: Optional[Mapping[str, str]] = None
    ) -> "CpcLabelSpace":
        """Keep the codes that occur at least ``min_count`` times."""
        kept = {code: n for code, n in counts.items() if n >= min_count}
        if not kept:
            raise ValueError(f"no subclass occurs at least min_count={min_count} times ({len(counts)} codes seen)")
        return cls(kept, counts=kept, titles=titles)

    @classmethod
    def from_label_lists(
        cls, label_lists: Iterable[Sequence[str]], min_count: int = 1, titles: Optional[Mapping[str, str]] = None
    ) -> "CpcLabelSpace":
        """Build from the label lists of a dataset (each list holds normalized subclass codes)."""
        counts = Counter(code for labels in label_lists for code in labels)
        return cls.from_counts(counts, min_count=min_count, titles=titles)

    def with_titles(self, titles: Union[Mapping[str, str], str, os.PathLike]) -> "CpcLabelSpace":
        """A copy with titles from a mapping or a ``code<TAB>title`` TSV file."""
        if not isinstance(titles, Mapping):
            titles = read_titles_tsv(titles)
        return CpcLabelSpace(self.codes, counts=self.counts, titles=titles)

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.codes)

    @property
    def num_labels(self) -> int:
        return len(self.codes)

    def __contains__(self, code) -> bool:
        return code in self.label2id

    def __iter__(self):
        return iter(self.codes)

    def __eq__(self, other) -> bool:
        return isinstance(other, CpcLabelSpace) and self.codes == other.codes

    def __repr__(self) -> str:
        return (
            f"CpcLabelSpace({len(self.codes)} subclasses, {len(self.classes)} classes, {len(self.sections)} sections)"
        )

    def title(self, code: str) -> Optional[str]:
        return self.titles.get(code)

    # ----------------------------------------------------------------- encoding
    def split_known(self, codes: Iterable[str]) -> Tuple[List[str], List[str]]:
        """Separate codes inside the space from those outside it (callers count the latter)."""
        known, unknown = [], []
        for code in codes:
            (known if code in self.label2id else unknown).append(code)
        return known, unknown

    def encode(self, codes: Iterable[str], strict: bool = False) -> np.ndarray:
        """Multi-hot float32 vector of length ``num_labels``. Unknown codes raise when ``strict``."""
        vector = np.zeros(len(self.codes), dtype=np.float32)
        for code in codes:
            index = self.label2id.get(code)
            if index is None:
                if strict:
                    raise KeyError(f"CPC subclass {code!r} is not in this label space of {len(self)} codes")
                continue
            vector[index] = 1.0
        return vector

    def encode_batch(self, label_lists: Iterable[Iterable[str]], strict: bool = False) -> np.ndarray:
        rows = [self.encode(labels, strict=strict) for labels in label_lists]
        return np.stack(rows) if rows else np.zeros((0, len(self)), dtype=np.float32)

    def decode(self, vector: ArrayLike, threshold: float = 0.5) -> List[str]:
        """Codes whose entry is at least ``threshold`` (multi-hot vectors or probabilities)."""
        vector = np.asarray(vector)
        if vector.shape != (len(self.codes),):
            raise ValueError(f"expected a vector of {len(self.codes)} entries, got shape {vector.shape}")
        return [self.codes[i] for i in np.flatnonzero(vector >= threshold)]

    def decode_batch(self, matrix: ArrayLike, threshold: float = 0.5) -> List[List[str]]:
        return [self.decode(row, threshold) for row in np.asarray(matrix)]

    # ----------------------------------------------------------------- hierarchy
    def hierarchy_tensors(self) -> Dict[str, torch.Tensor]:
        """``subclass_to_class``, ``class_to_section`` and ``subclass_to_section`` as torch LongTensors."""
        import torch

        return {
            "subclass_to_class": torch.from_numpy(self.subclass_to_class.copy()),
            "class_to_section": torch.from_numpy(self.class_to_section.copy()),
            "subclass_to_section": torch.from_numpy(self.subclass_to_section.copy()),
        }

    def distance_matrix(self, weights: Sequence[float] = DEFAULT_DISTANCE_WEIGHTS) -> np.ndarray:
        """``L x L`` float32 matrix of :func:`hierarchical_distance` between every pair of codes."""
        same_class = self.subclass_to_class[:, None] == self.subclass_to_class[None, :]
        same_section = self.subclass_to_section[:, None] == self.subclass_to_section[None, :]
        distance = np.full((len(self), len(self)), weights[0], dtype=np.float32)
        distance[same_section] = weights[1]
        distance[same_class] = weights[2]
        np.fill_diagonal(distance, 0.0)
        return distance

    # ----------------------------------------------------------------- persistence (JSON, never pickle)
    def to_dict(self) -> dict:
        return {
            "format": self.FORMAT,
            "version": self.VERSION,
            "codes": list(self.codes),
            "counts": self.counts,
            "titles": self.titles or None,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "CpcLabelSpace":
        if data.get("format") != cls.FORMAT or "codes" not in data:
            raise ValueError(f"not a CPC label space (expected format {cls.FORMAT!r} with 'codes')")
        return cls(data["codes"], counts=data.get("counts"), titles=data.get("titles"))

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write JSON atomically (a reader never sees a half-written file)."""
        write_json_atomically(path, self.to_dict())

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "CpcLabelSpace":
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, LABEL_SPACE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no label space at {path}: expected a {LABEL_SPACE_FILE} written by this package")
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON ({error}); re-create it with `modernpatent prepare`") from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError, AttributeError) as error:  # another format, bad codes, not a mapping
            raise ValueError(
                f"{path} is not a valid label space ({error}); re-create it with `modernpatent prepare`"
            ) from None


LABEL_SPACE_FILE = "label_space.json"
