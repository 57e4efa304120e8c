"""The offline Hugging Face cache of the rehearsal: stand-ins published under the cluster run's real Hub ids.

The cluster commands name real Hub ids (the model ``answerdotai/ModernBERT-base``, the datasets
``MalavP/USPTO-3M``, ``0zo/google_patentsview_claims_2016`` and ``0zo/google_patentsview_claims_2017-B``).
To run those commands unchanged without network, this module generates stand-ins locally and lays them
into a hub cache (``<HF_HOME>/hub``) exactly as ``huggingface_hub`` leaves a download: with
``HF_HOME=<dir>`` and ``HF_HUB_OFFLINE=1`` the ids then resolve through the libraries' own code
(``snapshot_download``, ``hf_hub_download``, ``AutoConfig``/``AutoTokenizer``/``AutoModelForMaskedLM``
``.from_pretrained``), and an id that was not published fails as it would on the cluster without access.

Stand-ins: USPTO-3M and its test sets (:mod:`modernpatent_hf.data.standins`: the real columns and types, grants
of 2000-2015, bad rows, an integer id and rows shared with training in the 2016 set) and ModernBERT-base
(:func:`write_tiny_modernbert`: a byte-level BPE tokenizer with ModernBERT's special tokens and a tiny random
``ModernBertForMaskedLM``), each laid into the cache by :func:`~modernpatent_hf.hub_cache.publish_to_offline_cache`.
:func:`build_offline_hub_cache` builds and publishes all four; :mod:`modernpatent_hf.rehearsal_steps` runs the
cluster commands against them, and :mod:`modernpatent_hf.rehearsal` is the command line
(``python -m modernpatent_hf.rehearsal build-cache --hf-home DIR``, then ``export HF_HOME=DIR HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Dict, Iterable

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

from .data.sources import TEST_2016_HUB_ID, TEST_2017B_HUB_ID, USPTO3M_HUB_ID
from .data.standins import (
    TEST_2017B_MONTHS,
    TEST_ID_START,
    iter_parquet_rows,
    overlap_candidates,
    write_test_set_copy,
    write_uspto3m_copy,
)
from .hub_cache import publish_to_offline_cache
from .model_factory import special_token_ids
from .tokenization import train_patent_tokenizer

MODERNBERT_HUB_ID = "answerdotai/ModernBERT-base"

# The tiny stand-in for ModernBERT-base: ModernBERT's layout (alternating global/local attention, rotary
# positions) at toy size. 8192 positions like the real model: rotary embeddings have no position weights.
TINY_MODERNBERT_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=8192,
)


# ----------------------------------------------------------------------------- model stand-in
def write_tiny_modernbert(out_dir: str, texts: Iterable[str], *, vocab_size: int = 2000, seed: int = 0) -> dict:
    """Save a stand-in for ``answerdotai/ModernBERT-base`` in ``out_dir``: tokenizer and tiny random MLM.

    The tokenizer is :func:`~modernpatent_hf.tokenization.train_patent_tokenizer` trained on ``texts`` (byte-level
    BPE, ``[UNK] [CLS] [SEP] [PAD] [MASK]``, ``[CLS] text [SEP]``); the model a ``ModernBertForMaskedLM`` of
    :data:`TINY_MODERNBERT_CONFIG` with the tokenizer's vocabulary and special token ids, weights drawn from
    ``seed`` (safetensors). ``AutoTokenizer``/``AutoConfig``/``AutoModel``/``AutoModelForMaskedLM`` load it.
    Returns a summary: the vocabulary size, the config and the files.
    """
    tokenizer = train_patent_tokenizer(texts, vocab_size=vocab_size)
    tokenizer.save_pretrained(out_dir)
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        **special_token_ids("modernbert", tokenizer),
        **TINY_MODERNBERT_CONFIG,
    )
    # The caller's random state stays as it was: only these weights follow from the seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ModernBertForMaskedLM(config)
    model.save_pretrained(out_dir)
    return {
        "out_dir": out_dir,
        "vocab_size": len(tokenizer),
        "config": dict(TINY_MODERNBERT_CONFIG),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "files": sorted(os.listdir(out_dir)),
    }


def build_offline_hub_cache(
    hf_home: str,
    *,
    train_rows: int = 2000,
    test_rows: int = 300,
    seed: int = 0,
    vocab_size: int = 2000,
    progress: bool = False,
) -> dict:
    """Generate every stand-in of the cluster run and publish each under its real Hub id in ``hf_home``'s cache.

    ``MalavP/USPTO-3M``: :func:`write_uspto3m_copy` (``train_rows``, 2000-2015, bad rows);
    ``0zo/google_patentsview_claims_2016``: :func:`write_test_set_copy` (``test_rows``, 2016, int64 ids, texts of
    ``seed + 1``, :data:`OVERLAP_ROWS` rows copied from the training copy); ``0zo/google_patentsview_claims_2017-B``:
    the same for January-August 2017 (``seed + 2``, no overlap); ``answerdotai/ModernBERT-base``:
    :func:`write_tiny_modernbert` with the tokenizer trained on the training copy's texts. The stand-ins are
    written in a scratch folder inside ``hf_home`` that is removed at the end.

    Afterwards ``HF_HOME=hf_home HF_HUB_OFFLINE=1`` makes the ids resolve (``HF_HUB_CACHE``, when set, must be
    ``hf_home/hub``). Returns a summary: per repo id its type, snapshot, commit and rows; the overlapping texts'
    positions; the environment to set; seconds.
    """
    started = time.perf_counter()
    os.makedirs(hf_home, exist_ok=True)
    repos: Dict[str, dict] = {}
    # Inside hf_home: the scratch copies sit on the cache's file system, however large they are.
    with tempfile.TemporaryDirectory(prefix=".rehearsal-build-", dir=hf_home) as work:
        train_dir = os.path.join(work, "uspto3m")
        train = write_uspto3m_copy(train_dir, train_rows, seed=seed, progress=progress)
        overlap = overlap_candidates(train_dir, train)
        test_2016 = write_test_set_copy(
            os.path.join(work, "test2016"),
            test_rows,
            seed=seed + 1,
            year=2016,
            id_start=max(TEST_ID_START, train["id_range"][1] + 1),
            overlap_from=overlap,
            progress=progress,
        )
        test_2017b = write_test_set_copy(
            os.path.join(work, "test2017b"),
            test_rows,
            seed=seed + 2,
            year=2017,
            months=TEST_2017B_MONTHS,
            id_start=test_2016["id_range"][1] + 1,
            progress=progress,
        )
        model_dir = os.path.join(work, "modernbert")
        model = write_tiny_modernbert(
            model_dir,
            (row["text"] for row in iter_parquet_rows(train_dir, ("text",))),
            vocab_size=vocab_size,
            seed=seed,
        )
        for repo_id, repo_type, folder, rows in (
            (USPTO3M_HUB_ID, "dataset", train_dir, train_rows),
            (TEST_2016_HUB_ID, "dataset", test_2016["out_dir"], test_rows),
            (TEST_2017B_HUB_ID, "dataset", test_2017b["out_dir"], test_rows),
            (MODERNBERT_HUB_ID, "model", model_dir, None),
        ):
            snapshot = publish_to_offline_cache(hf_home, repo_id, folder, repo_type=repo_type)
            repos[repo_id] = {"repo_type": repo_type, "snapshot": snapshot, "commit": os.path.basename(snapshot)}
            if rows is not None:
                repos[repo_id]["rows"] = rows
    repos[USPTO3M_HUB_ID]["bad_rows"] = train["bad_rows"]
    repos[TEST_2016_HUB_ID]["overlap_rows"] = test_2016["overlap_rows"]
    repos[MODERNBERT_HUB_ID]["vocab_size"] = model["vocab_size"]
    return {
        "hf_home": os.path.abspath(hf_home),
        "repos": repos,
        "environment": {"HF_HOME": os.path.abspath(hf_home), "HF_HUB_OFFLINE": "1"},
        "seconds": round(time.perf_counter() - started, 2),
    }
