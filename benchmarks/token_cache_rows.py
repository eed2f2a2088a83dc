"""How many rows the character CNN encodes on real text: every token, the distinct tokens of each
batch (what the model always did), or only the spellings the token cache does not hold.

A count, not a timing: it runs in seconds and means the same on a busy machine. Batches are taken
in reading order, as `nlp.pipe` and `spacy-elmo embed` (before length sorting) see them.

    python benchmarks/token_cache_rows.py --conll ../shared/data/conll2003/test.txt \
        --text ../shared/data/wikitext103/wiki.valid.tokens
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spacy_elmo.bilm.token_cache import DEFAULT_TOKEN_CACHE  # noqa: E402
from spacy_elmo.tasks.ner import read_conll  # noqa: E402


def conll_sentences(path: Path) -> list[list[str]]:
    """The words of every sentence of a CoNLL-2003 file, in file order."""
    return [sentence.words for doc in read_conll(path) for sentence in doc]


def text_lines(path: Path, max_lines: int) -> list[list[str]]:
    """Whitespace-tokenized non-empty lines (WikiText headings skipped)."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("="):
                lines.append(line.split())
                if len(lines) >= max_lines:
                    break
    return lines


def count_rows(sentences: list[list[str]], batch_size: int, cache_size: int) -> tuple[int, int, int]:
    """(tokens, distinct tokens summed over batches, rows encoded with an LRU cache of cache_size)."""
    cache: OrderedDict[str, None] = OrderedDict()
    tokens = per_batch = with_cache = 0
    for start in range(0, len(sentences), batch_size):
        batch = sentences[start : start + batch_size]
        tokens += sum(len(s) for s in batch)
        distinct = {w for s in batch for w in s}
        per_batch += len(distinct)
        for word in distinct:
            if word in cache:
                cache.move_to_end(word)
            else:
                with_cache += 1
                cache[word] = None
                if len(cache) > cache_size:
                    cache.popitem(last=False)
    return tokens, per_batch, with_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conll", type=Path, action="append", default=[], help="a CoNLL-2003 file (first column)")
    parser.add_argument("--text", type=Path, action="append", default=[], help="a tokenized text file, one line a sequence")
    parser.add_argument("--max-lines", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--cache", type=int, default=DEFAULT_TOKEN_CACHE, help="token cache size (words)")
    args = parser.parse_args()
    if not args.conll and not args.text:
        parser.error("give at least one --conll or --text file")
    corpora = [(p, conll_sentences(p)) for p in args.conll] + [(p, text_lines(p, args.max_lines)) for p in args.text]
    print(f"char-CNN rows, batches of {args.batch_size} sequences, token cache of {args.cache:,} words")
    print(f"{'text':<28}{'sequences':>10}{'tokens':>10}{'per batch':>11}{'cache':>9}{'cache/per batch':>17}")
    for path, sentences in corpora:
        tokens, per_batch, with_cache = count_rows(sentences, args.batch_size, args.cache)
        print(f"{path.name:<28}{len(sentences):>10,}{tokens:>10,}{per_batch:>11,}{with_cache:>9,}{with_cache / max(per_batch, 1):>16.0%}")


if __name__ == "__main__":
    main()
