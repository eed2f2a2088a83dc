"""The report's evidence beyond the main NER runs: NER and text classification over more seeds
(the mean gain of ELMo), the trained NER pipeline with its ELMo features in each inference
precision, text classification with and without ELMo, the NER learning curve, and the
static-vector arms (floret vectors from the biLM's own pretraining text). Inputs are the metrics
JSON files of scripts/train_grid.py; a missing file gives n/a cells, never a figure.

    collect_evidence({"ner_seeds": data, "sentiment": data, "sentiment_seeds": data, ...}, fig["ner"])
    evidence_rows(fig["evidence"]) -> rows in the format of table.rows
"""

from __future__ import annotations

from typing import Any

from .table import NA, _cell, number

EVIDENCE_INPUTS = ("ner_seeds", "ner_precision", "sentiment", "topics", "sentiment_seeds", "topics_seeds", "ner_curve",
                   "ner_vectors", "ner_vectors_seeds")  # ReportInputs fields
TEXTCAT = {"sentiment": "Sentiment (movie reviews)", "topics": "Topics (BBC News)"}
TEXTCAT_FIGURES = {"accuracy": "accuracy %", "macro_f": "macro F1 x100"}
WITH_VECTORS = "+ static vectors (floret, same text)"
REDUCED_PRECISIONS = ("bfloat16", "int8")  # scripts/ner_precision.py; float32 is the main row


def _arm_means(data: dict | None) -> dict[str, dict[str, float | None]]:
    """{arm: {figure: mean over the arm's runs}} of a train_grid JSON whose runs all use the whole
    training set (textcat, static vectors)."""
    summary = (data or {}).get("summary") or {}
    return {
        arm: {k: number(v) for k, v in (points[-1].get("mean") or {}).items()}
        for arm, points in summary.items() if points
    }


def learning_curve(curve: dict | None, ner: dict) -> dict:
    """{'total_docs', 'arms': {arm: [{'fraction', 'train_docs', 'n_runs', 'f', 'sd'}]}}: the
    subsets' runs, plus the main NER run of each arm as the 100% point (same config, budget and
    seed) when the curve has none of its own."""
    curve = curve or {}
    total = curve.get("total_docs")
    arms: dict[str, list[dict]] = {}
    for arm, points in (curve.get("summary") or {}).items():
        arms[arm] = [
            {"fraction": p["fraction"], "train_docs": p.get("train_docs"), "n_runs": p.get("n_runs", 1),
             "f": number((p.get("mean") or {}).get("f")), "sd": number((p.get("sd") or {}).get("f"))}
            for p in points
        ]
    for arm in ("baseline", "elmo"):
        full = number(ner.get(arm, {}).get("overall", {}).get("f"))
        if arms and full is not None and not any(p["fraction"] == 1.0 for p in arms.get(arm, [])):
            arms.setdefault(arm, []).append({"fraction": 1.0, "train_docs": total, "n_runs": 1, "f": full, "sd": None})
    return {"total_docs": total, "arms": arms}


def runs_by_seed(grid: dict | None, figure: str, arms: tuple[str, ...] = ("baseline", "elmo")) -> dict[str, dict[int, float]]:
    """{arm: {seed: figure}} of a train_grid JSON's runs on the whole training set."""
    per_arm: dict[str, dict[int, float]] = {arm: {} for arm in arms}
    for run in (grid or {}).get("runs") or []:
        value = number((run.get("scores") or {}).get(figure))
        if run.get("arm") in per_arm and run.get("fraction", 1.0) == 1.0 and value is not None:
            per_arm[run["arm"]].setdefault(int(run["seed"]), value)
    return per_arm


