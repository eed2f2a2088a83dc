"""The pretraining config: spaCy's config format (thinc/confection), command-line overrides as in
`spacy train` (`--training.max_steps 100 --paths.train corpus/`).

A config file only needs what differs from `DEFAULT_CONFIG` below (they are merged, file on top);
unknown sections or keys are errors, so a typo never goes unnoticed. `[model]` is written to the
model's options.json as it is (the AllenNLP layout).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from thinc.api import Config

from ..bilm import ElmoOptions, OptionsError
from ..bilm.device import check_threads
from .corpus import CorpusSettings
from .softmax import SoftmaxSettings
from .vocab import VocabSettings

DEFAULT_CONFIG = """
[paths]
# Training text: a file or a folder of files (gzip accepted), one sentence or paragraph per line.
train = null
# Held-out text for perplexity during and after training (optional).
dev = null
# An existing vocabulary file (bilm-tf convention); null = build one from the training corpus.
vocab = null
# A model directory to start from (fine-tuning) instead of random weights.
init_from = null

[system]
seed = 0
# "auto" (a GPU if there is one), "cpu", "cuda", "cuda:1"
device = "auto"
# Deterministic algorithms: bit-exact repeats and resume with more than one CPU thread (measured
# ~17 % slower on 2 cores), slower on GPU.
deterministic = false
# CPU threads per process; 0 = torch's default.
threads = 0

# The architecture, as in options.json (AllenNLP layout): these are the paper's sizes.
[model]

[model.lstm]
n_layers = 2
dim = 4096
projection_dim = 512
cell_clip = 3.0
proj_clip = 3.0
use_skip_connections = true

[model.char_cnn]
filters = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]
n_highway = 2
activation = "relu"
n_characters = 262
max_characters_per_token = 50

[model.char_cnn.embedding]
dim = 16

[corpus]
# "whitespace" (pre-tokenized text) or "spacy-blank:<lang>" (as a spaCy pipeline tokenizes).
tokenizer = "whitespace"
max_line_bytes = 1000000
max_line_tokens = 1000
max_binary_fraction = 0.3

[vocab]
max_size = 50000
min_count = 1

[softmax]
# "full" | "sampled" | "adaptive"
type = "sampled"
n_samples = 8192
cutoffs = [20000, 100000]
div_value = 4.0

