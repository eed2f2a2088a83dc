"""Workflow step: the pretraining text (WikiText-103 raw if present, else the mixture or a fallback).

    python scripts/prepare_corpus.py OUTPUT SOURCE [FALLBACK ...] [--mixture DECLARATION] [--data-dir DIR]
        [--max-words N] [--tokenize] [--shuffle-seed S]

A source may be several files joined by "+" (used together, in that order, when all exist). With
--mixture, the declared mixture (configs/corpus_en.cfg) is written when the first source is absent.
"""

from pathlib import Path
from typing import List

import typer

from spacy_elmo.tasks.pretrain_corpus import choose_source, prepare_corpus
from spacy_elmo.tasks.pretrain_mixture import MixtureError, prepare_mixture


def main(
    output: Path = typer.Argument(..., help="Text file to write (one paragraph per line)."),
    sources: List[str] = typer.Argument(..., help="Candidates in order of preference; the first that exists is used. 'a.txt+b.txt' is both files, one after the other."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Directory the source paths are relative to."),
    max_words: int = typer.Option(0, "--max-words", help="Stop after about this many words (0: all)."),
    tokenize: bool = typer.Option(False, "--tokenize", help="Split words with spaCy's English rules (for raw, untokenized text)."),
    shuffle_seed: int = typer.Option(-1, "--shuffle-seed", help="Shuffle the lines of all the files with this seed before --max-words (-1: keep their order). Holds the text in memory."),
    mixture: Path = typer.Option(None, "--mixture", help="Mixture declaration written instead of the fallbacks when the first source is absent (it sets its own seed)."),
) -> None:
    if mixture is not None and not _exists(sources[0], data_dir):
        try:
            meta = prepare_mixture(mixture, output, data_dir=data_dir, max_words=max_words, progress=False)
        except MixtureError as err:
            raise SystemExit(f"error: {err}") from None
        typer.echo(f"{output}: {meta['lines']:,} lines, {meta['words']:,} words of the mixture {mixture} ({meta['source']})")
        return
    meta = prepare_corpus(
        sources, output, max_words=max_words, tokenize=tokenize, data_dir=data_dir,
        shuffle_seed=None if shuffle_seed < 0 else shuffle_seed,
    )
    note = " (FALLBACK: the preferred source is absent)" if meta["fallback_used"] else ""
    typer.echo(f"{output}: {meta['lines']:,} lines, {meta['words']:,} words from {meta['source']}{note}")


def _exists(source: str, data_dir: Path | None) -> bool:
    try:
        choose_source([source], data_dir)
    except FileNotFoundError:
        return False
    return True


if __name__ == "__main__":
    typer.run(main)
