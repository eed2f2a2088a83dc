"""Peak memory of `spacy-elmo embed` against line length: --max-batch-tokens bounds it.

    python benchmarks/bench_embed_memory.py                                  # shipped default model
    python benchmarks/bench_embed_memory.py --lengths 1000 5000 20000 200000 --max-batch-tokens 8192
    python benchmarks/bench_embed_memory.py --model path/to/model --output reports/embed_memory.json

Each row runs `python -m spacy_elmo embed` on a file of one line of N tokens, in a fresh process,
and reads that process's peak resident memory (ru_maxrss of the finished child, Linux: KiB). The
same command with no embedding work (a 1-token line) is the baseline that the import of torch and
the model cost. With windows, the rows should level off once N passes --max-batch-tokens. The
output file's size is printed too: it grows with N, as it must (it holds every vector).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_embed(n_tokens: int, model: str | None, max_batch_tokens: int, fmt: str, folder: Path) -> dict:
    rng = random.Random(n_tokens)
    words = "the a cat dog sat ran on under mat house quickly , . and of".split()
    source = folder / f"line_{n_tokens}.txt"
    source.write_text(" ".join(rng.choice(words) for _ in range(n_tokens)) + "\n", encoding="utf-8")
    output = folder / f"out_{n_tokens}.h5"
    command = [sys.executable, "-m", "spacy_elmo", "embed", str(source), str(output), f"--{fmt}",
               "--max-batch-tokens", str(max_batch_tokens), "--no-progress"]
    if model:
        command += ["--model", model]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest child's so far
    seconds = time.perf_counter() - start
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"embed failed for {n_tokens} tokens:\n{out}")
    row = {
        "tokens": n_tokens,
        "max_batch_tokens": max_batch_tokens,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "output_mb": round(output.stat().st_size / 2**20, 2),
        "seconds": round(seconds, 2),
    }
    source.unlink()
    output.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 1000, 5000, 20000, 50000])
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--model", default=None, help="Model directory (default: the shipped model).")
    parser.add_argument("--format", choices=["all", "top", "average"], default="top")
    parser.add_argument("--output", type=Path, default=None, help="Also write the rows to this JSON file.")
    args = parser.parse_args()
    if sys.platform != "linux":
        raise SystemExit("this benchmark reads ru_maxrss from os.wait4 as Linux reports it (KiB)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lengths:
            rows.append(run_embed(n, args.model, args.max_batch_tokens, args.format, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| tokens in the line | peak RSS (MB) | output (MB) |  (--max-batch-tokens {args.max_batch_tokens})")
    print("|---:|---:|---:|")
    for row in rows:
        print(f"| {row['tokens']:,} | {row['peak_rss_mb']:,} | {row['output_mb']:,} |")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
