"""`spacy-elmo info` and `spacy-elmo convert`: look inside a model, move it between formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..atomic import atomic_path, output_dir_problem, output_file_problem
from ..bilm.weights import META_NAME, OPTIONS_NAME, WEIGHTS_NAME, save_model_dir, save_weights
from . import app
from ._common import (
    ModelOpt, OptionsFileOpt, WeightFileOpt, check_output_or_exit, cleanup_on_sigterm, load_model_or_exit,
)

EXTRA_FILES = ("MODEL_CARD.md", "vocab.txt")  # copied along by `convert --to dir`


@app.command("info")
def info_cli(
    model: Optional[Path] = ModelOpt,
    options_file: Optional[Path] = OptionsFileOpt,
    weight_file: Optional[Path] = WeightFileOpt,
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Show a model's architecture, size and metadata (the default model when none is given)."""
    bilm, files = load_model_or_exit(model, options_file, weight_file)
    meta = files.meta()
    info = {
        "parameters": sum(p.numel() for p in bilm.parameters()),
        "output_dim": bilm.output_dim,
        "n_layers": bilm.n_layers,
        "options": bilm.options.to_dict(),
        "meta": meta,
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return
    msg.divider("ELMo model")
    msg.table(
        [
            ("parameters", f"{info['parameters']:,}"),
            ("vector width", info["output_dim"]),
            ("layers (incl. char encoder)", info["n_layers"]),
            ("LSTM cells / projection", f"{bilm.options.lstm.dim} / {bilm.options.lstm.projection_dim}"),
            ("char filters", bilm.options.char_cnn.n_filters),
            ("highway layers", bilm.options.char_cnn.n_highway),
        ]
    )
    if meta:
        msg.divider("meta.json")
        print(json.dumps(meta, indent=2, sort_keys=True))


@app.command("convert")
def convert_cli(
    output: Path = typer.Argument(..., help="Where to write: a model directory, or with --to allennlp a folder for the pair."),
    model: Optional[Path] = ModelOpt,
    options_file: Optional[Path] = OptionsFileOpt,
    weight_file: Optional[Path] = WeightFileOpt,
    to: str = typer.Option("dir", "--to", help="'dir': a spacy-elmo model directory; 'allennlp': options.json + <name>_weights.hdf5 as AllenNLP names them."),
    name: str = typer.Option("elmo", "--name", help="File name stem for --to allennlp."),
) -> None:
    """Convert between an AllenNLP / bilm-tf pair and a spacy-elmo model directory.

    The weights are read, checked against the options and written again, so a converted model is
    known to load.
    """
    if to not in ("dir", "allennlp"):
        msg.fail(f"--to must be 'dir' or 'allennlp', got {to!r}", exits=1)
    bilm, files = load_model_or_exit(model, options_file, weight_file)
    # Every file about to be written, checked against the inputs before anything is written.
    inputs = [p for p in (files.directory, files.options_file, files.weight_file) if p is not None]
    names = (OPTIONS_NAME, WEIGHTS_NAME, META_NAME, *EXTRA_FILES) if to == "dir" else (
        f"{name}_options.json", f"{name}_weights.hdf5")
    check_output_or_exit(output_dir_problem(output, inputs))
    for file_name in names:
        check_output_or_exit(output_file_problem(output / file_name, inputs))
    try:
        with cleanup_on_sigterm():
            if to == "dir":
                meta = files.meta()
                meta.setdefault("converted_from", str(files.directory or files.weight_file))
                save_model_dir(bilm, output, meta)
                for extra in EXTRA_FILES:
                    if files.directory is not None and (files.directory / extra).is_file():
                        with atomic_path(output / extra) as tmp:
                            shutil.copyfile(files.directory / extra, tmp)
            else:
                output.mkdir(parents=True, exist_ok=True)
                with atomic_path(output / names[0]) as tmp:
                    bilm.options.to_file(tmp)
                save_weights(bilm, output / names[1])
    except OSError as err:
        msg.fail(f"{output}: cannot write the converted model ({err})", exits=1)
    msg.good(f"Wrote model directory {output}" if to == "dir" else f"Wrote {output / names[0]} and {output / names[1]}")
