"""Training curves as data (JSON lines, one event per line) and as a picture (PNG).

    {"event": "train", "step": 100, "loss": 5.1, "ppl": 164.0, "fwd_ppl": ..., "bwd_ppl": ...,
     "words": 256000, "words_per_s": 1830.2, "epoch": 0, "lr": 0.2, "grad_norm": 3.1, ...}
    {"event": "eval", "step": 100, "split": "dev", "fwd_ppl": ..., "bwd_ppl": ..., "ppl": ...}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_path


def perplexity(nll: float) -> float:
    """exp(nll), without overflowing for a diverged run."""
    return math.exp(min(nll, 700.0))


class MetricsLog:
    """Appends events to a JSON-lines file (flushed per event, so a kill loses nothing logged)."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        else:
            self._truncate_after(resume_step)

    def _truncate_after(self, step: int) -> None:
        """Drop events logged after the checkpoint we resume from: they will be logged again."""
        if not self.path.exists():
            return
        self._write([e for e in read_events(self.path) if e.get("step", 0) <= step])

    def forget(self, event: str, step: int) -> None:
        """Drop the `event` lines logged at `step`, about to be logged again."""
        if not self.path.exists():
            return
        events = read_events(self.path)
        keep = [e for e in events if not (e.get("event") == event and e.get("step") == step)]
        if len(keep) < len(events):
            self._write(keep)

    def _write(self, events: list[dict[str, Any]]) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")

    def log(self, event: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


def read_events(path: str | Path) -> list[dict[str, Any]]:
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return events


def plot_curves(metrics_path: str | Path, png_path: str | Path) -> Path | None:
    """Loss and perplexity against training steps. Returns the PNG path (None without events)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    events = read_events(metrics_path)
    train = [e for e in events if e.get("event") == "train"]
    evals = [e for e in events if e.get("event") == "eval"]
    if not train and not evals:
        return None
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = [e["step"] for e in train]
        ax_loss.plot(steps, [e["loss"] for e in train], label="train loss")
        for key, label in (("fwd_ppl", "train forward"), ("bwd_ppl", "train backward"), ("ppl", "train average")):
            ax_ppl.plot(steps, [e[key] for e in train], label=label, alpha=0.8)
    if evals:
        steps = [e["step"] for e in evals]
        ax_loss.plot(steps, [e["loss"] for e in evals], "o-", label="held-out loss")
        for key, label in (("fwd_ppl", "held-out forward"), ("bwd_ppl", "held-out backward"), ("ppl", "held-out average")):
            ax_ppl.plot(steps, [e[key] for e in evals], "o--", label=label)
    ax_loss.set(xlabel="step", ylabel="loss (nats per word)", title="Loss")
    ax_ppl.set(xlabel="step", ylabel="perplexity", title="Perplexity", yscale="log")
    for ax in (ax_loss, ax_ppl):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    softmax = train[-1].get("softmax") if train else None
    if softmax == "sampled":
        fig.suptitle("train values use the sampled softmax (an estimate); held-out values are exact", fontsize=9)
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return png_path
