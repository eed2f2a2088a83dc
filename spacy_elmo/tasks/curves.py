"""Training curves from a JSON-lines log (one JSON object per line).

The reader is deliberately schema-light: the x axis is the first of STEP_KEYS that a record
has (else the record's position), every numeric field whose name mentions a loss or a perplexity
is a curve, and records are split into series by their EVENT_KEYS field (e.g. train vs dev).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

STEP_KEYS = ("step", "global_step", "steps", "update", "batch", "iteration")
EVENT_KEYS = ("split", "event", "phase", "kind", "type")
CURVE_WORDS = ("loss", "perplexity", "ppl")


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSON-lines file; blank lines and (with a count) unparsable lines are skipped,
    since a log cut short by a killed run must still plot."""
    records = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def curves(records: list[dict]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{metric: {series: (xs, ys)}} for every loss/perplexity field found."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(dict)
    for position, record in enumerate(records):
        x = next((record[k] for k in STEP_KEYS if _is_number(record.get(k))), position)
        series = next((str(record[k]) for k in EVENT_KEYS if isinstance(record.get(k), str)), "train")
        for key, value in record.items():
            if _is_number(value) and any(w in key.lower() for w in CURVE_WORDS):
                xs, ys = out[key].setdefault(series, ([], []))
                xs.append(float(x))
                ys.append(float(value))
    return dict(out)


def plot_curves(data: dict[str, dict[str, tuple[list[float], list[float]]]], output: str | Path, title: str) -> Path:
    """One panel per metric, one line per series. Perplexities on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Losses first, then perplexities; one colour per series in every panel.
    metrics = sorted(data, key=lambda m: ("loss" not in m.lower(), m))
    all_series = sorted({s for m in data.values() for s in m}, key=lambda s: (s != "train", s))
    colour = {s: f"C{k}" for k, s in enumerate(all_series)}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for series, (xs, ys) in sorted(data[metric].items(), key=lambda kv: all_series.index(kv[0])):
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=series, color=colour[series])
        if "perplexity" in metric.lower() or "ppl" in metric.lower():
            ax.set_yscale("log")
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return Path(output)
