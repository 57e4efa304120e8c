"""A tiny random patent classifier saved as PatentTrainer saves one (model, tokenizer, label space), for the
prediction and embedding tests, and the single thread they run in."""

import os

import pytest
import torch
from transformers import ModernBertConfig

from modernpatent_hf import LABEL_SPACE_FILE, CpcLabelSpace, build_patent_classifier, generate_synthetic_records, train_patent_tokenizer

MAX_LENGTH = 48
HIDDEN = 32
# One thread in the test process and in every subprocess: identical reduction order, so outputs compare exactly.
SINGLE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in the modules that import it: each test runs torch on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tiny_checkpoint(directory, encoder_config_class=ModernBertConfig):
    """Save a 2-layer classifier of ``encoder_config_class`` (ModernBertConfig or BertConfig) over 12 synthetic
    subclasses into ``directory``; returns ``directory``."""
    records = list(generate_synthetic_records(200, seed=3, num_subclasses=12))
    space = CpcLabelSpace.from_label_lists(record["labels"] for record in records)
    tokenizer = train_patent_tokenizer(
        [record["text"] for record in records], vocab_size=300, min_frequency=1, model_max_length=MAX_LENGTH
    )
    special_tokens = {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
                      "bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id, "local_attention": 16}
    encoder_settings = special_tokens if encoder_config_class is ModernBertConfig else {}
    torch.manual_seed(0)
    config = encoder_config_class(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=MAX_LENGTH, pad_token_id=tokenizer.pad_token_id, **encoder_settings,
    )
    build_patent_classifier(config, space).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    space.save(directory / LABEL_SPACE_FILE)
    return directory
