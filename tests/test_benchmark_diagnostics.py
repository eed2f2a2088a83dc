"""The counting and pooling in benchmarks/token_cache_rows.py and benchmarks/stsb_pooling.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_token_cache_rows_counts_new_spellings_only():
    rows = load("token_cache_rows")
    batch = [["the", "cat", "sat", "on", "the", "mat"], ["the", "dog", "."]]
    # Two batches of two sentences: the second repeats the first, so the cache encodes nothing new.
    assert rows.count_rows(batch * 2, batch_size=2, cache_size=100) == (18, 14, 7)
    # A cache of 2 words keeps only the last two spellings: most of the second batch is new again.
    tokens, per_batch, with_cache = rows.count_rows(batch * 2, batch_size=2, cache_size=2)
    assert (tokens, per_batch) == (18, 14) and 7 < with_cache <= 14


def test_token_cache_rows_reads_conll(tmp_path):
    rows = load("token_cache_rows")
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n", encoding="utf-8")
    assert rows.conll_sentences(path) == [["EU", "rejects"], ["Peter"]]


def test_stsb_pooling_weights_and_empty_sentences():
    pooling = load("stsb_pooling")
    layers = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)  # (L, tokens, dim)
    assert pooling.pool(layers, np.ones(3, np.float32)) == pytest.approx(layers.mean(axis=1))
    assert pooling.pool(layers, np.array([0, 1, 0], np.float32)) == pytest.approx(layers[:, 1])
    assert not pooling.pool(np.zeros((2, 0, 2), np.float32), np.zeros(0, np.float32)).any()
    # Content words: stop words and punctuation out, unless nothing would be left.
    assert pooling.content_weights(["the", "bank", "."]).tolist() == [0, 1, 0]
    assert pooling.content_weights(["the", "."]).tolist() == [1, 1]
