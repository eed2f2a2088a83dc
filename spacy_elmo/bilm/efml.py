"""ELMoForManyLangs models (HIT-SCIR; 44 languages on the NLPL repository) -> our model directory.

A released model folder (or its zip) holds
    config.json                 {"config_path": "<architecture>.json", ...}
    <architecture>.json         encoder (elmo) + token_embedder (cnn) sizes; released zips often
                                leave it out and name the package's copy (we know that one)
    char.dic, word.dic          "token<TAB>id" per line
    token_embedder.pkl          torch state dict: char/word embeddings, CNN, highway, projection
    encoder.pkl                 torch state dict: AllenNLP LstmCellWithProjection layers

Everything is read as data: the state dicts with `torch.load(weights_only=True)` (a pickle that is
anything but tensors is refused, nothing executed), every tensor's name and shape checked, zip
members checked before anything is unpacked. The result is an ordinary model directory: options
with a char vocabulary and word vectors (see `options.py`), our HDF5 layout, chars.json/words.json.

What the package's reader does, reproduced by those options (PROVENANCE.md of the test fixture):
the begin-of-word id is the one of `<eow>` and the end-of-word id the one of `<bow>` (swapped; the
models were trained that way), and a dictionary line whose token is whitespace (U+3000) loses it to
`str.strip()`, after which the package puts U+3000 back.
"""

from __future__ import annotations

import json
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from .efml_catalog import efml_catalog
from .model import BiLM
from .options import (
    MAX_VOCABULARY_SIZE,
    CharCnnOptions,
    CharVocabularyOptions,
    ElmoOptions,
    LstmOptions,
    WordEmbeddingOptions,
)
from .vocab import TokenIds
from .weights import save_model_dir

MAX_DICTIONARY_BYTES = 256 * 1024 * 1024
MAX_STATE_DICT_BYTES = 4 * 1024**3
MAX_UNZIPPED_BYTES = 8 * 1024**3
MAX_ZIP_MEMBERS = 1000
IDEOGRAPHIC_SPACE = "\u3000"
CHAR_SPECIALS = ("<oov>", "<pad>", "<bow>", "<eow>", "<bos>", "<eos>")
WORD_SPECIALS = ("<oov>", "<pad>", "<bos>", "<eos>")
MODEL_FILES = ("config.json", "char.dic", "token_embedder.pkl", "encoder.pkl")

# The architecture file every released model names (shipped inside the elmoformanylangs package, not
# always in the zips). The shapes are checked against the state dicts; the clips, activation and
# token length are the package's values.
KNOWN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "cnn_50_100_512_4096_sample.json": {
        "encoder": {"name": "elmo", "projection_dim": 512, "cell_clip": 3, "proj_clip": 3, "dim": 4096, "n_layers": 2},
        "token_embedder": {
            "name": "cnn",
            "activation": "relu",
            "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
            "n_highway": 2,
            "word_dim": 100,
            "char_dim": 50,
            "max_characters_per_token": 50,
        },
    }
}


class EfmlError(ValueError):
    """The folder or zip is not an ELMoForManyLangs model we can read; the message says what to fix."""


# ---- dictionaries --------------------------------------------------------------------------------


