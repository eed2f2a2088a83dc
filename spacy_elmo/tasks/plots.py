"""PNG plots of the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mix_weights(mixes: dict[str, dict], output: str | Path) -> Path:
    """Grouped bars: softmax(w) per layer for each learned mix (gamma in the legend)."""
    plt = _pyplot()
    names = sorted(mixes)
    n_layers = max(len(m["weights"]) for m in mixes.values())
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * n_layers, 3.5))
    for k, name in enumerate(names):
        weights = mixes[name]["weights"]
        xs = [j - 0.4 + width * (k + 0.5) for j in range(len(weights))]
        bars = ax.bar(xs, weights, width=width, label=f"{name} (gamma {mixes[name]['gamma']:.2f})")
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.axhline(1.0 / n_layers, color="grey", linestyle=":", linewidth=1, label="equal weights")
    ax.set_xticks(range(n_layers), [f"layer {j}" for j in range(n_layers)])
    ax.set_ylabel("softmax(w)")
    ax.set_title("Learned scalar-mix weights per task")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return Path(output)


def plot_layer_scores(fig_data: dict, output: str | Path) -> Path:
    """Fallback for the mix plot: STS-B Spearman and WiC accuracy per layer (which layer each
    task prefers), with a title that says these are not learned weights."""
    plt = _pyplot()
    n = fig_data["n_layers"]
    variants = [f"layer_{j}" for j in range(n)] + ["mix"]
    series: dict[str, list[float | None]] = {}
    for split, data in fig_data["stsb"].items():
        series[f"STS-B {split} Spearman"] = [data["spearman"].get(v) for v in variants]
    for split, data in fig_data["wic"]["accuracy"].items():
        if split != "train":
            series[f"WiC {split} accuracy"] = [data.get(v) for v in variants]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in sorted(series.items()):
        xs = [j for j, v in enumerate(values) if v is not None]
        ax.plot(xs, [values[j] for j in xs], marker="o", label=name)
    ax.set_xticks(range(len(variants)), [v.replace("_", " ") for v in variants])
    ax.set_title("No learned mix available: score per layer instead", fontsize=10)
    if series:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no STS-B / WiC results", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return Path(output)


SENSE_MARKERS = ("o", "^")  # a word's first and second sense, in the order they are listed


def plot_polysemy(projection: dict, output: str | Path) -> Path:
    """One panel per variant; a point per (word, sentence): colour = word, marker = sense.

    No text on the points (a word's sentences can coincide, as in layer 0): the legend names
    each word/sense pair once, and points that fall together are drawn hollow and larger, so the
    one beneath stays visible.
    """
    plt = _pyplot()
    occurrences = projection["occurrences"]
    names = list(projection["variants"])
    words = list(dict.fromkeys(o["word"] for o in occurrences))
    senses = {w: list(dict.fromkeys(o["sense"] for o in occurrences if o["word"] == w)) for w in words}
    colours = {w: plt.get_cmap("tab10")(k % 10) for k, w in enumerate(words)}
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.9), squeeze=False)
    for ax, name in zip(axes[0], names):
        coords = projection["variants"][name]["coords"]
        explained = projection["variants"][name]["explained"]
        drawn: list[tuple[float, float]] = []
        for occ, (x, y) in zip(occurrences, coords):
            marker = SENSE_MARKERS[senses[occ["word"]].index(occ["sense"]) % len(SENSE_MARKERS)]
            span = max(1e-9, float(max(abs(c) for xy in coords for c in xy)))
            stacked = sum(abs(x - u) < 0.02 * span and abs(y - v) < 0.02 * span for u, v in drawn)
            colour = colours[occ["word"]]
            ax.scatter([x], [y], s=45 + 70 * stacked, marker=marker, linewidths=1.4, zorder=3 - stacked,
                       facecolors=colour if stacked == 0 else "none", edgecolors=colour)
            drawn.append((x, y))
        title = "mix of all layers" if name == "mix" else name.replace("_", " ")
        if name == "layer_0":
            title += " (context-free)"
        ax.set_title(f"{title}\nPC1 {explained[0]:.0%}, PC2 {explained[1]:.0%} of variance", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.margins(0.12)
    handles = [
        plt.Line2D([], [], linestyle="none", marker=SENSE_MARKERS[k % len(SENSE_MARKERS)], markersize=7,
                   color=colours[w], label=f"{w}: {sense}")
        for w in words for k, sense in enumerate(senses[w])
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(words), fontsize=8, frameon=False)
    fig.suptitle("Polysemous words in three sentences each (PCA per panel): colour = word, marker = sense", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return Path(output)


def plot_learning_curve(curve: dict, output: str | Path) -> Path:
    """Test F1 against training sentences (log x), one line per arm, error bars = sd over seeds."""
    plt = _pyplot()
    labels = {"baseline": "baseline", "elmo": "+ELMo", "vectors": "+static vectors", "elmo_vectors": "+ELMo +static vectors"}
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for arm, points in sorted(curve["arms"].items()):
        points = sorted((p for p in points if p["f"] is not None and p["train_docs"]), key=lambda p: p["train_docs"])
        if points:
            ax.errorbar(
                [p["train_docs"] for p in points], [100 * p["f"] for p in points],
                yerr=[100 * (p["sd"] or 0.0) for p in points], marker="o", capsize=3, label=labels.get(arm, arm),
            )
    ax.set_xscale("log")
    ax.set_xlabel("training sentences (CoNLL-2003, log scale)")
    ax.set_ylabel("test F1")
    ax.set_title("NER learning curve (error bars: sd over seeds)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return Path(output)
