"""Workflow step: write down where a run is being made (CPU model name, torch/spaCy/thinc/numpy/blis
versions), for runs that `spacy train` makes outside the training grids (the main NER pair). The
report names the machines of all NER and text classification runs from these records.

    python scripts/record_environment.py training/ner_baseline/environment.json
"""

from pathlib import Path

import typer

from spacy_elmo.tasks._io import write_json
from spacy_elmo.tasks.grid import run_environment


def main(output: Path = typer.Argument(..., help="JSON file to write: {'environment': {'cpu': ..., 'versions': {...}}}.")) -> None:
    environment = run_environment()
    write_json(output, {"environment": environment})
    typer.echo(f"Made on {environment['cpu']}; " + ", ".join(f"{k} {v}" for k, v in environment["versions"].items()))


if __name__ == "__main__":
    typer.run(main)