def read_dictionary(path: Path, specials: tuple[str, ...]) -> dict[str, int]:
    """`token<TAB>id` lines, read by the package's rule; duplicate ids and malformed lines refused.

    The package reads `line.strip().split('\\t')` and, when one field is left (the token was
    whitespace, e.g. U+3000), puts U+3000 back as the token. A token listed twice keeps its last
    id, as in the package's dict.
    """
    if not path.is_file():
        raise EfmlError(f"{path}: missing: an ELMoForManyLangs model folder has {path.name}")
    if path.stat().st_size > MAX_DICTIONARY_BYTES:
        raise EfmlError(f"{path}: larger than {MAX_DICTIONARY_BYTES >> 20} MiB, not a model dictionary")
    table: dict[str, int] = {}
    owner: dict[int, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise EfmlError(f"{path}: not UTF-8 text ({err})") from None
    if len(lines) > MAX_VOCABULARY_SIZE:
        raise EfmlError(f"{path}: more than {MAX_VOCABULARY_SIZE} entries")
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split("\t")
        if len(fields) == 1:
            fields.insert(0, IDEOGRAPHIC_SPACE)
        if len(fields) != 2 or not fields[1].isascii() or not fields[1].isdigit():
            raise EfmlError(f"{path}: line {number} is malformed ({line!r}): expected 'token<TAB>id'")
        token, i = fields[0], int(fields[1])
        if i in owner and owner[i] != token:
            raise EfmlError(f"{path}: line {number}: id {i} is used by both {owner[i]!r} and {token!r}")
        owner[i] = token
        table[token] = i
    missing = [s for s in specials if s not in table]
    if missing:
        raise EfmlError(f"{path}: lacks the special entries {', '.join(missing)}")
    return table


# ---- architecture --------------------------------------------------------------------------------


def read_architecture(folder: Path) -> dict[str, Any]:
    """config.json -> the architecture file it names (looked up in `folder` only, by file name)."""
    config = _read_json(folder / "config.json")
    name = config.get("config_path") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise EfmlError(f"{folder / 'config.json'}: has no 'config_path' naming the architecture file")
    # Released files say "../configs/cnn_....json" (the package's folder): we never follow a path.
    base = PurePosixPath(name.replace("\\", "/")).name
    if (folder / base).is_file():
        arch = _read_json(folder / base)
    elif base in KNOWN_ARCHITECTURES:
        arch = KNOWN_ARCHITECTURES[base]
    else:
        raise EfmlError(f"{folder}: config.json names {name!r}, which is not in the folder: put {base} next to config.json")
    if not isinstance(arch, dict) or not all(isinstance(arch.get(k), dict) for k in ("encoder", "token_embedder")):
        raise EfmlError(f"{folder / base}: needs 'encoder' and 'token_embedder' sections")
    if arch["encoder"].get("name", "elmo") != "elmo" or arch["token_embedder"].get("name", "cnn") != "cnn":
        raise EfmlError(f"{folder / base}: only the 'elmo' encoder with the 'cnn' token embedder is supported (every released model)")
    return arch


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise EfmlError(f"{path}: missing: an ELMoForManyLangs model folder has {path.name}")
    if path.stat().st_size > 1024 * 1024:
        raise EfmlError(f"{path}: larger than 1 MiB, not a model configuration")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EfmlError(f"{path}: not valid JSON ({err})") from None


def build_options(arch: dict[str, Any], chars: dict[str, int], words: dict[str, int] | None) -> ElmoOptions:
    """Our options for this architecture; `OptionsError`s name the offending key."""
    enc, emb = arch["encoder"], arch["token_embedder"]
    vocabulary = CharVocabularyOptions(
        unknown=chars["<oov>"],
        padding=chars["<pad>"],
        begin_of_word=chars["<eow>"],  # swapped, as the package reads them
        end_of_word=chars["<bow>"],
        begin_of_sentence=chars["<bos>"],
        end_of_sentence=chars["<eos>"],
    )
    word_embedding = None
    if words is not None:
        word_embedding = WordEmbeddingOptions(
            dim=emb["word_dim"],
            n_words=len(words),
            unknown=words["<oov>"],
            padding=words["<pad>"],
            begin_of_sentence=words["<bos>"],
            end_of_sentence=words["<eos>"],
        )
    options = ElmoOptions(
        char_cnn=CharCnnOptions(
            embedding_dim=emb.get("char_dim"),
            filters=tuple(tuple(f) for f in emb.get("filters", ())),
            n_highway=emb.get("n_highway", 0),
            activation=emb.get("activation", "relu"),
            n_characters=len(chars),
            max_characters_per_token=emb.get("max_characters_per_token"),
            vocabulary=vocabulary,
        ),
        lstm=LstmOptions(
            n_layers=enc.get("n_layers"),
            dim=enc.get("dim"),
            projection_dim=enc.get("projection_dim"),
            cell_clip=enc.get("cell_clip"),
            proj_clip=enc.get("proj_clip"),
            use_skip_connections=True,  # the package's encoder always adds them between layers
        ),
        word_embedding=word_embedding,
    )
    # Round-trip through the JSON reader: every check of a hand-written options.json applies.
    return ElmoOptions.from_dict(options.to_dict(), source="architecture")


# ---- state dicts ---------------------------------------------------------------------------------


def expected_tensors(options: ElmoOptions) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(token_embedder.pkl, encoder.pkl): every tensor name with its shape."""
    c, l, w = options.char_cnn, options.lstm, options.word_embedding
    embedder: dict[str, tuple[int, ...]] = {}
    if w is not None:
        embedder["word_emb_layer.embedding.weight"] = (w.n_words, w.dim)
    embedder["char_emb_layer.embedding.weight"] = (c.n_characters, c.embedding_dim)
    for k, (width, n) in enumerate(c.filters):
        embedder[f"convolutions.{k}.weight"] = (n, c.embedding_dim, width)
        embedder[f"convolutions.{k}.bias"] = (n,)
    for h in range(c.n_highway):
        embedder[f"highways._layers.{h}.weight"] = (2 * c.n_filters, c.n_filters)
        embedder[f"highways._layers.{h}.bias"] = (2 * c.n_filters,)
    embedder["projection.weight"] = (l.projection_dim, c.n_filters + (0 if w is None else w.dim))
    embedder["projection.bias"] = (l.projection_dim,)
    encoder: dict[str, tuple[int, ...]] = {}
    for layer in range(l.n_layers):
        for direction in ("forward", "backward"):
            p = f"{direction}_layer_{layer}"
            encoder[f"{p}.input_linearity.weight"] = (4 * l.dim, l.projection_dim)
            encoder[f"{p}.state_linearity.weight"] = (4 * l.dim, l.projection_dim)
            encoder[f"{p}.state_linearity.bias"] = (4 * l.dim,)
            encoder[f"{p}.state_projection.weight"] = (l.projection_dim, l.dim)
    return embedder, encoder


def load_state_dict(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A plain {name: tensor} pickle, with exactly the expected names and shapes. Nothing executed."""
    if not path.is_file():
        raise EfmlError(f"{path}: missing: an ELMoForManyLangs model folder has {path.name}")
    if path.stat().st_size > MAX_STATE_DICT_BYTES:
        raise EfmlError(f"{path}: larger than {MAX_STATE_DICT_BYTES >> 30} GiB, not a model state dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (not a zip/pickle), EOFError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EfmlError(
            f"{path}: not a plain torch state dict (refused; nothing in it was run): {first[:200]}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise EfmlError(f"{path}: not a plain state dict of named tensors")
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise EfmlError(
            f"{path}: does not fit the architecture and dictionaries: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing[:5])}" if missing else "",
                    f"unexpected {', '.join(extra[:5])}" if extra else "",
                )
                if part
            )
        )
    for name, shape in expected.items():
        tensor = state[name]
        if tuple(tensor.shape) != shape:
            raise EfmlError(f"{path}: tensor '{name}' has shape {tuple(tensor.shape)}, expected {shape}")
        if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
            raise EfmlError(f"{path}: tensor '{name}' must hold finite floats")
    return {k: v.to(torch.float32) for k, v in state.items()}


