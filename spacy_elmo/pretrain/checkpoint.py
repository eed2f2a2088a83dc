"""Checkpoints that survive SIGKILL at any moment.

A checkpoint is one file, `checkpoints/last.pt`, written as: temporary file in the same folder ->
flush -> fsync -> os.replace -> fsync of the folder. A kill before the rename leaves the previous
checkpoint untouched (and a stray temporary file, cleaned up next time); after it, the new one is
complete. It holds only tensors and plain Python values, and is read back with
`torch.load(weights_only=True)`, so loading never runs pickled code.

Everything needed to continue exactly is in it: parameters, optimizer and grad-scaler state, step,
every process's RNG states, corpus position, unconsumed tokens and carried LSTM states.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path, remove_stale_temporaries

FORMAT = "spacy-elmo-pretrain-checkpoint/1"
CHECKPOINT_NAME = "last.pt"
# A leg state: where the run is (step, words, data position, config and corpus fingerprints), as
# plain JSON beside model/. No tensors: not the weights (model/ has them, with the softmax), not the
# optimizer's moments, RNG or carried LSTM states. Small data, not a checkpoint, so it can be
# committed after each leg of a long run and the next leg continues on another machine.
LEG_FORMAT = "spacy-elmo-pretrain-leg/2"
LEG_STATE_NAME = "leg_state.json"


class CheckpointError(ValueError):
    """No checkpoint to resume from, or one that does not fit this run."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    remove_stale_temporaries(path)  # left by a run killed mid-write
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, **state}, tmp)
    except (OSError, RuntimeError) as err:  # a full disk is "RuntimeError: basic_ios::clear" in torch.save
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({type(err).__name__}: {err}). Is the disk full? "
            f"The previous checkpoint is intact: free some space and run again with --resume"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({err.strerror or err})") from None
    except Exception:  # noqa: BLE001 - any unpickling problem means a bad file
        # Not torch's message: several lines advising a load with weights_only=False.
        raise CheckpointError(
            f"{path}: the checkpoint is unreadable or corrupted; restore it, or start over in another output folder"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a spacy-elmo pretraining checkpoint")
    return state


def save_leg_state(state: dict[str, Any], path: str | Path) -> None:
    remove_stale_temporaries(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"format": LEG_FORMAT, **state}, indent=1) + "\n", encoding="utf-8")


def load_leg_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable leg state ({err})") from None
    if not isinstance(state, dict) or state.get("format") != LEG_FORMAT:
        raise CheckpointError(f"{path}: not a spacy-elmo pretraining leg state")
    return state


def get_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate wants tuples all the way down."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
