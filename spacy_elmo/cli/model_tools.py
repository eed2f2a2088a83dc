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

EXTRA_FILES = ("MODEL_CARD.md", "vocab.txt")  # copied along by `convert --to dir` (vocab.txt: pretrain.export.VOCAB_NAME)
MAX_CARD_BYTES = 16 << 20


@app.command("info", short_help="A model's architecture and how it was trained.")
def info_cli(
    model: Optional[Path] = ModelOpt,
    options_file: Optional[Path] = OptionsFileOpt,
    weight_file: Optional[Path] = WeightFileOpt,
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON, the whole meta.json included."),
) -> None:
    """Show a model's architecture, size and a short summary of how it was trained (the default
    model when none is given). --json prints the raw meta.json too."""
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
    summary = training_summary(meta)
    if summary:
        msg.divider("training (meta.json; all of it: --json)")
        msg.table(summary)


def _perplexity(figures: object, *keys: str) -> str | None:
    """'355.7 (fwd 360.9 / bwd 350.5)' from a meta.json perplexity record, None if absent."""
    if not isinstance(figures, dict):
        return None
    mean, fwd, bwd = (figures.get(k) for k in keys)
    if not isinstance(mean, (int, float)):
        return None
    text = f"{mean:.1f}"
    if isinstance(fwd, (int, float)) and isinstance(bwd, (int, float)):
        text += f" (fwd {fwd:.1f} / bwd {bwd:.1f})"
    return text


def training_summary(meta: dict) -> list[tuple[str, str]]:
    """The few meta.json facts a person asks first, each perplexity labelled with its text."""
    rows: list[tuple[str, str]] = []
    if not isinstance(meta, dict):
        return rows
    if meta.get("name"):
        rows.append(("name", str(meta["name"])))
    corpus = meta.get("corpus_files") or meta.get("corpus")
    if isinstance(corpus, list) and corpus:
        rows.append(("trained on", ", ".join(map(str, corpus))))
    elif isinstance(corpus, str) and corpus:  # a published model's (the catalog's description)
        rows.append(("trained on", corpus))
    seen = [f"{meta[k]:,} {k}" for k in ("words", "steps") if isinstance(meta.get(k), int)]
    if isinstance(meta.get("epochs"), (int, float)):
        seen.append(f"{meta['epochs']:g} epoch{'' if meta['epochs'] == 1 else 's'}")
    if seen:
        rows.append(("seen in training", ", ".join(seen)))
    test = meta.get("test_perplexity")
    test_text = _perplexity(test, "ppl", "fwd_ppl", "bwd_ppl")
    if test_text:
        source = test.get("source") if isinstance(test, dict) else None
        rows.append(("perplexity, test text", test_text + (f" on {source}" if source else "")))
    dev = meta.get("dev_perplexity")
    dev_text = _perplexity(dev, "avg", "fwd", "bwd")
    if dev_text:
        files = dev.get("files") if isinstance(dev, dict) else None
        where = f" on {', '.join(map(str, files))}" if isinstance(files, list) and files else ""
        rows.append(("perplexity, dev text", f"{dev_text}{where} (watched during training)"))
    for key, label in (("tokenizer", "tokenizer"), ("vocab_size", "softmax vocabulary")):
        if meta.get(key) is not None:
            rows.append((label, f"{meta[key]:,}" if isinstance(meta[key], int) else str(meta[key])))
    return rows


def _token_input(options) -> str:
    """UTF-8 bytes (bilm-tf), or the model's own vocabularies (ELMoForManyLangs)."""
    if options.char_cnn.vocabulary is None:
        return "UTF-8 bytes"
    text = f"{options.char_cnn.n_characters:,} characters"
    if options.word_embedding is not None:
        text += f" + word vectors ({options.word_embedding.n_words:,} x {options.word_embedding.dim})"
    return text


