"""Workflow step: floret vectors trained on the biLM's pretraining text (the "same text" static
baseline); `python -m spacy init vectors en OUT.floret DIR --mode floret` then makes them loadable.

    python scripts/static_vectors.py corpus/pretrain_train.txt training/static_vectors/vectors.floret --dim 300
"""

from pathlib import Path

import typer

from spacy_elmo.tasks._io import write_json
from spacy_elmo.tasks.static_vectors import train_floret


def main(
    text: Path = typer.Argument(..., help="The pretraining text (one paragraph per line, space-separated tokens)."),
    output: Path = typer.Argument(..., help=".floret file to write; OUTPUT.json gets the settings."),
    dim: int = typer.Option(300, "--dim", help="Vector width."),
    epochs: int = typer.Option(5, "--epochs", help="Passes over the text."),
    bucket: int = typer.Option(200000, "--bucket", help="Rows of floret's hash table (vectors stored)."),
    min_count: int = typer.Option(5, "--min-count", help="Words seen fewer times get no word entry."),
    threads: int = typer.Option(1, "--threads", help="floret threads (1 = deterministic)."),
) -> None:
    try:
        info = train_floret(text, output, dim=dim, epochs=epochs, bucket=bucket, min_count=min_count, threads=threads)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err)) from None
    write_json(output.with_suffix(".json"), info)
    typer.echo(f"{output}: {info['words_in_vocab']} words, {bucket} x {dim} hash table")


if __name__ == "__main__":
    typer.run(main)