def _gates_to_ours(w: torch.Tensor, cell: int) -> torch.Tensor:
    """AllenNLP's gate blocks (input, forget, memory, output) -> ours (i, j=memory, f, o), along dim 0."""
    i, f, j, o = w.split(cell, dim=0)
    return torch.cat([i, j, f, o], dim=0)


def assign_weights(bilm: BiLM, embedder: dict[str, torch.Tensor], encoder: dict[str, torch.Tensor]) -> None:
    """Copy the package's tensors into our layout (x @ W, highway carry gate, TF gate order)."""
    enc, options = bilm.char_encoder, bilm.options
    n_filters = options.char_cnn.n_filters
    with torch.no_grad():
        enc.char_embed.weight.zero_()
        enc.char_embed.weight[1:] = embedder["char_emb_layer.embedding.weight"]
        if enc.word_embed is not None:
            enc.word_embed.weight.zero_()
            enc.word_embed.weight[1:] = embedder["word_emb_layer.embedding.weight"]
        for k, conv in enumerate(enc.convolutions):
            conv.weight.copy_(embedder[f"convolutions.{k}.weight"])
            conv.bias.copy_(embedder[f"convolutions.{k}.bias"])
        for h, hw in enumerate(enc.highways):
            weight, bias = embedder[f"highways._layers.{h}.weight"], embedder[f"highways._layers.{h}.bias"]
            # Theirs: y = g x + (1 - g) relu(.), g = sigmoid(gate). Ours gates the transform, so
            # our carry gate is sigmoid(-gate) = 1 - g.
            hw.W_transform.copy_(weight[:n_filters].T)
            hw.b_transform.copy_(bias[:n_filters])
            hw.W_carry.copy_(-weight[n_filters:].T)
            hw.b_carry.copy_(-bias[n_filters:])
        enc.W_proj.copy_(embedder["projection.weight"].T)
        enc.b_proj.copy_(embedder["projection.bias"])
        cell = options.lstm.dim
        for index, layer in enumerate(bilm.lstm.layers):
            for d, direction in enumerate(("forward", "backward")):
                p = f"{direction}_layer_{index}"
                layer.W_input[d].copy_(_gates_to_ours(encoder[f"{p}.input_linearity.weight"], cell).T)
                layer.W_hidden[d].copy_(_gates_to_ours(encoder[f"{p}.state_linearity.weight"], cell).T)
                bias = _gates_to_ours(encoder[f"{p}.state_linearity.bias"], cell).clone()
                bias[2 * cell : 3 * cell] -= 1.0  # ours adds TensorFlow's forget bias at run time
                layer.bias[d].copy_(bias)
                layer.W_proj[d].copy_(encoder[f"{p}.state_projection.weight"].T)


# ---- folders and zips ----------------------------------------------------------------------------


