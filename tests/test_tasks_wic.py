"""WiC: reading, the threshold search and accuracy on hand-made cases, and the layer-0 property."""

import itertools

import numpy as np
import pytest
from test_tasks_helpers import tiny_model_dir  # noqa: F401  (fixture)

from spacy_elmo.tasks.features import Throughput
from spacy_elmo.tasks.wic import WicPair, accuracy, best_threshold, evaluate_wic, majority_accuracy, read_wic, run_wic


def test_accuracy_of_a_known_threshold():
    scores = [0.1, 0.4, 0.5, 0.9]
    labels = [False, True, False, True]
    assert accuracy(scores, labels, 0.45) == pytest.approx(0.5)  # predicts F F T T: 2 of 4 right
    assert accuracy(scores, labels, 0.3) == pytest.approx(0.75)  # F T T T: 3 right
    assert accuracy(scores, labels, 1.0) == pytest.approx(0.5)  # all F
    assert accuracy(scores, labels, 0.5) == pytest.approx(0.5)  # 0.5 >= 0.5 counts as T: F F T T


def test_best_threshold_separable():
    threshold, acc = best_threshold([0.1, 0.2, 0.3, 0.4], [False, False, True, True])
    assert threshold == pytest.approx(0.25)
    assert acc == 1.0


def test_best_threshold_ties_go_to_the_smallest_threshold():
    # Cuts at 0.15 and at 0.35 both get 4/5 right; the smaller wins.
    threshold, acc = best_threshold([0.1, 0.2, 0.3, 0.4, 0.5], [False, True, False, True, True])
    assert threshold == pytest.approx(0.15)
    assert acc == pytest.approx(0.8)


def test_best_threshold_all_one_label():
    threshold, acc = best_threshold([0.3, 0.7], [True, True])
    assert acc == 1.0 and threshold < 0.3
    threshold, acc = best_threshold([0.3, 0.7], [False, False])
    assert acc == 1.0 and threshold > 0.7


def test_best_threshold_cannot_split_equal_scores():
    # Equal scores must get the same prediction: the best is 2 of 3, not 3 of 3.
    threshold, acc = best_threshold([0.5, 0.5, 0.9], [False, True, True])
    assert acc == pytest.approx(2 / 3)
    assert accuracy([0.5, 0.5, 0.9], [False, True, True], threshold) == pytest.approx(acc)


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = np.round(rng.random(30), 1)  # ties on purpose
        labels = rng.random(30) < 0.5
        candidates = [scores.min() - 1, scores.max() + 1]
        values = np.unique(scores)
        candidates += list((values[1:] + values[:-1]) / 2)
        best = max(accuracy(scores, labels, c) for c in candidates)
        threshold, acc = best_threshold(scores, labels)
        assert acc == pytest.approx(best)
        assert accuracy(scores, labels, threshold) == pytest.approx(acc)


def _write_wic(folder, split, rows, labels):
    (folder / f"{split}.data.txt").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    if labels is not None:
        (folder / f"{split}.gold.txt").write_text("".join(labels[i] + "\n" for i in range(len(labels))), encoding="utf-8")


def test_read_wic(tmp_path):
    _write_wic(tmp_path, "dev", [("bank", "N", "1-0", "the bank of the river", "bank loans are up")], ["F"])
    (pair,) = read_wic(tmp_path / "dev.data.txt", tmp_path / "dev.gold.txt")
    assert pair == WicPair("bank", "N", 1, 0, ("the", "bank", "of", "the", "river"), ("bank", "loans", "are", "up"), False)
    assert read_wic(tmp_path / "dev.data.txt")[0].label is None


def test_read_wic_rejects_bad_files(tmp_path):
    _write_wic(tmp_path, "a", [("bank", "N", "7-0", "the bank", "bank")], ["T"])
    with pytest.raises(ValueError, match="outside"):
        read_wic(tmp_path / "a.data.txt", tmp_path / "a.gold.txt")
    _write_wic(tmp_path, "b", [("bank", "N", "1-0", "the bank", "bank")], ["T", "F"])
    with pytest.raises(ValueError, match="2 labels for 1 pairs"):
        read_wic(tmp_path / "b.data.txt", tmp_path / "b.gold.txt")
    _write_wic(tmp_path, "c", [("bank", "N", "1-0", "the bank", "bank")], ["yes"])
    with pytest.raises(ValueError, match="T or F"):
        read_wic(tmp_path / "c.data.txt", tmp_path / "c.gold.txt")


