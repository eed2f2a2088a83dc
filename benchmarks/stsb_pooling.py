"""Why do the contextual layers score below layer 0 on STS-B? The same vectors, pooled and compared
in several ways, per layer.

The report's STS-B figure is the Spearman correlation of the cosine of mean-pooled vectors with
the gold scores (spacy_elmo/tasks/stsb.py). This diagnostic asks whether the way of pooling is what
holds the biLM's layers 1-2 back, or the layers themselves:

    mean           the report's figure: every token, equal weights
    centered       minus the layer's mean sentence vector over STS-B train sentences (a common
                   direction that dominates every cosine would be removed here)
    abtt           centered, and the top principal directions of the train sentence vectors removed
                   too ("all-but-the-top", Mu & Viswanath 2018)
    content        the mean over tokens that are neither spaCy stop words nor punctuation
    idf            tokens weighted by their inverse document frequency over STS-B train sentences

Nothing is trained; train sentences give only means, directions and word counts.

    python benchmarks/stsb_pooling.py pretraining/default-en/model --threads 1
"""

from __future__ import annotations

import argparse
import collections
import math
import string
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spacy.lang.en.stop_words import STOP_WORDS  # noqa: E402

from spacy_elmo.tasks.features import load_embedder, set_threads, variants  # noqa: E402
from spacy_elmo.tasks.stats import cosine_rows, spearman  # noqa: E402
from spacy_elmo.tasks.stsb import read_stsb  # noqa: E402
from spacy_elmo.tasks.tokens import tokenize  # noqa: E402

POOLINGS = ("mean", "centered", "abtt", "content", "idf")


def embed_all(embedder, sentences: list[list[str]]) -> list[np.ndarray]:
    """Every sentence's layers: a list of (n_layers + 1, tokens, dim) arrays."""
    return [layers for layers in embedder.iter_embed(sentences, chunk_size=1024)]


def pool(layers: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(L, tokens, dim), weights (tokens,) -> (L, dim); zeros for an empty sentence."""
    if layers.shape[1] == 0 or weights.sum() <= 0:
        return np.zeros((layers.shape[0], layers.shape[2]), dtype=np.float32)
    return (layers * weights[None, :, None]).sum(axis=1) / weights.sum()


def content_weights(tokens: list[str]) -> np.ndarray:
    keep = np.array([w.lower() not in STOP_WORDS and w not in string.punctuation for w in tokens], dtype=np.float32)
    return keep if keep.any() else np.ones(len(tokens), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model directory (options.json + weights.hdf5)")
    parser.add_argument("--data", default="../shared/data/stsb", help="folder with sts-train/dev/test.csv")
    parser.add_argument("--reference-pairs", type=int, default=2000, help="train pairs whose sentences give the mean and directions")
    parser.add_argument("--top-directions", type=int, default=2, help="principal directions removed by abtt")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    embedder = load_embedder(args.model)
    data = Path(args.data)

    train = read_stsb(data / "sts-train.csv")
    train_tokens = tokenize([p.sentence1 for p in train] + [p.sentence2 for p in train])
    document_frequency = collections.Counter(w.lower() for s in train_tokens for w in set(s))
    n_docs = len(train_tokens)

    def idf_weights(tokens: list[str]) -> np.ndarray:
        return np.array([math.log((n_docs + 1) / (document_frequency[w.lower()] + 1)) for w in tokens], dtype=np.float32)

    reference_pairs = train[: args.reference_pairs]
    reference_tokens = tokenize([p.sentence1 for p in reference_pairs] + [p.sentence2 for p in reference_pairs])
    reference = variants(np.stack([pool(x, np.ones(x.shape[1], np.float32)) for x in embed_all(embedder, reference_tokens)]))
    directions = {}
    for name, vectors in reference.items():
        mean = vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        directions[name] = (mean, vt[: args.top_directions])

    print(f"{args.model}: Spearman x100 of the cosine per pooling and layer")
    for split in ("dev", "test"):
        pairs = read_stsb(data / f"sts-{split}.csv")
        n, gold = len(pairs), [p.score for p in pairs]
        tokens = tokenize([p.sentence1 for p in pairs] + [p.sentence2 for p in pairs])
        layers = embed_all(embedder, tokens)
        pooled = {
            "mean": [pool(x, np.ones(x.shape[1], np.float32)) for x in layers],
            "content": [pool(x, content_weights(t)) for x, t in zip(layers, tokens)],
            "idf": [pool(x, idf_weights(t)) for x, t in zip(layers, tokens)],
        }
        table = {}
        for pooling in ("mean", "content", "idf"):
            for name, vectors in variants(np.stack(pooled[pooling])).items():
                table[pooling, name] = vectors
                if pooling == "mean":
                    mean, top = directions[name]
                    centered = vectors - mean
                    table["centered", name] = centered
                    table["abtt", name] = centered - (centered @ top.T) @ top
        names = [name for pooling, name in table if pooling == "mean"]
        print(f"\n{split} ({n} pairs)")
        print("pooling    " + "".join(f"{name:>10}" for name in names))
        for pooling in POOLINGS:
            scores = [100 * spearman(cosine_rows(table[pooling, name][:n], table[pooling, name][n:]), gold) for name in names]
            print(f"{pooling:<11}" + "".join(f"{score:>10.1f}" for score in scores))


if __name__ == "__main__":
    main()
