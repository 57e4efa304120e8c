"""Configurations of the CPC patent classifiers: an encoder config plus the CPC labels and the loss settings.

This file is copied next to saved checkpoints as remote code (``trust_remote_code=True``), so it imports only the
standard library, transformers and its sibling ``losses.py``, and does no I/O.

A ModernBERT checkpoint is saved in the format of a stock ``ModernBertForSequenceClassification`` (``model_type``
``"modernbert"``, ``architectures`` the stock class, ``classifier_pooling``, ``problem_type`` multi-label, ``id2label``
the CPC codes) plus an ``auto_map`` naming our classes. Why: transformers maps a native ``model_type`` to its native
classes unless ``trust_remote_code=True`` is given (``resolve_trust_remote_code`` answers False for a checkpoint with
local code, and an ``auto_map`` is used only when trusted), and serving engines choose their implementation by
``model_type``/``architectures``. So one checkpoint reads as the stock classifier to every engine and to plain
transformers (same weights, same logits), and as :class:`ModernBertForHierarchicalPatentClassification` (class and
section logits, hierarchical loss) with ``trust_remote_code=True`` or through this package's own classes. The
weights already have the stock names (see ``modeling_modernpatent.py``). Checkpoints saved with the older
``model_type`` ``"modernpatent"`` still load (:class:`LegacyModernPatentConfig`).

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
class HierarchicalPatentConfigMixin:
    """Fields shared by :class:`ModernBertPatentConfig` and :class:`BertPatentConfig` (mixed into both).

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


class ModernBertPatentConfig(HierarchicalPatentConfigMixin, ModernBertConfig):
    """A ``ModernBertConfig`` for :class:`ModernBertForHierarchicalPatentClassification`: CPC labels + loss settings.

    See :class:`HierarchicalPatentConfigMixin` for the patent fields; every ModernBERT field keeps its meaning.
    ``classifier_pooling`` (ModernBERT's own pooling field, what the stock classifier reads) always mirrors
    ``pooling``. Saved as a stock ModernBERT classifier config (see the module docstring): ``model_type``
    ``"modernbert"`` and the stock class names in ``architectures``.
    """

    model_type = "modernbert"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Keep ModernBERT's own field consistent, so that the config reads the same to stock ModernBERT classes.
        self.classifier_pooling = self.pooling

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        """The saved config, with the older ``model_type`` of this config (``"modernpatent"``) read as today's."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == LegacyModernPatentConfig.model_type:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    def to_dict(self):
        """As ``ModernBertConfig.to_dict``, with our class names in ``architectures`` replaced by the stock classes
        that load the same weights: engines pick their implementation from this field, our classes are named in
        ``auto_map``."""
        output = super().to_dict()
        if output.get("architectures"):
            output["architectures"] = [STOCK_ARCHITECTURES.get(name, name) for name in output["architectures"]]
        return output


class LegacyModernPatentConfig(ModernBertPatentConfig):
    """Reads checkpoints saved with ``model_type`` ``"modernpatent"`` (before the stock format): what ``AutoConfig``
    resolves that type to once this package is imported. It builds a :class:`ModernBertPatentConfig`, so a loaded
    legacy checkpoint saves in today's format; ``modernpatent convert`` rewrites one on disk."""

    model_type = "modernpatent"

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        return ModernBertPatentConfig.from_dict(
            {**config_dict, "model_type": ModernBertPatentConfig.model_type}, **kwargs
        )


# Our class names -> the stock ModernBERT classes that load the same weights (written into ``architectures``).
STOCK_ARCHITECTURES = {
    "ModernBertForHierarchicalPatentClassification": "ModernBertForSequenceClassification",
    "ModernBertPatentModel": "ModernBertModel",
}


class BertPatentConfig(HierarchicalPatentConfigMixin, BertConfig):
    """A ``BertConfig`` for :class:`BertForHierarchicalPatentClassification` (the PatentBERT-style baseline).

    Same patent fields as :class:`ModernBertPatentConfig`; pooling defaults to ``"cls"`` as in PatentBERT.
    A ``classifier_dropout`` of ``None`` means ``hidden_dropout_prob``, as in stock BERT.

    Not saved in a stock format: stock ``BertForSequenceClassification`` classifies BERT's pooler output (dense +
    tanh on the first token), while this head pools (first token or mean) into dense + GELU + LayerNorm, a head
    stock BERT has no class for. A BERT checkpoint loads with ``trust_remote_code=True`` or through this package.
    """

    model_type = "bertpatent"
    pooling: str = "cls"


ModernBertPatentConfig.register_for_auto_class("AutoConfig")
BertPatentConfig.register_for_auto_class("AutoConfig")

# Names of the previous release, kept for one more release.
ModernPatentConfig = ModernBertPatentConfig
PatentClassifierConfigMixin = HierarchicalPatentConfigMixin
