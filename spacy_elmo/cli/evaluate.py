"""`spacy-elmo evaluate`: held-out perplexity of a pretrained biLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..atomic import atomic_path, output_file_problem
from . import app
from ._common import ThreadsOpt, check_device_or_exit, check_output_or_exit, cleanup_on_sigterm, use_threads


@app.command("evaluate", short_help="Held-out perplexity of a pretrained biLM.")
def evaluate_cli(
    model: Path = typer.Argument(..., help="Model directory from `spacy-elmo pretrain` (with vocab.txt and softmax.hdf5)."),
    data: Path = typer.Argument(..., help="Held-out text: a file or a folder (gzip accepted), one sentence or paragraph per line."),
    tokenizer: Optional[str] = typer.Option(
        None, "--tokenizer", help="whitespace | spacy-blank:LANG. Default: the tokenizer the model was trained with (meta.json)."
    ),
    batch_tokens: int = typer.Option(4096, "--batch-tokens", min=8, help="Most tokens per batch, padding included (bounds memory)."),
    max_sentences: int = typer.Option(0, "--max-sentences", min=0, help="Score only the first N sentences (0: all)."),
    max_line_tokens: int = typer.Option(1000, "--max-line-tokens", min=1, help="Longer lines are split into sentences of this many tokens."),
    device: str = typer.Option("cpu", "--device", help="Torch device: cpu, cuda, cuda:1, ..."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the results to this JSON file."),
    threads: int = ThreadsOpt,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Forward, backward and average perplexity on held-out text, with the exact (full) softmax.

    Each line is scored on its own from a zero state, as the `elmo` component uses the model:
    the forward LM predicts w1 ... wn </S>, the backward LM wn ... w1 <S>. Words outside the
    model's vocabulary count as <UNK> (the OOV rate is reported).
    """
    from ..bilm import OptionsError, WeightFileError
    from ..pretrain import CorpusError, VocabError
    from ..pretrain.corpus import CorpusSettings, find_corpus_files
    from ..pretrain.evaluate import evaluate_perplexity
    from ..pretrain.export import load_language_model
    from ..pretrain.tokenizers import TokenizerError, make_tokenizer

    use_threads(threads)
    check_device_or_exit(device)
    if output is not None:  # checked now, not after the whole evaluation
        check_output_or_exit(output_file_problem(output, [model, data]))
    try:
        lm = load_language_model(model, device=device)
        if lm.softmax is None or lm.vocab is None:
            msg.fail(
                f"{model}: no softmax (vocab.txt + softmax.hdf5) in this model directory. Perplexity needs "
                "the language model's softmax, which only models trained with `spacy-elmo pretrain` carry.",
                exits=1,
            )
        name = tokenizer or lm.meta.get("tokenizer") or "whitespace"
        result = evaluate_perplexity(
            lm.bilm, lm.softmax, lm.vocab, find_corpus_files(data), make_tokenizer(name),
            CorpusSettings(tokenizer=name, max_line_tokens=max_line_tokens),
            batch_tokens=batch_tokens, max_sentences=max_sentences, progress=progress,
        )
    except (CorpusError, VocabError, OptionsError, WeightFileError, TokenizerError, ValueError) as err:
        msg.fail(str(err), exits=1)
    msg.table(
        [
            ("forward perplexity", f"{result.fwd_ppl:.2f}"),
            ("backward perplexity", f"{result.bwd_ppl:.2f}"),
            ("average perplexity", f"{result.ppl:.2f}"),
            ("sentences", f"{result.sentences:,}"),
            ("predictions per direction", f"{result.predictions:,}"),
            ("OOV rate (scored as <UNK>)", f"{result.oov_rate:.2%}"),
            ("bad lines", f"{result.stats.bad_lines:,} ({result.stats.binary:,} binary skipped)"),
        ],
        title=f"Perplexity of {model} on {data}",
    )
    if output is not None:
        try:
            with cleanup_on_sigterm(), atomic_path(output) as tmp:
                tmp.write_text(json.dumps({"model": str(model), "data": str(data), **result.to_dict()}, indent=2) + "\n")
        except OSError as err:
            msg.fail(f"{output}: cannot write the results ({err})", exits=1)
        msg.good(f"Wrote {output}")