def pair_over_seeds(*sources: dict[str, dict[int, float]]) -> dict:
    """Both arms per seed from {arm: {seed: figure}} sources (an earlier source keeps its seed).
    Returns {'seeds': [...], 'baseline': {seed: x}, 'elmo': {seed: x}, 'gain': {seed: x}, and per
    arm and for the gain 'mean'/'sd' over the seeds where both arms ran} (sd: sample sd, None for one)."""
    from statistics import mean, stdev

    per_arm: dict[str, dict[int, float]] = {"baseline": {}, "elmo": {}}
    for source in sources:
        for arm, values in per_arm.items():
            for seed, value in (source.get(arm) or {}).items():
                values.setdefault(seed, value)
    seeds = sorted(set(per_arm["baseline"]) & set(per_arm["elmo"]))
    out: dict[str, Any] = {"seeds": seeds, **{arm: dict(sorted(v.items())) for arm, v in per_arm.items()}}
    out["gain"] = {s: per_arm["elmo"][s] - per_arm["baseline"][s] for s in seeds}
    for name in ("baseline", "elmo", "gain"):
        values = [out[name][s] for s in seeds]
        out[f"{name}_mean"] = mean(values) if values else None
        out[f"{name}_sd"] = stdev(values) if len(values) > 1 else None
    return out


def ner_over_seeds(grid: dict | None, ner: dict, main_seed: int = 0) -> dict:
    """NER test F1 of both arms per seed: the main pair of runs (train-ner-baseline/-elmo, seed
    `main_seed`) plus the grid's runs on the whole training set with other seeds (pair_over_seeds)."""
    main = {arm: {main_seed: f} for arm in ("baseline", "elmo")
            if (f := number(ner.get(arm, {}).get("overall", {}).get("f"))) is not None}
    return pair_over_seeds(main, runs_by_seed(grid, "f"))


def vectors_against_elmo(vectors: dict | None, vectors_seeds: dict | None, ner_seeds: dict) -> dict:
    """NER test F1 of static vectors alone against ELMo alone, per seed (pair_over_seeds, with the
    vector arm as 'baseline'): the +vectors runs of train-ner-vectors and train-ner-vectors-seeds,
    ELMo's runs from ner_over_seeds output. Answers "is ELMo better than cheap word vectors from
    the same text?" over the seeds both ran."""
    vector_runs = [runs_by_seed(grid, "f", ("vectors",))["vectors"] for grid in (vectors, vectors_seeds)]
    return pair_over_seeds(*({"baseline": runs} for runs in vector_runs), {"elmo": ner_seeds.get("elmo") or {}})


def textcat_over_seeds(main: dict | None, more_seeds: dict | None) -> dict[str, dict]:
    """{figure: pair_over_seeds(...)} for accuracy and macro F1: the baseline and ELMo runs of the
    main grid (train-textcat, one seed), then those of the grid on more seeds (train-textcat-seeds)."""
    return {figure: pair_over_seeds(runs_by_seed(main, figure), runs_by_seed(more_seeds, figure))
            for figure in TEXTCAT_FIGURES}


def collect_evidence(loaded: dict[str, Any], ner: dict, main_seed: int = 0) -> dict:
    """Report data from the loaded metrics files (None where missing) and the main NER figures
    (made with seed `main_seed`)."""
    vectors = _arm_means(loaded.get("ner_vectors"))
    for arm in ("baseline", "elmo"):  # the main runs are the arms without vectors
        vectors[arm] = {k: number(ner.get(arm, {}).get("overall", {}).get(k)) for k in ("f", "p", "r")}
        for label, figures in (ner.get(arm, {}).get("per_type") or {}).items():
            vectors[arm][f"f_{label}"] = number((figures or {}).get("f"))
    ner_seeds = ner_over_seeds(loaded.get("ner_seeds"), ner, main_seed)
    return {
        "ner_seeds": ner_seeds,
        "ner_vectors_against_elmo": vectors_against_elmo(loaded.get("ner_vectors"), loaded.get("ner_vectors_seeds"), ner_seeds),
        "ner_precision": {
            "f1": {k: number(v) for k, v in ((loaded.get("ner_precision") or {}).get("f1") or {}).items()},
            "notes": dict((loaded.get("ner_precision") or {}).get("notes") or {}),
        },
        "textcat": {name: _arm_means(loaded.get(name)) for name in TEXTCAT},
        "textcat_seeds": {name: textcat_over_seeds(loaded.get(name), loaded.get(f"{name}_seeds")) for name in TEXTCAT},
        "ner_vectors": vectors,
        "learning_curve": learning_curve(loaded.get("ner_curve"), ner),
        "machines": run_machines(loaded, ner),
    }


