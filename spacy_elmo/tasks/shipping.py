"""Whether a newly trained biLM may replace the shipped default: its held-out (dev) figures against
the shipped model's, never test figures (issue 17).

Compared where both models have the figure:
- perplexity on the same dev file (each model's `meta.json`, `dev_perplexity`; lower is better;
  each over its own vocabulary, so only roughly comparable when the OOV rates differ),
- STS-B dev Spearman and WiC dev accuracy of the equal-weight mix of all layers (the candidate's
  `evaluate-stsb` / `evaluate-wic` metrics, the shipped model's committed report.json).

A figure is "worse" when it moves the wrong way by more than a rounding tolerance; identical
figures (shipping the same model again, e.g. for a new card) are "same".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._io import read_json
from .table import dig, number

TOLERANCE = 1e-6
MIX = "mix"


def _dev_file(meta: dict) -> str | None:
    files = dig(meta, "dev_perplexity", "files") or []
    return ", ".join(Path(f).name for f in files) or None


def dev_figures_of_candidate(meta: dict, stsb: dict | None, wic: dict | None) -> dict[str, Any]:
    """The candidate's figures: its meta.json, and the raw metrics of evaluate-stsb / evaluate-wic."""
    return {
        "perplexity": number(dig(meta, "dev_perplexity", "avg")),
        "perplexity_file": _dev_file(meta),
        "oov_rate": number(dig(meta, "dev_perplexity", "oov_rate")),
        "stsb": number(dig(stsb, "splits", "dev", "spearman", MIX)),
        "wic": number(dig(wic, "layers", MIX, "dev")),
    }


def dev_figures_of_shipped(meta: dict, report: dict | None) -> dict[str, Any]:
    """The shipped model's figures: its meta.json, and the report.json its evaluations made."""
    return {
        "perplexity": number(dig(meta, "dev_perplexity", "avg")),
        "perplexity_file": _dev_file(meta),
        "oov_rate": number(dig(meta, "dev_perplexity", "oov_rate")),
        "stsb": number(dig(report, "stsb", "dev", "spearman", MIX)),
        "wic": number(dig(report, "wic", "accuracy", "dev", MIX)),
    }


FIGURES = (  # key, what it is, True when higher is better
    ("perplexity", "perplexity (mean of fwd/bwd)", False),
    ("stsb", "STS-B dev Spearman (mix of all layers)", True),
    ("wic", "WiC dev accuracy (mix of all layers)", True),
)


def compare(candidate: dict[str, Any], shipped: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: {'key', 'figure', 'shipped', 'candidate', 'verdict'}, verdict one of
    better / same / worse / n/a (a figure one side lacks, or perplexities on different files)."""
    rows = []
    for key, label, higher_is_better in FIGURES:
        old, new = shipped.get(key), candidate.get(key)
        if key == "perplexity":
            label = f"{label} on {candidate.get('perplexity_file') or 'n/a'}"
        if old is None or new is None:
            verdict = "n/a"
        elif key == "perplexity" and candidate.get("perplexity_file") != shipped.get("perplexity_file"):
            verdict = "n/a"  # different held-out text: both numbers shown, not compared
        elif abs(new - old) <= TOLERANCE * max(1.0, abs(old)):
            verdict = "same"
        else:
            verdict = "better" if (new > old) == higher_is_better else "worse"
        rows.append({"key": key, "figure": label, "shipped": old, "candidate": new, "verdict": verdict})
    return rows


def check_accept_worse(names: set[str]) -> None:
    """ValueError naming the figures that --accept-worse may name, when one of `names` is not one."""
    unknown = set(names) - {key for key, _, _ in FIGURES}
    if unknown:
        raise ValueError(f"--accept-worse {', '.join(sorted(unknown))}: not a figure; use {', '.join(k for k, _, _ in FIGURES)}")


def decide(rows: list[dict[str, Any]], accept_worse: set[str]) -> tuple[bool, str]:
    """(may ship, reason): refused when a figure is worse and not explicitly accepted, or when no
    figure could be compared at all."""
    check_accept_worse(accept_worse)
    compared = [r for r in rows if r["verdict"] != "n/a"]
    if not compared:
        return False, "no dev figure could be compared with the shipped model's (give --stsb and --wic, and the same dev file)"
    worse = [r for r in compared if r["verdict"] == "worse" and r["key"] not in accept_worse]
    if worse:
        return False, "worse than the shipped model on dev: " + "; ".join(
            f"{r['figure']} {r['candidate']:.4g} vs {r['shipped']:.4g}" for r in worse
        ) + " (--accept-worse NAME ships anyway, and the card says so)"
    accepted = [r["key"] for r in compared if r["verdict"] == "worse"]
    return True, "accepted worse: " + ", ".join(accepted) if accepted else "not worse on any compared dev figure"


def comparison_table(rows: list[dict[str, Any]], oov: tuple[float | None, float | None] | None = None) -> str:
    """The rows as a Markdown table for the model card."""
    def cell(value: float | None, key: str) -> str:
        if value is None:
            return "n/a"
        return f"{value:.1f}" if key == "perplexity" else f"{100 * value:.2f}"

    lines = ["| dev figure | shipped before | this model | |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['figure']} | {cell(row['shipped'], row['key'])} | {cell(row['candidate'], row['key'])} | {row['verdict']} |")
    if oov and None not in oov:
        lines += ["", f"Out-of-vocabulary rate on the perplexity file: {100 * oov[0]:.1f} % before, "
                      f"{100 * oov[1]:.1f} % now (each model predicts over its own vocabulary)."]
    return "\n".join(lines)


def decision_text(decision: dict[str, Any]) -> str:
    """The model card's section from a recorded decision ({'rows', 'oov', 'reason', 'note'}, as
    kept in the shipped meta.json): the comparison table, the decision and its note."""
    text = comparison_table(decision["rows"], tuple(decision.get("oov") or (None, None))) + f"\n\nDecision: {decision['reason']}."
    return text + (f" {decision['note']}" if decision.get("note") else "")


def load_optional(path: str | Path | None) -> dict | None:
    return read_json(path) if path is not None and Path(path).is_file() else None