def test_majority_accuracy():
    def pair(label):
        return WicPair("w", "N", 0, 0, ("w",), ("w",), label)

    assert majority_accuracy([pair(True), pair(True), pair(False)]) == pytest.approx(2 / 3)
    assert majority_accuracy([pair(False), pair(True), pair(False), pair(False)]) == pytest.approx(3 / 4)
    assert majority_accuracy([pair(None)]) is None


SENTENCES = [
    ("bank", "the bank of the river was muddy", 1, "she paid the bank a visit", 3),
    ("bass", "he plays bass in a band", 2, "they caught a bass today", 3),
    ("plant", "the plant needs water", 1, "the car plant closed", 2),
    ("bat", "a bat flew out", 1, "he swung the bat hard", 3),
]


def _pairs(label_cycle):
    out = []
    for (word, s1, i, s2, j), label in zip(SENTENCES, itertools.cycle(label_cycle)):
        out.append(WicPair(word, "N", i, j, tuple(s1.split()), tuple(s2.split()), label))
    return out


def test_layer_0_is_context_free(make_bilm):
    """The character encoder sees only the word: the same word in two contexts has cosine 1 at
    layer 0, and below 1 in the contextual layers."""
    from spacy_elmo.bilm.embedder import Embedder
    from spacy_elmo.tasks.wic import pair_scores

    scores = pair_scores(Embedder(make_bilm()), _pairs([True]))
    assert np.allclose(scores["layer_0"], 1.0)
    assert (scores["layer_1"] < 0.9999).all() and (scores["layer_2"] < 0.9999).all()
    assert set(scores) == {"layer_0", "layer_1", "layer_2", "mix"}


def test_evaluate_wic_reports_fitted_thresholds(make_bilm):
    from spacy_elmo.bilm.embedder import Embedder

    train = _pairs([True, False])
    throughput = Throughput()
    result, weights = evaluate_wic(Embedder(make_bilm()), train, {"dev": train, "test": _pairs([None])}, throughput)
    assert set(result) == {"layer_0", "layer_1", "layer_2", "mix", "fitted_mix"}
    assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    # The fitted weights search includes every single layer: on train they do at least as well.
    assert result["fitted_mix"]["train"] >= max(result[f"layer_{j}"]["train"] for j in range(3))
    for row in result.values():
        assert 0.5 <= row["train"] <= 1.0  # a threshold can always do as well as the majority
        assert row["dev"] == pytest.approx(row["train"])  # same pairs, same threshold
        assert row["test"] is None  # unlabelled: never guessed
    # train, dev and test each embed both sentences of the 4 pairs once
    assert throughput.words == 3 * sum(len(s1.split()) + len(s2.split()) for _, s1, _, s2, _ in SENTENCES)


def test_run_wic_writes_json(tmp_path, tiny_model_dir):
    import json

    rows = [(w, "N", f"{i}-{j}", s1, s2) for w, s1, i, s2, j in SENTENCES]
    _write_wic(tmp_path, "train", rows, ["T", "F", "T", "F"])
    _write_wic(tmp_path, "dev", rows, ["F", "F", "T", "T"])
    _write_wic(tmp_path, "test", rows, None)
    data = run_wic(tiny_model_dir, tmp_path, tmp_path / "out" / "wic.json")
    on_disk = json.loads((tmp_path / "out" / "wic.json").read_text())
    assert on_disk == data
    assert data["n_pairs"] == {"train": 4, "dev": 4, "test": 4}
    assert data["majority_baseline"] == {"train": 0.5, "dev": 0.5, "test": None}
    for row in data["layers"].values():
        assert isinstance(row["threshold"], float) and isinstance(row["dev"], float) and row["test"] is None
    assert data["words_per_second"] > 0
