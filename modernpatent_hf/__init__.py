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

__version__ = "0.1.0"
