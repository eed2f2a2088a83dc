"""Workflow step: copy a trained biLM into spacy_elmo/default_model/ with its model card.

    python scripts/ship_default_model.py training/bilm --report metrics/report.md \
        --perplexity training/bilm/perplexity_test.json --corpus-meta corpus/pretrain_train.txt.meta.json

Only the biLM ships (options.json + weights.hdf5 + meta.json + MODEL_CARD.md): the softmax and the
vocabulary are needed for training, not for embedding. The weights are re-read and checked by
loading them before the copy replaces the shipped model.

When a model is already shipped, the new one replaces it only if it is not worse on any dev figure
both have (held-out perplexity on the same file, STS-B dev and WiC dev of the mix: --stsb, --wic
and the shipped model's --shipped-report); test figures play no part. --accept-worse NAME ships
anyway; the card's comparison table says which figure was accepted worse.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import List, Optional

import typer

from spacy_elmo.atomic import atomic_path
from spacy_elmo.bilm import load_bilm
from spacy_elmo.bilm.weights import META_NAME, WEIGHTS_NAME, save_model_dir
from spacy_elmo.default_model import DEFAULT_MODEL_DIR
from spacy_elmo.hub.fetch import sha256_of
from spacy_elmo.pretrain.metrics import read_events
from spacy_elmo.tasks import shipping
from spacy_elmo.tasks.pretrain_corpus import describe_corpus


def _same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size and sha256_of(a) == sha256_of(b)


def _fmt(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def model_card(meta: dict, options: dict, n_params: int, report: str, command: str, ship_command: str,
               decision: str = "") -> str:
    lstm, cnn = options["lstm"], options["char_cnn"]
    dev = meta.get("dev_perplexity") or {}
    test = meta.get("test_perplexity") or {}
    lines = [
        "# spacy-elmo default English model",
        "",
        "A small ELMo biLM trained with `spacy-elmo pretrain` on one CPU machine (2 cores); it is what",
        '`nlp.add_pipe("elmo")` and `spacy-elmo embed` use when no model is given.',
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {n_params:,} (biLM; the softmax is not shipped) |",
        f"| ELMo vector | {2 * lstm['projection_dim']} dimensions, {lstm['n_layers'] + 1} layers |",
        f"| LSTM | {lstm['n_layers']} layers, {lstm['dim']} cells, {lstm['projection_dim']} projection, clip {lstm.get('cell_clip')} / {lstm.get('proj_clip')}, residual |",
        f"| char CNN | {sum(n for _, n in cnn['filters'])} filters (widths {', '.join(str(w) for w, _ in cnn['filters'])}), {cnn['n_highway']} highway |",
        f"| corpus | {meta.get('corpus_description') or ' + '.join(meta.get('corpus_files') or meta.get('corpus', [])) or 'n/a'} ({_fmt((meta.get('corpus_stats') or {}).get('tokens'), 0)} tokens as spaCy splits them) |",
        f"| training | {meta.get('steps', 'n/a')} steps ({meta.get('epochs', 'n/a')} epochs), {_fmt(meta.get('words'), 0)} words seen, {_fmt((meta.get('training_seconds') or 0) / 60, 0)} min, vocabulary {meta.get('vocab_size', 'n/a')} (sampled softmax) |",
        f"| optimizer | {optimizer_summary(meta.get('optimizer'))} |",
        f"| tokenizer | {meta.get('tokenizer', 'n/a')} (train with the tokenizer you embed with) |",
        f"| dev perplexity (fwd / bwd / mean, exact) | {_fmt(dev.get('fwd'))} / {_fmt(dev.get('bwd'))} / {_fmt(dev.get('avg'))} on {', '.join(Path(f).name for f in dev.get('files', [])) or 'n/a'} |",
        f"| test perplexity (fwd / bwd / mean, exact) | {_fmt(test.get('fwd_ppl'))} / {_fmt(test.get('bwd_ppl'))} / {_fmt(test.get('ppl'))} on {test.get('source', 'n/a')} |",
        "",
        "## Size and budget",
        "",
        budget_paragraph(meta, n_params),
        "",
    ]
    if decision:
        lines += ["## Why it replaced the model shipped before (dev figures only)", "", decision, ""]
    lines += [
        "## Evaluation",
        "",
    ]
    lines += [report or "See the report table in docs/experiments.md (`spacy project run all` regenerates it).", ""]
    lines += [
        "## Reproduce",
        "",
        "```bash",
        command,
        ship_command,
        "```",
        "",
        "Weights are stored in the AllenNLP / bilm-tf HDF5 layout (float32): AllenNLP's `Elmo` loads",
        "`options.json` + `weights.hdf5` as they are.",
        "",
        f"Limits: trained on {_fmt((meta.get('corpus_stats') or {}).get('tokens', 0) / 1e6)}M tokens for {meta.get('epochs', 'n/a')} epoch(s) on 2 CPU cores, not",
        "the 1B Word Benchmark for ten epochs on GPUs, and 20x smaller than the released \"original\" model;",
        "expect weaker representations than the released AllenNLP models, which load in this package the",
        "same way (`model=` or `options_file` + `weight_file`).",
    ]
    return "\n".join(lines) + "\n"


def optimizer_summary(optimizer: dict | None) -> str:
    """'adam, learning rate 0.002, falling linearly to 10% of it from step 35,000 to 60,214; batches of
    64 x 20 tokens' (the last leg's settings)."""
    if not optimizer:
        return "n/a"
    text = f"{optimizer['name']}, learning rate {optimizer['learning_rate']:g}"
    decay = optimizer.get("lr_decay")
    if decay:
        text += f", falling linearly to {decay['final_fraction']:.0%} of it from step {decay['start']:,} to {decay['end']:,}"
    batch = optimizer.get("batch")
    if batch:
        text += f"; batches of {batch['sequences']} x {batch['unroll_steps']} tokens"
    return text


def budget_paragraph(meta: dict, n_params: int) -> str:
    """Why this size and this many words, from the run's own figures (not typed)."""
    speed = meta.get("training_words_per_s")
    words, tokens = meta.get("words") or 0, (meta.get("corpus_stats") or {}).get("tokens") or 0
    hours = (meta.get("training_seconds") or 0) / 3600
    parts = [
        f"{n_params / 1e6:.1f}M biLM parameters saw {words / 1e6:.1f}M words ({meta.get('epochs', 'n/a')} epochs of "
        f"{tokens / 1e6:.1f}M tokens) in {hours:.1f} hours of training",
    ]
    if speed:
        parts.append(f"at {speed:,.0f} words/s (mean over the run)")
    parts = [" ".join(parts) + "."]
    parts.append(
        f"The rough compute-optimal rule, tokens ~ 20 x parameters, asks {20 * n_params / 1e6:.0f}M tokens for this size: "
        "the size was chosen as the largest whose compute-optimal budget the CPU-hours at hand can come near, "
        "with the LSTM of the released Small ELMo (so 256-d vectors and its task settings carry over)."
    )
    resets = meta.get("optimizer_resets") or []
    if resets:
        parts.append(
            f"It was trained in legs; {len(resets)} leg(s) resumed on another machine from the committed model and "
            f"leg state, restarting the optimizer's moments at step(s) {', '.join(f'{s:,}' for s in resets)} "
            "(everything else continued exactly)."
        )
    return " ".join(parts)