[training]
# Rows per process and step; tokens per step = batch_size * unroll_steps * processes.
batch_size = 128
unroll_steps = 20
# Windows per chunk: the backward LM restarts its state every chunk_windows * unroll_steps tokens.
chunk_windows = 10
# Stop after max_steps steps, max_epochs passes over the corpus or max_minutes of training time
# in this run (each resumed leg gets its own), whichever comes first (0 = no limit). The time limit
# is checked where the run logs (every log_every steps), and the run ends there as if that were
# its last step: for a fixed budget, say a GPU lent for an hour. It makes where a run stops depend
# on the machine's speed.
max_steps = 0
max_epochs = 10
max_minutes = 0
# "adagrad" (bilm-tf) or "adam"
optimizer = "adagrad"
learning_rate = 0.2
adagrad_initial_accumulator = 1.0
adam_betas = [0.9, 0.999]
adam_eps = 0.00000001
# Clip the global gradient norm (0 = off).
grad_clip = 10.0
dropout = 0.1
# "bf16" (GPUs, and CPUs with native bf16: AVX-512 BF16 / AMX; float32 elsewhere), "fp16" (GPU only,
# with loss scaling) or "no".
mixed_precision = "bf16"
checkpoint_every = 1000
# After --resume from a leg state (no optimizer moments), ramp the learning rate up over this many
# steps while Adam/Adagrad re-estimate them.
restart_warmup_steps = 300
# Linear decay of the learning rate from step lr_decay_start to step lr_decay_end, down to
# learning_rate * lr_final_fraction (and kept there after). 0 and 0 = a constant rate. May be set
# when a later leg resumes, to anneal the end of a long run.
lr_decay_start = 0
lr_decay_end = 0
lr_final_fraction = 0.1
log_every = 50
# Held-out perplexity every N steps (0 = only at the end), on at most eval_max_sentences lines.
eval_every = 0
eval_max_sentences = 2000
eval_batch_tokens = 4096
"""

# Keys that may change when resuming: they do not change what the run computes up to here.
RESUMABLE_CHANGES = {
    "training.max_steps", "training.max_epochs", "training.max_minutes", "training.checkpoint_every", "training.log_every",
    "training.eval_every", "training.eval_max_sentences", "training.eval_batch_tokens",
    "paths.dev", "paths.init_from", "paths.vocab", "system.device", "system.threads",
    # They change what the run computes from the resume point on, not up to it: a later leg may
    # anneal the learning rate.
    "training.learning_rate", "training.restart_warmup_steps",
    "training.lr_decay_start", "training.lr_decay_end", "training.lr_final_fraction",
}


class ConfigError(ValueError):
    """The config file or an override is invalid."""


@dataclass(frozen=True)
class PathsSettings:
    train: str | None = None
    dev: str | None = None
    vocab: str | None = None
    init_from: str | None = None


@dataclass(frozen=True)
class SystemSettings:
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    threads: int = 0


@dataclass(frozen=True)
class TrainingSettings:
    batch_size: int = 128
    unroll_steps: int = 20
    chunk_windows: int = 10
    max_steps: int = 0
    max_epochs: float = 10
    max_minutes: float = 0
    optimizer: str = "adagrad"
    learning_rate: float = 0.2
    adagrad_initial_accumulator: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    grad_clip: float = 10.0
    dropout: float = 0.1
    mixed_precision: str = "bf16"
    checkpoint_every: int = 1000
    restart_warmup_steps: int = 300
    lr_decay_start: int = 0
    lr_decay_end: int = 0
    lr_final_fraction: float = 0.1
    log_every: int = 50
    eval_every: int = 0
    eval_max_sentences: int = 2000
    eval_batch_tokens: int = 4096

    def check(self) -> None:
        for name in ("batch_size", "unroll_steps", "chunk_windows", "log_every", "eval_batch_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name} must be at least 1")
        for name in ("max_steps", "max_epochs", "max_minutes", "checkpoint_every", "eval_every", "eval_max_sentences",
                     "restart_warmup_steps", "lr_decay_start", "lr_decay_end",
                     "grad_clip", "adagrad_initial_accumulator"):
            if getattr(self, name) < 0:
                raise ConfigError(f"training.{name} must not be negative")
        if self.max_steps == 0 and self.max_epochs == 0 and self.max_minutes == 0:
            raise ConfigError(
                "set training.max_steps, training.max_epochs or training.max_minutes (all are 0: training would never end)"
            )
        if self.optimizer not in ("adagrad", "adam"):
            raise ConfigError(f"training.optimizer must be 'adagrad' or 'adam', got {self.optimizer!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"training.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("training.dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            raise ConfigError("training.learning_rate must be positive")
        if (self.lr_decay_start or self.lr_decay_end) and self.lr_decay_end <= self.lr_decay_start:
            raise ConfigError(
                f"training.lr_decay_end ({self.lr_decay_end}) must be after training.lr_decay_start "
                f"({self.lr_decay_start}); set both to 0 for a constant learning rate"
            )
        if not 0.0 < self.lr_final_fraction <= 1.0:
            raise ConfigError("training.lr_final_fraction must be in (0, 1]")


@dataclass(frozen=True)
class PretrainSettings:
    paths: PathsSettings
    system: SystemSettings
    model: ElmoOptions
    corpus: CorpusSettings
    vocab: VocabSettings
    softmax: SoftmaxSettings
    training: TrainingSettings

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PretrainSettings":
        try:
            model = ElmoOptions.from_dict(dict(config.get("model", {})), source="config [model]")
        except OptionsError as err:
            raise ConfigError(str(err)) from None
        if model.char_cnn.n_characters != 262:
            raise ConfigError("model.char_cnn.n_characters must be 262 (character ids are shifted by one for padding)")
        settings = cls(
            paths=_section(config, "paths", PathsSettings),
            system=_section(config, "system", SystemSettings),
            model=model,
            corpus=_section(config, "corpus", CorpusSettings),
            vocab=_section(config, "vocab", VocabSettings),
            softmax=_section(config, "softmax", SoftmaxSettings),
            training=_section(config, "training", TrainingSettings),
        )
        settings.training.check()
        try:
            check_threads(settings.system.threads, "system.threads")
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if settings.softmax.type not in ("full", "sampled", "adaptive"):
            raise ConfigError(f"softmax.type must be 'full', 'sampled' or 'adaptive', got {settings.softmax.type!r}")
        if settings.vocab.max_size < 4:
            raise ConfigError("vocab.max_size must be at least 4 (<S>, </S>, <UNK> and one word)")
        c = settings.corpus
        if c.max_line_bytes < 1 or c.max_line_tokens < 1 or not 0 < c.max_binary_fraction <= 1:
            raise ConfigError("corpus.max_line_bytes and max_line_tokens must be >= 1, max_binary_fraction in (0, 1]")
        return settings


def _check_value(where: str, value: Any, kind: Any) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # `str | None`
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_value(where, v, item) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r}")
        return tuple(_check_value(where, v, a) for v, a in zip(value, args))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {kind}")


def _section(config: dict[str, Any], name: str, cls: type) -> Any:
    data = config.get(name) or {}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _check_value(f"{name}.{k}", v, hints[k]) for k, v in data.items()})


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _check_known_keys(user: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Every section and key of the user's file must exist in the defaults ([model] included)."""
    known = _flatten(defaults)
    for key in _flatten(user):
        if key not in known:
            section = key.rsplit(".", 1)[0]
            if not any(k.startswith(section + ".") for k in known):
                raise ConfigError(f"unknown config section [{section}] (key {key})")
            raise ConfigError(f"unknown config key {key!r}")


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults <- the file (if any) <- command-line overrides, interpolated."""
    defaults = Config().from_str(DEFAULT_CONFIG, interpolate=False)
    merged = defaults
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            user = Config().from_disk(path, interpolate=False)
        except Exception as err:  # noqa: BLE001 - confection raises several kinds
            raise ConfigError(f"{path}: not a valid config file: {err}") from None
        _check_known_keys(user, defaults)
        merged = defaults.merge(user)
    try:
        return Config().from_str(merged.to_str(), overrides=dict(overrides or {}), interpolate=True)
    except Exception as err:  # noqa: BLE001 - e.g. an override of a key that does not exist
        raise ConfigError(f"config overrides {sorted(overrides or {})}: {err}") from None


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Flattened keys whose values differ between two configs."""
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