@app.command("convert", short_help="Convert between AllenNLP's files and a model directory.")
def convert_cli(
    output: Path = typer.Argument(..., help="Where to write: a model directory, or with --to allennlp a folder for the pair."),
    model: Optional[Path] = ModelOpt,
    options_file: Optional[Path] = OptionsFileOpt,
    weight_file: Optional[Path] = WeightFileOpt,
    to: str = typer.Option("dir", "--to", help="'dir': a spacy-elmo model directory; 'allennlp': <name>_options.json + <name>_weights.hdf5 (elmo_options.json + elmo_weights.hdf5 by default), as AllenNLP names them."),
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
    if to not in ("dir", "allennlp"):
        msg.fail(f"--to must be 'dir' or 'allennlp', got {to!r}", exits=1)
    if to == "allennlp" and (not name or name in (".", "..") or any(c in name for c in "/\\\0")):
        msg.fail(f"--name must be a plain file name stem (no folders), got {name!r}", exits=1)
    bilm, files = load_model_or_exit(model, options_file, weight_file)
    if to == "allennlp" and bilm.options.vocabulary_files:
        msg.fail(
            f"{files.directory or files.options_file}: this model reads its own vocabularies "
            f"({', '.join(bilm.options.vocabulary_files)}; an ELMoForManyLangs model), which AllenNLP's "
            f"format cannot carry: use --to dir",
            exits=1,
        )
    extras = [] if to != "dir" or files.directory is None else _extra_files_or_exit(files.directory)
    if to == "allennlp" and not bilm.options.lstm.use_skip_connections:
        msg.warn(
            "this model has use_skip_connections = false: AllenNLP always adds each LSTM layer's input "
            "to its output, so it will compute other vectors from this pair (bilm-tf reads the flag)"
        )
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
                for extra in extras:
                    with atomic_path(output / extra.name) as tmp:
                        shutil.copyfile(extra, tmp)
            else:
                output.mkdir(parents=True, exist_ok=True)
                with atomic_path(output / names[0]) as tmp:
                    bilm.options.to_file(tmp)
                save_weights(bilm, output / names[1])
    except OSError as err:
        msg.fail(f"{output}: cannot write the converted model ({err})", exits=1)
    msg.good(f"Wrote model directory {output}" if to == "dir" else f"Wrote {output / names[0]} and {output / names[1]}")


def _extra_files_or_exit(directory: Path) -> list[Path]:
    """The model folder's card and softmax vocabulary, checked before they are copied: a folder
    from someone else may hold links that would copy files from elsewhere on this machine into
    the output (refused), or files that are not what their names say."""
    from ..pretrain.export import VOCAB_NAME, check_vocabulary_file  # here: the CLI imports pretrain only when used

    found = []
    for extra in EXTRA_FILES:
        source = directory / extra
        if source.is_symlink():
            msg.fail(f"{source} is a link; the files of a model folder must be its own (refused)", exits=1)
        if not source.exists():
            continue
        if not source.is_file():
            msg.fail(f"{source} is not a regular file", exits=1)
        try:
            if extra == VOCAB_NAME:
                check_vocabulary_file(source)  # VocabError / WeightFileError: ValueErrors
            elif (size := source.stat().st_size) > MAX_CARD_BYTES:
                msg.fail(f"{source}: {size:,} bytes, above the {MAX_CARD_BYTES >> 20} MiB a model card may have", exits=1)
        except (ValueError, OSError) as err:
            msg.fail(str(err), exits=1)
        found.append(source)
    return found


def _convert_efml_cli(source_format: Optional[str], source: Path, output: Optional[Path]) -> None:
    from ..bilm.efml import EfmlError, convert_efml

    if source_format != "efml" or output is None:
        msg.fail("usage: spacy-elmo convert --from efml MODEL_FOLDER_OR_ZIP OUTPUT_DIR", exits=1)
    check_output_or_exit(output_dir_problem(output, [source]))
    try:
        convert_efml(source, output)
    except (EfmlError, ValueError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Wrote model directory {output}")
