"""Workflow step: WiC accuracy per ELMo layer (cosine threshold fitted on train).

    python scripts/evaluate_wic.py MODEL_DIR WIC_DIR OUTPUT_JSON [--limit N]
"""

from pathlib import Path
from typing import Optional

import typer

from spacy_elmo.tasks.features import set_threads
from spacy_elmo.tasks.wic import run_wic


def main(
    model: Path = typer.Argument(..., help="biLM model directory (options.json + weights.hdf5)."),
    data_dir: Path = typer.Argument(..., help="Folder with {train,dev,test}.data.txt and .gold.txt."),
    output: Path = typer.Argument(..., help="Metrics JSON to write."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N pairs of each split."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default)."),
    device: str = typer.Option("cpu", "--device", help="Torch device of the biLM: cpu, cuda, cuda:1, ..."),
) -> None:
    set_threads(threads)
    data = run_wic(model, data_dir, output, limit=limit, batch_size=batch_size, device=device)
    if data["fitted_mix"]:
        typer.echo(f"WiC layer weights fitted on train: {data['fitted_mix']['weights']}")
    for variant, row in data["layers"].items():
        cells = ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in row.items())
        typer.echo(f"WiC {variant}: {cells}")


if __name__ == "__main__":
    typer.run(main)
