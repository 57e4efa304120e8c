"""Configurations of the CPC patent classifiers: an encoder config plus the CPC labels and the loss settings.

This file is copied next to saved checkpoints as remote code (``trust_remote_code=True``), so it imports only the
standard library, transformers and its sibling ``losses.py``, and does no I/O.

The labels are the CPC subclass codes in ``id2label`` (index ``i`` of the logits is ``id2label[i]``). The hierarchy
above them (class = first three characters, section = first character) is derived from the codes on demand and
never stored a second time.
"""

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from transformers import BertConfig, ModernBertConfig, PretrainedConfig

from .losses import LOSS_TYPES

POOLING_TYPES = ("mean", "cls")
# A CPC subclass code: section letter, two-digit class, subclass letter ("A01B", "Y10S").
_SUBCLASS_CODE = re.compile(r"^[A-HY]\d{2}[A-Z]$")
# transformers' own placeholder names, present until real labels are set (e.g. in a default-constructed config).
_PLACEHOLDER_LABEL = re.compile(r"^LABEL_\d+$")


@dataclass(repr=False, eq=False, kw_only=True)
class PatentClassifierConfigMixin:
    """Fields shared by :class:`ModernPatentConfig` and :class:`BertPatentConfig` (mixed into both).

    Loss:
        loss_type (`str`, defaults to `"hierarchical"`): `"bce"` (multi-label binary cross-entropy),
            `"hierarchical"` (BCE + `hierarchy_weight` x the expected CPC distance of the softmax over subclasses,
            differentiable) or `"upstream_hierarchical"` (BCE + `hierarchy_weight` x the distance of the wrong top-1
            prediction, computed outside autograd as in the seed work; a reproduction option only).
        hierarchy_weight (`float`, defaults to 0.5): weight of the hierarchical term (0.5 upstream).
        distance_weights (`list[float]`, defaults to `[1.0, 0.5, 0.25]`): distance between two subclasses in
            different sections, in the same section only, and in the same class.
        class_weights (`list[float]` or `None`): per-subclass weights multiplying both BCE terms of a column,
            e.g. from `losses.balanced_class_weights`; `None` weighs every subclass 1.
        class_weight_cap (`float`, defaults to 5.0): the cap used when the class weights were computed; kept so that
            a checkpoint describes how it was trained.
    Head:
        pooling (`str`, defaults to `"mean"`): `"mean"` over the attention mask or `"cls"` (first token).
        classifier_dropout (inherited field): dropout before the output layer.
    """

    loss_type: str = "hierarchical"
    hierarchy_weight: float = 0.5
    distance_weights: List[float] = (1.0, 0.5, 0.25)  # a tuple: a dataclass default cannot be a list
    class_weights: Optional[List[float]] = None
    class_weight_cap: float = 5.0
    pooling: str = "mean"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.distance_weights = [float(weight) for weight in self.distance_weights]  # as JSON stores it
        if self.label2id is None:
            self.label2id = {code: index for index, code in self.id2label.items()}
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        self.check_patent_settings()

    def check_patent_settings(self) -> None:
        """Raise a one-line ValueError naming the first invalid patent setting (labels, loss, head)."""
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {self.loss_type!r}: use one of {', '.join(LOSS_TYPES)}")
        if self.pooling not in POOLING_TYPES:
            raise ValueError(f"unknown pooling {self.pooling!r}: use one of {', '.join(POOLING_TYPES)}")
        if self.problem_type != "multi_label_classification":
            raise ValueError(
                f"problem_type {self.problem_type!r} is not supported: CPC classification is "
                "'multi_label_classification'"
            )
        _check_non_negative("hierarchy_weight", [self.hierarchy_weight])
        if len(self.distance_weights) != 3:
            raise ValueError(
                f"distance_weights {self.distance_weights!r} must hold 3 numbers: different section, "
                "same section, same class (default [1.0, 0.5, 0.25])"
            )
        _check_non_negative("distance_weights", self.distance_weights)
        _check_non_negative("class_weight_cap", [self.class_weight_cap])
        if self.class_weights is not None:
            if len(self.class_weights) != self.num_labels:
                raise ValueError(
                    f"class_weights has {len(self.class_weights)} entries but the config has {self.num_labels} "
                    "labels: give one weight per label (losses.balanced_class_weights) or None"
                )
            _check_non_negative("class_weights", self.class_weights)
        dropout = self.classifier_dropout
        if dropout is not None and not 0.0 <= dropout < 1.0:
            raise ValueError(f"classifier_dropout {dropout!r} must be in [0, 1)")
        if not self.has_cpc_labels:
            return
        for index, code in sorted(self.id2label.items()):
            if not isinstance(code, str) or not _SUBCLASS_CODE.match(code):
                raise ValueError(
                    f"label {index} is {code!r}, not a 4-character CPC subclass code like 'A01B': "
                    "set id2label/label2id from a CpcLabelSpace"
                )
        if self.label2id != {code: index for index, code in self.id2label.items()}:
            raise ValueError("label2id is not the inverse of id2label: set both from the same CpcLabelSpace")

    @property
    def has_cpc_labels(self) -> bool:
        """False while ``id2label`` holds transformers' placeholders (``LABEL_0``...) instead of CPC codes."""
        return named_labels(self) is not None

    @property
    def subclass_codes(self) -> List[str]:
        """The CPC subclass codes in logit order."""
        codes = named_labels(self)
        if codes is None:
            raise ValueError(
                f"{type(self).__name__} has no CPC labels (id2label holds {self.num_labels} placeholders): "
                "build it with id2label/label2id from a CpcLabelSpace, e.g. via build_patent_classifier"
            )
        return codes

    def cpc_hierarchy(self) -> Dict[str, list]:
        """The hierarchy above the labels, derived from the codes (classes and sections sorted, as in cpc.py).

        Returns ``classes`` and ``sections`` (codes), and ``subclass_to_class`` / ``subclass_to_section``
        (for every label, the index of its class / section).
        """
        codes = self.subclass_codes
        classes = sorted({code[:3] for code in codes})
        sections = sorted({code[0] for code in codes})
        class_index = {code: index for index, code in enumerate(classes)}
        section_index = {code: index for index, code in enumerate(sections)}
        return {
            "classes": classes,
            "sections": sections,
            "subclass_to_class": [class_index[code[:3]] for code in codes],
            "subclass_to_section": [section_index[code[0]] for code in codes],
        }


