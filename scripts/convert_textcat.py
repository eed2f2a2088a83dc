"""Workflow step: a labelled TSV (label <tab> [id <tab>] text) -> a fixed, seeded, stratified
train/dev/test split as spaCy DocBins with exclusive cats, plus split.json (sizes per label).

    python scripts/convert_textcat.py movie_reviews.tsv corpus/sentiment --seed 0 [--limit 200]
"""

from pathlib import Path

import typer

from spacy_elmo.tasks.textcat import split_labelled_tsv


def main(
    input_path: Path = typer.Argument(..., help="Labelled TSV: the label first, the text last."),
    output_dir: Path = typer.Argument(..., help="Folder for train.spacy, dev.spacy, test.spacy and split.json."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (and of --limit's subset)."),
    dev: float = typer.Option(0.1, "--dev", help="Fraction of each label for dev."),
    test: float = typer.Option(0.1, "--test", help="Fraction of each label for test."),
    limit: int = typer.Option(0, "--limit", min=0, help="First a seeded, stratified subset of about N texts (0 = all)."),
) -> None:
    if not input_path.is_file():
        raise typer.BadParameter(f"{input_path} not found; point it at the labelled TSV file (see --vars.data_dir)")
    meta = split_labelled_tsv(input_path, output_dir, seed=seed, dev=dev, test=test, limit=limit)
    typer.echo(f"{output_dir}: " + ", ".join(f"{split} {info['docs']} {info['labels']}" for split, info in meta["splits"].items()))


if __name__ == "__main__":
    typer.run(main)
