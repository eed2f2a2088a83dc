"""The trained model as a model directory, and reading one back with its softmax.

    options.json          the architecture (AllenNLP / bilm-tf format)
    weights.hdf5          the biLM weights (AllenNLP / bilm-tf HDF5 layout)
    meta.json             how it was made: corpus, steps, perplexity, vocabulary size, ...
    chars.json, words.json  a model's own char/word vocabulary, when options.json names them
    vocab.txt             the softmax vocabulary (bilm-tf convention)
    softmax.hdf5          the softmax (one dataset per parameter), for perplexity and more pretraining

options.json + weights.hdf5 is exactly what AllenNLP's `Elmo(options_file, weight_file)` and bilm-tf
read, and what `load_bilm(model=DIR)`, `spacy-elmo embed` and the `elmo` component load; the last
two files are only needed to evaluate or continue the language model.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..bilm import BiLM, WeightFileError, load_bilm, save_model_dir
from ..atomic import live_temporary
from ..bilm.weights import read_meta
from .softmax import SOFTMAX_FILE, SoftmaxHead, load_softmax
from .vocab import Vocab

VOCAB_NAME = "vocab.txt"
MAX_VOCAB_BYTES = 256 << 20  # bilm-tf's 793k-word vocabulary is 7 MB


def write_model_dir(bilm: BiLM, softmax: SoftmaxHead, vocab: Vocab, directory: str | Path, meta: dict[str, Any]) -> Path:
    """Write the directory next to its final place, then swap it in (never a half-written model)."""
    from .softmax import save_softmax

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(directory)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    # live_temporary: the commands' SIGTERM handler removes the staging folder too.
    with live_temporary(staging):
        try:
            save_model_dir(bilm, staging, meta)
            vocab.to_file(staging / VOCAB_NAME)
            save_softmax(softmax, staging / SOFTMAX_FILE)
            # mkdtemp folders are private (0700); a model is meant to be shared. (The files in it are
            # written by atomic_path, which already gives them the usual permissions.)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(staging, 0o777 & ~mask)
            old = directory.with_name(f".{directory.name}.old")
            if directory.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)  # also one that a run killed between the renames left
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def remove_stale_staging(directory: Path) -> None:
    """Staging folders a run killed mid-export left beside `directory` (mkdtemp's '.NAME.XXXXXXXX').
    The output folder is locked by the writing run (pretrain/lock.py), so none of them is live."""
    for stale in directory.parent.glob(glob.escape(f".{directory.name}.") + "*"):
        if stale.is_dir() and not stale.is_symlink() and stale.name != f".{directory.name}.old":
            shutil.rmtree(stale, ignore_errors=True)


@dataclass
class LanguageModel:
    bilm: BiLM
    softmax: SoftmaxHead | None  # None for models without one (e.g. the released AllenNLP files)
    vocab: Vocab | None
    meta: dict[str, Any]


def check_vocabulary_file(path: Path) -> Vocab:
    """A model folder's softmax vocabulary, read after its size is checked (VocabError if it is not
    one: it must start with <S>, </S>, <UNK> and list each token once; WeightFileError if too large)."""
    size = path.stat().st_size
    if size > MAX_VOCAB_BYTES:
        raise WeightFileError(f"{path}: {size:,} bytes, above the supported maximum {MAX_VOCAB_BYTES:,}")
    return Vocab.from_file(path)


def load_language_model(directory: str | Path, device: str | torch.device = "cpu") -> LanguageModel:
    directory = Path(directory)
    # A model with its own char/word vocabulary (a converted ELMoForManyLangs model) comes with its
    # TokenIds: the pretraining batches and the evaluation use them instead of UTF-8 bytes.
    bilm = load_bilm(model=directory, device=device)
    meta = read_meta(directory)
    softmax = vocab = None
    if (directory / SOFTMAX_FILE).is_file() and (directory / VOCAB_NAME).is_file():
        vocab = check_vocabulary_file(directory / VOCAB_NAME)
        softmax = load_softmax(directory / SOFTMAX_FILE).to(device).eval()
        if softmax.vocab_size != len(vocab) or softmax.dim != bilm.options.lstm.projection_dim:
            raise WeightFileError(
                f"{directory}: softmax ({softmax.vocab_size} x {softmax.dim}) does not fit the vocabulary "
                f"({len(vocab)}) and projection ({bilm.options.lstm.projection_dim})"
            )
    return LanguageModel(bilm, softmax, vocab, meta)
