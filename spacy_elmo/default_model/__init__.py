"""The English model shipped with the package (options.json + weights.hdf5 + meta.json + MODEL_CARD.md)."""

from __future__ import annotations

from pathlib import Path

from ..bilm.weights import OPTIONS_NAME, WEIGHTS_NAME

DEFAULT_MODEL_DIR = Path(__file__).parent


def default_model_dir() -> Path | None:
    """The shipped model's directory, or None when this install carries no weights."""
    if (DEFAULT_MODEL_DIR / OPTIONS_NAME).is_file() and (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file():
        return DEFAULT_MODEL_DIR
    return None
