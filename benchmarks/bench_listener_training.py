"""Words/second of training NER on a frozen ELMo, with and without the `elmo` component's cache.

    python benchmarks/bench_listener_training.py corpus/conll_train.spacy --limit 2000 --epochs 3
    python benchmarks/bench_listener_training.py train.spacy --model path/to/model_dir --threads 2

The pipeline is configs/ner_elmo.cfg (elmo + an ner that listens to it). Each arm starts from
the same seed and reads the same batches; epoch 1 fills the cache, later epochs read from it.
The losses of both arms are printed side by side: the cache must not change what is learned.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import spacy
import torch
from spacy.training import Corpus
from spacy.training.batchers import minibatch_by_words
from spacy.util import load_config, load_model_from_config
from thinc.api import fix_random_seed

CONFIG = Path(__file__).parents[1] / "configs" / "ner_elmo.cfg"


def run(train: Path, model: str | None, cache_mb: float, limit: int, epochs: int, words_per_batch: int) -> list[tuple[float, float]]:
    """(words/second, loss) per epoch."""
    overrides = {"components.elmo.cache_mb": cache_mb, "components.elmo.model": model}
    nlp = load_model_from_config(load_config(CONFIG, overrides=overrides), auto_fill=True, validate=True)
    examples = list(Corpus(str(train), limit=limit)(nlp))
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples[:100])
    n_words = sum(len(eg.reference) for eg in examples)
    results = []
    for _ in range(epochs):
        losses: dict[str, float] = {}
        start = time.perf_counter()
        for batch in minibatch_by_words(examples, size=words_per_batch):
            nlp.update(batch, sgd=optimizer, drop=0.1, losses=losses)
        results.append((n_words / (time.perf_counter() - start), losses["ner"]))
    cache = nlp.get_pipe("elmo").cache
    print(f"  cache_mb={cache_mb:g}: {len(cache)} docs kept, {cache.nbytes / 2**20:.0f} MB")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path, help="a .spacy file of NER training docs (e.g. corpus/conll_train.spacy)")
    parser.add_argument("--model", default=None, help="ELMo model directory; default: the packaged English model")
    parser.add_argument("--limit", type=int, default=2000, help="number of training docs (0 = all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--words-per-batch", type=int, default=1000)
    parser.add_argument("--cache-mb", type=float, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if not args.train.is_file():
        parser.error(f"{args.train}: no such file (make it with `spacy project run corpus-ner`)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"spaCy {spacy.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    arms = {f"cache_mb={mb:g}": run(args.train, args.model, mb, args.limit, args.epochs, args.words_per_batch)
            for mb in (0, args.cache_mb)}
    print(f"{'epoch':>5}  " + "  ".join(f"{name + ' words/s':>22}  {'loss':>10}" for name in arms))
    for epoch in range(args.epochs):
        cells = "  ".join(f"{arm[epoch][0]:>22,.0f}  {arm[epoch][1]:>10.2f}" for arm in arms.values())
        print(f"{epoch + 1:>5}  {cells}")


if __name__ == "__main__":
    main()
