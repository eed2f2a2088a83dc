"""Embedding tokenized sentences with a biLM, and files in the AllenNLP `elmo` command's HDF5 layout.

Sentences are sorted by length and batched so that little work is spent on padding; results come
back in input order. The model is stateless here, so sorting never changes a sentence's vectors.
"""

from __future__ import annotations

import itertools
from collections import deque
import json
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import h5py
import numpy as np
import torch

from ..atomic import atomic_path
from .model import BiLM

OutputFormat = Literal["all", "top", "average"]


class Embedder:
    """Runs a biLM over tokenized sentences.

    bilm: the model (its `stateful` flag must be off: sorting would otherwise mix up states).
    batch_size: most sentences per batch.
    max_batch_tokens: most tokens (padding included) per batch, so long sentences don't exhaust memory.
    """

    def __init__(self, bilm: BiLM, batch_size: int = 64, max_batch_tokens: int = 8192):
        if bilm.stateful:
            raise ValueError("Embedder needs a stateless biLM (stateful=False): it reorders sentences")
        if batch_size < 1 or max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be positive")
        self.bilm = bilm.eval()
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens

    @property
    def device(self) -> torch.device:
        return self.bilm.char_encoder.W_proj.device

    def batches(self, sentences: Sequence[Sequence[str]]) -> Iterator[list[int]]:
        """Indices of `sentences` grouped into length-sorted batches."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        batch: list[int] = []
        for i in order:
            longest = max(len(sentences[i]), 1)  # sorted ascending: this one is the longest
            if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * longest > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    @torch.inference_mode()
    def embed_batch(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One array (n_layers + 1, n_tokens, dim) per sentence; empty sentences give n_tokens = 0."""
        out = self.bilm(self.bilm.batch_to_ids(sentences).to(self.device))
        stacked = out.stacked().float().cpu().numpy()  # (batch, layers, tokens, dim)
        return [stacked[k, :, : len(s)] for k, s in enumerate(sentences)]

    def embed_sentences(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Embed all sentences (any lengths, any order); results in input order."""
        results: list[np.ndarray | None] = [None] * len(sentences)
        for batch in self.batches(sentences):
            for i, array in zip(batch, self.embed_batch([sentences[i] for i in batch])):
                results[i] = array
        return results  # type: ignore[return-value]

    def iter_embed(self, sentences: Iterable[Sequence[str]], chunk_size: int = 4096) -> Iterator[np.ndarray]:
        """Stream: embed chunks of `chunk_size` sentences (sorted within the chunk), in input order."""
        iterator = iter(sentences)
        while chunk := list(itertools.islice(iterator, chunk_size)):
            yield from self.embed_sentences(chunk)


def reduce_layers(layers: np.ndarray, output_format: OutputFormat) -> np.ndarray:
    """(n_layers + 1, tokens, dim) -> the array the AllenNLP command writes for this format."""
    if output_format == "all":
        return layers
    if output_format == "top":
        return layers[-1]
    if output_format == "average":
        return layers.mean(axis=0)
    raise ValueError(f"unknown output format {output_format!r}: use 'all', 'top' or 'average'")


def count_lines(path: Path) -> int:
    """Lines as Python iterates them: a last line without a newline still counts."""
    newlines, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return newlines + (last != b"\n")


def read_sentences(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(stripped line, whitespace tokens) per line. Undecodable bytes become U+FFFD, never a crash."""
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        for line in f:
            stripped = line.strip()
            yield stripped, stripped.split()


def embed_file(
    embedder: Embedder,
    input_file: str | Path,
    output_file: str | Path,
    output_format: OutputFormat = "all",
    use_sentence_keys: bool = False,
    forget_sentences: bool = False,
    progress: bool = True,
) -> int:
    """Write one dataset per input line, as AllenNLP's `allennlp elmo` command does.

    Datasets are named by the 0-based line index (or by the sentence itself with
    use_sentence_keys), shaped (n_layers + 1, n_tokens, dim) for "all", (n_tokens, dim) otherwise,
    float32. Unless forget_sentences, a `sentence_to_index` dataset holds a JSON map from each
    sentence to its dataset name. An empty line gives a 0-token entry. The output appears
    atomically: a failed run leaves no half-written file. Returns the number of sentences.
    """
    from tqdm import tqdm

    input_file, output_file = Path(input_file), Path(output_file)
    if not input_file.is_file():
        raise FileNotFoundError(f"{input_file}: input file not found")
    total_lines = count_lines(input_file)
    sentence_to_index: dict[str, str] = {}
    n = 0
    texts: deque[str] = deque()  # lines read but not yet written

    def tokens_only() -> Iterator[list[str]]:
        for text, tokens in read_sentences(input_file):
            texts.append(text)
            yield tokens

    with atomic_path(output_file) as tmp, h5py.File(tmp, "w") as fout:
        with tqdm(total=total_lines, unit="sent", desc="embedding", disable=not progress, leave=False) as bar:
            for array in embedder.iter_embed(tokens_only()):
                text = texts.popleft()
                key = text if use_sentence_keys else str(n)
                if use_sentence_keys:
                    if "/" in key or key == "" or key == "sentence_to_index":
                        raise ValueError(
                            f"line {n}: {key!r} cannot be an HDF5 dataset name; drop --use-sentence-keys"
                        )
                    if key in fout:
                        raise ValueError(f"line {n}: duplicate sentence {key!r} with --use-sentence-keys")
                fout.create_dataset(key, data=reduce_layers(array, output_format).astype(np.float32))
                if not forget_sentences:
                    sentence_to_index[text] = key
                n += 1
                bar.update(1)
        if not forget_sentences:
            index = fout.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())
            index[0] = json.dumps(sentence_to_index)
    return n
