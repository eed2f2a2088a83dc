"""Workflow step: CoNLL-2003 files -> spaCy DocBin files.

    python scripts/convert_conll.py INPUT OUTPUT [--n-sents 1] [--limit N]
"""

from pathlib import Path
from typing import Optional

import typer

from spacy_elmo.tasks.ner import conll_to_docbin


def main(
    input_path: Path = typer.Argument(..., help="CoNLL-2003 file (token POS chunk NER)."),
    output: Path = typer.Argument(..., help=".spacy file to write."),
    n_sents: int = typer.Option(1, "--n-sents", min=1, help="Sentences per Doc (within a document)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep only the first N sentences."),
) -> None:
    counts = conll_to_docbin(input_path, output, n_sents=n_sents, limit=limit)
    typer.echo(f"{output}: {counts}")


if __name__ == "__main__":
    typer.run(main)