NER_GRIDS = ("ner_seeds", "ner_curve", "ner_vectors", "ner_vectors_seeds")  # trained with the main pair's budget


def _integer(value: Any) -> int | None:
    """An int, or the text of one (a --setting value); None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        return int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        return None


def mismatched_inputs(loaded: dict[str, Any], settings: dict[str, Any]) -> dict[str, str]:
    """{input: why} for the loaded metrics made with other settings than the report's (a file left
    from an earlier run, e.g. read by report-so-far while a rerun with a new budget is under way):
    the main NER pair's (and the precision rows') recorded budget and seed against the
    `ner_max_steps` and `seed` settings,
    the NER grids' budget against `ner_max_steps`, and each text classification seed grid's budget
    against its main grid's. Figures that are not known (older files, settings not given) are not
    compared. The report shows such an input as n/a rather than pair runs of different budgets."""
    out: dict[str, str] = {}
    budget, seed = _integer(settings.get("ner_max_steps")), _integer(settings.get("seed"))
    for name in ("ner_baseline", "ner_elmo", "ner_precision"):  # ner_precision: ner_elmo's pipeline per precision
        made = (loaded.get(name) or {}).get("training") or {}
        for key, setting, wanted in (("max_steps", "ner_max_steps", budget), ("seed", "seed", seed)):
            found = _integer(made.get(key))
            if wanted is not None and found is not None and found != wanted:
                out[name] = f"trained with {key} {found}, the report's {setting} is {wanted}"
    for name in NER_GRIDS:
        found = _integer((loaded.get(name) or {}).get("max_steps"))
        if budget is not None and found is not None and found != budget:
            out[name] = f"trained with max_steps {found}, the report's ner_max_steps is {budget}"
    for name in TEXTCAT:
        main = _integer((loaded.get(name) or {}).get("max_steps"))
        more = _integer((loaded.get(f"{name}_seeds") or {}).get("max_steps"))
        if main is not None and more is not None and main != more:
            out[f"{name}_seeds"] = f"trained with max_steps {more}, the main {name} grid with {main}"
    return out


NOT_RECORDED = "not recorded"


def run_machines(loaded: dict[str, Any], ner: dict | None = None) -> dict[str, int]:
    """{CPU model name: number of training runs made on it} over the train_grid files among `loaded`
    and the main NER pair's arms in `ner` (those with a score), 'not recorded' for runs from before
    their machine was written down; most runs first."""
    environments = [run.get("environment") for data in loaded.values() if isinstance(data, dict)
                    for run in data.get("runs") or []]
    environments += [arm.get("environment") for arm in (ner or {}).values()
                     if (arm.get("overall") or {}).get("f") is not None]
    counts: dict[str, int] = {}
    for environment in environments:
        cpu = (environment or {}).get("cpu") or NOT_RECORDED
        counts[cpu] = counts.get(cpu, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _pm(mean: float | None, sd: float | None) -> str:
    return _cell(mean, 100) + ("" if mean is None or sd is None else f" ± {sd * 100:.2f}")


def _seed_rows(task: str, over_seeds: dict[str, dict], metrics: dict[str, str] = TEXTCAT_FIGURES,
               gain_of: str = "of ELMo") -> list[dict]:
    """Per figure (pair_over_seeds output): both arms' mean ± sd over the seeds where both ran, and
    the first figure's gain (`gain_of`: what gains over what, same seed); one n/a row while there is
    at most one seed (the main rows show that one)."""
    out: list[dict] = []
    first = next(iter(metrics))
    for figure, metric in metrics.items():
        seeds = over_seeds.get(figure) or {}
        n = len(seeds.get("seeds") or [])
        if n <= 1:
            if figure == first:
                out.append({"task": task, "metric": f"{metric}, mean ± sd over seeds", "split": "test",
                            "cells": {"Baseline": NA, "+ELMo (mix)": NA}})
            continue
        over = f"mean ± sd of {n} seeds ({', '.join(map(str, seeds['seeds']))})"
        out.append({"task": task, "metric": f"{metric}, {over}", "split": "test", "cells": {
            "Baseline": _pm(seeds["baseline_mean"], seeds["baseline_sd"]), "+ELMo (mix)": _pm(seeds["elmo_mean"], seeds["elmo_sd"])}})
        if figure == first:
            gain = _pm(seeds["gain_mean"], seeds["gain_sd"])
            out.append({"task": task, "metric": f"{metric.split(' ')[0]} gain {gain_of} (same seed), {over}", "split": "test",
                        "cells": {"Baseline": "", "+ELMo (mix)": gain if gain.startswith("-") else "+" + gain}})
    return out


def evidence_rows(evidence: dict) -> list[dict]:
    """Table rows: Baseline / +ELMo (mix) columns; the static-vector rows put baseline + vectors
    under Baseline and ELMo + vectors under +ELMo (mix)."""
    out: list[dict] = []

    def add(task: str, metric: str, arms: dict, figure: str, plain: str = "baseline", elmo: str = "elmo") -> None:
        cells = {"Baseline": _cell(arms.get(plain, {}).get(figure), 100), "+ELMo (mix)": _cell(arms.get(elmo, {}).get(figure), 100)}
        out.append({"task": task, "metric": metric, "split": "test", "cells": cells})

    out.extend(_seed_rows("NER (CoNLL-2003)", {"f": evidence.get("ner_seeds") or {}}, {"f": "F1 overall"}))
    f1 = (evidence.get("ner_precision") or {}).get("f1") or {}
    for precision in REDUCED_PRECISIONS:
        value, reference = f1.get(precision), f1.get("float32")
        cell = NA if value is None else f"{value:.2f}" + ("" if reference is None else f" ({value - reference:+.2f})")
        out.append({"task": "NER (CoNLL-2003)", "metric": f"F1 overall, the ELMo pipeline run in {precision} (vs float32)",
                    "split": "test", "cells": {"Baseline": "", "+ELMo (mix)": cell}})
    add("NER (CoNLL-2003)", f"F1 overall, {WITH_VECTORS}", evidence["ner_vectors"], "f", "vectors", "elmo_vectors")
    out.extend(_seed_rows("NER (CoNLL-2003)", {"f": evidence.get("ner_vectors_against_elmo") or {}},
                          {"f": "F1 overall, static vectors alone (Baseline column) vs ELMo alone"},
                          gain_of="of ELMo over static vectors"))
    # Per type, where the vector arms ran: which entities the table of word vectors helps most.
    with_vectors = {arm: evidence["ner_vectors"].get(arm) or {} for arm in ("vectors", "elmo_vectors")}
    for figure in sorted({k for figures in with_vectors.values() for k in figures if k.startswith("f_")}):
        add("NER (CoNLL-2003)", f"F1 {figure[2:]}, {WITH_VECTORS}", with_vectors, figure, "vectors", "elmo_vectors")
    for name, title in TEXTCAT.items():
        arms = evidence["textcat"][name]
        for figure, metric in TEXTCAT_FIGURES.items():
            add(title, metric, arms, figure)
            add(title, f"{metric}, {WITH_VECTORS}", arms, figure, "vectors", "elmo_vectors")
        out.extend(_seed_rows(title, (evidence.get("textcat_seeds") or {}).get(name) or {}))

    curve = evidence["learning_curve"]["arms"]
    fractions = sorted({p["fraction"] for points in curve.values() for p in points})
    if not fractions:
        out.append({"task": "NER learning curve", "metric": "F1 per training size", "split": "test",
                    "cells": {"Baseline": NA, "+ELMo (mix)": NA}})
    for fraction in fractions:
        at = {arm: next((p for p in points if p["fraction"] == fraction), None) for arm, points in curve.items()}
        first = next(p for p in at.values() if p is not None)
        size = "" if first["train_docs"] is None else f", {first['train_docs']:,} sentences"
        runs = max(p["n_runs"] for p in at.values() if p is not None)
        seeds = f", mean ± sd of {runs} seeds" if runs > 1 else ""
        cells = {
            column: NA if at.get(arm) is None else _pm(at[arm]["f"], at[arm]["sd"])
            for column, arm in (("Baseline", "baseline"), ("+ELMo (mix)", "elmo"))
        }
        out.append({"task": "NER learning curve", "metric": f"F1, {fraction:.0%} of train{size}{seeds}", "split": "test", "cells": cells})
    return out
