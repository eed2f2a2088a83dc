"""Model folders from strangers (issue 18, items 1-4): weight files are data, never pointers;
options are capped and finite; meta.json, softmax.hdf5 and vocab.txt are checked. Every refusal
is a specific exception naming the file (a one-line error in the CLI), raised before any data is
read from elsewhere and before the model is built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spacy_elmo.bilm import ElmoOptions, OptionsError, WeightFileError, load_bilm, save_model_dir
from spacy_elmo.bilm.options import MAX_LSTM_DIM, MAX_PARAMETERS
from spacy_elmo.cli import app
from spacy_elmo.pretrain import Vocab, VocabError
from spacy_elmo.pretrain.export import load_language_model
from spacy_elmo.pretrain.softmax import FullSoftmax, load_softmax, save_softmax
from cli_output import printed

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
TARGET = "CNN_proj/b_proj"  # the dataset the attacks below replace


@pytest.fixture
def folder(tmp_path, tiny_bilm) -> Path:
    return save_model_dir(tiny_bilm, tmp_path / "model", {"name": "tiny"})


def replace_dataset(weights: Path, make) -> None:
    """Swap TARGET for what make(file, name, shape) creates."""
    with h5py.File(weights, "r+") as f:
        shape = f[TARGET].shape
        del f[TARGET]
        make(f, TARGET, shape)


def secret_file(tmp_path: Path, n_floats: int) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(n_floats, dtype=np.float32).tobytes())
    return path


def assert_refused(folder: Path, *phrases: str) -> str:
    with pytest.raises(WeightFileError) as err:
        load_bilm(model=folder)
    message = str(err.value)
    assert str(folder / "weights.hdf5") in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


# ---- pointers instead of data ------------------------------------------------------------------


def test_external_storage_is_refused_everywhere(tmp_path, folder):
    secret = secret_file(tmp_path, 1000)
    replace_dataset(folder / "weights.hdf5", lambda f, name, shape: f.create_dataset(
        name, shape, "float32", external=[(str(secret), 0, h5py.h5f.UNLIMITED)]))
    with h5py.File(folder / "weights.hdf5") as f:  # the attack works on h5py itself
        assert f[TARGET][1] == 1.0
    assert_refused(folder, "external storage")
    for command in (["info", "-m", str(folder)], ["convert", str(tmp_path / "copy"), "-m", str(folder)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and "external storage" in printed(result), printed(result)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "copy").exists()


def test_virtual_dataset_is_refused(tmp_path, folder):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones(8, dtype="float32")

    def virtual(f, name, shape):
        layout = h5py.VirtualLayout(shape=shape, dtype="float32")
        layout[:] = h5py.VirtualSource(str(other), "x", shape=(8,))
        f.create_virtual_dataset(name, layout)

    replace_dataset(folder / "weights.hdf5", virtual)
    assert_refused(folder, "virtual dataset")


@pytest.mark.parametrize("kind", ["soft", "external", "soft-group", "external-group"])
def test_links_are_refused(tmp_path, folder, kind):
    other = tmp_path / "other.h5"
    with h5py.File(folder / "weights.hdf5") as src, h5py.File(other, "w") as dst:
        dst["copy"] = src[TARGET][...]
        src.copy(src["CNN_proj"], dst, "group_copy")
    with h5py.File(folder / "weights.hdf5", "r+") as f:
        if kind == "soft-group":  # the group on the way is the link
            f.move("CNN_proj", "elsewhere")
            f["CNN_proj"] = h5py.SoftLink("/elsewhere")
        elif kind == "external-group":
            del f["CNN_proj"]
            f["CNN_proj"] = h5py.ExternalLink(str(other), "group_copy")
        else:
            f.move(TARGET, "elsewhere")
            f[TARGET] = h5py.SoftLink("/elsewhere") if kind == "soft" else h5py.ExternalLink(str(other), "copy")
    with h5py.File(folder / "weights.hdf5") as f:  # h5py follows the link
        assert f[TARGET].shape == (8,)
    message = assert_refused(folder, "external link" if kind.startswith("external") else "soft link")
    assert "corrupted" not in message, message  # the specific refusal, not re-worded as a bad file


def test_oversized_chunk_is_refused_before_reading(folder):
    replace_dataset(folder / "weights.hdf5", lambda f, name, shape: f.create_dataset(
        name, shape, "float32", maxshape=(None,), chunks=(1 << 26,)))
    assert_refused(folder, "chunks")


FIFO_SCRIPT = """
import os, sys
from spacy_elmo.bilm import WeightFileError, load_bilm
try:
    load_bilm(options_file=sys.argv[1], weight_file=sys.argv[2])