def load_efml(folder: str | Path) -> BiLM:
    """Read a released model folder into a stateless BiLM (with its vocabularies), in eval mode."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EfmlError(f"{folder}: not a folder (expected an ELMoForManyLangs model folder or its .zip)")
    for name in MODEL_FILES:
        if not (folder / name).is_file():
            raise EfmlError(f"{folder}: {name} is missing: an ELMoForManyLangs model folder has {', '.join(MODEL_FILES)}")
    arch = read_architecture(folder)
    chars = read_dictionary(folder / "char.dic", CHAR_SPECIALS)
    word_dim = arch["token_embedder"].get("word_dim", 0)
    words = read_dictionary(folder / "word.dic", WORD_SPECIALS) if word_dim else None
    try:
        options = build_options(arch, chars, words)
    except (TypeError, ValueError) as err:
        raise EfmlError(f"{folder}: the architecture does not describe a valid model: {err}") from None
    for path, table, size in ((folder / "char.dic", chars, len(chars)), (folder / "word.dic", words or {}, len(words or {}))):
        too_big = [t for t, i in table.items() if i >= size]
        if too_big:
            raise EfmlError(f"{path}: id {table[too_big[0]]} of {too_big[0]!r} is past the {size} embedding rows")
    embedder_shapes, encoder_shapes = expected_tensors(options)
    embedder = load_state_dict(folder / "token_embedder.pkl", embedder_shapes)
    encoder = load_state_dict(folder / "encoder.pkl", encoder_shapes)
    bilm = BiLM(options, token_ids=TokenIds(options, chars, words))
    assign_weights(bilm, embedder, encoder)
    return bilm.eval()


def _outside(name: str) -> bool:
    """Could this zip entry land outside the folder it is unpacked into?"""
    if not name or name.startswith("/") or "\\" in name:
        return True
    parts = PurePosixPath(name).parts
    return ".." in parts or ":" in parts[0]


def _open_zip(archive: Path) -> zipfile.ZipFile:
    """The zip, once its member list is checked: not too many, not too large, none outside its folder."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise EfmlError(f"{archive}: not a readable zip file ({err})") from None
    members = zf.infolist()
    problem = None
    if len(members) > MAX_ZIP_MEMBERS:
        problem = f"{len(members)} entries, more than a model zip has ({MAX_ZIP_MEMBERS})"
    elif sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
        problem = f"unpacks to more than {MAX_UNZIPPED_BYTES >> 30} GiB"
    for m in members:
        if problem is None and (_outside(m.filename) or stat.S_ISLNK(m.external_attr >> 16)):
            problem = f"refused: entry {m.filename!r} points outside the zip's folder (or is a link)"
    if problem is not None:
        zf.close()
        raise EfmlError(f"{archive}: {problem}")
    return zf


def unpacked_size(archive: Path) -> int:
    """How many bytes the (checked) zip unpacks to."""
    with _open_zip(archive) as zf:
        return sum(m.file_size for m in zf.infolist())


def safe_extract(archive: Path, target: Path) -> Path:
    """Unpack a model zip into `target` after checking every member; returns the model folder."""
    with _open_zip(archive) as zf:
        try:
            zf.extractall(target)
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:  # a corrupt member (CRC, truncated data)
            raise EfmlError(f"{archive}: a damaged zip file ({err})") from None
    folders = {p.parent for p in target.rglob("config.json")}
    if len(folders) != 1:
        raise EfmlError(f"{archive}: expected one model folder (with config.json) inside, found {len(folders)}")
    return folders.pop()


def convert_efml(
    source: str | Path, output: str | Path, *, meta: dict[str, Any] | None = None, work_dir: str | Path | None = None
) -> Path:
    """A released ELMoForManyLangs model folder or .zip -> an ordinary model directory at `output`.

    meta: extra entries for meta.json (the catalog entry's `meta()`: name, language, URL, licence).
    work_dir: where a zip is unpacked for the conversion (default: the system's temporary folder).
    Without it, a source named as its NLPL download (`142.zip`, or a folder `142`) gets its
    catalog entry's. Raises EfmlError (a ValueError) with a one-line message on bad input.
    """
    source, output = Path(source), Path(output)
    info: dict[str, Any] = {"format": "elmoformanylangs", "converted_from": source.name}
    if meta is None:
        by_id = {e.nlpl_id: e for e in efml_catalog().values()}
        stem = source.name[: -len(".zip")] if source.name.endswith(".zip") else source.name
        meta = by_id[stem].meta() if stem in by_id else {}
    info.update(meta)
    if source.is_file():
        with tempfile.TemporaryDirectory(prefix="efml-", dir=work_dir) as tmp:
            bilm = load_efml(safe_extract(source, Path(tmp)))
    elif source.is_dir():
        bilm = load_efml(source)
    else:
        raise EfmlError(f"{source}: not found (expected an ELMoForManyLangs model folder or its .zip)")
    if output.exists() and not output.is_dir():
        raise EfmlError(f"{output}: exists and is not a folder")
    save_model_dir(bilm, output, meta=info)
    return output
