"""The report's table: one row per figure, columns side by side, rendered as Markdown.

    rows(collect(inputs)) -> [{'task', 'metric', 'split', 'cells': {column: text}}]

Cells: a number, "n/a" (the figure should be there but its input is missing), or "" (does not
apply, e.g. no layer columns for NER). docs/experiments.md gets the same Markdown between two markers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

NA = "n/a"
README_START = "<!-- report:start -->"
README_END = "<!-- report:end -->"
DEMO_MODEL = "demo"  # the `model` setting of the demo workflow's report
SMOKE_RUN_NOTE = (
    "**A smoke run, not a result.** The demo workflow trains a tiny biLM and both NER models for a "
    "few hundred steps each, to check that every step of the workflow runs. Its figures say nothing "
    "about ELMo (it can land below the baseline); `spacy project run all` makes the real ones."
)


def number(value: Any) -> float | None:
    """A finite int or float as float, else None (missing, text, bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def dig(data: Any, *keys: str) -> Any:
    """data[k1][k2]... or None where a level is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


TASK_KEYS = {"STS-B": "stsb", "WiC": "wic"}


def split_order(split: str) -> tuple[int, str]:
    """Sort key: train, dev, test, then any other split by name."""
    return ({"train": 0, "dev": 1, "validation": 1, "test": 2}.get(split, 3), split)


def columns(n_layers: int) -> list[str]:
    """Baseline and +ELMo side by side, then one column per ELMo layer."""
    return ["Baseline", "+ELMo (mix)"] + [f"ELMo layer {j}" for j in range(n_layers)]


def _cell(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return NA if value is None else f"{value * scale:.{digits}f}"


def polysemy_cell(counts: dict | None) -> str:
    """'X of N (P %)': words whose same-sense cosine beats the different-sense one."""
    passed, total = dig(counts, "passed"), dig(counts, "n_words")
    if passed is None or not total:
        return NA
    return f"{passed:.0f} of {total:.0f} ({100 * passed / total:.1f} %)"


def rows(fig: dict) -> list[dict]:
    """Table rows: {'task', 'metric', 'split', 'cells': {column: str}} (missing columns = '')."""
    n = fig["n_layers"]
    out: list[dict] = []

    def add(task: str, metric: str, split: str, **cells: str) -> None:
        named = {"baseline": "Baseline", "elmo": "+ELMo (mix)"}
        row = {named.get(k, k): v for k, v in cells.items()}
        out.append({"task": task, "metric": metric, "split": split, "cells": row})

    def layer_cells(values: dict[str, float | None], scale: float) -> dict[str, str]:
        cells = {f"ELMo layer {j}": _cell(values.get(f"layer_{j}"), scale) for j in range(n)}
        cells["Baseline"] = _cell(values.get("layer_0"), scale)  # layer 0 = the context-free char encoder
        cells["+ELMo (mix)"] = _cell(values.get("mix"), scale)
        return cells

    def fitted_rows(task: str, metric: str, by_split: dict[str, dict], scale: float) -> None:
        """Baseline (layer 0) against the mix with the layer weights fitted on the task's train split."""
        weights = dig(fig, "fitted_mix", TASK_KEYS[task])
        if not weights:
            return
        shown = " / ".join(f"{w:.2f}" for w in weights)
        for split in sorted(by_split, key=split_order):
            values = by_split[split]
            if "fitted_mix" in values:
                add(task, f"{metric}, layer weights fitted on train ({shown})", split,
                    baseline=_cell(values.get("layer_0"), scale), elmo=_cell(values.get("fitted_mix"), scale))

    ppl = fig["perplexity"]
    add("biLM", "perplexity (mean of fwd/bwd)", "held-out", elmo=_cell(ppl["perplexity"], digits=1))
    if ppl["forward"] is not None or ppl["backward"] is not None:
        add("biLM", "perplexity forward / backward", "held-out",
            elmo=f"{_cell(ppl['forward'], digits=1)} / {_cell(ppl['backward'], digits=1)}")

    task_ppl = fig.get("task_perplexity") or {}
    for which, what in (("general", "general biLM"), ("finetuned", "biLM fine-tuned on the train text")):
        figures = task_ppl.get(which) or {}
        add("biLM", f"perplexity on NER text, {what}", "CoNLL dev", elmo=_cell(figures.get("perplexity"), digits=1))

    base, elmo = fig["ner"]["baseline"], fig["ner"]["elmo"]
    labels = sorted(set(base["per_type"]) | set(elmo["per_type"]))
    for metric in ("f", "p", "r"):
        add("NER (CoNLL-2003)", {"f": "F1", "p": "precision", "r": "recall"}[metric] + " overall", "test",
            baseline=_cell(base["overall"][metric], 100), elmo=_cell(elmo["overall"][metric], 100))
    if not labels:
        add("NER (CoNLL-2003)", "F1 per entity type", "test", baseline=NA, elmo=NA)
    for label in labels:
        add("NER (CoNLL-2003)", f"F1 {label}", "test",
            baseline=_cell(dig(base, "per_type", label, "f"), 100), elmo=_cell(dig(elmo, "per_type", label, "f"), 100))

    if not fig["stsb"]:
        add("STS-B", "Spearman x100", "dev, test", **layer_cells({}, 100))
    for split in sorted(fig["stsb"], key=split_order):
        add("STS-B", "Spearman x100", split, **layer_cells(fig["stsb"][split]["spearman"], 100))
    fitted_rows("STS-B", "Spearman x100", {split: d["spearman"] for split, d in fig["stsb"].items()}, 100)

    accuracy = fig["wic"]["accuracy"]
    if not accuracy:
        add("WiC", "accuracy %", "dev, test", **layer_cells({}, 100))
    for split in sorted(accuracy, key=split_order):
        name = "train (threshold fit)" if split == "train" else split
        add("WiC", "accuracy %", name, **layer_cells(accuracy[split], 100))
    fitted_rows("WiC", "accuracy %", {s: v for s, v in accuracy.items() if s != "train"}, 100)

    polysemy = fig.get("polysemy_check") or {}
    output = polysemy.get("output")
    poly_cells = {f"ELMo layer {j}": polysemy_cell(dig(polysemy, "layers", f"layer_{j}")) for j in range(n)}
    add("Polysemy check", "same-sense > different-sense" + (f" (output={output})" if output else ""), "hand-written words",
        baseline=poly_cells.get("ELMo layer 0", NA), elmo=polysemy_cell(polysemy.get("default")), **poly_cells)
    if "evidence" in fig:
        from .evidence import evidence_rows

        out += evidence_rows(fig["evidence"])

    wps = fig["words_per_second"]
    add("Speed", "words/s, biLM pretraining", "train", elmo=_cell(wps["pretraining"], digits=0))
    add("Speed", "words/s, biLM inference (STS-B)", "dev, test", elmo=_cell(wps["bilm_stsb"], digits=0))
    add("Speed", "words/s, NER pipeline (spacy evaluate)", "test",
        baseline=_cell(wps["ner_baseline"], digits=0), elmo=_cell(wps["ner_elmo"], digits=0))
    return out


def render_markdown(fig: dict, table: list[dict], plots: dict[str, str]) -> str:
    cols = columns(fig["n_layers"])
    lines = ["# spacy-elmo: results", ""]
    if str(fig["settings"].get("model")) == DEMO_MODEL:
        lines += [SMOKE_RUN_NOTE, ""]
    if fig["settings"]:
        lines += [", ".join(f"**{k}**: {v}" for k, v in fig["settings"].items()), ""]
    lines += ["| Task | Metric | Split | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for row in table:
        cells = [row["cells"].get(c, "") for c in cols]
        lines.append(f"| {row['task']} | {row['metric']} | {row['split']} | " + " | ".join(cells) + " |")
    legend = (
        "Baseline: NER without ELMo (same config, budget and seed); for STS-B and WiC the character "
        "encoder's layer 0 (context-free, so identical to the layer 0 column). +ELMo (mix): NER with "
        "ELMo's learned scalar mix over the frozen biLM (in the project workflow, the copy fine-tuned on the NER "
        "train words; its perplexity on the dev words is the 'perplexity on NER text' row); for STS-B and WiC (no training) the equal-weight mix of all layers, "
        "and in the rows 'layer weights fitted on train' the mix with ELMo's task-specific layer weights (layer 0 / 1 / 2), "
        "searched on a 0.05 grid to maximise the train figure, then applied unchanged to dev and test. "
        "WiC: threshold on the cosine fitted on train, then applied to dev and test. "
        "Polysemy check: words whose same-sense cosine beats their different-sense cosine (ties fail), with the "
        "component's default output in the +ELMo column (docs/polysemy-check.md). "
        "Rows marked '+ static vectors': the same two configs with spaCy's static-vector input reading floret "
        "vectors trained on the biLM's own pretraining text (Baseline column: baseline + vectors; +ELMo column: "
        "ELMo + vectors). Text classification: a seeded, stratified 80/10/10 split. "
        f"{NA} = the step's output is missing (see report.json `inputs`); empty = does not apply."
    )
    lines += ["", legend, ""]
    machines = (fig.get("evidence") or {}).get("machines") or {}
    if machines:
        made_on = "; ".join(f"{cpu} ({n} run{'s' if n != 1 else ''})" for cpu, n in machines.items())
        lines += [f"The NER and text classification training runs (main pair, seeds, learning curve, static vectors) were made on: "
                  f"{made_on}. Float sums, and so the trajectory of a run, differ between kinds of CPU.", ""]
    missing = [f"{name} ({info['status']})" for name, info in fig["inputs"].items() if info["status"] != "ok"]
    if missing:
        lines += ["Missing inputs: " + "; ".join(missing) + ".", ""]
    for name, note in plots.items():
        lines.append(f"- `{name}`: {note}")
    return "\n".join(lines).rstrip() + "\n"


def update_readme(readme: str | Path, table_markdown: str, markers: tuple[str, str] = (README_START, README_END)) -> bool:
    """Replace the text between the two markers; False (untouched) without them."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = text.find(markers[0]), text.find(markers[1])
    if start < 0 or end < start:
        return False
    body = table_markdown.split("\n", 2)[2] if table_markdown.startswith("# ") else table_markdown
    path.write_text(text[: start + len(markers[0])] + "\n" + body.strip() + "\n" + text[end:], encoding="utf-8")
    return True


# ---- the README's results: the headline rows of a report --------------------------------------

RESULTS_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
HEADLINE_SPLITS = {"test", "held-out", "hand-written words"}
# (task, start of the metric): the figures the issue goals and a reader ask about first.
HEADLINES = (
    ("biLM", "perplexity (mean of fwd/bwd)"),
    ("NER (CoNLL-2003)", "F1 overall"),
    ("NER (CoNLL-2003)", "F1 gain of ELMo"),
    ("NER learning curve", "F1, "),
    ("STS-B", "Spearman x100"),
    ("WiC", "accuracy %"),
    ("Polysemy check", ""),
    ("Sentiment", "accuracy %"),
    ("Topics", "accuracy %"),
    ("Speed", "words/s, NER pipeline"),
)
HEADLINE_COLUMNS = ("Baseline", "+ELMo (mix)")


def headline_rows(table: list[dict]) -> list[dict]:
    """The rows of a report table that the README shows, in HEADLINES order (the table's order
    within one headline)."""
    out = []
    for task, metric in HEADLINES:
        out += [r for r in table if r["task"].startswith(task) and r["metric"].startswith(metric) and r["split"] in HEADLINE_SPLITS]
    return out


def render_headlines(report: dict, source: str) -> str:
    """The README's results block from a report.json: what was measured, then the headline rows
    with the Baseline and +ELMo columns."""
    settings, pretraining = report.get("settings") or {}, report.get("pretraining") or {}
    about = [f"model `{settings['model']}`"] if settings.get("model") else []
    if settings.get("pretraining text"):
        about.append(f"pretraining text: {settings['pretraining text']}")
    if number(pretraining.get("words")) is not None:
        about.append(f"{pretraining['words']:,.0f} words read in pretraining")
    if settings.get("seed") is not None:
        about.append(f"seed {settings['seed']}")
    lines = [f"From [{source}]({source}) ({'; '.join(about)}):" if about else f"From [{source}]({source}):", ""]
    lines += ["| Task | Metric | Split | " + " | ".join(HEADLINE_COLUMNS) + " |", "|---|---|---|---|---|"]
    for row in headline_rows(report.get("table") or []):
        cells = [row["cells"].get(c, "") for c in HEADLINE_COLUMNS]
        lines.append(f"| {row['task']} | {row['metric']} | {row['split']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
