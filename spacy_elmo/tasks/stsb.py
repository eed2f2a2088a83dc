"""STS Benchmark: Spearman correlation of the cosine of mean-pooled ELMo vectors with the gold
similarity scores, per layer and for the equal-weight mix. Nothing is trained.

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
from .features import Throughput, load_embedder, mean_pooled, variants
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


def evaluate_stsb(embedder: Embedder, pairs: Sequence[StsPair], throughput: Throughput | None = None) -> dict:
    """{'n_pairs', 'spearman': {variant: rho}, 'pearson': {variant: r}} for one split.

    Variants: layer_0 (the character encoder: context-free), layer_1 .. layer_L, mix (average).
    """
    n = len(pairs)
    tokens = tokenize([p.sentence1 for p in pairs] + [p.sentence2 for p in pairs])
    pooled = mean_pooled(embedder, tokens, throughput)  # (2n, L, dim)
    gold = [p.score for p in pairs]
    result: dict = {"n_pairs": n, "spearman": {}, "pearson": {}}
    for name, vectors in variants(pooled).items():
        # Rounded to 6 decimals: cosines that differ by float noise alone (the same sentence read
        # in two batches) tie, rather than being ranked by rounding.
        cos = np.round(cosine_rows(vectors[:n], vectors[n:]), 6)  # (n,)
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
) -> dict:
    """Evaluate every split ({'dev': path, 'test': path}) and write the metrics JSON."""
    embedder = load_embedder(model_dir, batch_size=batch_size, device=device)
    throughput = Throughput()
    results = {name: evaluate_stsb(embedder, read_stsb(path, limit), throughput) for name, path in splits.items()}
    data = {
        "task": "stsb",
        "model": str(model_dir),
        "metric": "spearman",
        "baseline": "layer_0",
        "note": "cosine of mean-pooled vectors vs gold score; layer_0 = character encoder (context-free "
        "baseline); mix = equal-weight average of all layers; no training",
        "n_layers": embedder.bilm.n_layers,
        "splits": results,
        "words": throughput.words,
        "seconds": throughput.seconds,
        "words_per_second": finite_or_none(throughput.words_per_second),
    }
    write_json(output, data)
    return data
