"""Reading and writing ELMo weights in the bilm-tf / AllenNLP HDF5 layout, and model directories.

A weight file holds (TensorFlow layout, x @ W):
    char_embed                                           (261, char_dim)  ids 1..261
    CNN/W_cnn_{k}, CNN/b_cnn_{k}                          (1, width, char_dim, n), (n,)
    CNN_high_{h}/W_carry, W_transform, b_carry, b_transform
    CNN_proj/W_proj, CNN_proj/b_proj                      (n_filters, proj), (proj,)
    RNN_{d}/RNN/MultiRNNCell/Cell{l}/LSTMCell/W_0         (input + proj, 4 cell), gates i, j, f, o
    RNN_{d}/RNN/MultiRNNCell/Cell{l}/LSTMCell/B           (4 cell,)  the +1 forget bias is added at run time
    RNN_{d}/RNN/MultiRNNCell/Cell{l}/LSTMCell/W_P_0       (cell, proj)
Models with their own vocabulary (ELMoForManyLangs) have `char_embed` (n_characters, char_dim), a
`word_embed` (n_words, word_dim) when they have word vectors, and CNN_proj/W_proj
(word_dim + n_filters, proj): word features first.
A model directory holds `options.json` + `weights.hdf5` (that pair under fixed names), the
vocabulary files options.json names (if any) and an optional `meta.json` with what we know about
how the model was made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import torch

from ..atomic import atomic_path
from .device import parse_device
from .model import BiLM
from .options import ElmoOptions, parse_json, read_small_text
from .precision import check_precision, with_precision
from .safe_hdf5 import get_dataset, open_hdf5, read_float32
from .vocab import load_token_ids, write_vocabulary

OPTIONS_NAME = "options.json"
WEIGHTS_NAME = "weights.hdf5"
META_NAME = "meta.json"
N_CHAR_ROWS = 261  # char_embed rows in every weight file: ids 1..261 (0 is batch padding)
MAX_META_BYTES = 16 << 20  # meta.json: a few kB in practice


class WeightFileError(ValueError):
    """A weight file is missing, unreadable, or does not fit its options."""


# ---- the name -> (tensor, converter) table -----------------------------------------------------


def _lstm_prefix(direction: int, layer: int) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"


def expected_shapes(options: ElmoOptions) -> dict[str, tuple[int, ...]]:
    """Every dataset an options file implies, with its shape: the contract of the format."""
    c, l, w = options.char_cnn, options.lstm, options.word_embedding
    shapes: dict[str, tuple[int, ...]] = {"char_embed": (c.embedding_rows - 1, c.embedding_dim)}
    if w is not None:
        shapes["word_embed"] = (w.n_words, w.dim)
    for k, (width, n) in enumerate(c.filters):
        shapes[f"CNN/W_cnn_{k}"] = (1, width, c.embedding_dim, n)
        shapes[f"CNN/b_cnn_{k}"] = (n,)
    for h in range(c.n_highway):
        for name in ("W_carry", "W_transform"):
            shapes[f"CNN_high_{h}/{name}"] = (c.n_filters, c.n_filters)
        for name in ("b_carry", "b_transform"):
            shapes[f"CNN_high_{h}/{name}"] = (c.n_filters,)
    shapes["CNN_proj/W_proj"] = (c.n_filters + (0 if w is None else w.dim), l.projection_dim)
    shapes["CNN_proj/b_proj"] = (l.projection_dim,)
    for d in range(2):
        for layer in range(l.n_layers):
            p = _lstm_prefix(d, layer)
            shapes[f"{p}/W_0"] = (2 * l.projection_dim, 4 * l.dim)
            shapes[f"{p}/B"] = (4 * l.dim,)
            shapes[f"{p}/W_P_0"] = (l.dim, l.projection_dim)
    return shapes


def _to_file_layout(model: BiLM) -> Iterator[tuple[str, np.ndarray]]:
    """(dataset name, array) pairs for a model, in the file layout."""
    enc = model.char_encoder

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).numpy()

    yield "char_embed", arr(enc.char_embed.weight[1:])
    if enc.word_embed is not None:
        yield "word_embed", arr(enc.word_embed.weight[1:])
    for k, conv in enumerate(enc.convolutions):
        # torch (n, char_dim, width) -> tf (1, width, char_dim, n)
        yield f"CNN/W_cnn_{k}", arr(conv.weight.permute(2, 1, 0).unsqueeze(0))
        yield f"CNN/b_cnn_{k}", arr(conv.bias)
    for h, hw in enumerate(enc.highways):
        for name in ("W_carry", "W_transform", "b_carry", "b_transform"):
            yield f"CNN_high_{h}/{name}", arr(getattr(hw, name))
    yield "CNN_proj/W_proj", arr(enc.W_proj)
    yield "CNN_proj/b_proj", arr(enc.b_proj)
    for layer_index, layer in enumerate(model.lstm.layers):
        for d in range(2):
            p = _lstm_prefix(d, layer_index)
            yield f"{p}/W_0", arr(torch.cat([layer.W_input[d], layer.W_hidden[d]], dim=0))
            yield f"{p}/B", arr(layer.bias[d])
            yield f"{p}/W_P_0", arr(layer.W_proj[d])


def _assign(model: BiLM, arrays: dict[str, np.ndarray]) -> None:
    enc = model.char_encoder

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arrays[name], dtype=np.float32))

    with torch.no_grad():
        enc.char_embed.weight.zero_()
        enc.char_embed.weight[1:] = t("char_embed")
        if enc.word_embed is not None:
            enc.word_embed.weight.zero_()
            enc.word_embed.weight[1:] = t("word_embed")
        for k, conv in enumerate(enc.convolutions):
            conv.weight.copy_(t(f"CNN/W_cnn_{k}")[0].permute(2, 1, 0))
            conv.bias.copy_(t(f"CNN/b_cnn_{k}"))
        for h, hw in enumerate(enc.highways):
            for name in ("W_carry", "W_transform", "b_carry", "b_transform"):
                getattr(hw, name).copy_(t(f"CNN_high_{h}/{name}"))
        enc.W_proj.copy_(t("CNN_proj/W_proj"))
        enc.b_proj.copy_(t("CNN_proj/b_proj"))
        for layer_index, layer in enumerate(model.lstm.layers):
            for d in range(2):
                p = _lstm_prefix(d, layer_index)
                w = t(f"{p}/W_0")
                layer.W_input[d].copy_(w[: layer.input_dim])
                layer.W_hidden[d].copy_(w[layer.input_dim :])
                layer.bias[d].copy_(t(f"{p}/B"))
                layer.W_proj[d].copy_(t(f"{p}/W_P_0"))


# ---- reading -------------------------------------------------------------------------------------


def read_weight_arrays(path: str | Path, options: ElmoOptions) -> dict[str, np.ndarray]:
    """Read and check every dataset `options` implies, as float32. Raises WeightFileError on any
    problem. Links, storage and shapes of every dataset are checked before any data is read, so a
    file never makes us read more than the (capped) options imply, nor bytes from elsewhere."""
    path = Path(path)
    with open_hdf5(path, WeightFileError, "weight file") as fin:
        datasets = {}
        for name, shape in expected_shapes(options).items():
            dset = get_dataset(path, fin, name, WeightFileError)
            if dset is None:
                raise WeightFileError(
                    f"{path}: dataset '{name}' is missing: the file does not fit these options "
                    f"(or it is not an ELMo weight file)"
                )
            if tuple(dset.shape) != shape:
                raise WeightFileError(
                    f"{path}: dataset '{name}' has shape {tuple(dset.shape)}, the options imply {shape}: "
                    f"weights and options.json do not belong together"
                )
            if dset.dtype.kind != "f":
                raise WeightFileError(f"{path}: dataset '{name}' holds {dset.dtype}, expected floats")
            datasets[name] = dset
        for name in _one_past_the_options(options):
            if get_dataset(path, fin, name, WeightFileError) is not None:
                raise WeightFileError(
                    f"{path}: the file holds '{name}', which these options do not have (more LSTM layers, "
                    f"highway layers or convolutions than options.json declares): weights and options.json "
                    f"do not belong together"
                )
        return {name: read_float32(path, name, dset, WeightFileError) for name, dset in datasets.items()}


def _one_past_the_options(options: ElmoOptions) -> list[str]:
    """The first dataset of the layer after the last one `options` declares, for each kind of layer:
    a file that has one was written for a larger model, and reading only part of it would be silent."""
    c, n = options.char_cnn, options.lstm.n_layers
    return [f"CNN/W_cnn_{len(c.filters)}", f"CNN_high_{c.n_highway}/W_carry"] + [
        f"RNN_{d}/RNN/MultiRNNCell/Cell{n}/LSTMCell/W_0" for d in (0, 1)
    ]


def load_weights(model: BiLM, weight_file: str | Path) -> BiLM:
    """Fill `model` from an HDF5 weight file in the bilm-tf layout."""
    _assign(model, read_weight_arrays(weight_file, model.options))
    return model


# ---- writing ------------------------------------------------------------------------------------


def save_weights(model: BiLM, weight_file: str | Path) -> None:
    """Write `model`'s weights in the bilm-tf / AllenNLP HDF5 layout (float32), atomically."""
    if model.precision != "float32":
        raise WeightFileError(
            f"{weight_file}: this biLM is a {model.precision} inference copy; save the float32 model instead"
        )
    with atomic_path(weight_file) as tmp, h5py.File(tmp, "w") as fout:
        for name, array in _to_file_layout(model):
            fout.create_dataset(name, data=array, dtype="float32")


