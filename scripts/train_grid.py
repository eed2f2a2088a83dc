"""Workflow step: train and evaluate a grid of arms x training sets x seeds, resumably, and write
one metrics JSON (every run's test figures and their mean/sd per arm and training size).

    python scripts/train_grid.py metrics/ner_curve.json --runs training/ner_curve \
        --train corpus/ner_curve/subsets.json --dev corpus/conll_dev.spacy --test corpus/conll_test.spacy \
        --arm baseline=configs/ner_baseline.cfg --arm elmo=configs/ner_elmo.cfg \
        --elmo-model training/bilm_conll/model --max-steps 20000

--arm NAME=CONFIG[+vectors]: +vectors switches on spaCy's static-vector input (every
spacy.MultiHashEmbed.v2 of the config gets include_static_vectors, --vectors is loaded).
--train: a .spacy file (trained once per --seeds) or a subsets.json (each subset with its seed).
A run whose test_scores.json exists is not trained again: rerun the step to continue.
--record DIR keeps each finished run's settings and scores in DIR (small JSON files, meant to be
committed), where a rerun finds them when the training folder is gone (a fresh machine).
--jobs N trains N runs at once on the CPU (spaCy's training is mostly single-threaded), each in its
own process with cores/N threads.
"""

from pathlib import Path
from typing import List, Optional

import typer

from spacy_elmo.tasks._io import write_json
from spacy_elmo.tasks.grid import Arm, run_grid, summarize


def main(
    output: Path = typer.Argument(..., help="Metrics JSON to write."),
    runs: Path = typer.Option(..., "--runs", help="Folder of the runs (RUNS/ARM/f<fraction>_s<seed>/)."),
    train: Path = typer.Option(..., "--train", help="Training .spacy file, or a subsets.json manifest."),
    dev: Path = typer.Option(..., "--dev", help="Dev .spacy file (model selection)."),
    test: Path = typer.Option(..., "--test", help="Test .spacy file (the reported figures)."),
    arm: List[str] = typer.Option(..., "--arm", help="NAME=CONFIG or NAME=CONFIG+vectors (repeatable)."),
    max_steps: int = typer.Option(..., "--max-steps", help="training.max_steps of every run."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated training seeds for a .spacy --train."),
    elmo_model: Optional[Path] = typer.Option(None, "--elmo-model", help="biLM for the configs with paths.elmo_model."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="`spacy init vectors` output for +vectors arms."),
    task: str = typer.Option("", "--task", help="Name recorded in the JSON (e.g. sentiment)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="-1 = CPU."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Runs trained at once on the CPU, each with an equal share of the cores."),
    record: Optional[Path] = typer.Option(None, "--record", help="Folder where finished runs are recorded and found again (RECORD/ARM/RUN/)."),
) -> None:
    for path in (train, dev, test):
        if not (path.is_file() or (path is train and path.is_dir())):  # --train may be a folder of .spacy files
            raise typer.BadParameter(f"{path} not found; run the corpus step that writes it first")
    try:
        arms = [Arm.parse(spec) for spec in arm]
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    for what, values in (("--arm name", [a.name for a in arms]), ("--seeds", seed_list)):
        if len(set(values)) < len(values):
            raise typer.BadParameter(f"{what}: each value once (a run's folder is RUNS/ARM/f<fraction>_s<seed>), got {values}")
    if jobs > 1 and gpu_id >= 0:
        typer.echo(f"--gpu-id {gpu_id}: training one run at a time on the GPU (--jobs {jobs} is for the CPU)")
        jobs = 1
    try:
        data = run_grid(arms, train, seed_list, runs, dev, test, max_steps, elmo_model=elmo_model, vectors=vectors,
                        gpu_id=gpu_id, jobs=jobs, record_dir=record)
    except KeyboardInterrupt:  # Ctrl-C: say what is kept, rather than end without a word
        typer.echo(f"Interrupted: {output} not written. Runs that finished are kept ({runs}/ARM/RUN/test_scores.json"
                   + (f", and in {record}" if record is not None else "") + "); rerun the same command to train the rest.", err=True)
        raise typer.Exit(130) from None
    restored = sum(run["source"] == "record" for run in data["runs"])
    if restored:
        typer.echo(f"{restored} of {len(data['runs'])} run(s) read from the record in {record}")
    data = {"task": task, "train": str(train), "test": str(test), **data, "summary": summarize(data["runs"])}
    write_json(output, data)
    for name, points in data["summary"].items():
        for point in points:
            figures = ", ".join(f"{k} {100 * v:.2f}" for k, v in point["mean"].items())
            typer.echo(f"{task} {name} {point['fraction']:g} ({point['n_runs']} run(s)): {figures}")


if __name__ == "__main__":
    typer.run(main)
