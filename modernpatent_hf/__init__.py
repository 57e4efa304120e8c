"""modernpatent_hf: CPC patent classification with ModernBERT on the Hugging Face stack."""

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
from .metrics import F1_AT_K_METRIC, MultilabelMetricsAccumulator, compute_multilabel_metrics, top_k_indices
from .configuration_modernpatent import BertPatentConfig, ModernPatentConfig
from .losses import balanced_class_weights
from .modeling_modernpatent import (
    BertForHierarchicalPatentClassification,
    HierarchicalClassifierOutput,
    ModernBertForHierarchicalPatentClassification,
)
from .model_factory import build_patent_classifier
from .data.synthetic import generate_synthetic_records, write_synthetic_corpus
from .tokenization import train_patent_tokenizer, train_tokenizer_from_corpus

__version__ = "0.1.0"


def _register_auto_classes():
    """Let AutoConfig / AutoModel / AutoModelForSequenceClassification resolve our model types in this process."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    for config_class, model_class in (
        (ModernPatentConfig, ModernBertForHierarchicalPatentClassification),
        (BertPatentConfig, BertForHierarchicalPatentClassification),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForSequenceClassification.register(config_class, model_class, exist_ok=True)


_register_auto_classes()
