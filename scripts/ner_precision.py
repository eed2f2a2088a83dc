"""NER F1 of one trained pipeline with its ELMo features computed in each inference precision.

    python scripts/ner_precision.py training/ner_elmo/model-best corpus/conll_test.spacy \
        --output metrics/ner_precision.json

The same trained weights every time; only the `elmo` component's `precision` changes (a config
override at load). Prints F1 per precision and its change against float32; the issue's bound is a
drop of at most 0.2 F1. Without the pipeline or the data (e.g. before `train-ner-elmo` and
`corpus-ner` ran) every row reads n/a and the JSON records why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from spacy_elmo.bilm.precision import PRECISIONS, precision_fallback
from spacy_elmo.tasks.ner import training_settings

MAX_DROP = 0.2  # F1 points


def evaluate(pipeline: Path, data: Path, precision: str) -> float:
    """Entity F1 (0-100) of `pipeline` on `data` (a .spacy DocBin) with ELMo in `precision`."""
    import spacy
    from spacy.training import Corpus

    nlp = spacy.load(pipeline, config={"components": {"elmo": {"precision": precision}}})
    examples = list(Corpus(str(data))(nlp))
    return 100 * float(nlp.evaluate(examples)["ents_f"])


def main(
    pipeline: Path = typer.Argument(..., help="A trained pipeline with an `elmo` component and an NER that listens to it."),
    data: Path = typer.Argument(..., help="Labelled .spacy DocBin to evaluate on (e.g. corpus/conll_test.spacy)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the rows to this JSON file."),
) -> None:
    missing = [str(p) for p in (pipeline, data) if not p.exists()]
    rows: dict[str, Optional[float]] = {}
    notes: dict[str, str] = {}
    for precision in PRECISIONS:
        why = "missing: " + ", ".join(missing) if missing else precision_fallback(precision, "cpu")
        if why:
            rows[precision], notes[precision] = None, why
        else:
            rows[precision] = evaluate(pipeline, data, precision)
    reference = rows["float32"]
    typer.echo(f"{'precision':<10}{'NER F1':>8}{'vs float32':>12}")
    for precision, f1 in rows.items():
        change = None if f1 is None or reference is None else f1 - reference
        verdict = "" if change is None or precision == "float32" else ("  ok" if change >= -MAX_DROP else f"  drops > {MAX_DROP}")
        typer.echo(f"{precision:<10}{'n/a' if f1 is None else f'{f1:.2f}':>8}"
                   f"{'n/a' if change is None else f'{change:+.2f}':>12}{verdict}{'  (' + notes[precision] + ')' if precision in notes else ''}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"pipeline": str(pipeline), "data": str(data), "training": training_settings(pipeline), "f1": rows, "notes": notes}, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
