"""The project report: every figure side by side in one Markdown table, the same in JSON, and plots.

Inputs are the metrics files the workflow steps wrote. A missing or unreadable file shows as
"n/a" in the table and `null` in the JSON, with the reason in `inputs`: a figure is never
invented. An empty cell means "does not apply" (e.g. no layer columns for NER).

    make_report(ReportInputs(stsb="metrics/stsb.json", ...), "metrics")
      -> metrics/report.md, metrics/report.json, metrics/*.png
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import read_json, write_json
from .table import columns, dig, number, render_markdown, rows, split_order, update_readme

DEFAULT_LAYERS = 3  # the char encoder + 2 biLSTM layers, unless a metrics file says otherwise


@dataclass
class ReportInputs:
    """Paths of the workflow's outputs; any may be None or missing."""

    perplexity: str | Path | None = None  # `spacy-elmo evaluate` JSON
    # Perplexity on the NER task's dev text: the general biLM (`spacy-elmo evaluate` JSON), and its
    # copy fine-tuned on the task's training text (that run's model/meta.json, or an evaluate JSON)
    task_perplexity_general: str | Path | None = None
    task_perplexity_finetuned: str | Path | None = None
    pretrain_log: str | Path | None = None  # pretraining JSON-lines log
    ner_baseline: str | Path | None = None  # metrics JSON from tasks.ner.write_ner_metrics
    ner_elmo: str | Path | None = None
    stsb: str | Path | None = None  # tasks.stsb.run_stsb output
    wic: str | Path | None = None  # tasks.wic.run_wic output
    polysemy: str | Path | None = None  # tasks.polysemy_check.run_polysemy_check output
    model: str | Path | None = None  # biLM model dir, for the polysemy projection
    # scripts/train_grid.py JSON: NER on more seeds, textcat per data set, the NER learning curve,
    # NER + static vectors
    ner_seeds: str | Path | None = None
    ner_precision: str | Path | None = None  # scripts/ner_precision.py: the NER pipeline per precision
    sentiment: str | Path | None = None
    topics: str | Path | None = None
    sentiment_seeds: str | Path | None = None  # the baseline and ELMo arms on more seeds
    topics_seeds: str | Path | None = None
    ner_curve: str | Path | None = None
    ner_vectors: str | Path | None = None
    ner_vectors_seeds: str | Path | None = None  # the +vectors arm on more seeds (against ELMo alone)
    pipelines: dict[str, str | Path] = field(default_factory=dict)  # task -> trained pipeline (mix weights)
    settings: dict[str, Any] = field(default_factory=dict)  # shown in the header (corpus, sizes, seed)


# ---- reading -------------------------------------------------------------------------------------


def _load(path: str | Path | None) -> tuple[Any, str]:
    """(data, status): status is 'ok' or why there is no data."""
    if path is None:
        return None, "not given"
    path = Path(path)
    if not path.is_file():
        return None, f"missing: {path}"
    try:
        data = read_json(path)
    except (OSError, ValueError) as err:
        return None, f"unreadable: {path} ({err})"
    if not isinstance(data, dict):
        return None, f"unreadable: {path} (not a JSON object)"
    return data, "ok"


def perplexity_figures(data: Any) -> dict[str, float | None]:
    """{'perplexity', 'forward', 'backward', 'tokens'} from the perplexity JSON.

    Accepts the figures at the top level or under 'test'/'metrics', or a pretrained model's
    meta.json (its 'dev_perplexity': the final evaluation on the whole held-out text, which
    `spacy-elmo pretrain` runs anyway); 'perplexity' falls back to the mean of forward and
    backward when only those are given (the bilm-tf convention).
    """
    out: dict[str, float | None] = {"perplexity": None, "forward": None, "backward": None, "tokens": None}
    if not isinstance(data, dict):
        return out
    scopes = [data] + [data[k] for k in ("test", "metrics", "heldout") if isinstance(data.get(k), dict)]
    if isinstance(data.get("dev_perplexity"), dict):  # a model's meta.json: its own 'perplexity' may be a training figure
        scopes = [data["dev_perplexity"]]
    elif "perplexity_source" in data:  # a model's meta.json from a run without held-out text: no held-out figure
        return out
    names = {
        "perplexity": ("ppl", "perplexity", "mean_perplexity", "avg"),
        "forward": ("fwd_ppl", "forward_perplexity", "fwd_perplexity", "fwd"),
        "backward": ("bwd_ppl", "backward_perplexity", "bwd_perplexity", "bwd"),
        "tokens": ("predictions", "tokens", "n_tokens"),
    }
    for field_name, candidates in names.items():
        for scope in scopes:
            value = next((number(scope.get(c)) for c in candidates if number(scope.get(c)) is not None), None)
            if value is not None:
                out[field_name] = value
                break
    if out["perplexity"] is None and out["forward"] is not None and out["backward"] is not None:
        out["perplexity"] = (out["forward"] + out["backward"]) / 2
    return out


