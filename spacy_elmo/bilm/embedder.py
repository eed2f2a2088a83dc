"""Embedding tokenized sentences with a biLM, and files in the AllenNLP `elmo` command's HDF5 layout.

Sentences are sorted by length and batched so that little work is spent on padding; results come
back in input order. The model is stateless here, so sorting never changes a sentence's vectors.
A sentence longer than `max_batch_tokens` is read in consecutive windows of that many tokens (as
the component reads sentences longer than its window_size), so memory stays bounded whatever the
line lengths; `embed_file` writes each window straight into its dataset.
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import h5py
import numpy as np
import torch

from ..atomic import atomic_path, output_file_problem
from .model import BiLM
from .token_cache import TokenCache

OutputFormat = Literal["all", "top", "average"]
Piece = tuple[int, int, int]  # (sentence index, first token, end token)


def windows(n_tokens: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of the consecutive windows of at most `size` tokens that cover n_tokens."""
    return [(k, min(k + size, n_tokens)) for k in range(0, n_tokens, size)]


class Embedder:
    """Runs a biLM over tokenized sentences.

    bilm: the model (its `stateful` flag must be off: sorting would otherwise mix up states).
    batch_size: most sentences per batch.
    max_batch_tokens: most tokens (padding included) per batch, so long sentences don't exhaust memory.
    token_cache: keep the layer-0 vectors of this many recently read distinct tokens so the
        character CNN runs on new spellings only (token_cache.py; the results do not change). The
        biLM must stay frozen while the Embedder uses it. 0 = leave the biLM's cache as it is.
    """

    def __init__(self, bilm: BiLM, batch_size: int = 64, max_batch_tokens: int = 8192, token_cache: int = 0):
        if bilm.stateful:
            raise ValueError("Embedder needs a stateless biLM (stateful=False): it reorders sentences")
        if batch_size < 1 or max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be positive")
        self.bilm = bilm.eval()
        if token_cache and bilm.char_encoder.token_cache is None:
            bilm.char_encoder.token_cache = TokenCache(token_cache)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens

    @property
    def device(self) -> torch.device:
        return self.bilm.char_encoder.char_embed.weight.device

    def batches(self, sentences: Sequence[Sequence[str]]) -> Iterator[list[int]]:
        """Indices of `sentences` grouped into length-sorted batches (a sentence longer than
        max_batch_tokens is a batch of its own: `pieces` splits such sentences first)."""
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

    def pieces(self, sentences: Sequence[Sequence[str]]) -> list[Piece]:
        """Every sentence as windows of at most max_batch_tokens tokens (none for an empty one)."""
        long = [i for i, s in enumerate(sentences) if len(s) > self.max_batch_tokens]
        if long:
            warnings.warn(
                f"spacy-elmo: {len(long)} sentence(s) longer than max_batch_tokens={self.max_batch_tokens} "
                f"(the longest: {max(len(sentences[i]) for i in long):,} tokens) are read in consecutive windows "
                f"of that many tokens, which do not see each other. Raise max_batch_tokens to keep them whole.",
                stacklevel=3,
            )
        return [(i, a, b) for i, s in enumerate(sentences) for a, b in windows(len(s), self.max_batch_tokens)]

    @torch.inference_mode()
    def embed_batch(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One array (n_layers + 1, n_tokens, dim) per sentence; empty sentences give n_tokens = 0."""
        out = self.bilm(self.bilm.batch_to_ids(sentences).to(self.device))
        stacked = out.stacked().float().cpu().numpy()  # (batch, layers, tokens, dim)
        return [stacked[k, :, : len(s)] for k, s in enumerate(sentences)]

    def iter_pieces(self, sentences: Sequence[Sequence[str]]) -> Iterator[tuple[Piece, np.ndarray]]:
        """(piece, its layers (n_layers + 1, stop - start, dim)) for every window of every sentence,
        batch by batch: at most max_batch_tokens tokens are in flight at once."""
        pieces = self.pieces(sentences)
        tokens = [sentences[i][a:b] for i, a, b in pieces]
        for batch in self.batches(tokens):
            yield from zip((pieces[k] for k in batch), self.embed_batch([tokens[k] for k in batch]))

    def embed_sentences(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Embed all sentences (any lengths, any order); results in input order."""
        width, n_layers = self.bilm.output_dim, self.bilm.n_layers
        results = [np.empty((n_layers, len(s), width), dtype=np.float32) for s in sentences]
        for (i, a, b), array in self.iter_pieces(sentences):
            results[i][:, a:b] = array
        return results

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


def count_words(path: Path) -> int:
    """Whitespace-separated words in the file: the progress bar's total."""
    return sum(len(tokens) for _, tokens in read_sentences(path))


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
    chunk_size: int = 4096,
) -> int:
    """Write one dataset per input line, as AllenNLP's `allennlp elmo` command does.

    Datasets are named by the 0-based line index (or by the sentence itself with
    use_sentence_keys), shaped (n_layers + 1, n_tokens, dim) for "all", (n_tokens, dim) otherwise,
    float32. Unless forget_sentences or use_sentence_keys, a `sentence_to_index` dataset holds a
    JSON map from each sentence to its dataset name. An empty line gives a 0-token entry. The
    output appears atomically: a failed run leaves no half-written file. Returns the number of
    sentences.
    """
    from tqdm import tqdm

    input_file, output_file = Path(input_file), Path(output_file)
    if not input_file.is_file():
        raise FileNotFoundError(f"{input_file}: input file not found")
    problem = output_file_problem(output_file, [input_file])
    if problem is not None:
        raise ValueError(problem)
    total_words = count_words(input_file)
    # As AllenNLP: with sentence keys the names are the sentences already, so no index is written.
    write_index = not forget_sentences and not use_sentence_keys
    sentence_to_index: dict[str, str] = {}
    n = 0
    shape = {"all": (embedder.bilm.n_layers,), "top": (), "average": ()}[output_format]
    width = embedder.bilm.output_dim
    lines = read_sentences(input_file)

    with atomic_path(output_file) as tmp, h5py.File(tmp, "w") as fout:
        # Counted in words as each window is written: a rate and time left that mean something.
        # k/M suffixes only where they help: a small file reads "6/15 words", not "6.00/15.0".
        scale = total_words >= 10_000
        with tqdm(total=total_words, unit=" words", unit_scale=scale, desc="embedding", disable=not progress, leave=False) as bar:
            while chunk := list(itertools.islice(lines, chunk_size)):
                datasets = []
                for text, tokens in chunk:
                    key = text if use_sentence_keys else str(n)
                    if use_sentence_keys:
                        # HDF5 reads "/" as a path separator and "." as the group itself, and cuts a
                        # name at NUL ("a\0b" would be written as "a"). Any other name is one plain
                        # link, so `key in fout` below is an exact duplicate check.
                        if "/" in key or "\0" in key or key in ("", "."):
                            raise ValueError(
                                f"line {n}: {key!r} cannot be an HDF5 dataset name; drop --use-sentence-keys"
                            )
                        if key in fout:
                            raise ValueError(f"line {n}: duplicate sentence {key!r} with --use-sentence-keys")
                    datasets.append(fout.create_dataset(key, (*shape, len(tokens), width), dtype="float32"))
                    if write_index:
                        sentence_to_index[text] = key
                    n += 1
                # Each window goes straight into its slice of the dataset: memory stays bounded by
                # max_batch_tokens however long a line is.
                for (i, start, stop), layers in embedder.iter_pieces([tokens for _, tokens in chunk]):
                    datasets[i][..., start:stop, :] = reduce_layers(layers, output_format)
                    bar.update(stop - start)
        if write_index:
            index = fout.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())
            index[0] = json.dumps(sentence_to_index)
    return n
