"""STS Benchmark: Spearman correlation of the cosine of mean-pooled ELMo vectors with the gold
similarity scores, per layer and for the equal-weight mix; with a train split, also for the layer
weights fitted on it (`fitted_mix`: ELMo's task-specific weights, searched on a grid to maximise
train Spearman, then applied unchanged to dev and test). No model is trained.

File format (one pair per line, tab-separated):
    genre  file  year  id  score(0-5)  sentence1  sentence2  [source1  source2]
Some lines carry the two extra source columns; they are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..bilm.embedder import Embedder
from ._io import write_json
from .features import FITTED_MIX, WEIGHT_STEP, Throughput, fit_layer_weights, load_embedder, mean_pooled, mixed, variants
from .stats import cosine_rows, finite_or_none, pearson, spearman
from .tokens import tokenize

N_FIELDS = 7  # the columns we need; more are allowed


@dataclass(frozen=True)
class StsPair:
    score: float
    sentence1: str
    sentence2: str


def read_stsb(path: str | Path, limit: int | None = None) -> list[StsPair]:
    """Pairs of an STS-B file, in file order (the first `limit` when given).

    A line with fewer than 7 fields or a score that is not a number is an error naming the line:
    silently dropping pairs would change the figure without anyone noticing.
    """
    pairs: list[StsPair] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < N_FIELDS:
                raise ValueError(f"{path}:{lineno}: expected at least {N_FIELDS} tab-separated fields, got {len(fields)}")
            try:
                score = float(fields[4])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: score {fields[4]!r} is not a number") from None
            pairs.append(StsPair(score, fields[5], fields[6]))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


def pair_vectors(embedder: Embedder, pairs: Sequence[StsPair], throughput: Throughput | None = None) -> np.ndarray:
    """Mean-pooled vectors of every first sentence, then every second one: (2n, L, dim)."""
    tokens = tokenize([p.sentence1 for p in pairs] + [p.sentence2 for p in pairs])
    return mean_pooled(embedder, tokens, throughput)


def _cosines(vectors: np.ndarray) -> np.ndarray:
    # Rounded to 6 decimals: cosines that differ by float noise alone (the same sentence read in
    # two batches) tie, rather than being ranked by rounding.
    n = len(vectors) // 2
    return np.round(cosine_rows(vectors[:n], vectors[n:]), 6)  # (n,)


def fit_stsb_weights(pooled: np.ndarray, gold: Sequence[float], step: float = WEIGHT_STEP) -> tuple[np.ndarray, float]:
    """Layer weights maximising Spearman on these (train) pairs: (weights, spearman)."""
    return fit_layer_weights(lambda w: spearman(_cosines(mixed(pooled, w)), gold), pooled.shape[1], step)


def evaluate_stsb(
    embedder: Embedder, pairs: Sequence[StsPair], throughput: Throughput | None = None, weights: np.ndarray | None = None
) -> dict:
    """{'n_pairs', 'spearman': {variant: rho}, 'pearson': {variant: r}} for one split.

    Variants: layer_0 (the character encoder: context-free), layer_1 .. layer_L, mix (average),
    and fitted_mix when `weights` (fitted on train) are given.
    """
    pooled = pair_vectors(embedder, pairs, throughput)  # (2n, L, dim)
    gold = [p.score for p in pairs]
    named = variants(pooled)
    if weights is not None:
        named[FITTED_MIX] = mixed(pooled, weights)
    result: dict = {"n_pairs": len(pairs), "spearman": {}, "pearson": {}}
    for name, vectors in named.items():
        cos = _cosines(vectors)
        result["spearman"][name] = finite_or_none(spearman(cos, gold))
        result["pearson"][name] = finite_or_none(pearson(cos, gold))
    return result


def run_stsb(
    model_dir: str | Path,
    splits: dict[str, str | Path],
    output: str | Path,
    limit: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    train: str | Path | None = None,
) -> dict:
    """Evaluate every split ({'dev': path, 'test': path}) and write the metrics JSON; with a
    `train` file, first fit the layer weights on it (the fitted_mix variant)."""
    embedder = load_embedder(model_dir, batch_size=batch_size, device=device)
    throughput = Throughput()
    fitted = None
    if train is not None:
        train_pairs = read_stsb(train, limit)
        weights, rho = fit_stsb_weights(pair_vectors(embedder, train_pairs, throughput), [p.score for p in train_pairs])
        fitted = {"weights": [round(float(w), 6) for w in weights], "fitted_on": "train", "n_pairs": len(train_pairs),
                  "train_spearman": rho, "grid_step": WEIGHT_STEP}
    weights = None if fitted is None else np.array(fitted["weights"])
    results = {name: evaluate_stsb(embedder, read_stsb(path, limit), throughput, weights) for name, path in splits.items()}
    data = {
        "task": "stsb",
        "model": str(model_dir),
        "metric": "spearman",
        "baseline": "layer_0",
        "note": "cosine of mean-pooled vectors vs gold score; layer_0 = character encoder (context-free "
        "baseline); mix = equal-weight average of all layers; fitted_mix = layer weights searched on train "
        "(see fitted_mix); no model trained",
        "fitted_mix": fitted,
        "n_layers": embedder.bilm.n_layers,
        "splits": results,
        "words": throughput.words,
        "seconds": throughput.seconds,
        "words_per_second": finite_or_none(throughput.words_per_second),
    }
    write_json(output, data)
    return data