except WeightFileError as err:
    print("refused:", err)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_never_hang_the_loader(tmp_path, folder):
    """A FIFO as the weight file, and as the target of external storage: refused at once (the
    loader runs in a subprocess so that a regression fails the test instead of hanging it)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    replace_dataset(folder / "weights.hdf5", lambda f, name, shape: f.create_dataset(
        name, shape, "float32", external=[(str(fifo), 0, h5py.h5f.UNLIMITED)]))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for weights, phrase in [(fifo, "not a regular file"), (folder / "weights.hdf5", "external storage")]:
        out = subprocess.run([sys.executable, "-c", FIFO_SCRIPT, str(folder / "options.json"), str(weights)],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0 and "refused:" in out.stdout and phrase in out.stdout, out.stdout + out.stderr


# ---- values ---------------------------------------------------------------------------------------


def test_float64_that_overflows_float32_is_refused(folder):
    def huge(f, name, shape):
        data = np.zeros(shape, dtype="float64")
        data[3] = 1e300  # finite as float64, inf as float32
        f.create_dataset(name, data=data)

    replace_dataset(folder / "weights.hdf5", huge)
    assert_refused(folder, "NaN or infinite", TARGET)


def test_float16_and_float64_weights_still_load(tmp_path, tiny_bilm):
    folder = save_model_dir(tiny_bilm, tmp_path / "m")
    with h5py.File(folder / "weights.hdf5", "r+") as f:
        for name, dtype in [("char_embed", "float16"), (TARGET, "float64")]:
            data = f[name][...]
            del f[name]
            f.create_dataset(name, data=data.astype(dtype), compression="gzip", chunks=True)
    loaded = load_bilm(model=folder)
    assert torch.equal(loaded.char_encoder.b_proj, tiny_bilm.char_encoder.b_proj)


# ---- options ----------------------------------------------------------------------------------


def options_dict(tiny_options: ElmoOptions) -> dict:
    return json.loads(json.dumps(tiny_options.to_dict()))


@pytest.mark.parametrize("section,key,value,phrase", [
    ("lstm", "dim", 10**12, "supported maximum"),
    ("lstm", "n_layers", 10**7, "supported maximum"),
    ("lstm", "projection_dim", 10**9, "supported maximum"),
    ("char_cnn", "n_highway", 10**6, "supported maximum"),
    ("char_cnn", "filters", [[1, 10**9]], "supported maximum"),
    ("char_cnn", "filters", [[1, 2]] * 10**4, "supported maximum"),
    ("lstm", "dim", MAX_LSTM_DIM, "parameters"),  # each size allowed, the product is not
])
def test_huge_sizes_are_refused_before_allocating(tmp_path, tiny_options, section, key, value, phrase):
    data = options_dict(tiny_options)
    data[section][key] = value
    if value == MAX_LSTM_DIM:
        data["lstm"]["projection_dim"] = 4096
        data["lstm"]["n_layers"] = 8
    path = tmp_path / "options.json"
    path.write_text(json.dumps(data))
    with pytest.raises(OptionsError) as err:
        ElmoOptions.from_file(path)
    assert str(path) in str(err.value) and phrase in str(err.value), str(err.value)


def test_published_sizes_are_far_below_the_caps():
    from spacy_elmo.bilm.options import original_options

    assert original_options().n_parameters * 10 <= MAX_PARAMETERS
    assert ElmoOptions.from_dict(original_options().to_dict()) == original_options()


@pytest.mark.parametrize("text,phrase", [
    ('{"lstm": {"cell_clip": NaN}}', "NaN"),
    ('{"lstm": {"proj_clip": Infinity}}', "Infinity"),
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
])
def test_non_numbers_and_deep_nesting_are_json_errors(tmp_path, text, phrase):
    path = tmp_path / "options.json"
    path.write_text(text)
    with pytest.raises(OptionsError) as err:
        ElmoOptions.from_file(path)
    assert str(path) in str(err.value) and phrase in str(err.value), str(err.value)


def test_nan_clip_given_as_a_python_float_is_refused(tiny_options):
    data = options_dict(tiny_options)
    data["lstm"]["cell_clip"] = float("nan")
    with pytest.raises(OptionsError, match="finite"):
        ElmoOptions.from_dict(data)


def test_oversized_options_file_is_refused_unread(tmp_path, tiny_options):
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options_dict(tiny_options)) + " " * (2 << 20))
    with pytest.raises(OptionsError, match="allowed"):
        ElmoOptions.from_file(path)


# ---- meta.json, softmax.hdf5, vocab.txt -----------------------------------------------------------


@pytest.mark.parametrize("content", ["[1, 2]", '"a string"', "3", "null"])
def test_meta_json_that_is_not_an_object(folder, content):
    (folder / "meta.json").write_text(content)
    result = runner.invoke(app, ["info", "-m", str(folder)])
    assert result.exit_code == 1, printed(result)
    assert "meta.json" in printed(result) and "JSON object" in printed(result)
    with pytest.raises(WeightFileError, match="JSON object"):
        load_language_model(folder)


def test_softmax_with_nan_is_refused(tmp_path):
    head = FullSoftmax(10, 8)
    with torch.no_grad():
        head.weight[3, 2] = float("nan")
    save_softmax(head, tmp_path / "softmax.hdf5")
    with pytest.raises(WeightFileError, match="NaN or infinite"):
        load_softmax(tmp_path / "softmax.hdf5")


def test_softmax_with_a_huge_description_is_refused_before_allocating(tmp_path):
    save_softmax(FullSoftmax(10, 8), tmp_path / "softmax.hdf5")
    with h5py.File(tmp_path / "softmax.hdf5", "r+") as f:
        f.attrs["spacy_elmo_softmax"] = json.dumps({"type": "full", "vocab_size": 10**12, "dim": 10**6})
    with pytest.raises(WeightFileError, match="vocab_size must be a whole number"):
        load_softmax(tmp_path / "softmax.hdf5")
    with h5py.File(tmp_path / "softmax.hdf5", "r+") as f:  # each field within its cap, the product not
        f.attrs["spacy_elmo_softmax"] = json.dumps({"type": "full", "vocab_size": 5_000_000, "dim": 60_000})
    with pytest.raises(WeightFileError, match="supported maximum"):
        load_softmax(tmp_path / "softmax.hdf5")


@pytest.mark.parametrize(
    "description, phrase",
    [
        ({"type": "full", "vocab_size": -5, "dim": 8}, "vocab_size must be"),
        ({"type": "full", "vocab_size": 1e30, "dim": 8}, "vocab_size must be"),
        ({"type": "full", "vocab_size": "10", "dim": 8}, "vocab_size must be"),
        ({"type": "full", "vocab_size": 10, "dim": 0}, "dim must be"),
        ({"type": "sampled", "vocab_size": 10, "dim": 8, "n_samples": -1}, "n_samples must be"),
        ({"type": "adaptive", "vocab_size": 10, "dim": 8, "cutoffs": [5], "div_value": -4.0}, "div_value must be"),
        ({"type": "adaptive", "vocab_size": 10, "dim": 8, "cutoffs": "5"}, "cutoffs must be"),
        ({"type": "mystery", "vocab_size": 10, "dim": 8}, "softmax.type must be"),
        (["full", 10, 8], "JSON object"),
        ({"type": "full", "dim": 8}, "has no vocab_size"),
    ],
)
def test_softmax_descriptions_no_softmax_has_are_one_line_errors(tmp_path, description, phrase):
    save_softmax(FullSoftmax(10, 8), tmp_path / "softmax.hdf5")
    with h5py.File(tmp_path / "softmax.hdf5", "r+") as f:
        f.attrs["spacy_elmo_softmax"] = json.dumps(description)
    with pytest.raises(WeightFileError, match=phrase) as err:
        load_softmax(tmp_path / "softmax.hdf5")
    assert "\n" not in str(err.value) and "c10" not in str(err.value)


def test_softmax_round_trip_still_exact(tmp_path):
    head = FullSoftmax(10, 8)
    save_softmax(head, tmp_path / "softmax.hdf5")
    loaded = load_softmax(tmp_path / "softmax.hdf5")
    assert torch.equal(loaded.weight, head.weight) and torch.equal(loaded.bias, head.bias)


def test_duplicate_vocabulary_tokens_are_refused(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("<S>\n</S>\n<UNK>\nthe\ncat\nthe\n")
    with pytest.raises(VocabError, match="twice") as err:
        Vocab.from_file(path)
    assert str(path) in str(err.value)


def convert_fails(command: list[str], *phrases: str) -> None:
    result = runner.invoke(app, command)
    out = printed(result)
    assert result.exit_code == 1 and "Traceback" not in out, out
    for phrase in phrases:
        assert phrase in out, out


@pytest.mark.parametrize("extra", ["MODEL_CARD.md", "vocab.txt"])
def test_convert_copies_no_file_from_elsewhere_through_a_link(tmp_path, folder, extra):
    secret = tmp_path / "secret.txt"
    secret.write_text("<S>\n</S>\n<UNK>\npassword\n")  # even a file that would pass as a vocabulary
    (folder / extra).symlink_to(secret)
    convert_fails(["convert", str(tmp_path / "out"), "-m", str(folder)], "is a link", "refused")
    assert not (tmp_path / "out").exists() or not (tmp_path / "out" / extra).exists()


def test_convert_checks_the_vocabulary_it_copies(tmp_path, folder):
    (folder / "vocab.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    convert_fails(["convert", str(tmp_path / "out"), "-m", str(folder)], "vocab.txt", "<S>")
    (folder / "vocab.txt").write_text("<S>\n</S>\n<UNK>\nthe\n")
    (folder / "MODEL_CARD.md").write_text("# tiny\n")
    result = runner.invoke(app, ["convert", str(tmp_path / "out"), "-m", str(folder)])
    assert result.exit_code == 0, printed(result)
    assert (tmp_path / "out" / "vocab.txt").read_text() == (folder / "vocab.txt").read_text()
    assert (tmp_path / "out" / "MODEL_CARD.md").read_text() == "# tiny\n"


@pytest.mark.parametrize("name", ["", ".", "..", "../../x", "a/b", "a\\b"])
def test_convert_to_allennlp_writes_only_inside_its_folder(tmp_path, folder, name):
    convert_fails(["convert", str(tmp_path / "out" / "pair"), "-m", str(folder), "--to", "allennlp", "--name", name],
                  "--name")
    assert not (tmp_path / "out").exists()


# ---- the same checks through spaCy: the component, spacy.load, from_bytes --------------------------


def test_pipelines_refuse_external_storage(tmp_path, folder):
    import spacy
    import srsly

    from elmo_pipelines import elmo_nlp

    nlp = elmo_nlp(str(folder))
    nlp.initialize()
    nlp.to_disk(tmp_path / "pipeline")
    data = nlp.get_pipe("elmo").to_bytes()
    secret = secret_file(tmp_path, 1000)
    for weights in (folder / "weights.hdf5", tmp_path / "pipeline" / "elmo" / "model" / "weights.hdf5"):
        replace_dataset(weights, lambda f, name, shape: f.create_dataset(
            name, shape, "float32", external=[(str(secret), 0, h5py.h5f.UNLIMITED)]))
    with pytest.raises(WeightFileError, match="external storage"):
        elmo_nlp(str(folder)).initialize()
    with pytest.raises(WeightFileError, match="external storage"):
        spacy.load(tmp_path / "pipeline")
    tampered = srsly.msgpack_loads(data)
    tampered["model"]["weights.hdf5"] = (folder / "weights.hdf5").read_bytes()
    with pytest.raises(WeightFileError, match="external storage"):
        spacy.blank("en").add_pipe("elmo", config={"similarity_hooks": False}).from_bytes(srsly.msgpack_dumps(tampered))


def test_oversized_vocabulary_is_refused_unread(tmp_path, tiny_bilm, monkeypatch):
    from spacy_elmo.pretrain import write_model_dir

    vocab = Vocab(["<S>", "</S>", "<UNK>", "the"])
    lm = write_model_dir(tiny_bilm, FullSoftmax(4, tiny_bilm.options.lstm.projection_dim), vocab, tmp_path / "lm", {})
    assert load_language_model(lm).vocab.tokens == vocab.tokens
    monkeypatch.setattr("spacy_elmo.pretrain.export.MAX_VOCAB_BYTES", 10)
    with pytest.raises(WeightFileError, match="supported maximum") as err:
        load_language_model(lm)
    assert "vocab.txt" in str(err.value)


def test_convert_to_allennlp_warns_when_allennlp_would_compute_other_vectors(tmp_path, make_bilm, tiny_options):
    import dataclasses

    options = dataclasses.replace(tiny_options, lstm=dataclasses.replace(tiny_options.lstm, use_skip_connections=False))
    folder = save_model_dir(make_bilm(options), tmp_path / "model")
    result = runner.invoke(app, ["convert", str(tmp_path / "pair"), "-m", str(folder), "--to", "allennlp"])
    assert result.exit_code == 0 and "use_skip_connections" in printed(result), printed(result)
    result = runner.invoke(app, ["convert", str(tmp_path / "pair2"), "-m", str(save_model_dir(make_bilm(), tmp_path / "m2")),
                                 "--to", "allennlp"])
    assert result.exit_code == 0 and "use_skip_connections" not in printed(result), printed(result)
