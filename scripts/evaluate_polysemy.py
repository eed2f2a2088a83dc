"""Workflow step: the polysemy check (hand-written sentence pairs, known senses; no training).

    python scripts/evaluate_polysemy.py MODEL_DIR OUTPUT_JSON [--output top --output mix]

MODEL_DIR "default" checks the model shipped with the package. The figure that counts is the
component's default settings; per layer and the extra --output settings are there for insight.
"""

from pathlib import Path
from typing import List

import typer

from spacy_elmo.tasks._io import write_json
from spacy_elmo.tasks.features import set_threads
from spacy_elmo.tasks.polysemy_check import run_polysemy_check


def _line(name: str, summary: dict) -> str:
    fraction = "n/a" if summary["fraction"] is None else f"{100 * summary['fraction']:.1f} %"
    return f"Polysemy {name}: {summary['passed']} of {summary['n_words']} words ({fraction}), {summary['ties']} ties"


def main(
    model: str = typer.Argument(..., help="biLM model directory (options.json + weights.hdf5), or 'default'."),
    output_json: Path = typer.Argument(..., help="Metrics JSON to write."),
    output: List[str] = typer.Option(["top", "mix"], "--output", help="Also measure with this `output` setting (repeatable)."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default)."),
    device: str = typer.Option("auto", "--device", help="The component's device: auto, cpu, cuda, cuda:1, ..."),
) -> None:
    set_threads(threads)
    data = run_polysemy_check(None if model == "default" else model, outputs=output, device=device)
    write_json(output_json, data)
    typer.echo(_line(f"default settings (output={data['settings']['output']})", data["default"]))
    for name, block in {**data["layers"], **data["outputs"]}.items():
        typer.echo(_line(name, block))


if __name__ == "__main__":
    typer.run(main)
