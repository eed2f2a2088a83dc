"""Workflow step: STS Benchmark Spearman per ELMo layer, the equal mix and, with --train, the layer
weights fitted on the train pairs (no model is trained).

    python scripts/evaluate_stsb.py MODEL_DIR OUTPUT_JSON --train FILE --dev FILE --test FILE [--limit N]
"""

from pathlib import Path
from typing import Optional

import typer

from spacy_elmo.tasks.features import set_threads
from spacy_elmo.tasks.stsb import run_stsb


def main(
    model: Path = typer.Argument(..., help="biLM model directory (options.json + weights.hdf5)."),
    output: Path = typer.Argument(..., help="Metrics JSON to write."),
    train: Optional[Path] = typer.Option(None, "--train", help="sts-train.csv: fit the layer weights of the fitted_mix variant on it."),
    dev: Optional[Path] = typer.Option(None, "--dev", help="sts-dev.csv"),
    test: Optional[Path] = typer.Option(None, "--test", help="sts-test.csv"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N pairs of each split."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default)."),
    device: str = typer.Option("cpu", "--device", help="Torch device of the biLM: cpu, cuda, cuda:1, ..."),
) -> None:
    set_threads(threads)
    splits = {name: path for name, path in (("dev", dev), ("test", test)) if path is not None}
    if not splits:
        raise typer.BadParameter("give --dev and/or --test")
    data = run_stsb(model, splits, output, limit=limit, batch_size=batch_size, device=device, train=train)
    if data["fitted_mix"]:
        fitted = data["fitted_mix"]
        typer.echo(f"STS-B layer weights fitted on train: {fitted['weights']} (train Spearman {fitted['train_spearman']:.4f})")
    for split, result in data["splits"].items():
        typer.echo(f"STS-B {split} Spearman: " + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a" for k, v in result["spearman"].items()))


if __name__ == "__main__":
    typer.run(main)
