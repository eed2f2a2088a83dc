"""`spacy-elmo embed` writes what AllenNLP's `elmo` command writes; `info` and `convert` work."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spacy_elmo.bilm import BiLM, ElmoOptions, batch_to_ids, load_bilm, save_model_dir
from spacy_elmo.cli import app
from cli_output import printed

TINY = {
    "lstm": {"n_layers": 2, "dim": 24, "projection_dim": 8, "cell_clip": 3, "proj_clip": 3, "use_skip_connections": True},
    "char_cnn": {"embedding": {"dim": 4}, "filters": [[1, 4], [2, 8]], "n_highway": 1, "n_characters": 262, "activation": "relu"},
}
LINES = ["The cat sat on the mat .", "", "A   second line", "Émoji 🙂 and 漢字 text", "x " * 300]

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model")
    save_model_dir(BiLM(ElmoOptions.from_dict(TINY)), path, {"name": "tiny"})
    return path


@pytest.fixture()
def input_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def reference(model_dir, line):
    bilm = load_bilm(model_dir)
    with torch.no_grad():
        out = bilm(batch_to_ids([line.split()]))
    return out.stacked()[0].numpy()


@pytest.mark.parametrize("flag,expected_ndim", [("--all", 3), ("--top", 2), ("--average", 2)])
def test_embed_layout_matches_allennlp(model_dir, input_file, tmp_path, flag, expected_ndim):
    output = tmp_path / "out.hdf5"
    result = runner.invoke(app, ["embed", str(input_file), str(output), flag, "--model", str(model_dir), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    with h5py.File(output, "r") as f:
        assert set(f.keys()) == {str(i) for i in range(len(LINES))} | {"sentence_to_index"}
        index = json.loads(f["sentence_to_index"][0])
        assert index == {line.strip(): str(i) for i, line in enumerate(LINES)}
        for i, line in enumerate(LINES):
            data = f[str(i)][...]
            assert data.dtype == np.float32
            assert data.ndim == expected_ndim
            n_tokens = len(line.split())
            layers = reference(model_dir, line)[:, :n_tokens]
            expected = {"--all": layers, "--top": layers[-1], "--average": layers.mean(0)}[flag]
            assert data.shape == expected.shape
            np.testing.assert_allclose(data, expected, atol=1e-5)
    # The empty line is a 0-token entry with the right layout, not a crash.
    with h5py.File(output, "r") as f:
        assert f["1"].shape[-2] == 0


def test_embed_with_options_and_weight_files_and_sentence_keys(model_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one two\nthree\n", encoding="utf-8")
    output = tmp_path / "out.hdf5"
    result = runner.invoke(app, [
        "embed", str(source), str(output), "--top", "--use-sentence-keys", "--forget-sentences",
        "--options-file", str(model_dir / "options.json"), "--weight-file", str(model_dir / "weights.hdf5"),
    ])
    assert result.exit_code == 0, result.output
    with h5py.File(output, "r") as f:
        assert set(f.keys()) == {"one two", "three"}
        assert f["one two"].shape == (2, 16)


def test_embed_duplicate_sentence_keys_fail_cleanly_and_leave_no_file(model_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("same line\nsame line\n", encoding="utf-8")
    output = tmp_path / "out.hdf5"
    result = runner.invoke(app, ["embed", str(source), str(output), "--use-sentence-keys", "--model", str(model_dir)])
    assert result.exit_code == 1
    assert "duplicate" in printed(result)
    assert not output.exists()
    assert list(tmp_path.glob(".out.hdf5*")) == []  # no temporary file left behind


@pytest.mark.parametrize("flags,has_index", [([], True), (["--use-sentence-keys"], False), (["--forget-sentences"], False)])
def test_sentence_to_index_is_written_as_allennlp_writes_it(model_dir, tmp_path, flags, has_index):
    # AllenNLP writes the index only without --use-sentence-keys and --forget-sentences; with
    # sentence keys the names are the sentences, so a line may even be "sentence_to_index".
    source = tmp_path / "in.txt"
    source.write_text("one two\n..\nsentence_to_index\n", encoding="utf-8")
    output = tmp_path / "out.hdf5"
    result = runner.invoke(app, ["embed", str(source), str(output), "--top", "--model", str(model_dir), *flags])
    assert result.exit_code == 0, result.output
    with h5py.File(output, "r") as f:
        if "--use-sentence-keys" in flags:
            assert set(f.keys()) == {"one two", "..", "sentence_to_index"}
            assert f["sentence_to_index"].shape == (1, 16)  # the line's vectors, not an index
        else:
            assert set(f.keys()) == {"0", "1", "2"} | ({"sentence_to_index"} if has_index else set())
        if has_index:
            assert json.loads(f["sentence_to_index"][0]) == {"one two": "0", "..": "1", "sentence_to_index": "2"}


@pytest.mark.parametrize("lines,bad", [
    (["a b", "."], "."),  # HDF5's name for the group itself: `"." in file` is always true
    (["a\x00b", "a\x00c"], "a\x00b"),  # HDF5 would cut both names at NUL, to "a"
    (["a/b"], "a/b"),
    (["a", ""], ""),
])
def test_sentence_keys_that_hdf5_cannot_name_fail_cleanly(model_dir, tmp_path, lines, bad):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.hdf5"
    result = runner.invoke(app, ["embed", str(source), str(output), "--use-sentence-keys", "--model", str(model_dir)])
    assert result.exit_code == 1
    assert f"{bad!r} cannot be an HDF5 dataset name" in printed(result), printed(result)
    assert "duplicate" not in printed(result) and "Traceback" not in result.output
    assert not output.exists()


def test_embed_bad_model_and_missing_input_give_one_line_errors(model_dir, tmp_path, input_file):
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    result = runner.invoke(app, ["embed", str(input_file), str(tmp_path / "o.h5"),
                                 "--options-file", str(model_dir / "options.json"), "--weight-file", str(garbage)])
    assert result.exit_code == 1
    assert "garbage.hdf5" in printed(result) and "Traceback" not in result.output
    result = runner.invoke(app, ["embed", str(tmp_path / "missing.txt"), str(tmp_path / "o.h5"), "--model", str(model_dir)])
    assert result.exit_code == 1 and "not found" in printed(result)
    result = runner.invoke(app, ["embed", str(input_file), str(tmp_path / "o.h5"), "--top", "--average", "--model", str(model_dir)])
    assert result.exit_code == 1


def test_embed_undecodable_bytes_do_not_crash(model_dir, tmp_path):
    source = tmp_path / "bad.txt"
    source.write_bytes(b"ok line\n\xff\xfe broken \xc3\n\x00\x01 control\n")
    output = tmp_path / "out.hdf5"
    result = runner.invoke(app, ["embed", str(source), str(output), "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    with h5py.File(output, "r") as f:
        assert f["1"].shape[1] == 3 and np.isfinite(f["1"][...]).all()


def test_info_and_convert_round_trip(model_dir, tmp_path):
    result = runner.invoke(app, ["info", "--model", str(model_dir), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["output_dim"] == 16 and info["n_layers"] == 3 and info["meta"]["name"] == "tiny"
    assert info["parameters"] == sum(p.numel() for p in load_bilm(model_dir).parameters())

    pair = tmp_path / "pair"
    assert runner.invoke(app, ["convert", str(pair), "--model", str(model_dir), "--to", "allennlp"]).exit_code == 0
    back = tmp_path / "back"
    result = runner.invoke(app, ["convert", str(back), "--options-file", str(pair / "elmo_options.json"),
                                 "--weight-file", str(pair / "elmo_weights.hdf5")])
    assert result.exit_code == 0, result.output
    original, converted = load_bilm(model_dir).state_dict(), load_bilm(back).state_dict()
    assert original.keys() == converted.keys()
    for key in original:
        assert torch.equal(original[key], converted[key]), key


def test_python_dash_m_entry_point(model_dir, input_file, tmp_path):
    output = tmp_path / "out.hdf5"
    proc = subprocess.run([sys.executable, "-m", "spacy_elmo", "embed", str(input_file), str(output), "--top",
                           "--model", str(model_dir), "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(output, "r") as f:
        assert f["0"].shape == (7, 16)
