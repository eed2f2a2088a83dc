"""Weight and options I/O: the bilm-tf / AllenNLP HDF5 layout, round trips, model directories and
every way a file can be broken.

Expected dataset names and shapes come from the format description in
../shared/fixtures/allennlp_elmo/PROVENANCE.md (spelled out below), not from the code under test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo.bilm import (
    BiLM,
    ElmoOptions,
    OptionsError,
    WeightFileError,
    batch_to_ids,
    expected_shapes,
    load_bilm,
    load_weights,
    resolve_model_files,
    save_model_dir,
    save_weights,
)
from spacy_elmo.bilm.device import DeviceError

pytestmark = pytest.mark.usefixtures("single_thread")

# The fixture architecture, as PROVENANCE.md describes options.json.
FIXTURE_OPTIONS = {
    "lstm": {
        "cell_clip": 3,
        "use_skip_connections": True,
        "n_layers": 2,
        "proj_clip": 3,
        "projection_dim": 16,
        "dim": 64,
    },
    "char_cnn": {
        "embedding": {"dim": 4},
        "filters": [[1, 4], [2, 8], [3, 16], [4, 32], [5, 64]],
        "n_highway": 2,
        "n_characters": 262,
        "max_characters_per_token": 50,
        "activation": "relu",
    },
}


def provenance_shapes() -> dict[str, tuple[int, ...]]:
    """Dataset name -> shape for FIXTURE_OPTIONS, as listed in PROVENANCE.md."""
    shapes: dict[str, tuple[int, ...]] = {"char_embed": (261, 4)}
    for k, (width, n) in enumerate([(1, 4), (2, 8), (3, 16), (4, 32), (5, 64)]):
        shapes[f"CNN/W_cnn_{k}"] = (1, width, 4, n)
        shapes[f"CNN/b_cnn_{k}"] = (n,)
    for h in (0, 1):
        shapes[f"CNN_high_{h}/W_carry"] = (124, 124)
        shapes[f"CNN_high_{h}/W_transform"] = (124, 124)
        shapes[f"CNN_high_{h}/b_carry"] = (124,)
        shapes[f"CNN_high_{h}/b_transform"] = (124,)
    shapes["CNN_proj/W_proj"] = (124, 16)
    shapes["CNN_proj/b_proj"] = (16,)
    for d in (0, 1):
        for layer in (0, 1):
            prefix = f"RNN_{d}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"
            shapes[f"{prefix}/W_0"] = (32, 256)
            shapes[f"{prefix}/B"] = (256,)
            shapes[f"{prefix}/W_P_0"] = (64, 16)
    return shapes


BATCH = [["The", "cat", "sat", "."], ["Hello", "world"], ["ELMo", "vectors", "for", "all", "!"]]


def read_datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def dataset_dtypes(path: Path) -> dict[str, np.dtype]:
    out: dict[str, np.dtype] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj.dtype) if isinstance(obj, h5py.Dataset) else None)
    return out


def run(model: BiLM, batch=BATCH):
    with torch.no_grad():
        return model(batch_to_ids(batch))


def assert_same_parameters(a: BiLM, b: BiLM) -> None:
    __tracebackhide__ = True
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [name for name in sa if not torch.equal(sa[name], sb[name])]
    assert not different, f"parameters differ after the round trip: {different}"


def assert_same_outputs(a: BiLM, b: BiLM) -> None:
    __tracebackhide__ = True
    out_a, out_b = run(a), run(b)
    assert torch.equal(out_a.mask, out_b.mask)
    for k, (la, lb) in enumerate(zip(out_a.layers, out_b.layers)):
        assert torch.equal(la, lb), f"layer {k} differs (max {float((la - lb).abs().max()):.3g})"


def write_options(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ---- the format ----------------------------------------------------------------------------------


def test_expected_shapes_match_the_format_description():
    options = ElmoOptions.from_dict(FIXTURE_OPTIONS)
    assert expected_shapes(options) == provenance_shapes()


def test_written_file_has_exactly_the_documented_datasets(tmp_path, make_bilm):
    model = make_bilm(ElmoOptions.from_dict(FIXTURE_OPTIONS))
    path = tmp_path / "w.hdf5"
    save_weights(model, path)
    shapes = {name: array.shape for name, array in read_datasets(path).items()}
    assert shapes == provenance_shapes()
    assert set(dataset_dtypes(path).values()) == {np.dtype("float32")}


def test_written_datasets_hold_the_model_weights_in_tf_layout(tmp_path, make_bilm):
    options = ElmoOptions.from_dict(FIXTURE_OPTIONS)
    model = make_bilm(options)
    path = tmp_path / "w.hdf5"
    save_weights(model, path)
    data = read_datasets(path)
    enc = model.char_encoder
    # char_embed holds ids 1..261 (id 0 is batch padding).
    np.testing.assert_array_equal(data["char_embed"], enc.char_embed.weight[1:].detach().numpy())
    # x @ W layout: the projection is stored as-is.
    np.testing.assert_array_equal(data["CNN_proj/W_proj"], enc.W_proj.detach().numpy())
    # A TF conv kernel (1, width, in, out) applied to characters c..c+width-1 gives the same as torch's conv.
    ids = batch_to_ids([["abcdef"]])[0, 0]
    x = enc.char_embed.weight[ids].detach().numpy()  # (50, char_dim)
    kernel = data["CNN/W_cnn_2"][0]  # (3, char_dim, n)
    tf_value = np.einsum("wc,wcn->n", x[0:3], kernel) + data["CNN/b_cnn_2"]
    with torch.no_grad():
        torch_value = enc.convolutions[2](torch.from_numpy(x).T.unsqueeze(0))[0, :, 0].numpy()
    np.testing.assert_allclose(tf_value, torch_value, rtol=1e-5, atol=1e-5)
    # (The LSTM datasets, B with its forget bias included, are checked against the reference
    # file by the fixture round-trip and parity tests, independently of how the model stores them.)


@pytest.mark.shared
def test_fixture_files_match_the_format_description(fixture_dir):
    shapes = {name: array.shape for name, array in read_datasets(fixture_dir / "lm_weights.hdf5").items()}
    assert shapes == provenance_shapes()
    options = ElmoOptions.from_file(fixture_dir / "options.json")
    assert options == ElmoOptions.from_dict(FIXTURE_OPTIONS)


# ---- round trips -------------------------------------------------------------------------------


def test_save_then_load_weights_is_identical(tmp_path, make_bilm):
    original = make_bilm(seed=1)
    path = tmp_path / "weights.hdf5"
    save_weights(original, path)
    restored = load_weights(make_bilm(seed=2), path)  # start from different random weights
    assert_same_parameters(original, restored)
    assert_same_outputs(original, restored)


def test_save_then_load_weights_is_close(tmp_path, make_bilm):
    # The looser companion of the test above: whatever the float precision, no weight may move
    # by more than float32 rounding (catches a forget bias that is not removed / re-added).
    original = make_bilm(seed=1)
    path = tmp_path / "weights.hdf5"
    save_weights(original, path)
    restored = load_weights(make_bilm(seed=2), path)
    for (name, a), (_, b) in zip(original.state_dict().items(), restored.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    for la, lb in zip(run(original).layers, run(restored).layers):
        torch.testing.assert_close(lb, la, rtol=0, atol=1e-5)


def test_model_dir_round_trip(tmp_path, make_bilm, tiny_options):
    original = make_bilm(seed=3)
    directory = save_model_dir(original, tmp_path / "model", meta={"name": "tiny", "seed": 3})
    assert directory == tmp_path / "model"
    assert {p.name for p in directory.iterdir()} == {"options.json", "weights.hdf5", "meta.json"}
    restored = load_bilm(model=directory)
    assert restored.options == tiny_options
    assert not restored.training
    assert_same_parameters(original, restored)
    assert_same_outputs(original, restored)
    files = resolve_model_files(directory)
    assert files.meta() == {"name": "tiny", "seed": 3}


def test_model_dir_without_meta(tmp_path, tiny_bilm):
    directory = save_model_dir(tiny_bilm, tmp_path / "m")
    assert {p.name for p in directory.iterdir()} == {"options.json", "weights.hdf5"}
    assert resolve_model_files(directory).meta() == {}


def test_options_json_round_trip(tmp_path, tiny_options):
    path = tmp_path / "options.json"
    tiny_options.to_file(path)
    assert ElmoOptions.from_file(path) == tiny_options
    fixture = ElmoOptions.from_dict(FIXTURE_OPTIONS)
    fixture.to_file(path)
    assert ElmoOptions.from_file(path) == fixture
    # What we write is the bilm-tf / AllenNLP layout itself (the clips come back as floats).
    assert json.loads(path.read_text()) == {
        "lstm": {**FIXTURE_OPTIONS["lstm"], "cell_clip": 3.0, "proj_clip": 3.0},
        "char_cnn": FIXTURE_OPTIONS["char_cnn"],
    }


def test_load_bilm_stateful_flag(tmp_path, tiny_bilm):
    directory = save_model_dir(tiny_bilm, tmp_path / "m")
    assert load_bilm(model=directory, stateful=True).stateful
    assert not load_bilm(model=directory).stateful


def test_overwriting_a_weight_file_leaves_no_temporary_files(tmp_path, make_bilm):
    path = tmp_path / "weights.hdf5"
    save_weights(make_bilm(seed=1), path)
    second = make_bilm(seed=2)
    save_weights(second, path)
    assert [p.name for p in tmp_path.iterdir()] == ["weights.hdf5"]
    # The second model's weights are the ones in the file (the first model's differ by far more).
    restored = load_weights(make_bilm(seed=3), path)
    for (name, a), (_, b) in zip(second.state_dict().items(), restored.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.shared
def test_fixture_round_trip_reproduces_every_dataset(tmp_path, fixture_dir):
    original = fixture_dir / "lm_weights.hdf5"
    model = load_bilm(options_file=fixture_dir / "options.json", weight_file=original)
    copy_path = tmp_path / "copy.hdf5"
    save_weights(model, copy_path)
    expected, written = read_datasets(original), read_datasets(copy_path)
    assert written.keys() == expected.keys()
    different = {
        name: float(np.abs(written[name] - expected[name]).max())
        for name in expected
        if not np.array_equal(written[name], expected[name])
    }
    assert not different, f"datasets not reproduced exactly (max abs difference): {different}"


@pytest.mark.shared
def test_fixture_round_trip_removes_the_forget_bias(tmp_path, fixture_dir):
    # Looser companion of the test above: catches a forget bias left in (a difference of 1.0).
    original = fixture_dir / "lm_weights.hdf5"
    model = load_bilm(options_file=fixture_dir / "options.json", weight_file=original)
    copy_path = tmp_path / "copy.hdf5"
    save_weights(model, copy_path)
    expected, written = read_datasets(original), read_datasets(copy_path)
    for name in expected:
        np.testing.assert_allclose(written[name], expected[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.shared
def test_fixture_model_dir_round_trip(tmp_path, fixture_dir):
    model = load_bilm(options_file=fixture_dir / "options.json", weight_file=fixture_dir / "lm_weights.hdf5")
    restored = load_bilm(model=save_model_dir(model, tmp_path / "m"))
    assert_same_parameters(model, restored)
    assert_same_outputs(model, restored)


@pytest.mark.shared
def test_fixture_with_n_characters_261(tmp_path, fixture_dir):
    # bilm-tf writes n_characters 261 in the options it trains with; the weight file is the same
    # (char_embed (261, dim)) and so must be the model.
    data = copy.deepcopy(FIXTURE_OPTIONS)
    data["char_cnn"]["n_characters"] = 261
    options_261 = write_options(tmp_path / "options.json", data)
    weights = fixture_dir / "lm_weights.hdf5"
    model_261 = load_bilm(options_file=options_261, weight_file=weights)
    model_262 = load_bilm(options_file=fixture_dir / "options.json", weight_file=weights)
    for a, b in zip(run(model_261).layers, run(model_262).layers):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# ---- model files -------------------------------------------------------------------------------


def test_resolve_model_files_with_a_folder(tmp_path, tiny_bilm):
    directory = save_model_dir(tiny_bilm, tmp_path / "m")
    files = resolve_model_files(directory)
    assert files.options_file == directory / "options.json"
    assert files.weight_file == directory / "weights.hdf5"
    assert files.directory == directory
    assert resolve_model_files(str(directory)) == files


def test_resolve_model_files_with_explicit_files(tmp_path):
    files = resolve_model_files(options_file=tmp_path / "o.json", weight_file=str(tmp_path / "w.h5"))
    assert files.options_file == tmp_path / "o.json"
    assert files.weight_file == tmp_path / "w.h5"
    assert files.directory is None
    assert files.meta() == {}


@pytest.mark.parametrize(
    "kwargs",
    [{"options_file": "o.json"}, {"weight_file": "w.hdf5"}, {"options_file": "o.json", "weight_file": "w.hdf5"}],
    ids=["options", "weights", "both-files"],
)
def test_resolve_model_files_folder_and_files_is_an_error(tmp_path, tiny_bilm, kwargs):
    directory = save_model_dir(tiny_bilm, tmp_path / "m")
    with pytest.raises(ValueError, match="not both"):
        resolve_model_files(directory, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{}, {"options_file": "o.json"}, {"weight_file": "w.hdf5"}], ids=["nothing", "no-weights", "no-options"]
)
def test_resolve_model_files_with_neither_is_an_error(kwargs):
    with pytest.raises(ValueError, match="model directory"):
        resolve_model_files(**kwargs)


@pytest.mark.parametrize("missing", ["weights.hdf5", "options.json"])
def test_model_folder_missing_a_file(tmp_path, tiny_bilm, missing):
    directory = save_model_dir(tiny_bilm, tmp_path / "m")
    (directory / missing).unlink()
    for call in (lambda: resolve_model_files(directory), lambda: load_bilm(model=directory)):
        with pytest.raises(WeightFileError) as err:
            call()
        assert missing in str(err.value) and str(directory) in str(err.value)


def test_model_folder_that_is_not_a_folder(tmp_path, tiny_bilm):
    for path in (tmp_path / "absent", save_model_dir(tiny_bilm, tmp_path / "m") / "weights.hdf5"):
        with pytest.raises(WeightFileError) as err:
            load_bilm(model=path)
        assert str(path) in str(err.value)


def test_unreadable_meta_json(tmp_path, tiny_bilm):
    directory = save_model_dir(tiny_bilm, tmp_path / "m")
    (directory / "meta.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(WeightFileError, match="meta.json"):
        resolve_model_files(directory).meta()


# ---- broken weight files -----------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, tiny_bilm):
    """(options.json, weights.hdf5) of the tiny model, in a folder of their own."""
    directory = save_model_dir(tiny_bilm, tmp_path / "good")
    return directory / "options.json", directory / "weights.hdf5"


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _edit(src: Path, dst: Path, edit) -> Path:
    _copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _replace(name, make):
    def edit(f):
        old = f[name][...]
        del f[name]
        make(f, name, old)

    return edit


def _truncated(fraction):
    def make(src, dst):
        data = src.read_bytes()
        dst.write_bytes(data[: int(len(data) * fraction)])
        return dst

    return make


def _set_value(name, value):
    def edit(f):
        data = f[name][...]
        data.flat[len(data.flat) // 2] = value
        f[name][...] = data

    return edit


CORRUPTIONS = {
    "missing": lambda src, dst: dst,
    "folder": lambda src, dst: (dst.mkdir(), dst)[1],
    "empty": lambda src, dst: (dst.write_bytes(b""), dst)[1],
    "random-bytes": lambda src, dst: (dst.write_bytes(random.Random(0).randbytes(50_000)), dst)[1],
    "text": lambda src, dst: (dst.write_text('{"not": "hdf5"}'), dst)[1],
    "truncated-half": _truncated(0.5),
    "truncated-10pct": _truncated(0.1),
    "truncated-90pct": _truncated(0.9),
    "truncated-last-byte": lambda src, dst: (dst.write_bytes(src.read_bytes()[:-1]), dst)[1],
    "missing-dataset": lambda src, dst: _edit(src, dst, lambda f: f.__delitem__("CNN_proj/b_proj")),
    "missing-lstm-dataset": lambda src, dst: _edit(
        src, dst, lambda f: f.__delitem__("RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0")
    ),
    "missing-group": lambda src, dst: _edit(src, dst, lambda f: f.__delitem__("RNN_1")),
    "wrong-shape": lambda src, dst: _edit(
        src, dst, _replace("CNN/W_cnn_1", lambda f, n, old: f.create_dataset(n, data=old[..., :-1]))
    ),
    "transposed": lambda src, dst: _edit(
        src, dst, _replace("CNN_proj/W_proj", lambda f, n, old: f.create_dataset(n, data=old.T.copy()))
    ),
    "scalar-instead-of-array": lambda src, dst: _edit(
        src, dst, _replace("CNN_proj/b_proj", lambda f, n, old: f.create_dataset(n, data=1.0))
    ),
    "group-instead-of-dataset": lambda src, dst: _edit(
        src, dst, _replace("char_embed", lambda f, n, old: f.create_group(n))
    ),
    "nan": lambda src, dst: _edit(src, dst, _set_value("CNN_high_0/W_carry", np.nan)),
    "inf": lambda src, dst: _edit(src, dst, _set_value("RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/B", -np.inf)),
    "integer-dataset": lambda src, dst: _edit(
        src, dst, _replace("char_embed", lambda f, n, old: f.create_dataset(n, data=old.astype(np.int32)))
    ),
    "string-dataset": lambda src, dst: _edit(
        src, dst,
        _replace("CNN/b_cnn_0", lambda f, n, old: f.create_dataset(n, data=np.array([b"x"] * old.shape[0]))),
    ),
    "bool-dataset": lambda src, dst: _edit(
        src, dst, _replace("CNN/b_cnn_0", lambda f, n, old: f.create_dataset(n, data=old > 0))
    ),
}


def assert_weight_file_error(call, path: Path) -> WeightFileError:
    with pytest.raises(WeightFileError) as err:
        call()
    assert type(err.value).__module__.startswith("spacy_elmo"), type(err.value)
    assert str(path) in str(err.value), f"message does not name the file: {err.value}"
    return err.value


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupted_weight_file(tmp_path, saved, tiny_options, kind):
    options_file, good = saved
    bad = CORRUPTIONS[kind](good, tmp_path / f"{kind}.hdf5")
    assert_weight_file_error(lambda: load_bilm(options_file=options_file, weight_file=bad), bad)
    assert_weight_file_error(lambda: load_weights(BiLM(tiny_options), bad), bad)


def test_corruption_helpers_leave_the_original_loadable(saved):
    # The corruptions work on copies: the source file is still fine (so the errors above come
    # from the corruption, not from a broken original).
    options_file, good = saved
    load_bilm(options_file=options_file, weight_file=good)


@pytest.mark.parametrize(
    "change",
    [
        {"lstm": {"projection_dim": 16}},
        {"lstm": {"dim": 32}},
        {"lstm": {"n_layers": 3}},
        {"char_cnn": {"filters": [[1, 4], [2, 4], [3, 16]]}},
        {"char_cnn": {"filters": [[1, 4], [2, 4], [3, 8], [4, 8]]}},
        {"char_cnn": {"n_highway": 2}},
        {"char_cnn": {"embedding": {"dim": 8}}},
    ],
    ids=["projection_dim", "cell-dim", "n_layers", "filter-size", "extra-filter", "n_highway", "char-dim"],
)
def test_options_that_do_not_fit_the_weights(tmp_path, saved, tiny_options, change):
    _, weights = saved
    data = tiny_options.to_dict()
    for section, values in change.items():
        data[section].update(values)
    options_file = write_options(tmp_path / "options.json", data)
    err = assert_weight_file_error(lambda: load_bilm(options_file=options_file, weight_file=weights), weights)
    assert not isinstance(err, OptionsError)


@pytest.mark.shared
def test_fixture_weights_with_projection_dim_32(tmp_path, fixture_dir):
    data = copy.deepcopy(FIXTURE_OPTIONS)
    data["lstm"]["projection_dim"] = 32
    options_file = write_options(tmp_path / "options.json", data)
    weights = fixture_dir / "lm_weights.hdf5"
    assert_weight_file_error(lambda: load_bilm(options_file=options_file, weight_file=weights), weights)


# ---- broken options -----------------------------------------------------------------------------


def _without(section, key):
    def change(data):
        del data[section][key]

    return change


def _set(path, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop_section(section):
    def change(data):
        del data[section]

    return change


# (change to a valid options dict, a substring the message must contain)
OPTIONS_PROBLEMS = {
    "no-lstm-section": (_drop_section("lstm"), "lstm"),
    "no-char_cnn-section": (_drop_section("char_cnn"), "char_cnn"),
    "lstm-not-an-object": (_set(["lstm"], [2, 64]), "lstm"),
    "missing-lstm.n_layers": (_without("lstm", "n_layers"), "lstm.n_layers"),
    "missing-lstm.dim": (_without("lstm", "dim"), "lstm.dim"),
    "missing-lstm.projection_dim": (_without("lstm", "projection_dim"), "lstm.projection_dim"),
    "missing-char_cnn.filters": (_without("char_cnn", "filters"), "char_cnn.filters"),
    "missing-char_cnn.embedding": (_without("char_cnn", "embedding"), "char_cnn.embedding"),
    "missing-embedding.dim": (_set(["char_cnn", "embedding"], {}), "char_cnn.embedding.dim"),
    "str-dim": (_set(["lstm", "dim"], "64"), "lstm.dim"),
    "float-n_layers": (_set(["lstm", "n_layers"], 2.5), "lstm.n_layers"),
    "bool-n_layers": (_set(["lstm", "n_layers"], True), "lstm.n_layers"),
    "null-projection_dim": (_set(["lstm", "projection_dim"], None), "lstm.projection_dim"),
    "str-skip": (_set(["lstm", "use_skip_connections"], "yes"), "lstm.use_skip_connections"),
    "str-cell_clip": (_set(["lstm", "cell_clip"], "3"), "lstm.cell_clip"),
    "str-filters": (_set(["char_cnn", "filters"], "[[1, 4]]"), "char_cnn.filters"),
    "str-in-filter": (_set(["char_cnn", "filters"], [[1, "4"]]), "char_cnn.filters"),
    "filter-triple": (_set(["char_cnn", "filters"], [[1, 4, 5]]), "char_cnn.filters"),
    "int-embedding": (_set(["char_cnn", "embedding"], 4), "char_cnn.embedding"),
    "float-embedding.dim": (_set(["char_cnn", "embedding", "dim"], 4.5), "char_cnn.embedding.dim"),
    "str-n_highway": (_set(["char_cnn", "n_highway"], "2"), "char_cnn.n_highway"),
    "int-activation": (_set(["char_cnn", "activation"], 1), "char_cnn.activation"),
    "negative-dim": (_set(["lstm", "dim"], -64), "lstm.dim"),
    "zero-dim": (_set(["lstm", "dim"], 0), "lstm.dim"),
    "negative-projection_dim": (_set(["lstm", "projection_dim"], -16), "lstm.projection_dim"),
    "zero-n_layers": (_set(["lstm", "n_layers"], 0), "lstm.n_layers"),
    "negative-embedding.dim": (_set(["char_cnn", "embedding", "dim"], -4), "char_cnn.embedding.dim"),
    "negative-filter-count": (_set(["char_cnn", "filters"], [[1, -4]]), "char_cnn.filters"),
    "zero-filter-width": (_set(["char_cnn", "filters"], [[0, 4]]), "char_cnn.filters"),
    "no-filters": (_set(["char_cnn", "filters"], []), "char_cnn.filters"),
    "too-wide-filter": (_set(["char_cnn", "filters"], [[51, 4]]), "max_characters_per_token"),
    "negative-n_highway": (_set(["char_cnn", "n_highway"], -1), "char_cnn.n_highway"),
    "bad-n_characters": (_set(["char_cnn", "n_characters"], 300), "char_cnn.n_characters"),
    "bad-max_characters": (_set(["char_cnn", "max_characters_per_token"], 40), "max_characters_per_token"),
    "unknown-activation": (_set(["char_cnn", "activation"], "gelu"), "gelu"),
}


@pytest.mark.parametrize("problem", sorted(OPTIONS_PROBLEMS))
def test_invalid_options(tmp_path, saved, problem):
    _, weights = saved
    change, expected_text = OPTIONS_PROBLEMS[problem]
    data = copy.deepcopy(FIXTURE_OPTIONS)
    change(data)
    options_file = write_options(tmp_path / "options.json", data)
    for call in (
        lambda: ElmoOptions.from_file(options_file),
        lambda: load_bilm(options_file=options_file, weight_file=weights),
    ):
        with pytest.raises(OptionsError) as err:
            call()
        assert not isinstance(err.value, WeightFileError)
        message = str(err.value)
        assert str(options_file) in message, message
        assert expected_text in message, message


def test_the_options_problems_start_from_valid_options():
    ElmoOptions.from_dict(copy.deepcopy(FIXTURE_OPTIONS))


@pytest.mark.parametrize(
    "content",
    [b"{lstm: }", b"", b'{"lstm": {"dim": 64}', b"\xff\xfe\x00garbage", b"[]", b"null", b'"options"'],
    ids=["invalid-json", "empty", "unterminated", "not-utf8", "list", "null", "string"],
)
def test_unreadable_options_file(tmp_path, saved, content):
    _, weights = saved
    options_file = tmp_path / "options.json"
    options_file.write_bytes(content)
    with pytest.raises(OptionsError) as err:
        load_bilm(options_file=options_file, weight_file=weights)
    assert str(options_file) in str(err.value)


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_options_file_missing_or_a_folder(tmp_path, saved, kind):
    _, weights = saved
    options_file = tmp_path / "options.json"
    if kind == "folder":
        options_file.mkdir()
    with pytest.raises(OptionsError) as err:
        load_bilm(options_file=options_file, weight_file=weights)
    assert str(options_file) in str(err.value)


@pytest.mark.parametrize("device, phrase", [("blah", "unknown device"), ("meta", "runs on"), ("cuda:99", "cuda")])
def test_load_bilm_checks_the_device_before_reading(tmp_path, tiny_bilm, device, phrase):
    directory = save_model_dir(tiny_bilm, tmp_path / "m")
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 CUDA GPUs")
    with pytest.raises(DeviceError, match=phrase):
        load_bilm(model=directory, device=device)
    assert load_bilm(model=directory, device=torch.device("cpu")).char_encoder.W_proj.device.type == "cpu"


@pytest.mark.parametrize("section, key", [("lstm", "n_layers"), ("char_cnn", "n_highway")])
def test_a_weight_file_of_a_larger_model_is_refused_not_read_in_part(tmp_path, make_bilm, tiny_options, section, key):
    bilm = make_bilm(dataclasses.replace(tiny_options, **{section: dataclasses.replace(getattr(tiny_options, section), **{key: 2})}))
    directory = save_model_dir(bilm, tmp_path / "m")
    options = json.loads((directory / "options.json").read_text())
    options[section][key] = 1  # options of a smaller model, next to the larger model's weights
    (directory / "options.json").write_text(json.dumps(options))
    with pytest.raises(WeightFileError, match="do not belong together"):
        load_bilm(model=directory)


@pytest.mark.parametrize("model", ["", "  "])
def test_an_empty_model_setting_is_an_error_not_the_current_folder(tmp_path, tiny_bilm, monkeypatch, model):
    save_model_dir(tiny_bilm, tmp_path)  # the current folder holds a model: it must not be picked up
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty string"):
        resolve_model_files(model=model)
