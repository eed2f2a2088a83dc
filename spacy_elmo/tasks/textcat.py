"""Text classification data: labelled TSV files -> a fixed, seeded, stratified train/dev/test
split -> spaCy DocBins with exclusive `doc.cats`; and the figures of a textcat evaluation.

Files read (first column the label, last column the text, anything between ignored):
    movie_reviews.tsv      pos|neg <tab> file id <tab> review
    bbc_news.labels.tsv    topic <tab> article

    split_labelled_tsv("movie_reviews.tsv", "corpus/sentiment", seed=0) ->
        corpus/sentiment/{train,dev,test}.spacy and corpus/sentiment/split.json (counts per label)
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Sequence

from ._io import write_json

SPLITS = ("train", "dev", "test")


def read_labelled_tsv(path: str | Path) -> list[tuple[str, str]]:
    """(label, text) per non-empty line: the first tab-separated column and the last."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or not fields[0].strip() or not fields[-1].strip():
                raise ValueError(
                    f"{path}:{lineno}: expected 'label<TAB>[id<TAB>]text', got {line[:60]!r}; "
                    "fix the line or point the step at the labelled TSV file"
                )
            rows.append((fields[0].strip(), fields[-1].strip()))
    if not rows:
        raise ValueError(f"{path}: no labelled lines; point the step at the labelled TSV file")
    return rows


def stratified_split(labels: Sequence[str], dev: float, test: float, seed: int) -> dict[str, list[int]]:
    """Indices of each split: every label's items shuffled with `seed`, the first `test` fraction
    to test, the next `dev` fraction to dev, the rest to train. Deterministic (sorted labels,
    a seeded generator per label), disjoint, and each split keeps the label proportions (to
    within one item per label)."""
    if dev < 0 or test < 0 or dev + test >= 1:
        raise ValueError(f"dev ({dev}) and test ({test}) must be >= 0 and sum to less than 1")
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    out: dict[str, list[int]] = {split: [] for split in SPLITS}
    for k, label in enumerate(sorted(by_label)):
        items = by_label[label]
        random.Random(f"{seed}:{k}:{label}").shuffle(items)
        n_test, n_dev = round(len(items) * test), round(len(items) * dev)
        out["test"] += items[:n_test]
        out["dev"] += items[n_test : n_test + n_dev]
        out["train"] += items[n_test + n_dev :]
    return {split: sorted(indices) for split, indices in out.items()}


def stratified_sample(labels: Sequence[str], limit: int, seed: int) -> list[int]:
    """A seeded, stratified subset of about `limit` indices (all of them when limit <= 0)."""
    if limit <= 0 or limit >= len(labels):
        return list(range(len(labels)))
    split = stratified_split(labels, dev=0.0, test=limit / len(labels), seed=seed)
    return split["test"]


def split_labelled_tsv(
    path: str | Path, output_dir: str | Path, seed: int = 0, dev: float = 0.1, test: float = 0.1, limit: int = 0
) -> dict:
    """Write output_dir/{train,dev,test}.spacy (one Doc per text, spaCy's English tokenizer,
    exclusive cats) and output_dir/split.json (sizes and label counts). limit > 0: first a seeded,
    stratified subset of about that many texts (the demo). Returns the split.json data."""
    import spacy
    from spacy.tokens import DocBin

    rows = read_labelled_tsv(path)
    labels = [label for label, _ in rows]
    keep = stratified_sample(labels, limit, seed)
    kept_labels = [labels[i] for i in keep]
    label_set = sorted(set(labels))
    nlp = spacy.blank("en")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, indices in stratified_split(kept_labels, dev, test, seed).items():
        chosen = [rows[keep[i]] for i in indices]
        db = DocBin(store_user_data=False)
        for doc, (label, _) in zip(nlp.pipe(text for _, text in chosen), chosen):
            doc.cats = {name: float(name == label) for name in label_set}
            db.add(doc)
        db.to_disk(output_dir / f"{split}.spacy")
        counts[split] = {"docs": len(chosen), "labels": dict(sorted(Counter(label for label, _ in chosen).items()))}
    meta = {"source": str(path), "seed": seed, "dev": dev, "test": test, "limit": limit, "labels": label_set, "splits": counts}
    write_json(output_dir / "split.json", meta)
    return meta


def textcat_figures(scores: dict) -> dict:
    """{'accuracy', 'macro_f'} (fractions) from spaCy's textcat scores (exclusive classes).

    With one gold label per doc and the top-scoring label predicted (spaCy's rule for exclusive
    classes), every doc is one true positive or one false positive plus one false negative, so
    micro P = micro R = micro F = accuracy. A missing figure stays None."""
    return {"accuracy": scores.get("cats_micro_f"), "macro_f": scores.get("cats_macro_f")}


def top_label(cats: dict[str, float]) -> str:
    """The top-scoring label (spaCy's prediction for exclusive classes; the gold label of a
    one-hot doc.cats), or "" for no labels."""
    return max(cats, key=cats.get) if cats else ""


def predicted_labels(nlp, docs) -> list[str]:
    """The predicted label of each doc."""
    return [top_label(doc.cats) for doc in nlp.pipe(docs)]


def compare_classifiers(gold: Sequence[str], pred_a: Sequence[str], pred_b: Sequence[str]) -> dict:
    """Paired comparison of two classifiers on the same items: accuracies, the discordant counts,
    the exact McNemar p-value and a paired bootstrap 95 % interval of accuracy(B) - accuracy(A)."""
    from .stats import bootstrap_difference, mcnemar_exact

    if not (len(gold) == len(pred_a) == len(pred_b)) or not gold:
        raise ValueError(f"need the same, non-zero number of gold and predicted labels, got {len(gold)}, {len(pred_a)}, {len(pred_b)}")
    right_a = [g == p for g, p in zip(gold, pred_a)]
    right_b = [g == p for g, p in zip(gold, pred_b)]
    only_a = sum(a and not b for a, b in zip(right_a, right_b))
    only_b = sum(b and not a for a, b in zip(right_a, right_b))
    low, high = bootstrap_difference(right_a, right_b)
    return {
        "n": len(gold), "accuracy_a": sum(right_a) / len(gold), "accuracy_b": sum(right_b) / len(gold),
        "only_a_right": only_a, "only_b_right": only_b, "mcnemar_p": mcnemar_exact(only_a, only_b),
        "difference_ci95": [low, high],
    }
