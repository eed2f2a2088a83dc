"""STS-B reading (robust to extra columns), tokenization and the per-layer Spearman."""

import json

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
