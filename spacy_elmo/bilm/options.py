"""The model architecture, as written in bilm-tf / AllenNLP `options.json` files.

We read and write exactly that JSON so that files move freely between the tools; anything that
does not describe a valid model raises `OptionsError` naming the offending key.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .char_ids import MAX_CHARS_PER_TOKEN


class OptionsError(ValueError):
    """options.json is missing, unreadable or does not describe a valid ELMo model."""


# Size caps, far above every published ELMo (the largest, "Original", has lstm.dim 4096,
# projection_dim 512, 2048 char filters, 2 highway layers: 93.6M parameters). They keep a
# stranger's options.json from making us allocate without bound. Documented in docs/security.md.
MAX_OPTIONS_BYTES = 1 << 20  # an options.json is a few hundred bytes
MAX_LSTM_LAYERS = 16
MAX_LSTM_DIM = 32_768
MAX_PROJECTION_DIM = 8_192
MAX_CHAR_EMBEDDING_DIM = 1_024
MAX_FILTERS = 64  # convolutions
MAX_FILTER_COUNT = 16_384  # output channels, all convolutions together
MAX_HIGHWAY = 16
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32: ten times the Original model


@dataclass(frozen=True)
class CharCnnOptions:
    embedding_dim: int = 16
    filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))
    n_highway: int = 2
    activation: str = "relu"
    # 262 = 256 bytes + 5 specials + 1 for batch padding. bilm-tf writes 261 during training.
    n_characters: int = 262
    max_characters_per_token: int = MAX_CHARS_PER_TOKEN

    @property
    def n_filters(self) -> int:
        return sum(n for _, n in self.filters)


@dataclass(frozen=True)
class LstmOptions:
    n_layers: int = 2
    dim: int = 4096  # cell size
    projection_dim: int = 512
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    use_skip_connections: bool = True


@dataclass(frozen=True)
class ElmoOptions:
    char_cnn: CharCnnOptions = field(default_factory=CharCnnOptions)
    lstm: LstmOptions = field(default_factory=LstmOptions)

    @property
    def output_dim(self) -> int:
        """Width of every ELMo layer: forward and backward projections side by side."""
        return 2 * self.lstm.projection_dim

    @property
    def n_layers(self) -> int:
        """Number of representations per token: the char encoder plus each LSTM layer."""
        return self.lstm.n_layers + 1

    @property
    def n_parameters(self) -> int:
        """Parameters of the biLM these options describe (the weight file's float count)."""
        c, l = self.char_cnn, self.lstm
        cnn = c.n_characters * c.embedding_dim + sum(w * c.embedding_dim * n + n for w, n in c.filters)
        highway = c.n_highway * 2 * (c.n_filters * c.n_filters + c.n_filters)
        proj = c.n_filters * l.projection_dim + l.projection_dim
        # per direction and layer: W_0 (input + projection, 4 cell), B (4 cell), W_P_0 (cell, projection)
        lstm = 2 * l.n_layers * (2 * l.projection_dim * 4 * l.dim + 4 * l.dim + l.dim * l.projection_dim)
        return cnn + highway + proj + lstm

    # ---- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        c, l = self.char_cnn, self.lstm
        lstm: dict[str, Any] = {
            "n_layers": l.n_layers,
            "dim": l.dim,
            "projection_dim": l.projection_dim,
            "use_skip_connections": l.use_skip_connections,
        }
        if l.cell_clip is not None:
            lstm["cell_clip"] = l.cell_clip
        if l.proj_clip is not None:
            lstm["proj_clip"] = l.proj_clip
        return {
            "lstm": lstm,
            "char_cnn": {
                "embedding": {"dim": c.embedding_dim},
                "filters": [list(f) for f in c.filters],
                "n_highway": c.n_highway,
                "n_characters": c.n_characters,
                "max_characters_per_token": c.max_characters_per_token,
                "activation": c.activation,
            },
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "options") -> "ElmoOptions":
        def fail(problem: str) -> OptionsError:
            return OptionsError(f"{source}: {problem}")

        def get(section: dict, key: str, kind: type | tuple, where: str, default: Any = ...) -> Any:
            if key not in section:
                if default is ...:
                    raise fail(f"missing required key '{where}.{key}'")
                return default
            value = section[key]
            if isinstance(value, bool) and kind is not bool:
                raise fail(f"'{where}.{key}' must be a number, got {value!r}")
            if not isinstance(value, kind):
                raise fail(f"'{where}.{key}' has the wrong type: {value!r}")
            return value

        if not isinstance(data, dict):
            raise fail("must be a JSON object with 'lstm' and 'char_cnn' sections")
        for section in ("lstm", "char_cnn"):
            if not isinstance(data.get(section), dict):
                raise fail(f"missing the '{section}' section")
        raw_lstm, raw_cnn = data["lstm"], data["char_cnn"]
        embedding = get(raw_cnn, "embedding", dict, "char_cnn")
        raw_filters = get(raw_cnn, "filters", list, "char_cnn")
        filters = []
        for f in raw_filters:
            if (
                not isinstance(f, (list, tuple))
                or len(f) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in f)
            ):
                raise fail(f"'char_cnn.filters' entries must be [width, n_filters] positive ints, got {f!r}")
            filters.append((int(f[0]), int(f[1])))
        if not filters:
            raise fail("'char_cnn.filters' is empty")
        max_chars = get(raw_cnn, "max_characters_per_token", int, "char_cnn", MAX_CHARS_PER_TOKEN)
        if max_chars != MAX_CHARS_PER_TOKEN:
            raise fail(f"'char_cnn.max_characters_per_token' must be {MAX_CHARS_PER_TOKEN}, got {max_chars}")
        if max(w for w, _ in filters) > max_chars:
            raise fail("a convolution is wider than max_characters_per_token")
        n_characters = get(raw_cnn, "n_characters", int, "char_cnn", 262)
        if n_characters not in (261, 262):
            raise fail(f"'char_cnn.n_characters' must be 261 or 262, got {n_characters}")
        activation = get(raw_cnn, "activation", str, "char_cnn", "relu")
        if activation not in ("relu", "tanh"):
            raise fail(f"'char_cnn.activation' must be 'relu' or 'tanh', got {activation!r}")
        char_cnn = CharCnnOptions(
            embedding_dim=get(embedding, "dim", int, "char_cnn.embedding"),
            filters=tuple(filters),
            n_highway=get(raw_cnn, "n_highway", int, "char_cnn", 0),
            activation=activation,
            n_characters=n_characters,
            max_characters_per_token=max_chars,
        )

        def clip(key: str) -> float | None:
            value = get(raw_lstm, key, (int, float, type(None)), "lstm", None)
            return None if value is None else float(value)

        lstm = LstmOptions(
            n_layers=get(raw_lstm, "n_layers", int, "lstm"),
            dim=get(raw_lstm, "dim", int, "lstm"),
            projection_dim=get(raw_lstm, "projection_dim", int, "lstm"),
            cell_clip=clip("cell_clip"),
            proj_clip=clip("proj_clip"),
            use_skip_connections=get(raw_lstm, "use_skip_connections", bool, "lstm", False),
        )
        for name, value in [
            ("char_cnn.embedding.dim", char_cnn.embedding_dim),
            ("lstm.n_layers", lstm.n_layers),
            ("lstm.dim", lstm.dim),
            ("lstm.projection_dim", lstm.projection_dim),
        ]:
            if value <= 0:
                raise fail(f"'{name}' must be positive, got {value}")
        for name, value in [("lstm.cell_clip", lstm.cell_clip), ("lstm.proj_clip", lstm.proj_clip)]:
            if value is not None and not (math.isfinite(value) and value > 0):
                raise fail(f"'{name}' must be a finite positive number (or absent for no clipping), got {value}")
        if char_cnn.n_highway < 0:
            raise fail("'char_cnn.n_highway' must be >= 0")
        for name, value, cap in [
            ("char_cnn.embedding.dim", char_cnn.embedding_dim, MAX_CHAR_EMBEDDING_DIM),
            ("char_cnn.filters (entries)", len(filters), MAX_FILTERS),
            ("char_cnn.filters (total count)", char_cnn.n_filters, MAX_FILTER_COUNT),
            ("char_cnn.n_highway", char_cnn.n_highway, MAX_HIGHWAY),
            ("lstm.n_layers", lstm.n_layers, MAX_LSTM_LAYERS),
            ("lstm.dim", lstm.dim, MAX_LSTM_DIM),
            ("lstm.projection_dim", lstm.projection_dim, MAX_PROJECTION_DIM),
        ]:
            if value > cap:
                raise fail(f"'{name}' is {value:,}, above the supported maximum {cap:,} (see docs/security.md)")
        options = cls(char_cnn=char_cnn, lstm=lstm)
        if options.n_parameters > MAX_PARAMETERS:
            raise fail(
                f"these sizes make {options.n_parameters:,} parameters, above the supported maximum "
                f"{MAX_PARAMETERS:,} (see docs/security.md)"
            )
        return options

    @classmethod
    def from_file(cls, path: str | Path) -> "ElmoOptions":
        path = Path(path)
        try:
            text = read_small_text(path, MAX_OPTIONS_BYTES)
        except FileNotFoundError:
            raise OptionsError(f"{path}: options file not found") from None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise OptionsError(f"{path}: cannot read options file ({err})") from None
        try:
            data = parse_json(text)
        except ValueError as err:
            raise OptionsError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, source=str(path))

    def to_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def read_small_text(path: Path, max_bytes: int) -> str:
    """A regular file's UTF-8 text, refusing FIFOs, devices and files over `max_bytes`
    (raises OSError / ValueError / UnicodeDecodeError: callers name the file)."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then tells us what we opened.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{info.st_size:,} bytes, more than the {max_bytes:,} allowed")
        return f.read(max_bytes + 1).decode("utf-8")


def parse_json(text: str) -> Any:
    """json.loads, with NaN/Infinity and nesting too deep for Python's parser as ValueError."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(text, parse_constant=no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


# The released AllenNLP model sizes (see docs: Small, Medium, Original).
def small_options() -> ElmoOptions:
    return ElmoOptions(
        char_cnn=CharCnnOptions(n_highway=1),
        lstm=LstmOptions(dim=1024, projection_dim=128),
    )


def medium_options() -> ElmoOptions:
    return ElmoOptions(
        char_cnn=CharCnnOptions(n_highway=1),
        lstm=LstmOptions(dim=2048, projection_dim=256),
    )


def original_options() -> ElmoOptions:
    return ElmoOptions()
