"""WiC (Word-in-Context): does the target word have the same sense in both sentences?

For each layer, the score of a pair is the cosine of the target word's two contextual vectors;
a pair is predicted "same sense" (T) when the score is >= a threshold. The threshold is the one
that maximises accuracy on train (searched over midpoints of the sorted train scores) and is then
applied unchanged to dev and test. Besides each layer and the equal-weight mix, `fitted_mix` uses
ELMo's task-specific layer weights, searched on a grid together with the threshold to maximise
train accuracy.

Files: `<split>.data.txt`  word <tab> POS <tab> i-j <tab> sentence1 <tab> sentence2   (tokenized;
i, j = the target's token index in each sentence) and `<split>.gold.txt`  T or F per line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..bilm.embedder import Embedder
from ._io import write_json
from .features import FITTED_MIX, WEIGHT_STEP, Throughput, fit_layer_weights, load_embedder, mixed, token_vectors, variants
from .stats import cosine_rows, finite_or_none


@dataclass(frozen=True)
class WicPair:
    word: str
    pos: str
    index1: int
    index2: int
    tokens1: tuple[str, ...]
    tokens2: tuple[str, ...]
    label: bool | None  # None when no gold file was given


def read_wic(data_path: str | Path, gold_path: str | Path | None = None, limit: int | None = None) -> list[WicPair]:
    """Pairs of a WiC split; labels from the gold file when given (it must have one line per pair)."""
    labels: list[bool] | None = None
    if gold_path is not None:
        raw = [line.strip() for line in Path(gold_path).read_text(encoding="utf-8").splitlines() if line.strip()]
        bad = [x for x in raw if x not in ("T", "F")]
        if bad:
            raise ValueError(f"{gold_path}: labels must be T or F, got {bad[0]!r}")
        labels = [x == "T" for x in raw]
    pairs: list[WicPair] = []
    with open(data_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 5:
                raise ValueError(f"{data_path}:{lineno}: expected 5 tab-separated fields, got {len(fields)}")
            word, pos, span, s1, s2 = fields
            try:
                i, j = (int(x) for x in span.split("-"))
            except ValueError:
                raise ValueError(f"{data_path}:{lineno}: token indexes {span!r} are not 'i-j'") from None
            tokens1, tokens2 = tuple(s1.split()), tuple(s2.split())
            if not (0 <= i < len(tokens1) and 0 <= j < len(tokens2)):
                raise ValueError(f"{data_path}:{lineno}: token index {span} outside the sentences")
            pairs.append(WicPair(word, pos, i, j, tokens1, tokens2, None))
    if labels is not None:
        if len(labels) != len(pairs):
            raise ValueError(f"{gold_path}: {len(labels)} labels for {len(pairs)} pairs in {data_path}")
        pairs = [replace(p, label=y) for p, y in zip(pairs, labels)]
    return pairs[:limit] if limit is not None else pairs


def majority_accuracy(pairs: Sequence[WicPair]) -> float | None:
    """Accuracy of always answering the more frequent label (None without gold labels)."""
    if not pairs or any(p.label is None for p in pairs):
        return None
    share_true = sum(p.label for p in pairs) / len(pairs)
    return max(share_true, 1.0 - share_true)


def accuracy(scores, labels, threshold: float) -> float:
    """Share of pairs where (score >= threshold) equals the label."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.size == 0:
        raise ValueError("accuracy of an empty set")
    return float(((scores >= threshold) == labels).mean())


def best_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of `score >= threshold` on these pairs.

    Candidates: every midpoint between consecutive distinct sorted scores, plus one below the
    smallest (all T) and one above the largest (all F). Ties go to the smallest threshold.
    O(n log n): sort once, count correct predictions with cumulative sums.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.size == 0 or s.shape != y.shape:
        raise ValueError("best_threshold needs as many labels as scores, at least one")
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    n = s.size
    # Cut k (0..n): the first k sorted pairs are predicted F, the rest T.
    false_below = np.r_[0, np.cumsum(~y)]  # (n+1,) F labels among the first k
    true_from = np.r_[np.cumsum(y[::-1])[::-1], 0]  # (n+1,) T labels among pairs k..n-1
    correct = false_below + true_from  # (n+1,)
    # A cut inside a run of equal scores cannot be expressed by a threshold: keep cuts between
    # distinct values and the two ends.
    valid = np.r_[True, s[1:] != s[:-1], True]
    k = int(np.flatnonzero(valid)[np.argmax(correct[valid])])
    if k == 0:
        threshold = s[0] - 1.0
    elif k == n:
        threshold = s[-1] + 1.0
    else:
        threshold = (s[k - 1] + s[k]) / 2.0
    return float(threshold), float(correct[k] / n)


