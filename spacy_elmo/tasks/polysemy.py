"""Contextual vectors of a few polysemous words, projected to 2-D with PCA (numpy SVD).

Layer 0 (the character encoder) gives a word the same vector in every sentence; the biLSTM layers
give it one per sentence. Whether those separate the word's senses is what the plot (one point
per (word, sentence): colour = word, marker = sense) and the cosines between a word's sentences
show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..bilm.embedder import Embedder
from .features import token_vectors, variants


@dataclass(frozen=True)
class Occurrence:
    word: str
    sense: str
    tokens: tuple[str, ...]
    index: int  # position of `word` in tokens

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


# word -> (sense, sentence); the target is the first token equal to the word (case-insensitive).
POLYSEMOUS: dict[str, list[tuple[str, str]]] = {
    "bank": [
        ("river", "They had a picnic on the bank of the river ."),
        ("money", "She deposited the cheque at the bank on Friday ."),
        ("money", "The bank raised its interest rates again ."),
    ],
    "bass": [
        ("music", "He plays the bass in a jazz band ."),
        ("music", "Turn the bass down , the walls are shaking ."),
        ("fish", "They caught a large bass in the lake ."),
    ],
    "plant": [
        ("factory", "The car plant employs two thousand workers ."),
        ("flora", "Water the plant twice a week ."),
        ("flora", "The plant grew tall in the sunny garden ."),
    ],
    "bat": [
        ("animal", "A bat flew out of the cave at dusk ."),
        ("sport", "He swung the bat and hit the ball ."),
        ("animal", "The bat hung upside down from the branch ."),
    ],
    "crane": [
        ("machine", "A crane lifted the steel beams onto the roof ."),
        ("bird", "The crane stood on one leg in the marsh ."),
        ("machine", "The workers used a crane to move the container ."),
    ],
}


def occurrences(words: dict[str, list[tuple[str, str]]] = POLYSEMOUS) -> list[Occurrence]:
    """One Occurrence per sentence; a sentence without its word is an error, not a silent skip."""
    out = []
    for word, sentences in words.items():
        for sense, sentence in sentences:
            tokens = tuple(sentence.split())
            lowered = [t.lower() for t in tokens]
            if word.lower() not in lowered:
                raise ValueError(f"{sentence!r} does not contain {word!r}")
            out.append(Occurrence(word, sense, tokens, lowered.index(word.lower())))
    return out


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components.

    x: (n, dim) -> (coords (n, 2), explained variance ratio (2,)). Missing components (fewer
    than two directions of variance) are zeros. Each axis is signed so that its largest
    loading is positive, which makes the picture deterministic.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)  # u (n, k), s (k,), vt (k, dim)
    coords = np.zeros((x.shape[0], 2))
    ratio = np.zeros(2)
    total = float((s**2).sum())
    for c in range(min(2, s.size)):
        if s[c] <= 1e-12 * max(1.0, s[0]):
            break
        sign = 1.0 if vt[c, np.argmax(np.abs(vt[c]))] >= 0 else -1.0
        coords[:, c] = sign * u[:, c] * s[c]
        ratio[c] = s[c] ** 2 / total if total > 0 else 0.0
    return coords, ratio


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm > 0 else 0.0


def sense_cosines(items: Sequence[Occurrence], vectors: np.ndarray) -> list[dict]:
    """Cosine of every pair of sentences of the same word, per variant.

    vectors: (n, n_layers + 1, dim), one row per item. Returns [{'word', 'sentences': (k, l)
    (1-based, among the word's sentences), 'senses': (a, b), 'same_sense', 'cosines': {variant:
    float}}], pairs in the order of `items`.
    """
    named = variants(vectors)
    number = {i: sum(o.word == item.word for o in items[: i + 1]) for i, item in enumerate(items)}
    pairs = []
    for i, a in enumerate(items):
        for j in range(i + 1, len(items)):
            b = items[j]
            if a.word != b.word:
                continue
            pairs.append({
                "word": a.word,
                "sentences": (number[i], number[j]),
                "senses": (a.sense, b.sense),
                "same_sense": a.sense == b.sense,
                "cosines": {name: _cosine(v[i], v[j]) for name, v in named.items()},
            })
    return pairs


def project_polysemy(embedder: Embedder, items: Sequence[Occurrence] | None = None) -> dict:
    """{'occurrences': [...], 'variants': {variant: {'coords': (n, 2) list, 'explained': [..]}},
    'cosines': sense_cosines(...)}.

    One PCA per variant (layer_0 .. layer_L, mix) over every occurrence of every word, so
    distances between words are comparable within a panel.
    """
    items = list(items) if items is not None else occurrences()
    vectors = token_vectors(embedder, [o.tokens for o in items], [o.index for o in items])  # (n, L, dim)
    projected = {}
    for name, v in variants(vectors).items():
        coords, ratio = pca_2d(v)
        projected[name] = {"coords": coords.tolist(), "explained": ratio.tolist()}
    return {
        "occurrences": [{"word": o.word, "sense": o.sense, "sentence": o.text, "index": o.index} for o in items],
        "variants": projected,
        "cosines": sense_cosines(items, vectors),
    }
