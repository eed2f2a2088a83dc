"""The polysemy figure and its cosines for one model: the PNG, then a Markdown table.

    python scripts/polysemy_figure.py reports/polysemy_pca.png                # the shipped default model
    python scripts/polysemy_figure.py out.png --model training/bilm/model

Each row is one pair of sentences of the same word; the cosine of the word's vectors in the two
sentences, per layer and for the equal-weight mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from spacy_elmo.default_model import default_model_dir
from spacy_elmo.tasks.features import load_embedder
from spacy_elmo.tasks.plots import plot_polysemy
from spacy_elmo.tasks.polysemy import project_polysemy


def main(
    output: Path = typer.Argument(..., help="PNG to write."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model directory (default: the shipped model)."),
) -> None:
    projection = project_polysemy(load_embedder(model or default_model_dir()))
    plot_polysemy(projection, output)
    names = list(projection["variants"])
    print("| word | sentences | senses | same sense | " + " | ".join(n.replace("_", " ") for n in names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for pair in projection["cosines"]:
        cells = " | ".join(f"{pair['cosines'][n]:.3f}" for n in names)
        print(f"| {pair['word']} | {' & '.join(map(str, pair['sentences']))} | {' / '.join(pair['senses'])} | {'yes' if pair['same_sense'] else 'no'} | {cells} |")


if __name__ == "__main__":
    typer.run(main)
