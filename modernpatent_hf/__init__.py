"""modernpatent_hf: CPC patent classification with ModernBERT on the Hugging Face stack.

The package loads lazily, as transformers does: ``import modernpatent_hf`` imports neither torch, transformers
nor datasets, and each public name below imports its module the first time it is used. Our model types join
transformers' Auto classes when transformers loads them (:mod:`.auto_classes`). A ModernBERT checkpoint is also a
stock ``ModernBertForSequenceClassification`` checkpoint (see :mod:`.configuration_modernpatent`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import auto_classes
from .lazy import lazy_exports

__version__ = "0.1.0"

# Each public name and the module that defines it.
_EXPORTS = {
    "BertPatentConfig": "configuration_modernpatent",
    "ModernBertPatentConfig": "configuration_modernpatent",
    "ModernPatentConfig": "configuration_modernpatent",  # the previous name, kept for one more release
    "LABEL_SPACE_FILE": "cpc",
    "CpcCodeError": "cpc",
    "CpcLabelSpace": "cpc",
    "class_of": "cpc",
    "hierarchical_distance": "cpc",
    "normalize_subclass": "cpc",
    "parse_cpc_codes": "cpc",
    "section_of": "cpc",
    "generate_synthetic_records": "data.synthetic",
    "write_synthetic_corpus": "data.synthetic",
    "balanced_class_weights": "losses",
    "F1_AT_K_METRIC": "metrics",
    "MultilabelMetricsAccumulator": "metrics",
    "compute_multilabel_metrics": "metrics",
    "top_k_indices": "metrics",
    "build_patent_classifier": "model_factory",
    "BertForHierarchicalPatentClassification": "modeling_modernpatent",
    "BertPatentModel": "modeling_modernpatent",
    "HierarchicalClassifierOutput": "modeling_modernpatent",
    "ModernBertForHierarchicalPatentClassification": "modeling_modernpatent",
    "ModernBertPatentModel": "modeling_modernpatent",
    "ModernPatentModel": "modeling_modernpatent",  # the previous name, kept for one more release
    "PatentClassifier": "predictor",
    "train_patent_tokenizer": "tokenization",
    "train_tokenizer_from_corpus": "tokenization",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .configuration_modernpatent import BertPatentConfig, ModernBertPatentConfig, ModernPatentConfig
    from .cpc import (
        LABEL_SPACE_FILE,
        CpcCodeError,
        CpcLabelSpace,
        class_of,
        hierarchical_distance,
        normalize_subclass,
        parse_cpc_codes,
        section_of,
    )
    from .data.synthetic import generate_synthetic_records, write_synthetic_corpus
    from .losses import balanced_class_weights
    from .metrics import F1_AT_K_METRIC, MultilabelMetricsAccumulator, compute_multilabel_metrics, top_k_indices
    from .model_factory import build_patent_classifier
    from .modeling_modernpatent import (
        BertForHierarchicalPatentClassification,
        BertPatentModel,
        HierarchicalClassifierOutput,
        ModernBertForHierarchicalPatentClassification,
        ModernBertPatentModel,
        ModernPatentModel,
    )
    from .predictor import PatentClassifier
    from .tokenization import train_patent_tokenizer, train_tokenizer_from_corpus

auto_classes.install()