def main(
    run_dir: Path = typer.Argument(..., help="A `spacy-elmo pretrain` output folder (with model/)."),
    report: Optional[Path] = typer.Option(None, "--report", help="report.md from scripts/report.py (copied into the card)."),
    perplexity: Optional[Path] = typer.Option(None, "--perplexity", help="`spacy-elmo evaluate` JSON on held-out text."),
    corpus_meta: Optional[Path] = typer.Option(None, "--corpus-meta", help="The .meta.json that scripts/prepare_corpus.py wrote beside the pretraining text (names its sources)."),
    command: str = typer.Option(
        "python -m spacy project run all .   # the default NER budget: at most 20,000 steps, patience 1,600",
        "--command", help="The command that trained the model (written into the card).",
    ),
    into: Path = typer.Option(DEFAULT_MODEL_DIR, "--into", help="Where to ship it (the package's default model folder)."),
    stsb: Optional[Path] = typer.Option(None, "--stsb", help="The new model's evaluate-stsb metrics (its dev figure is compared)."),
    wic: Optional[Path] = typer.Option(None, "--wic", help="The new model's evaluate-wic metrics (its dev figure is compared)."),
    shipped_report: Path = typer.Option(Path("reports/report.json"), "--shipped-report", help="report.json of the model shipped now (its STS-B and WiC dev figures)."),
    accept_worse: List[str] = typer.Option([], "--accept-worse", help="Ship even though this figure is worse on dev: perplexity, stsb or wic (repeatable)."),
    note: str = typer.Option("", "--note", help="Why a worse figure was accepted (printed in the card after the decision)."),
) -> None:
    try:
        shipping.check_accept_worse(set(accept_worse))  # before anything is read or compared
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    source = run_dir / "model"
    bilm = load_bilm(source)  # fails loudly on a bad model before anything is replaced
    meta = json.loads((source / META_NAME).read_text(encoding="utf-8")) if (source / META_NAME).is_file() else {}
    decision = ""
    shipped_meta = json.loads((into / META_NAME).read_text(encoding="utf-8")) if (into / META_NAME).is_file() else None
    if shipped_meta is not None and shipped_meta.get("ship_decision") and _same_file(into / WEIGHTS_NAME, source / WEIGHTS_NAME):
        # Shipping the same weights again (to refresh the card, e.g. with the report): the comparison
        # that let them in is kept, not replaced by one against themselves.
        meta["ship_decision"] = shipped_meta["ship_decision"]
        decision = shipping.decision_text(meta["ship_decision"])
    elif shipped_meta is not None:  # a model is shipped: the new one must not be worse on dev
        new = shipping.dev_figures_of_candidate(meta, shipping.load_optional(stsb), shipping.load_optional(wic))
        old = shipping.dev_figures_of_shipped(shipped_meta, shipping.load_optional(shipped_report))
        rows = shipping.compare(new, old)
        ok, reason = shipping.decide(rows, set(accept_worse))
        meta["ship_decision"] = {"rows": rows, "oov": [old["oov_rate"], new["oov_rate"]], "reason": reason, "note": note.strip()}
        decision = shipping.decision_text(meta["ship_decision"])
        typer.echo(decision)
        if not ok:
            typer.echo(f"Not shipped: {reason}", err=True)
            raise typer.Exit(1)
    # File names, not this machine's paths.
    meta["corpus"] = [Path(c).name for c in meta.get("corpus", [])]
    if meta.get("dev_perplexity", {}).get("files"):
        meta["dev_perplexity"]["files"] = [Path(f).name for f in meta["dev_perplexity"]["files"]]
    if corpus_meta is not None and corpus_meta.is_file():
        corpus = json.loads(corpus_meta.read_text(encoding="utf-8"))
        meta["corpus_files"] = [Path(f).name for f in corpus.get("files") or [corpus["source"]]]
        meta["corpus_description"] = describe_corpus(corpus)
        if corpus.get("kind") == "mixture":
            meta["corpus_sources"] = {name: {"weight": s["weight"], "words": s["words_written"]}
                                      for name, s in corpus["sources"].items()}
    speeds = [e["words_per_s"] for e in read_events(run_dir / "metrics.jsonl") if e.get("event") == "train"] \
        if (run_dir / "metrics.jsonl").is_file() else []
    if speeds:
        meta["training_words_per_s"] = round(sum(speeds) / len(speeds), 1)
    if perplexity is not None and perplexity.is_file():
        ppl = json.loads(perplexity.read_text(encoding="utf-8"))
        meta["test_perplexity"] = {k: ppl.get(k) for k in ("fwd_ppl", "bwd_ppl", "ppl")} | {
            "source": f"{Path(str(ppl.get('data', perplexity))).name} ({ppl.get('sentences', '?')} sentences)"
        }
    report_text = report.read_text(encoding="utf-8").strip() if report and report.is_file() else ""
    if report_text.startswith("# "):  # the report's own title; the card has one
        report_text = report_text.split("\n", 1)[-1].strip()
    ship_command = f"python scripts/ship_default_model.py {run_dir}" + "".join(
        f" --{flag} {path}" for flag, path in (("report", report), ("perplexity", perplexity), ("corpus-meta", corpus_meta),
                                               ("stsb", stsb), ("wic", wic)) if path
    ) + "".join(f" --accept-worse {name}" for name in accept_worse) + (f" --note {shlex.quote(note)}" if note else "")
    n_params = sum(p.numel() for p in bilm.parameters())
    card = model_card(meta, bilm.options.to_dict(), n_params, report_text, command, ship_command, decision)
    save_model_dir(bilm, into, meta)  # export is bit-exact (tests/test_bilm_weights.py)
    with atomic_path(into / "MODEL_CARD.md") as tmp:
        tmp.write_text(card, encoding="utf-8")
    load_bilm(into)
    print(f"Shipped {source} -> {into} ({n_params:,} parameters)")


if __name__ == "__main__":
    typer.run(main)