def pretraining_figures(log_path: str | Path | None) -> dict[str, float | None]:
    """{'steps', 'words', 'words_per_second'} from the last training record of the pretraining log
    (words / elapsed seconds: the average speed over the whole run)."""
    out: dict[str, float | None] = {"steps": None, "words": None, "words_per_second": None}
    if log_path is None or not Path(log_path).is_file():
        return out
    from .curves import read_jsonl

    train = [r for r in read_jsonl(log_path) if r.get("event", "train") == "train"]
    if not train:
        return out
    last = train[-1]
    out["steps"], out["words"] = number(last.get("step")), number(last.get("words"))
    elapsed = number(last.get("elapsed_s"))
    if out["words"] is not None and elapsed:
        out["words_per_second"] = out["words"] / elapsed
    return out


def polysemy_counts(block: Any) -> dict[str, float | None]:
    """{'passed', 'n_words'} of one polysemy check result (None where missing)."""
    return {k: number(dig(block, k)) for k in ("passed", "n_words")}


def collect(inputs: ReportInputs) -> dict:
    """Everything the report shows, as plain JSON data (None where a figure is missing)."""
    from .evidence import EVIDENCE_INPUTS, collect_evidence, mismatched_inputs

    status: dict[str, str] = {}
    loaded: dict[str, Any] = {}
    for name in ("perplexity", "task_perplexity_general", "task_perplexity_finetuned", "ner_baseline", "ner_elmo", "stsb", "wic",
                 "polysemy", *EVIDENCE_INPUTS):
        loaded[name], status[name] = _load(getattr(inputs, name))
    for name, why in mismatched_inputs(loaded, inputs.settings).items():  # never pair runs of other settings
        loaded[name], status[name] = None, f"other settings: {getattr(inputs, name)} ({why})"
    log = inputs.pretrain_log
    status["pretrain_log"] = "not given" if log is None else "ok" if Path(log).is_file() else f"missing: {log}"

    ner = {}
    for name in ("ner_baseline", "ner_elmo"):
        data = loaded[name] or {}
        ner[name.removeprefix("ner_")] = {
            "overall": {k: number(dig(data, "overall", k)) for k in ("p", "r", "f")},
            "per_type": {
                label: {k: number(dig(scores, k)) for k in ("p", "r", "f")}
                for label, scores in sorted((data.get("per_type") or {}).items())
            },
            "words_per_second": number(data.get("words_per_second")),
            "environment": data.get("environment"),
        }

    def layer_table(data: Any, path: tuple[str, ...]) -> dict[str, float | None]:
        return {k: number(v) for k, v in (dig(data, *path) or {}).items()}

    stsb = loaded["stsb"] or {}
    stsb_fig = {
        split: {"spearman": layer_table(stsb, ("splits", split, "spearman")), "n_pairs": dig(stsb, "splits", split, "n_pairs")}
        for split in (stsb.get("splits") or {})
    }
    wic = loaded["wic"] or {}
    wic_layers = wic.get("layers") or {}
    wic_splits = sorted({k for row in wic_layers.values() for k in row if k != "threshold"}, key=split_order)
    wic_fig = {
        split: {variant: number(row.get(split)) for variant, row in wic_layers.items()} for split in wic_splits
    }
    polysemy = loaded["polysemy"] or {}
    polysemy_fig = {
        "output": dig(polysemy, "settings", "output"),
        "default": polysemy_counts(polysemy.get("default")),
        "layers": {name: polysemy_counts(block) for name, block in (polysemy.get("layers") or {}).items()},
    }
    pretraining = pretraining_figures(inputs.pretrain_log)
    n_layers = next(
        (int(d["n_layers"]) for d in (stsb, wic) if isinstance(d.get("n_layers"), int)), DEFAULT_LAYERS
    )
    return {
        "settings": dict(inputs.settings),
        "inputs": {
            name: {"path": None if getattr(inputs, name) is None else str(getattr(inputs, name)), "status": status[name]}
            for name in status
        },
        "n_layers": n_layers,
        "perplexity": perplexity_figures(loaded["perplexity"]),
        "task_perplexity": {
            "general": perplexity_figures(loaded["task_perplexity_general"]),
            "finetuned": perplexity_figures(loaded["task_perplexity_finetuned"]),
        },
        "pretraining": pretraining,
        "ner": ner,
        "evidence": collect_evidence(
            {name: loaded[name] for name in EVIDENCE_INPUTS}, ner, main_seed=int(inputs.settings.get("seed", 0))
        ),
        "stsb": stsb_fig,
        # ELMo's task-specific layer weights, fitted on each task's train split (None: not run).
        "fitted_mix": {"stsb": dig(stsb, "fitted_mix", "weights"), "wic": dig(wic, "fitted_mix", "weights")},
        "polysemy_check": polysemy_fig,  # not "polysemy": report.json has the PCA projection under that key
        "wic": {
            "accuracy": wic_fig,
            "thresholds": {v: number(row.get("threshold")) for v, row in wic_layers.items()},
            "majority_baseline": {k: number(v) for k, v in (wic.get("majority_baseline") or {}).items()},
        },
        "words_per_second": {
            "pretraining": pretraining["words_per_second"],
            "bilm_stsb": number(stsb.get("words_per_second")),
            "bilm_wic": number(wic.get("words_per_second")),
            "ner_baseline": ner["baseline"]["words_per_second"],
            "ner_elmo": ner["elmo"]["words_per_second"],
        },
    }