def named_labels(config: PretrainedConfig) -> Optional[List[str]]:
    """The label names of any transformers config in logit order, or None while they are transformers' placeholders
    (``LABEL_0``, ``LABEL_1``... as in a config built without labels, e.g. a masked-LM checkpoint's)."""
    names = [config.id2label[index] for index in range(config.num_labels)]
    if all(isinstance(name, str) and _PLACEHOLDER_LABEL.match(name) for name in names):
        return None
    return names


def _check_non_negative(name: str, values) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must hold finite non-negative numbers, got {value!r}")


class ModernPatentConfig(PatentClassifierConfigMixin, ModernBertConfig):
    """A ``ModernBertConfig`` for :class:`ModernBertForHierarchicalPatentClassification`: CPC labels + loss settings.

    See :class:`PatentClassifierConfigMixin` for the patent fields; every ModernBERT field keeps its meaning.
    ``classifier_pooling`` (ModernBERT's own pooling field) always mirrors ``pooling``.
    """

    model_type = "modernpatent"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Keep ModernBERT's own field consistent, so that the config reads the same to stock ModernBERT classes.
        self.classifier_pooling = self.pooling


class BertPatentConfig(PatentClassifierConfigMixin, BertConfig):
    """A ``BertConfig`` for :class:`BertForHierarchicalPatentClassification` (the PatentBERT-style baseline).

    Same patent fields as :class:`ModernPatentConfig`; pooling defaults to ``"cls"`` as in PatentBERT.
    A ``classifier_dropout`` of ``None`` means ``hidden_dropout_prob``, as in stock BERT.
    """

    model_type = "bertpatent"
    pooling: str = "cls"


ModernPatentConfig.register_for_auto_class("AutoConfig")
BertPatentConfig.register_for_auto_class("AutoConfig")
