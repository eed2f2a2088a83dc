"""Workflow step: the pretraining text as the declared mixture of configs/corpus_<lang>.cfg.

    python scripts/prepare_mixture.py DECLARATION OUTPUT [--data-dir DIR] [--max-words N]
"""

from pathlib import Path

import typer

from spacy_elmo.tasks.pretrain_mixture import MixtureError, prepare_mixture


def main(
    declaration: Path = typer.Argument(..., help="Mixture declaration (configs/corpus_en.cfg)."),
    output: Path = typer.Argument(..., help="Text file to write (one paragraph per line); <OUTPUT>.meta.json beside it."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Directory the declaration's file paths are relative to."),
    max_words: int = typer.Option(0, "--max-words", help="Keep only the first lines of the shuffled mixture, about this many words (0: all)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars while reading the sources."),
) -> None:
    try:
        meta = prepare_mixture(declaration, output, data_dir=data_dir, max_words=max_words, progress=progress)
    except MixtureError as err:
        raise SystemExit(f"error: {err}") from None
    for name, stats in meta["sources"].items():
        typer.echo(f"  {name:16s} x{stats['weight']:<4g} read {stats['words_read']:>11,}  duplicates -{stats['duplicate_words']:,}"
                   f"  excluded -{stats['excluded_words']:,}  written {stats['words_written']:>11,} words")
    typer.echo(f"{output}: {meta['lines']:,} lines, {meta['words']:,} words")


if __name__ == "__main__":
    typer.run(main)
