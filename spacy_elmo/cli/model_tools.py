"""`spacy-elmo info` and `spacy-elmo convert`: look inside a model, move it between formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..bilm.weights import save_model_dir, save_weights
from . import app
from ._common import ModelOpt, OptionsFileOpt, WeightFileOpt, load_model_or_exit


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
            ("token input", _token_input(bilm.options)),
        ]
    )
    if meta:
        msg.divider("meta.json")
        print(json.dumps(meta, indent=2, sort_keys=True))


def _token_input(options) -> str:
    """UTF-8 bytes (bilm-tf), or the model's own vocabularies (ELMoForManyLangs)."""
    if options.char_cnn.vocabulary is None:
        return "UTF-8 bytes"
    text = f"{options.char_cnn.n_characters:,} characters"
    if options.word_embedding is not None:
        text += f" + word vectors ({options.word_embedding.n_words:,} x {options.word_embedding.dim})"
    return text


@app.command("convert")
def convert_cli(
    output: Path = typer.Argument(..., help="Where to write: a model directory, or with --to allennlp a folder for the pair."),
    model: Optional[Path] = ModelOpt,
    options_file: Optional[Path] = OptionsFileOpt,
    weight_file: Optional[Path] = WeightFileOpt,
    to: str = typer.Option("dir", "--to", help="'dir': a spacy-elmo model directory; 'allennlp': options.json + <name>_weights.hdf5 as AllenNLP names them."),
    name: str = typer.Option("elmo", "--name", help="File name stem for --to allennlp."),
    source_format: Optional[str] = typer.Option(None, "--from", help="'efml': read an ELMoForManyLangs model: convert --from efml DIR_OR_ZIP OUT."),
    efml_output: Optional[Path] = typer.Argument(None, help="With --from efml: the model directory to write."),
) -> None:
    """Convert between an AllenNLP / bilm-tf pair and a spacy-elmo model directory.

    The weights are read, checked against the options and written again, so a converted model is
    known to load. `--from efml DIR OUT` converts an ELMoForManyLangs model folder (or its zip).
    """
    if source_format is not None or efml_output is not None:
        _convert_efml_cli(source_format, output, efml_output)
        return
    bilm, files = load_model_or_exit(model, options_file, weight_file)
    if to == "dir":
        meta = files.meta()
        meta.setdefault("converted_from", str(files.directory or files.weight_file))
        save_model_dir(bilm, output, meta)
        for extra in ("MODEL_CARD.md", "vocab.txt"):
            if files.directory is not None and (files.directory / extra).is_file():
                shutil.copyfile(files.directory / extra, output / extra)
        msg.good(f"Wrote model directory {output}")
    elif to == "allennlp":
        output.mkdir(parents=True, exist_ok=True)
        bilm.options.to_file(output / f"{name}_options.json")
        save_weights(bilm, output / f"{name}_weights.hdf5")
        msg.good(f"Wrote {output / (name + '_options.json')} and {output / (name + '_weights.hdf5')}")
    else:
        msg.fail(f"--to must be 'dir' or 'allennlp', got {to!r}", exits=1)


def _convert_efml_cli(source_format: Optional[str], source: Path, output: Optional[Path]) -> None:
    from ..bilm.efml import EfmlError, convert_efml

    if source_format != "efml" or output is None:
        msg.fail("usage: spacy-elmo convert --from efml MODEL_FOLDER_OR_ZIP OUTPUT_DIR", exits=1)
    try:
        convert_efml(source, output)
    except (EfmlError, ValueError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Wrote model directory {output}")
