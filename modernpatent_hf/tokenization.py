"""Train a patent tokenizer offline, laid out like ModernBERT's.

ModernBERT uses a byte-level BPE tokenizer (from OLMo) with BERT-style special tokens. We train the same
kind: byte-level BPE never needs ``[UNK]`` (every byte is in the base alphabet), so chemical formulae,
unusual symbols and OCR debris in patent text still encode losslessly, and a model set up for this
tokenizer has the same interface as one set up for ModernBERT's. WordPiece would map unseen characters
to ``[UNK]`` and loses case/whitespace details on decoding.

Layout: special tokens ``[UNK] [CLS] [SEP] [PAD] [MASK]`` (ModernBERT's order, here at ids 0-4), every
encoding is ``[CLS] text [SEP]`` (pairs ``[CLS] a [SEP] b [SEP]``), model inputs are ``input_ids`` and
``attention_mask`` (no ``token_type_ids``), ``[MASK]`` swallows the space before it, as in ModernBERT.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import Iterable, Iterator, List, Optional

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast, TrainingArguments

from .configs import ModelArguments
from .data.readers import iter_records
from .io_utils import main_process_first

TOKENIZER_SUBDIR = "tokenizer"  # where a run trains its tokenizer, inside its output directory

UNK, CLS, SEP, PAD, MASK = "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"
SPECIAL_TOKENS = (UNK, CLS, SEP, PAD, MASK)
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]
_BYTE_ALPHABET = 256
_BATCH = 1000  # texts handed to the Rust trainer at once


def _batches(texts: Iterable[str], size: int = _BATCH) -> Iterator[List[str]]:
    batch = []
    for text in texts:
        if text:
            batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_patent_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 16000,
    min_frequency: int = 2,
    model_max_length: int = 8192,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with ModernBERT's special tokens on an iterable of texts.

    ``texts`` is streamed in batches (a list, a ``datasets`` column or any generator); a progress bar
    counts the texts read. Returns a ``PreTrainedTokenizerFast`` (``save_pretrained`` it to load it
    later with ``AutoTokenizer.from_pretrained``).
    """
    from tqdm.auto import tqdm

    smallest = _BYTE_ALPHABET + len(SPECIAL_TOKENS)
    if vocab_size < smallest:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE vocabulary needs at least {smallest} "
            f"entries ({_BYTE_ALPHABET} bytes + {len(SPECIAL_TOKENS)} special tokens)"
        )
    # [MASK] swallows the space before it, as in ModernBERT ("a [MASK]" masks the word " b" of "a b").
    special_tokens = [
        AddedToken(token, lstrip=token == MASK, normalized=False, special=True) for token in SPECIAL_TOKENS
    ]
    backend = Tokenizer(models.BPE(unk_token=UNK))
    # NFC: the same character typed composed or decomposed (common in patent full texts) gets one encoding.
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    total = len(texts) if isinstance(texts, Sized) else None
    # Texts read, counted here rather than by the progress bar, which counts nothing when disabled (TQDM_DISABLE=1).
    read = [0]

    def counted(items):
        for item in items:
            read[0] += 1
            yield item

    progress = tqdm(counted(texts), total=total, desc="tokenizer: reading texts", unit=" texts")
    backend.train_from_iterator(_batches(progress), trainer=trainer, length=total)
    progress.close()
    if read[0] == 0:
        raise ValueError("no text to train the tokenizer on: the corpus is empty")

    cls_id, sep_id = backend.token_to_id(CLS), backend.token_to_id(SEP)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B {SEP}",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        cls_token=CLS,
        sep_token=SEP,
        pad_token=PAD,
        mask_token=MASK,
        model_max_length=model_max_length,
        model_input_names=MODEL_INPUT_NAMES,
        clean_up_tokenization_spaces=False,
    )


def corpus_texts(corpus: str) -> Iterable[str]:
    """The texts of a corpus: the train split of a dataset directory with a README ``configs:`` (written by
    ``modernpatent prepare``/``synth``), the records of anything ``readers.iter_records`` reads (JSON Lines,
    Parquet file or folder such as a USPTO-3M copy, TSV), or the lines of a ``.txt`` file."""
    corpus = os.fspath(corpus)
    if not os.path.exists(corpus):
        raise FileNotFoundError(
            f"tokenizer corpus {corpus!r} does not exist: pass a dataset directory written by "
            "`modernpatent prepare`/`synth`, a .jsonl/.jsonl.gz/.parquet file, or a .txt file with one text per line"
        )
    if os.path.isfile(os.path.join(corpus, "README.md")):
        # Here, not at the top: training a tokenizer on texts in hand (random benchmark models) needs no `datasets`.
        from .data.records import load_dataset_dir

        dataset = load_dataset_dir(corpus)
        if "train" not in dataset:
            raise ValueError(f"dataset directory {corpus!r} has no train split (splits: {', '.join(dataset)})")
        return dataset["train"]["text"]
    if corpus.lower().endswith(".txt"):
        return _text_lines(corpus)

    return (record["text"] for record in iter_records(corpus))


def _text_lines(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                yield line


def train_tokenizer_from_corpus(
    corpus: str, vocab_size: int = 16000, out_dir: Optional[str] = None, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train :func:`train_patent_tokenizer` on the texts of ``corpus`` (see :func:`corpus_texts`).

    With ``out_dir`` the tokenizer is saved there (``save_pretrained``). Returns the tokenizer.
    """
    tokenizer = train_patent_tokenizer(corpus_texts(corpus), vocab_size=vocab_size, min_frequency=min_frequency)
    if out_dir is not None:
        tokenizer.save_pretrained(out_dir)
    return tokenizer


def load_or_train_tokenizer(
    model_args: ModelArguments,
    train_texts: Iterable[str],
    work_dir: str,
    training_args: Optional[TrainingArguments] = None,
) -> PreTrainedTokenizerBase:
    """The run's tokenizer: from ``tokenizer_name_or_path`` (or the model's), or trained on ``train_texts``."""
    name = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if name == "train" and model_args.model_name_or_path:
        # A new vocabulary would scramble the token ids the checkpoint's embeddings were trained on.
        raise ValueError(
            f"tokenizer_name_or_path: train makes a new vocabulary, which does not match the embeddings of "
            f"{model_args.model_name_or_path!r}; leave tokenizer_name_or_path unset to use the checkpoint's tokenizer"
        )
    if name == "train":
        path = os.path.join(work_dir, TOKENIZER_SUBDIR)
        with main_process_first(training_args, desc="training the tokenizer"):
            if not os.path.isfile(os.path.join(path, "tokenizer.json")):
                tokenizer = train_patent_tokenizer(train_texts, vocab_size=model_args.tokenizer_vocab_size)
                tokenizer.save_pretrained(path)
        name = path
    if name is None:
        raise ValueError("no tokenizer: set tokenizer_name_or_path (a Hub id, a local directory, or 'train')")
    if (os.path.isabs(name) or name.startswith(".")) and not os.path.isdir(name):
        raise FileNotFoundError(
            f"tokenizer directory {name!r} does not exist: set tokenizer_name_or_path to a saved tokenizer or 'train'"
        )
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
    except OSError as error:
        raise OSError(
            f"cannot load a tokenizer from {name!r} ({str(error).splitlines()[0]}); offline, use a local directory "
            "or tokenizer_name_or_path: train"
        ) from None
