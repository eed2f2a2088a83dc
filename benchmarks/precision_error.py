"""How far each inference precision lands from float32: max |error| and mean cosine per layer.

    python benchmarks/precision_error.py                                   # the shipped default model
    python benchmarks/precision_error.py --model DIR --conll ../shared/data/conll2003/valid.txt
    python benchmarks/precision_error.py --options-file o.json --weight-file w.hdf5 --json out.json

Sentences: the first --sentences of a CoNLL file (--conll), or of a text file with one
whitespace-tokenized sentence per line (--text). Every token of every sentence is compared with
the float32 output of the same model (cosine per token vector, averaged). Not a timing: the
numbers do not depend on how busy the machine is. bfloat16 rows are skipped on CPUs without
native bf16 (they would run float32).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from spacy_elmo.bilm import load_bilm
from spacy_elmo.bilm.embedder import Embedder, read_sentences
from spacy_elmo.bilm.precision import PRECISIONS, precision_fallback, with_precision
from spacy_elmo.default_model import default_model_dir
from spacy_elmo.tasks.ner import read_conll


def load_sentences(conll: Path | None, text: Path | None, limit: int) -> list[list[str]]:
    if conll is not None:
        return [s.words for doc in read_conll(conll, limit=limit) for s in doc]
    if text is not None:
        return [tokens for _, tokens in read_sentences(text) if tokens][:limit]
    raise SystemExit("give --conll FILE or --text FILE")


def layer_errors(exact: list[np.ndarray], approx: list[np.ndarray]) -> list[dict]:
    """Per layer: max |approx - exact|, max |exact| and the mean cosine over all token vectors."""
    a = np.concatenate([x.transpose(1, 0, 2) for x in exact])  # (tokens, layers, dim)
    b = np.concatenate([x.transpose(1, 0, 2) for x in approx])
    rows = []
    for layer in range(a.shape[1]):
        x, y = a[:, layer].astype(np.float64), b[:, layer].astype(np.float64)
        cosine = (x * y).sum(-1) / np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), 1e-30)
        rows.append({
            "layer": layer,
            "max_abs_error": float(np.abs(x - y).max()),
            "max_abs_value": float(np.abs(x).max()),
            "mean_cosine": float(cosine.mean()),
        })
    return rows


def measure(bilm, sentences: list[list[str]], batch_size: int) -> dict:
    exact = Embedder(bilm, batch_size=batch_size).embed_sentences(sentences)
    results = {}
    for precision in PRECISIONS[1:]:
        if precision_fallback(precision, "cpu") is not None:
            print(f"  {precision}: skipped ({precision_fallback(precision, 'cpu')})")
            continue
        approx = Embedder(with_precision(bilm, precision), batch_size=batch_size).embed_sentences(sentences)
        results[precision] = layer_errors(exact, approx)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--options-file", type=Path, default=None)
    parser.add_argument("--weight-file", type=Path, default=None)
    parser.add_argument("--conll", type=Path, default=None, help="CoNLL-2003 style file (first column = token)")
    parser.add_argument("--text", type=Path, default=None, help="one whitespace-tokenized sentence per line")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.options_file is None and args.model is None:
        args.model = default_model_dir()
    bilm = load_bilm(args.model, options_file=args.options_file, weight_file=args.weight_file)
    sentences = load_sentences(args.conll, args.text, args.sentences)
    n_tokens = sum(len(s) for s in sentences)
    print(f"{args.model or args.weight_file}: {len(sentences)} sentences, {n_tokens} tokens; torch {torch.__version__}")
    results = measure(bilm, sentences, args.batch_size)
    print(f"{'precision':<10}{'layer':>6}{'max |err|':>12}{'max |x|':>10}{'mean cos':>12}")
    for precision, rows in results.items():
        for r in rows:
            print(f"{precision:<10}{r['layer']:>6}{r['max_abs_error']:>12.4f}{r['max_abs_value']:>10.2f}{r['mean_cosine']:>12.6f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"sentences": len(sentences), "tokens": n_tokens, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
