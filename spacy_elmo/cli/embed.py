"""`spacy-elmo embed`: AllenNLP's `elmo` command, same flags, same HDF5 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..atomic import output_file_problem
from ..bilm.embedder import Embedder, embed_file
from ..bilm.precision import PRECISIONS, precision_fallback, with_precision
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE
from . import app
from ._common import (
    DeviceOpt, ModelOpt, OptionsFileOpt, ThreadsOpt, WeightFileOpt, check_device_or_exit, check_output_or_exit,
    cleanup_on_sigterm, load_model_or_exit, use_threads,
)


@app.command("embed", short_help="Contextual vectors for a text file, in AllenNLP's HDF5 layout.")
def embed_cli(
    input_file: Path = typer.Argument(..., help="Text file: one whitespace-tokenized sentence per line."),
    output_file: Path = typer.Argument(..., help="HDF5 file to write (replaced atomically when done)."),
    all_layers: bool = typer.Option(False, "--all", help="Write all layers: (n_layers+1, n_tokens, dim). The default."),
    top: bool = typer.Option(False, "--top", help="Write the top layer only: (n_tokens, dim)."),
    average: bool = typer.Option(False, "--average", help="Write the average of all layers: (n_tokens, dim)."),
    model: Optional[Path] = ModelOpt,
    options_file: Optional[Path] = OptionsFileOpt,
    weight_file: Optional[Path] = WeightFileOpt,
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Most sentences per batch."),
    max_batch_tokens: int = typer.Option(8192, "--max-batch-tokens", min=1, help="Most tokens per batch, padding included: bounds memory. Longer lines are read in windows of this many tokens."),
    use_sentence_keys: bool = typer.Option(False, "--use-sentence-keys", help="Name datasets by the sentence text instead of the line index."),
    forget_sentences: bool = typer.Option(False, "--forget-sentences", help="Do not write the sentence_to_index dataset."),
    device: str = DeviceOpt,
    threads: int = ThreadsOpt,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    precision: str = typer.Option("float32", "--precision", help="float32 (exact), bfloat16 or int8: faster, approximate (docs/inference.md)."),
    token_cache: int = typer.Option(DEFAULT_TOKEN_CACHE, "--token-cache", min=0, help="Keep the layer-0 vectors of this many recently read distinct words, so the character CNN runs on new spellings only (same results). 0 = off."),
) -> None:
    """Embed every line of INPUT_FILE with ELMo and write OUTPUT_FILE in the AllenNLP layout.

    Without --model/--options-file/--weight-file the shipped default English model is used.
    """
    if sum([all_layers, top, average]) > 1:
        msg.fail("Choose at most one of --all, --top, --average", exits=1)
    output_format = "top" if top else "average" if average else "all"
    if not input_file.is_file():
        msg.fail(f"{input_file}: input file not found", exits=1)
    check_output_or_exit(output_file_problem(output_file, [input_file]))
    check_device_or_exit(device)  # before the precision check reads it
    use_threads(threads)
    if precision not in PRECISIONS:
        msg.fail(f"--precision {precision}: use one of {', '.join(PRECISIONS)}", exits=1)
    if (why := precision_fallback(precision, device)) is not None:
        msg.warn(why)
        precision = "float32"
    bilm, _ = load_model_or_exit(model, options_file, weight_file, device)
    bilm = with_precision(bilm, precision, copy=False)
    embedder = Embedder(bilm, batch_size=batch_size, max_batch_tokens=max_batch_tokens, token_cache=token_cache)
    try:
        with cleanup_on_sigterm():  # a killed run leaves no temporary output behind
            n = embed_file(embedder, input_file, output_file, output_format, use_sentence_keys, forget_sentences, progress)
    except (ValueError, OSError) as err:
        msg.fail(f"{output_file}: {err}" if isinstance(err, OSError) else str(err), exits=1)
    msg.good(f"Wrote {n} sentences ({output_format}) to {output_file}")
