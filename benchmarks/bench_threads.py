"""Words/second of the `elmo` component and of `spacy-elmo embed` for several `threads` settings.

    python benchmarks/bench_threads.py sentences.txt                       # threads 0 (torch's default) and 1
    python benchmarks/bench_threads.py sentences.txt --threads 0 1 2 4 --model path/to/model_dir

The input has one whitespace-tokenized sentence per line (as `spacy-elmo embed` reads it). Each
setting runs in its own process, since torch's thread count is process-wide: `nlp.pipe` over the
sentences (words/s, after one warm-up batch) and the `embed` command over the same file
(seconds, model loading included). Timings mean something only on a machine doing nothing else,
or on one whose load you describe with the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIPE_CODE = """
import json, sys, time, spacy
from spacy.tokens import Doc
path, model, threads = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
lines = [line.split() for line in open(path, encoding="utf-8") if line.strip()]
nlp = spacy.blank("en")
nlp.add_pipe("elmo", config={"model": model, "threads": threads})
docs = lambda: (Doc(nlp.vocab, words=words) for words in lines)
list(nlp.pipe(Doc(nlp.vocab, words=w) for w in lines[:32]))  # warm-up: weights read, threads started
start = time.perf_counter()
n = sum(len(doc) for doc in nlp.pipe(docs(), batch_size=64))
print(json.dumps({"words": n, "seconds": time.perf_counter() - start}))
"""


def pipe_words_per_second(path: Path, model: str | None, threads: int) -> float:
    done = subprocess.run([sys.executable, "-c", PIPE_CODE, str(path), model or "", str(threads)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["words"] / result["seconds"]


def embed_seconds(path: Path, model: str | None, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "spacy_elmo", "embed", str(path), str(Path(tmp) / "out.hdf5"), "--top",
                "--threads", str(threads), "--no-progress"] + (["--model", model] if model else [])
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, text=True, check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sentences", type=Path, help="one whitespace-tokenized sentence per line")
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1], help="settings to compare (0 = torch's default)")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    args = parser.parse_args()
    print("| threads | nlp.pipe words/s | embed seconds |")
    print("|---|---|---|")
    for threads in args.threads:
        wps = pipe_words_per_second(args.sentences, args.model, threads)
        seconds = embed_seconds(args.sentences, args.model, threads)
        print(f"| {threads or 'default'} | {wps:,.0f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
