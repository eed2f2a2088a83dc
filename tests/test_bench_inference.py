"""benchmarks/bench_inference.py runs end to end on a tiny input (its timings are not checked)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from spacy_elmo.bilm.precision import PRECISIONS, native_bf16

pytestmark = pytest.mark.usefixtures("single_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_inference.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_inference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_per_word_of_the_original_model():
    bench = load_benchmark()
    # ~151 MFLOP of LSTM and ~53 of char CNN per position (the estimate: ~225 per word,
    # which also spreads <S> and </S> over the words).
    assert 200e6 < bench.flops_per_position(bench.SIZES["original"]) < 210e6


def test_every_arm_runs_and_float32_matches_the_baseline():
    bench = load_benchmark()
    args = argparse.Namespace(
        sentences=6, batch_size=4, pipe_batch_size=2, precisions=list(PRECISIONS), repeats=2,
        latency_repeats=1, peak_size=64, device="cpu", no_baseline=False, no_component=False, token_cache=1000,
    )
    result = bench.run("fixture", args)
    arms = [row["arm"] for row in result["rows"]]
    ran = [p for p in PRECISIONS if p != "bfloat16" or native_bf16("cpu")]
    assert arms == ["baseline", *(f"embed/{p}" for p in ran), *(f"component/{p}" for p in ran)]
    assert result["max_abs_diff"]["float32"] < 1e-5
    assert 0 < result["max_abs_diff"]["int8"] < 0.1
    for row in result["rows"]:
        assert row["words_per_s"] > 0 and 0 < row["fraction_of_peak"]
    assert set(result["latency_ms"]) == set(ran) and set(result["ceiling_gflops"]) == set(ran)
