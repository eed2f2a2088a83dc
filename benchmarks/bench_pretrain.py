"""Training speed of `spacy-elmo pretrain` (words/second), through the real training loop.

    python benchmarks/bench_pretrain.py                                   # demo + small configs
    python benchmarks/bench_pretrain.py --sizes small --steps 40 --threads 2
    python benchmarks/bench_pretrain.py --corpus ../shared/data/reuters21578/reuters21578.en.txt
    python benchmarks/bench_pretrain.py --sizes small original --device cuda --precision bf16

Each size runs `pretrain()` with the config from configs/pretrain_<size>.cfg for 2 x --steps
steps (no checkpoints or evaluation in between) and reports the words/second of the second half
(the first half is warm-up: allocator, char-id cache). Words = stream tokens consumed, i.e.
batch_size x unroll_steps per step; both directions are trained on each. The corpus defaults to
the first 20,000 lines of Reuters-21578 when ../shared/data is present, else generated text.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from spacy_elmo.bilm import load_bilm
from spacy_elmo.pretrain import load_config, pretrain
from spacy_elmo.pretrain.metrics import read_events
from spacy_elmo.pretrain.train import autocast_dtype

ROOT = Path(__file__).resolve().parents[1]
REUTERS = ROOT.parent / "shared" / "data" / "reuters21578" / "reuters21578.en.txt"


def corpus_sample(path: Path | None, n_lines: int, out: Path) -> Path:
    """The first n_lines of a corpus, or Zipf-distributed generated words when there is none."""
    target = out / "corpus.txt"
    if path is not None and path.is_file():
        with open(path, "rb") as src, open(target, "wb") as dst:
            for i, line in enumerate(src):
                if i >= n_lines:
                    break
                dst.write(line)
    else:
        rng = random.Random(0)
        words = [f"w{i}" for i in range(30_000)]
        weights = [1.0 / (i + 1) for i in range(len(words))]
        with open(target, "w", encoding="utf-8") as dst:
            for _ in range(n_lines):
                dst.write(" ".join(rng.choices(words, weights, k=rng.randint(5, 60))) + "\n")
    return target


def bench(size: str, corpus: Path, steps: int, threads: int, work: Path, device: str = "cpu", precision: str = "no") -> dict:
    overrides = {
        "paths.train": str(corpus),
        "system.device": device,
        "training.mixed_precision": precision,
        "system.threads": threads,
        "training.max_steps": 2 * steps,
        "training.max_epochs": 0,
        "training.log_every": steps,
        "training.checkpoint_every": 0,
        "training.eval_every": 0,
    }
    config = load_config(ROOT / "configs" / f"pretrain_{size}.cfg", overrides)
    output = work / size
    start = time.perf_counter()
    pretrain(config, output, progress=False)
    total = time.perf_counter() - start
    train = [e for e in read_events(output / "metrics.jsonl") if e["event"] == "train"]
    meta = json.loads((output / "model" / "meta.json").read_text())
    options = json.loads((output / "model" / "options.json").read_text())
    n_params = sum(p.numel() for p in load_bilm(output / "model").parameters())
    t = config["training"]
    return {
        "size": size,
        "words_per_s": train[-1]["words_per_s"],
        "warmup_words_per_s": train[0]["words_per_s"],
        "bilm_parameters": n_params,
        "lstm": f"{options['lstm']['dim']}/{options['lstm']['projection_dim']}",
        "char_filters": sum(n for _, n in options["char_cnn"]["filters"]),
        "softmax": f"{meta['softmax']['type']} {meta['vocab_size']:,}",
        "batch": f"{t['batch_size']}x{t['unroll_steps']}",
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        # what the run used (bf16 runs on CPUs with native bf16 too), not what was asked
        "precision": {None: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype(precision, torch.device(device))],
        "wall_s": round(total, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["demo", "small"], help="config names: demo small original")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after as many warm-up steps)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--corpus", type=Path, default=REUTERS if REUTERS.is_file() else None)
    parser.add_argument("--lines", type=int, default=20_000, help="corpus lines to use")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"], help="mixed precision (bf16: GPUs and CPUs with native bf16; fp16: GPUs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = corpus_sample(args.corpus, args.lines, work)
        source = args.corpus.name if args.corpus else "generated text"
        rows = [bench(size, corpus, args.steps, args.threads, work, args.device, args.precision) for size in args.sizes]
    print(f"\ncorpus: first {args.lines:,} lines of {source}; {args.steps} timed steps after {args.steps} "
          f"warm-up steps; torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = ["size", "device", "precision", "words_per_s", "bilm_parameters", "lstm", "char_filters", "softmax", "batch", "wall_s"]
    print(" | ".join(header))
    for row in rows:
        cells = [f"{v:,.0f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                 for v in (row[h] for h in header)]
        print(" | ".join(cells))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
