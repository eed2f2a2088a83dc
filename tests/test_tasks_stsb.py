"""STS-B reading (robust to extra columns), tokenization and the per-layer Spearman."""

import json

import numpy as np
import pytest
from test_tasks_helpers import STS_ROWS, tiny_model_dir, write_stsb  # noqa: F401  (fixture)

from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.tasks.stsb import StsPair, evaluate_stsb, read_stsb, run_stsb, tokenize


def test_read_stsb_ignores_extra_columns(tmp_path):
    pairs = read_stsb(write_stsb(tmp_path / "sts.csv"))
    assert len(pairs) == len(STS_ROWS)
    assert pairs[2] == StsPair(1.0, "Driver backs into stroller", "Senate confirms nominee")
    assert read_stsb(tmp_path / "sts.csv", limit=2) == pairs[:2]


def test_read_stsb_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a\tb\tc\td\t4.0\tone\ttwo\na\tb\tc\td\tfive\tone\ttwo\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv:2"):
        read_stsb(path)
    path.write_text("a\tb\tc\td\t4.0\tonly one sentence\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv:1"):
        read_stsb(path)


def test_tokenize_splits_punctuation():
    assert tokenize(["A plane is taking off.", "Don't  stop!"]) == [
        ["A", "plane", "is", "taking", "off", "."],
        ["Do", "n't", "stop", "!"],
    ]


@pytest.mark.parametrize("direction", [1, -1])
def test_identical_sentences_rank_first(make_bilm, direction):
    """Identical sentences have cosine 1 in every layer, different ones less; with gold scores
    that put the identical pairs on top (or bottom), Spearman is exactly +1 (or -1)."""
    pairs = [
        StsPair(2.5 + 2.5 * direction, "A man plays a flute .", "A man plays a flute ."),
        StsPair(2.5 + 2.5 * direction, "The cat sleeps .", "The cat sleeps ."),
        StsPair(2.5 - 2.5 * direction, "Stocks fell sharply .", "A dog runs in a park ."),
    ]
    result = evaluate_stsb(Embedder(make_bilm()), pairs)
    assert result["n_pairs"] == 3
    assert set(result["spearman"]) == {"layer_0", "layer_1", "layer_2", "mix"}
    for value in result["spearman"].values():
        assert value == pytest.approx(direction)


def test_run_stsb_writes_every_layer(tmp_path, tiny_model_dir):
    path = write_stsb(tmp_path / "sts.csv")
    data = run_stsb(tiny_model_dir, {"dev": path, "test": path}, tmp_path / "out" / "stsb.json", limit=5)
    assert json.loads((tmp_path / "out" / "stsb.json").read_text()) == data
    assert data["baseline"] == "layer_0"
    for split in ("dev", "test"):
        result = data["splits"][split]
        assert result["n_pairs"] == 5
        for variant in ("layer_0", "layer_1", "layer_2", "mix"):
            assert -1.0 <= result["spearman"][variant] <= 1.0
    assert data["words"] > 0 and data["words_per_second"] > 0


def test_layer_weights_are_fitted_on_train_and_applied_unchanged():
    """fitted_mix: the weight grid covers the simplex (single layers included), the search keeps the
    best train figure, and run_stsb applies the train weights to dev and test."""
    from spacy_elmo.tasks.features import fit_layer_weights, mixed, weight_grid

    grid = weight_grid(3, 0.25)
    assert len(grid) == 15 and np.allclose(grid.sum(axis=1), 1.0) and (grid >= 0).all()
    assert grid[0].tolist() == [1.0, 0.0, 0.0] and [0.0, 0.0, 1.0] in grid.tolist()
    with pytest.raises(ValueError, match="divide 1"):
        weight_grid(3, 0.3)
    target = np.array([0.25, 0.5, 0.25])
    weights, value = fit_layer_weights(lambda w: -np.abs(w - target).sum(), 3, 0.25)
    assert weights.tolist() == target.tolist() and value == 0.0
    vectors = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.allclose(mixed(vectors, [0.5, 0.5, 0.0]), vectors[:, :2].mean(axis=1))


def test_run_stsb_with_train_adds_the_fitted_mix(tmp_path, tiny_model_dir):
    from spacy_elmo.tasks.stsb import fit_stsb_weights, pair_vectors, read_stsb

    path = write_stsb(tmp_path / "sts.csv")
    data = run_stsb(tiny_model_dir, {"dev": path}, tmp_path / "stsb.json", limit=6, train=path)
    fitted = data["fitted_mix"]
    assert fitted["fitted_on"] == "train" and fitted["n_pairs"] == 6 and sum(fitted["weights"]) == pytest.approx(1.0)
    dev = data["splits"]["dev"]["spearman"]
    # dev is the train file here: the fitted weights score their own train figure, at least every layer's.
    assert dev["fitted_mix"] == pytest.approx(fitted["train_spearman"])
    assert dev["fitted_mix"] >= max(dev[f"layer_{j}"] for j in range(3)) - 1e-9
    pairs = read_stsb(path, 6)
    from spacy_elmo.tasks.features import load_embedder

    weights, _ = fit_stsb_weights(pair_vectors(load_embedder(tiny_model_dir), pairs), [p.score for p in pairs])
    assert weights.tolist() == pytest.approx(fitted["weights"])
    without = run_stsb(tiny_model_dir, {"dev": path}, tmp_path / "plain.json", limit=6)
    assert without["fitted_mix"] is None and "fitted_mix" not in without["splits"]["dev"]["spearman"]