def pair_vectors(embedder: Embedder, pairs: Sequence[WicPair], throughput: Throughput | None = None) -> np.ndarray:
    """The target's vectors in every first sentence, then in every second one: (2n, L, dim)."""
    sentences = [p.tokens1 for p in pairs] + [p.tokens2 for p in pairs]
    positions = [p.index1 for p in pairs] + [p.index2 for p in pairs]
    return token_vectors(embedder, sentences, positions, throughput)


def _cosines(vectors: np.ndarray) -> np.ndarray:
    n = len(vectors) // 2
    return cosine_rows(vectors[:n], vectors[n:])


def pair_scores(embedder: Embedder, pairs: Sequence[WicPair], throughput: Throughput | None = None) -> dict[str, np.ndarray]:
    """{variant: (n_pairs,) cosine of the target's vectors in the two sentences}."""
    return {name: _cosines(v) for name, v in variants(pair_vectors(embedder, pairs, throughput)).items()}


def fit_wic_weights(vectors: np.ndarray, labels: Sequence[bool], step: float = WEIGHT_STEP) -> tuple[np.ndarray, float]:
    """Layer weights whose best threshold gives the highest accuracy on these (train) pairs."""
    return fit_layer_weights(lambda w: best_threshold(_cosines(mixed(vectors, w)), labels)[1], vectors.shape[1], step)


def evaluate_wic(
    embedder: Embedder,
    train: Sequence[WicPair],
    evals: dict[str, Sequence[WicPair]],
    throughput: Throughput | None = None,
    fit_weights: bool = True,
) -> dict:
    """Fit one threshold per variant on train; accuracy on train and on each split in `evals`.
    With fit_weights, also the fitted_mix variant (layer weights and threshold fitted on train).

    Returns {variant: {'threshold', 'train', <split>: accuracy or None when unlabelled}} and, as
    the second value, the fitted weights (None without fit_weights).
    """
    if not train or any(p.label is None for p in train):
        raise ValueError("WiC: the train split needs gold labels to fit the threshold")
    train_labels = [p.label for p in train]
    train_vectors = pair_vectors(embedder, train, throughput)
    eval_vectors = {name: pair_vectors(embedder, pairs, throughput) for name, pairs in evals.items() if pairs}
    train_named, eval_named = variants(train_vectors), {name: variants(v) for name, v in eval_vectors.items()}
    weights = None
    if fit_weights:
        weights, _ = fit_wic_weights(train_vectors, train_labels)
        train_named[FITTED_MIX] = mixed(train_vectors, weights)
        for name, v in eval_vectors.items():
            eval_named[name][FITTED_MIX] = mixed(v, weights)
    out: dict = {}
    for variant, vectors in train_named.items():
        threshold, train_acc = best_threshold(_cosines(vectors), train_labels)
        row = {"threshold": threshold, "train": train_acc}
        for split, pairs in evals.items():
            labelled = pairs and all(p.label is not None for p in pairs)
            row[split] = accuracy(_cosines(eval_named[split][variant]), [p.label for p in pairs], threshold) if labelled else None
        out[variant] = row
    return out, weights


def run_wic(
    model_dir: str | Path,
    data_dir: str | Path,
    output: str | Path,
    eval_splits: Sequence[str] = ("dev", "test"),
    limit: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict:
    """Read `<data_dir>/<split>.data.txt` (+ `.gold.txt`), evaluate, write the metrics JSON.

    A split without a gold file is reported as null (never guessed).
    """
    data_dir = Path(data_dir)

    def load(split: str) -> list[WicPair]:
        gold = data_dir / f"{split}.gold.txt"
        return read_wic(data_dir / f"{split}.data.txt", gold if gold.exists() else None, limit)

    embedder = load_embedder(model_dir, batch_size=batch_size, device=device)
    throughput = Throughput()
    train = load("train")
    evals = {split: load(split) for split in eval_splits}
    layers, weights = evaluate_wic(embedder, train, evals, throughput)
    data = {
        "task": "wic",
        "model": str(model_dir),
        "metric": "accuracy",
        "note": "cosine of the target word's two contextual vectors >= threshold means same sense; "
        "threshold fitted on train, applied to dev/test; mix = equal-weight average of all layers; "
        "fitted_mix = layer weights and threshold searched on train (see fitted_mix)",
        "fitted_mix": None if weights is None else {
            "weights": [round(float(w), 6) for w in weights], "fitted_on": "train", "grid_step": WEIGHT_STEP},
        "n_layers": embedder.bilm.n_layers,
        "n_pairs": {"train": len(train), **{k: len(v) for k, v in evals.items()}},
        "majority_baseline": {split: majority_accuracy(pairs) for split, pairs in {"train": train, **evals}.items()},
        "layers": layers,
        "words": throughput.words,
        "seconds": throughput.seconds,
        "words_per_second": finite_or_none(throughput.words_per_second),
    }
    write_json(output, data)
    return data
