"""modernpatent_hf: CPC patent classification with ModernBERT on the Hugging Face stack."""

from .configuration_modernpatent import BertPatentConfig, ModernPatentConfig
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
    ModernPatentModel,
)
from .tokenization import train_patent_tokenizer, train_tokenizer_from_corpus

__version__ = "0.1.0"

__all__ = [
    "LABEL_SPACE_FILE",
    "F1_AT_K_METRIC",
    "BertForHierarchicalPatentClassification",
    "BertPatentConfig",
    "BertPatentModel",
    "CpcCodeError",
    "CpcLabelSpace",
    "HierarchicalClassifierOutput",
    "ModernBertForHierarchicalPatentClassification",
    "ModernPatentConfig",
    "ModernPatentModel",
    "MultilabelMetricsAccumulator",
    "balanced_class_weights",
    "build_patent_classifier",
    "class_of",
    "compute_multilabel_metrics",
    "generate_synthetic_records",
    "hierarchical_distance",
    "normalize_subclass",
    "parse_cpc_codes",
    "section_of",
    "top_k_indices",
    "train_patent_tokenizer",
    "train_tokenizer_from_corpus",
    "write_synthetic_corpus",
]


def _register_auto_classes():
    """Let AutoConfig / AutoModel (the encoder) / AutoModelForSequenceClassification (the classifier) resolve our
    model types in this process."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    for config_class, encoder_class, classifier_class in (
        (ModernPatentConfig, ModernPatentModel, ModernBertForHierarchicalPatentClassification),
        (BertPatentConfig, BertPatentModel, BertForHierarchicalPatentClassification),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, encoder_class, exist_ok=True)
        AutoModelForSequenceClassification.register(config_class, classifier_class, exist_ok=True)


_register_auto_classes()