@dataclass(frozen=True)
class ModelFiles:
    options_file: Path
    weight_file: Path
    directory: Path | None = None

    def meta(self) -> dict[str, Any]:
        return {} if self.directory is None else read_meta(self.directory)


def read_meta(directory: str | Path) -> dict[str, Any]:
    """A model directory's meta.json as a dict ({} when there is none); WeightFileError if it is
    not a JSON object."""
    path = Path(directory) / META_NAME
    if not path.exists():
        return {}
    try:
        meta = parse_json(read_small_text(path, MAX_META_BYTES))
    except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        raise WeightFileError(f"{path}: unreadable model metadata ({err}); fix or delete meta.json") from None
    if not isinstance(meta, dict):
        raise WeightFileError(
            f"{path}: model metadata must be a JSON object, got {type(meta).__name__}; fix or delete meta.json"
        )
    return meta


def _named_model_dir(model: str | Path) -> Path | None:
    """A published model's name ("allennlp:small") -> its cached directory; None for a path."""
    from ..hub import resolve_model_name  # on use: `import bilm` loads no catalog or network code

    return resolve_model_name(model)


def resolve_model_files(
    model: str | Path | None = None,
    options_file: str | Path | None = None,
    weight_file: str | Path | None = None,
) -> ModelFiles:
    """Accept either a model directory (or a published model's name) or an explicit options file +
    weight file (not both)."""
    if model is not None and (options_file is not None or weight_file is not None):
        raise ValueError("give either a model directory or options_file + weight_file, not both")
    if model is not None:
        if not str(model).strip():  # Path("") is the current folder: never what an empty setting meant
            raise ValueError("the model is an empty string: give a model directory or a published model's name")
        directory = _named_model_dir(model) or Path(model)
        if not directory.is_dir():
            raise WeightFileError(
                f"{directory}: not a model directory (expected a folder with {OPTIONS_NAME} and {WEIGHTS_NAME})"
            )
        for name in (OPTIONS_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise WeightFileError(f"{directory}: model directory has no {name}")
        return ModelFiles(directory / OPTIONS_NAME, directory / WEIGHTS_NAME, directory)
    if options_file is None or weight_file is None:
        raise ValueError("give a model directory, or both options_file and weight_file")
    return ModelFiles(Path(options_file), Path(weight_file))


def load_bilm(
    model: str | Path | None = None,
    options_file: str | Path | None = None,
    weight_file: str | Path | None = None,
    stateful: bool = False,
    device: str | torch.device = "cpu",
    precision: str = "float32",
) -> BiLM:
    """Load a biLM from a model directory or from an options.json + HDF5 pair, in eval mode.

    device: "cpu", "cuda", "cuda:N", ... or a torch.device; a name is checked before anything is
        read (DeviceError for a device torch does not know or this machine lacks).
    precision: "float32" (exact), "bfloat16" or "int8": an inference-only model (see
    bilm/precision.py; float32 with a warning where the device does not run it natively).
    """
    check_precision(precision)
    if not isinstance(device, torch.device):
        device = parse_device(device)  # DeviceError before anything is read, not torch's assertion after
    files = resolve_model_files(model, options_file, weight_file)
    options = ElmoOptions.from_file(files.options_file)
    arrays = read_weight_arrays(files.weight_file, options)  # checked whole before any tensor is built
    # Vocabulary files (if the options name any) sit next to options.json.
    bilm = BiLM(options, stateful=stateful, token_ids=load_token_ids(options, files.options_file.parent))
    _assign(bilm, arrays)
    return with_precision(bilm.to(device).eval(), precision, copy=False)


def save_model_dir(model: BiLM, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write a model directory: options.json, weights.hdf5 and (optionally) meta.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(model, directory / WEIGHTS_NAME)
    save_vocabularies(model, directory)
    with atomic_path(directory / OPTIONS_NAME) as tmp:
        model.options.to_file(tmp)
    if meta is not None:
        with atomic_path(directory / META_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return directory


def save_vocabularies(model: BiLM, directory: str | Path) -> None:
    """Write the vocabulary files a model's options name (nothing for a UTF-8 byte model)."""
    options, token_ids = model.options, model.token_ids
    if not options.vocabulary_files:
        return
    if token_ids is None:
        raise ValueError("this biLM's vocabulary was never loaded, so it cannot be saved")
    tables = []
    if options.char_cnn.vocabulary is not None:
        tables.append((options.char_cnn.vocabulary.file, token_ids.chars))
    if options.word_embedding is not None:
        tables.append((options.word_embedding.file, token_ids.words))
    for name, table in tables:
        with atomic_path(Path(directory) / name) as tmp:
            write_vocabulary(tmp, table)
