"""The model architecture, as written in bilm-tf / AllenNLP `options.json` files.

We read and write exactly that JSON so that files move freely between the tools; anything that
does not describe a valid model raises `OptionsError` naming the offending key.

Two optional sections, never written for a bilm-tf model, describe the ELMoForManyLangs models:
`char_cnn.vocabulary` (characters looked up in a vocabulary file instead of UTF-8 bytes) and
`word_embedding` (a word vector concatenated with the char-CNN features before the projection).
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import asdict, dataclass, field
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

# Caps for vocabulary-based models: what a real model needs, with room to spare.
MAX_VOCABULARY_SIZE = 5_000_000
MAX_TOKEN_CHARS = 1000


@dataclass(frozen=True)
class CharVocabularyOptions:
    """Characters come from a vocabulary file (raw ids 0..n_characters-1) instead of UTF-8 bytes.

    A token is [begin_of_word, its characters (unknown when not listed), end_of_word] padded with
    `padding`; sentence markers are [begin_of_word, begin/end_of_sentence, end_of_word].
    """

    file: str = "chars.json"
    unknown: int = 0
    padding: int = 1
    begin_of_word: int = 2
    end_of_word: int = 3
    begin_of_sentence: int = 4
    end_of_sentence: int = 5

    SPECIALS = ("unknown", "padding", "begin_of_word", "end_of_word", "begin_of_sentence", "end_of_sentence")


@dataclass(frozen=True)
class WordEmbeddingOptions:
    """A word-embedding table (raw ids 0..n_words-1, words from `file`) feeding the projection."""

    dim: int
    n_words: int
    file: str = "words.json"
    unknown: int = 0
    padding: int = 1
    begin_of_sentence: int = 2
    end_of_sentence: int = 3

    SPECIALS = ("unknown", "padding", "begin_of_sentence", "end_of_sentence")


@dataclass(frozen=True)
class CharCnnOptions:
    embedding_dim: int = 16
    filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))
    n_highway: int = 2
    activation: str = "relu"
    # 262 = 256 bytes + 5 specials + 1 for batch padding. bilm-tf writes 261 during training.
    n_characters: int = 262
    max_characters_per_token: int = MAX_CHARS_PER_TOKEN
    vocabulary: CharVocabularyOptions | None = None  # None: UTF-8 bytes, as bilm-tf

    @property
    def n_filters(self) -> int:
        return sum(n for _, n in self.filters)

    @property
    def embedding_rows(self) -> int:
        """Rows of the char embedding: row 0 for batch padding, then the shifted raw ids."""
        return 262 if self.vocabulary is None else self.n_characters + 1


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
    word_embedding: WordEmbeddingOptions | None = None

    @property
    def ids_per_token(self) -> int:
        """Width of a token's id row: its character ids, then its word id when there are word vectors."""
        return self.char_cnn.max_characters_per_token + (self.word_embedding is not None)

    @property
    def vocabulary_files(self) -> list[str]:
        """The data files the model directory holds besides options.json and the weights."""
        files = [] if self.char_cnn.vocabulary is None else [self.char_cnn.vocabulary.file]
        return files + ([] if self.word_embedding is None else [self.word_embedding.file])

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
        w = self.word_embedding  # its table, and its rows of the projection
        words = 0 if w is None else w.n_words * w.dim + w.dim * l.projection_dim
        return cnn + highway + proj + lstm + words

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
        data: dict[str, Any] = {
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
        if c.vocabulary is not None:
            data["char_cnn"]["vocabulary"] = asdict(c.vocabulary)
        if self.word_embedding is not None:
            data["word_embedding"] = asdict(self.word_embedding)
        return data

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
        def vocabulary_file(section: dict, where: str, default: str) -> str:
            name = get(section, "file", str, where, default)
            # A plain file name inside the model directory: a stranger's options.json names no paths.
            if not name or name.startswith(".") or "/" in name or "\\" in name or name in (
                "options.json", "weights.hdf5", "meta.json"
            ):
                raise fail(f"'{where}.file' must be a plain file name in the model directory, got {name!r}")
            return name

        def special_ids(section: dict, where: str, names: tuple[str, ...], size: int) -> dict[str, int]:
            ids = {}
            for name in names:
                value = get(section, name, int, where)
                if not 0 <= value < size:
                    raise fail(f"'{where}.{name}' = {value} is outside the vocabulary's ids 0..{size - 1}")
                ids[name] = value
            return ids

        raw_vocabulary = get(raw_cnn, "vocabulary", dict, "char_cnn", None)
        max_chars = get(raw_cnn, "max_characters_per_token", int, "char_cnn", MAX_CHARS_PER_TOKEN)
        n_characters = get(raw_cnn, "n_characters", int, "char_cnn", 262)
        vocabulary = None
        if raw_vocabulary is None:
            if max_chars != MAX_CHARS_PER_TOKEN:
                raise fail(f"'char_cnn.max_characters_per_token' must be {MAX_CHARS_PER_TOKEN}, got {max_chars}")
            if n_characters not in (261, 262):
                raise fail(f"'char_cnn.n_characters' must be 261 or 262, got {n_characters}")
        else:
            if not 3 <= max_chars <= MAX_TOKEN_CHARS:
                raise fail(f"'char_cnn.max_characters_per_token' must be 3..{MAX_TOKEN_CHARS}, got {max_chars}")
            if not 1 <= n_characters <= MAX_VOCABULARY_SIZE:
                raise fail(f"'char_cnn.n_characters' must be 1..{MAX_VOCABULARY_SIZE}, got {n_characters}")
            vocabulary = CharVocabularyOptions(
                file=vocabulary_file(raw_vocabulary, "char_cnn.vocabulary", "chars.json"),
                **special_ids(raw_vocabulary, "char_cnn.vocabulary", CharVocabularyOptions.SPECIALS, n_characters),
            )
        if max(w for w, _ in filters) > max_chars:
            raise fail("a convolution is wider than max_characters_per_token")
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
            vocabulary=vocabulary,
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
        word_embedding = None
        raw_words = get(data, "word_embedding", dict, "options", None)
        if raw_words is not None:
            dim = get(raw_words, "dim", int, "word_embedding")
            n_words = get(raw_words, "n_words", int, "word_embedding")
            if dim <= 0 or not 1 <= n_words <= MAX_VOCABULARY_SIZE:
                raise fail(f"'word_embedding' needs dim > 0 and n_words in 1..{MAX_VOCABULARY_SIZE}")
            word_embedding = WordEmbeddingOptions(
                dim=dim,
                n_words=n_words,
                file=vocabulary_file(raw_words, "word_embedding", "words.json"),
                **special_ids(raw_words, "word_embedding", WordEmbeddingOptions.SPECIALS, n_words),
            )
        if word_embedding is not None and vocabulary is None:
            raise fail("'word_embedding' needs a char vocabulary ('char_cnn.vocabulary')")
        if word_embedding is not None and vocabulary is not None and word_embedding.file == vocabulary.file:
            raise fail("the char and word vocabularies must be different files")
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
        options = cls(char_cnn=char_cnn, lstm=lstm, word_embedding=word_embedding)
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
