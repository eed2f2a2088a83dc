"""Small statistics used by the evaluations (numpy only, so no scipy dependency)."""

from __future__ import annotations

import math

import numpy as np


def rankdata(values) -> np.ndarray:
    """1-based ranks; tied values share the average of the ranks they span (scipy's 'average').

    values: (n,) -> (n,) float.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        return np.zeros(0)
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    new_group = np.r_[True, ordered[1:] != ordered[:-1]]  # (n,) True where a run of ties starts
    group = np.cumsum(new_group) - 1  # (n,) run index of each sorted position
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], n]  # exclusive
    mean_rank = (starts + ends - 1) / 2.0 + 1.0  # average of 1-based ranks start+1 .. end
    ranks = np.empty(n)
    ranks[order] = mean_rank[group]
    return ranks


def pearson(x, y) -> float:
    """Pearson correlation; NaN when either side is constant (the correlation is undefined)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson: shapes differ {a.shape} vs {b.shape}")
    if a.size < 2:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom == 0.0:
        return math.nan
    return float(a @ b) / denom


def spearman(x, y) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks."""
    return pearson(rankdata(x), rankdata(y))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of matching rows: (..., dim), (..., dim) -> (...). A zero vector gives 0, not NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dot = (a * b).sum(axis=-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    out = np.zeros_like(dot)
    np.divide(dot, norms, out=out, where=norms > 0)
    return out


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: undefined figures are written as null (and shown as 'n/a')."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for two classifiers on the same items: only_a = items
    only A gets right, only_b = items only B gets right. Under "equally accurate" each of the
    n = only_a + only_b discordant items goes either way with probability 1/2 (a binomial test)."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be non-negative, got {only_a} and {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_difference(correct_a, correct_b, n_resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of accuracy(B) - accuracy(A) over items resampled with
    replacement (paired: both classifiers keep the same resampled items). correct_*: (n,) bools."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equally long, non-empty 1-d arrays, got shapes {a.shape} and {b.shape}")
    picks = np.random.default_rng(seed).integers(0, a.size, size=(n_resamples, a.size))  # (R, n)
    differences = (b - a)[picks].mean(axis=1)  # (R,)
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)
