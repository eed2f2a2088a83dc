"""Static word vectors from the biLM's own pretraining text, for the "same text" baseline.

floret (fastText with a fixed-size hash table for words and subwords, made for spaCy) reads the
text file as is (whitespace-split tokens, one paragraph per line); `spacy init vectors --mode
floret` then turns its .floret file into a pipeline directory that spaCy's `[initialize] vectors`
loads and spacy.MultiHashEmbed.v2 (include_static_vectors) reads through spacy.StaticVectors.v2.

    train_floret("corpus/pretrain_train.txt", "training/static_vectors/vectors.floret", dim=300)
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path


def train_floret(
    text: str | Path, output: str | Path, dim: int = 300, epochs: int = 5, bucket: int = 200000,
    min_count: int = 5, minn: int = 4, maxn: int = 5, hash_count: int = 2, threads: int = 1,
) -> dict:
    """Train CBOW floret vectors on `text` and write them as a .floret file (atomically: a killed
    run leaves no file a rerun would take for a finished one). Returns the settings and sizes.

    text: one paragraph per line, tokens separated by spaces (the pretraining text).
    dim: vector width. epochs: passes over the text. bucket: rows of the hash table (the number
        of vectors spaCy stores; every word and subword maps to hash_count of them).
    min_count: words seen fewer times get no word entry (their subwords still count).
    minn, maxn: character n-gram lengths. threads: floret's threads (1 is deterministic: floret's
        Python API has no seed argument and always seeds its generator with 0).
    """
    import floret

    text = Path(text)
    if not text.is_file() or text.stat().st_size == 0:
        raise FileNotFoundError(f"{text}: missing or empty; run the step that writes the pretraining text first")
    settings = {"dim": dim, "epoch": epochs, "bucket": bucket, "minCount": min_count, "minn": minn, "maxn": maxn, "hashCount": hash_count}
    model = floret.train_unsupervised(
        str(text), model="cbow", mode="floret", thread=threads, verbose=0, **settings
    )
    with atomic_path(output) as tmp:
        model.save_floret_vectors(str(tmp))
    return {"text": str(text), "words_in_vocab": len(model.words), "threads": threads, **settings}
