"""Workflow step: `spacy evaluate` output -> metrics/ner_<name>.json (overall and per-type P/R/F1).

    python scripts/ner_metrics.py SPACY_EVAL_JSON OUTPUT_JSON --name elmo
"""

from pathlib import Path
from typing import Optional

import typer

from spacy_elmo.tasks.ner import write_ner_metrics


def main(
    spacy_eval: Path = typer.Argument(..., help="JSON written by `python -m spacy evaluate ... --output`."),
    output: Path = typer.Argument(..., help="Metrics JSON to write."),
    name: str = typer.Option(..., "--name", help="baseline or elmo"),
    model: Optional[str] = typer.Option(None, "--model", help="The evaluated pipeline (recorded only)."),
    environment: Optional[Path] = typer.Option(
        None, "--environment", help="scripts/record_environment.py's file from the model's training: copied in (the report names the machine)."),
) -> None:
    data = write_ner_metrics(spacy_eval, output, name, model, environment)
    if environment is not None and data["environment"] is None:
        typer.echo(f"No {environment}: the machine that trained {model or name} is not recorded.")

    def pct(value: Optional[float]) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    per_type = ", ".join(f"{label} {pct(scores['f'])}" for label, scores in data["per_type"].items())
    typer.echo(f"NER {name}: F1 {pct(data['overall']['f'])}; per type: {per_type}")


if __name__ == "__main__":
    typer.run(main)
