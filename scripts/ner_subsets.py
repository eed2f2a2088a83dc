"""Workflow step: nested, seeded subsets of a training DocBin for the learning curve, and their
manifest (subsets.json) for scripts/train_grid.py.

    python scripts/ner_subsets.py corpus/conll_train.spacy corpus/ner_curve --fractions 0.01,0.05,0.25 \
        --seeds 0,1,2 --all-seeds-up-to 0.05

Within a seed the subsets are nested (the 1% set inside the 5% set); fractions above
--all-seeds-up-to are drawn with the first seed only.
"""

from pathlib import Path

import typer

from spacy_elmo.tasks.grid import write_subsets


def numbers(text: str, kind=float) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def main(
    train: Path = typer.Argument(..., help="The full training DocBin (.spacy)."),
    output_dir: Path = typer.Argument(..., help="Folder for the subsets and subsets.json."),
    fractions: str = typer.Option(..., "--fractions", help="Comma-separated fractions of the Docs, e.g. 0.01,0.05,0.25."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds."),
    all_seeds_up_to: float = typer.Option(1.0, "--all-seeds-up-to", help="Fractions above this use the first seed only."),
) -> None:
    if not train.is_file():
        raise typer.BadParameter(f"{train} not found; run the corpus-ner step first")
    try:
        manifest = write_subsets(train, output_dir, numbers(fractions), numbers(seeds, int), all_seeds_up_to)
    except ValueError as err:  # a fraction outside (0, 1], no seed, an empty DocBin
        raise typer.BadParameter(str(err)) from None
    for subset in manifest["subsets"]:
        typer.echo(f"{subset['path']}: {subset['docs']} of {manifest['total_docs']} docs")


if __name__ == "__main__":
    typer.run(main)