# ---- plots ---------------------------------------------------------------------------------------


def make_plots(inputs: ReportInputs, fig: dict, out_dir: Path) -> tuple[dict[str, str], dict]:
    """Write the PNGs that can be made; returns ({file: what it shows or why not}, extra JSON)."""
    from .plots import plot_layer_scores, plot_mix_weights, plot_polysemy

    notes: dict[str, str] = {}
    extra: dict[str, Any] = {}

    # Training curves of the biLM.
    if inputs.pretrain_log is not None and Path(inputs.pretrain_log).is_file():
        from .curves import curves, plot_curves, read_jsonl

        data = curves(read_jsonl(inputs.pretrain_log))
        if data:
            plot_curves(data, out_dir / "training_curves.png", "biLM pretraining")
            notes["training_curves.png"] = f"biLM pretraining curves from {inputs.pretrain_log}"
        else:
            notes["training_curves.png"] = f"not made: no loss/perplexity fields in {inputs.pretrain_log}"
    else:
        notes["training_curves.png"] = f"not made: pretraining log missing ({inputs.pretrain_log})"

    # Learned scalar-mix weights per task, else the layer-wise scores.
    from .mixweights import pipeline_mixes

    mixes: dict[str, dict] = {}
    reasons = []
    for task, path in inputs.pipelines.items():
        found, reason = pipeline_mixes(path)
        if reason:
            reasons.append(f"{task}: {reason}")
        for where, mix in found.items():
            mixes[task if where == task else f"{task}: {where}"] = mix
    extra["scalar_mix"] = {"weights": mixes, "unavailable": reasons}
    if mixes:
        plot_mix_weights(mixes, out_dir / "scalar_mix.png")
        notes["scalar_mix.png"] = "learned scalar-mix weights softmax(w) per task"
    else:
        plot_layer_scores(fig, out_dir / "scalar_mix.png")
        why = "; ".join(reasons) or "no trained pipeline given"
        notes["scalar_mix.png"] = f"layer-wise STS-B/WiC scores instead of learned mix weights ({why})"

    # 2-D projection of polysemous words.
    if inputs.model is not None and Path(inputs.model).is_dir():
        from .features import load_embedder
        from .polysemy import project_polysemy

        projection = project_polysemy(load_embedder(inputs.model))
        plot_polysemy(projection, out_dir / "polysemy_pca.png")
        extra["polysemy"] = projection
        notes["polysemy_pca.png"] = "PCA of contextual vectors of polysemous words: colour = word, marker = sense"
    else:
        notes["polysemy_pca.png"] = f"not made: biLM model directory missing ({inputs.model})"

    from .plots import plot_learning_curve

    if fig["evidence"]["learning_curve"]["arms"]:
        plot_learning_curve(fig["evidence"]["learning_curve"], out_dir / "learning_curve.png")
        notes["learning_curve.png"] = "NER test F1 against training sentences, baseline and +ELMo"
    else:
        notes["learning_curve.png"] = f"not made: no learning-curve runs ({fig['inputs']['ner_curve']['status']})"
    return notes, extra


def make_report(inputs: ReportInputs, out_dir: str | Path, readme: str | Path | None = None, plots: bool = True) -> dict:
    """Write report.md, report.json and the plots into out_dir; returns the JSON data."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = collect(inputs)
    table = rows(fig)
    notes, extra = make_plots(inputs, fig, out_dir) if plots else ({}, {})
    markdown = render_markdown(fig, table, notes)
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    data = {**fig, "columns": columns(fig["n_layers"]), "table": table, "plots": notes, **extra}
    write_json(out_dir / "report.json", data)
    if readme is not None:
        data["readme_updated"] = update_readme(readme, markdown)
    return data
