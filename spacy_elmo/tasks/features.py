"""Run a biLM over many sentences and keep only the vectors a task needs.

Whole-sentence arrays (n_layers + 1, tokens, dim) are reduced chunk by chunk, so memory stays at
one chunk of sentences however large the data set is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..bilm import load_bilm
from ..bilm.embedder import Embedder
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE

MIX = "mix"


@dataclass
class Throughput:
    """Words embedded and the seconds it took (biLM forward passes, batching included)."""

    words: int = 0
    seconds: float = 0.0

    @property
    def words_per_second(self) -> float | None:
        return self.words / self.seconds if self.seconds > 0 else None


def load_embedder(model_dir: str | Path, batch_size: int = 64, device: str = "cpu") -> Embedder:
    """A stateless biLM from a model directory (options.json + weights.hdf5), wrapped for batching."""
    return Embedder(load_bilm(model_dir, device=device), batch_size=batch_size, token_cache=DEFAULT_TOKEN_CACHE)


def _reduce_all(
    embedder: Embedder,
    sentences: Sequence[Sequence[str]],
    reduce: Callable[[int, np.ndarray], np.ndarray],
    throughput: Throughput | None,
    chunk_size: int,
) -> np.ndarray:
    """reduce(index, layers (L, tokens, dim)) -> (L, dim) for every sentence -> (n, L, dim)."""
    n_layers, dim = embedder.bilm.n_layers, embedder.bilm.output_dim
    out = np.zeros((len(sentences), n_layers, dim), dtype=np.float32)
    start = time.perf_counter()
    for i, layers in enumerate(embedder.iter_embed(sentences, chunk_size=chunk_size)):
        out[i] = reduce(i, layers)
    if throughput is not None:
        throughput.seconds += time.perf_counter() - start
        throughput.words += sum(len(s) for s in sentences)
    return out


def mean_pooled(
    embedder: Embedder,
    sentences: Sequence[Sequence[str]],
    throughput: Throughput | None = None,
    chunk_size: int = 1024,
) -> np.ndarray:
    """Each layer averaged over a sentence's tokens: (n_sentences, n_layers + 1, dim).

    An empty sentence gives zero vectors (its cosine with anything is then 0).
    """

    def pool(_: int, layers: np.ndarray) -> np.ndarray:
        if layers.shape[1] == 0:
            return np.zeros((layers.shape[0], layers.shape[2]), dtype=np.float32)
        return layers.mean(axis=1)

    return _reduce_all(embedder, sentences, pool, throughput, chunk_size)


def token_vectors(
    embedder: Embedder,
    sentences: Sequence[Sequence[str]],
    positions: Sequence[int],
    throughput: Throughput | None = None,
    chunk_size: int = 1024,
) -> np.ndarray:
    """The vectors of one token per sentence (sentence k, token positions[k]): (n, n_layers + 1, dim)."""
    if len(positions) != len(sentences):
        raise ValueError("token_vectors: one position per sentence")
    for k, (sentence, pos) in enumerate(zip(sentences, positions)):
        if not 0 <= pos < len(sentence):
            raise ValueError(f"sentence {k}: token index {pos} outside 0..{len(sentence) - 1}")
    return _reduce_all(embedder, sentences, lambda i, layers: layers[:, positions[i]], throughput, chunk_size)


def variants(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """(n, L, dim) -> {'layer_0': (n, dim), ..., 'mix': (n, dim)}.

    'mix' is the scalar mix with equal weights and gamma 1 (the average of the layers): the mix a
    task starts from before it learns its own weights. For mean-pooled vectors the order of
    pooling and mixing does not matter (both are averages).
    """
    out = {f"layer_{j}": vectors[:, j] for j in range(vectors.shape[1])}
    out[MIX] = vectors.mean(axis=1)
    return out


FITTED_MIX = "fitted_mix"
WEIGHT_STEP = 0.05


def weight_grid(n_layers: int, step: float = WEIGHT_STEP) -> np.ndarray:
    """Every point of the simplex whose weights are multiples of `step`: (n_points, n_layers),
    first weight largest first (so layer 0 alone comes first)."""
    units = round(1 / step)
    if units < 1 or abs(units * step - 1) > 1e-9:
        raise ValueError(f"weight step {step} must divide 1")

    def compositions(total: int, parts: int):
        if parts == 1:
            yield (total,)
            return
        for first in range(total, -1, -1):
            for rest in compositions(total - first, parts - 1):
                yield (first, *rest)

    return np.array(list(compositions(units, n_layers)), dtype=np.float64) / units


def mixed(vectors: np.ndarray, weights) -> np.ndarray:
    """(n, L, dim) vectors weighted over their layers by (L,) weights: (n, dim). For mean-pooled
    vectors this equals pooling the mixed token vectors (both are linear)."""
    return np.tensordot(vectors, np.asarray(weights, dtype=vectors.dtype), axes=([1], [0]))


def fit_layer_weights(objective: Callable[[np.ndarray], float], n_layers: int, step: float = WEIGHT_STEP) -> tuple[np.ndarray, float]:
    """(weights, value): the weight_grid point that maximises objective(weights), the first one on
    ties. The task-specific layer weights of ELMo (Peters et al. 2018, eq. 1), fitted on a task's
    train split by search rather than gradient, for tasks scored without training a model."""
    best, best_value = None, -np.inf
    for weights in weight_grid(n_layers, step):
        value = objective(weights)
        if value is not None and np.isfinite(value) and value > best_value:
            best, best_value = weights, float(value)
    if best is None:
        raise ValueError("no layer weights gave a finite figure on the train split")
    return best, best_value


def set_threads(n: int) -> None:
    """Limit torch's CPU threads (n > 0). On a machine whose cores are shared, torch's default
    (one thread per core) can be many times slower than 1 thread: its threads wait on each other."""
    if n > 0:
        import torch

        torch.set_num_threads(n)
