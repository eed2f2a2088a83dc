"""Workflow step: the report (Markdown table + JSON + PNG plots) from every metrics file.

    python scripts/report.py OUT_DIR --stsb metrics/stsb.json --wic metrics/wic.json ...

Every input is optional: a missing one shows as n/a in the table, never as an invented figure.
"""

from pathlib import Path
from typing import List, Optional

import typer

from spacy_elmo.tasks._io import read_json
from spacy_elmo.tasks.features import set_threads
from spacy_elmo.tasks.pretrain_corpus import describe_corpus
from spacy_elmo.tasks.report import ReportInputs, make_report
from spacy_elmo.tasks.table import update_readme


def _pairs(values: List[str], what: str) -> dict:
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must be KEY=VALUE, got {value!r}")
        out[key] = rest
    return out


def main(
    out_dir: Path = typer.Argument(..., help="Where report.md, report.json and the PNGs go."),
    perplexity: Optional[Path] = typer.Option(None, "--perplexity", help="`spacy-elmo evaluate` JSON."),
    task_perplexity_general: Optional[Path] = typer.Option(
        None, "--task-perplexity-general", help="`spacy-elmo evaluate` JSON of the general biLM on the NER dev text."
    ),
    task_perplexity_finetuned: Optional[Path] = typer.Option(
        None, "--task-perplexity-finetuned", help="The same for the biLM fine-tuned on the NER train text: its model/meta.json (dev perplexity) or an evaluate JSON."
    ),
    pretrain_log: Optional[Path] = typer.Option(None, "--pretrain-log", help="Pretraining metrics.jsonl."),
    corpus_meta: Optional[Path] = typer.Option(None, "--corpus-meta", help="prepare_corpus meta JSON (which text the biLM saw)."),
    ner_baseline: Optional[Path] = typer.Option(None, "--ner-baseline"),
    ner_elmo: Optional[Path] = typer.Option(None, "--ner-elmo"),
    stsb: Optional[Path] = typer.Option(None, "--stsb"),
    wic: Optional[Path] = typer.Option(None, "--wic"),
    polysemy: Optional[Path] = typer.Option(None, "--polysemy", help="scripts/evaluate_polysemy.py JSON."),
    ner_seeds: Optional[Path] = typer.Option(None, "--ner-seeds", help="scripts/train_grid.py JSON: NER with and without ELMo on more seeds (the main runs are one more)."),
    ner_precision: Optional[Path] = typer.Option(None, "--ner-precision", help="scripts/ner_precision.py JSON: NER F1 with ELMo in each precision."),
    sentiment: Optional[Path] = typer.Option(None, "--sentiment", help="scripts/train_grid.py JSON: movie-review sentiment arms."),
    topics: Optional[Path] = typer.Option(None, "--topics", help="scripts/train_grid.py JSON: BBC News topic arms."),
    sentiment_seeds: Optional[Path] = typer.Option(None, "--sentiment-seeds", help="scripts/train_grid.py JSON: sentiment without and with ELMo on more seeds (the main grid is one more)."),
    topics_seeds: Optional[Path] = typer.Option(None, "--topics-seeds", help="scripts/train_grid.py JSON: topics without and with ELMo on more seeds."),
    ner_curve: Optional[Path] = typer.Option(None, "--ner-curve", help="scripts/train_grid.py JSON: NER on nested train subsets."),
    ner_vectors: Optional[Path] = typer.Option(None, "--ner-vectors", help="scripts/train_grid.py JSON: NER + static vectors arms."),
    ner_vectors_seeds: Optional[Path] = typer.Option(None, "--ner-vectors-seeds", help="scripts/train_grid.py JSON: NER + static vectors on more seeds (against ELMo alone)."),
    model: Optional[Path] = typer.Option(None, "--model", help="biLM model directory (for the polysemy plot)."),
    pipeline: List[str] = typer.Option([], "--pipeline", help="TASK=PIPELINE_DIR of a trained pipeline with a learned mix (repeatable)."),
    setting: List[str] = typer.Option([], "--setting", help="KEY=VALUE shown in the report header (repeatable)."),
    readme: Optional[Path] = typer.Option(None, "--readme", help="Also put the table between the report markers of this Markdown file (the workflow: docs/experiments.md), when no input is missing or made with other settings: a partial report (report-so-far) leaves it as it is."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default)."),
) -> None:
    set_threads(threads)
    settings = _pairs(setting, "--setting")
    if corpus_meta is not None and corpus_meta.is_file():
        settings["pretraining text"] = describe_corpus(read_json(corpus_meta))
    inputs = ReportInputs(
        perplexity=perplexity, task_perplexity_general=task_perplexity_general,
        task_perplexity_finetuned=task_perplexity_finetuned, pretrain_log=pretrain_log, ner_baseline=ner_baseline, ner_elmo=ner_elmo,
        stsb=stsb, wic=wic, polysemy=polysemy, ner_seeds=ner_seeds, ner_precision=ner_precision, sentiment=sentiment, topics=topics,
        sentiment_seeds=sentiment_seeds, topics_seeds=topics_seeds, ner_curve=ner_curve, ner_vectors=ner_vectors, ner_vectors_seeds=ner_vectors_seeds,
        model=model, pipelines=_pairs(pipeline, "--pipeline"), settings=settings,
    )
    data = make_report(inputs, out_dir)
    missing = [k for k, v in data["inputs"].items() if v["status"] != "ok" and not v["status"].startswith("other settings")]
    stale = [k for k, v in data["inputs"].items() if v["status"].startswith("other settings")]
    typer.echo(f"Wrote {out_dir / 'report.md'} and {out_dir / 'report.json'}" + (f"; missing: {', '.join(missing)}" if missing else "")
               + (f"; made with other settings, shown as n/a: {', '.join(stale)}" if stale else ""))
    if readme is None:
        return
    if missing or stale:  # the tracked copy of the table is the whole report's, never a partial one
        typer.echo(f"{readme}: left unchanged (the report is not complete)")
    elif not update_readme(readme, (out_dir / "report.md").read_text(encoding="utf-8")):
        typer.echo(f"{readme}: no report markers, left unchanged")


if __name__ == "__main__":
    typer.run(main)
