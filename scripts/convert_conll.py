"""Workflow step: CoNLL-2003 files -> spaCy DocBin files (and, with --text, their words as plain
text, one line per Doc: what the biLM is fine-tuned on before NER).

    python scripts/convert_conll.py INPUT OUTPUT [--n-sents 1] [--limit N] [--text OUTPUT.txt]

--n-sents 0 makes one Doc (and one text line) per CoNLL-2003 document instead of per sentence.
"""

from pathlib import Path
from typing import Optional

import typer

from spacy_elmo.tasks.ner import conll_to_docbin, conll_to_text


def main(
    input_path: Path = typer.Argument(..., help="CoNLL-2003 file (token POS chunk NER)."),
    output: Path = typer.Argument(..., help=".spacy file to write."),
    n_sents: int = typer.Option(
        1, "--n-sents", min=0, help="Sentences per Doc and per --text line, within a document; 0 = whole documents."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Keep only the first N sentences."),
    text: Optional[Path] = typer.Option(
        None, "--text", help="Also write the same words (no labels), one line per Doc, to this file."
    ),
) -> None:
    counts = conll_to_docbin(input_path, output, n_sents=n_sents, limit=limit)
    typer.echo(f"{output}: {counts}")
    if text is not None:
        typer.echo(f"{text}: {conll_to_text(input_path, text, limit=limit, n_sents=n_sents)}")


if __name__ == "__main__":
    typer.run(main)
