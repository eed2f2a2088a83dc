"""Commands fail before the work, in one line, when their output cannot be written; temporaries go
on every exit, SIGTERM included; `embed`'s memory is bounded by --max-batch-tokens whatever the line
lengths (issue 18, items 6-8).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spacy_elmo.atomic import atomic_path, remove_stale_temporaries
from spacy_elmo.bilm import save_model_dir
from spacy_elmo.bilm.embedder import Embedder, embed_file, windows
from spacy_elmo.cli import app
from spacy_elmo.pretrain import Vocab, write_model_dir
from spacy_elmo.pretrain.softmax import FullSoftmax
from cli_output import printed

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path, tiny_bilm) -> Path:
    return save_model_dir(tiny_bilm, tmp_path / "model", {"name": "tiny"})


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("the cat sat .\n\nthe dog ran away .\n", encoding="utf-8")
    return path


def fails_in_one_line(result, *phrases: str) -> str:
    __tracebackhide__ = True
    out = printed(result)
    assert result.exit_code == 1, out
    assert "Traceback" not in result.output and not isinstance(result.exception, (TypeError, AttributeError, OSError))
    for phrase in phrases:
        assert phrase in out, out
    return out


# ---- output paths checked before the work ------------------------------------------------------


def test_embed_refuses_to_overwrite_its_input(folder, text):
    before = text.read_bytes()
    fails_in_one_line(runner.invoke(app, ["embed", str(text), str(text), "-m", str(folder)]), "is the input")
    assert text.read_bytes() == before
    assert list(text.parent.glob(".in.txt*")) == []


def test_embed_onto_a_folder_fails_before_the_work(folder, text, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr("spacy_elmo.cli.embed.load_model_or_exit", no_work)
    (tmp_path / "out").mkdir()
    fails_in_one_line(runner.invoke(app, ["embed", str(text), str(tmp_path / "out"), "-m", str(folder)]), "is a folder")
    (tmp_path / "afile").write_text("x")
    fails_in_one_line(runner.invoke(app, ["embed", str(text), str(tmp_path / "afile" / "o.h5"), "-m", str(folder)]),
                      "is a file, not a folder")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_embed_into_a_read_only_folder(folder, text, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        fails_in_one_line(runner.invoke(app, ["embed", str(text), str(locked / "o.h5"), "-m", str(folder)]),
                          "no permission")
    finally:
        locked.chmod(0o700)


def test_embed_library_checks_the_output_too(folder, text):
    from spacy_elmo.bilm import load_bilm

    with pytest.raises(ValueError, match="is the input"):
        embed_file(Embedder(load_bilm(model=folder)), text, text, progress=False)


@pytest.mark.parametrize("device,phrase", [("bogus", "unknown device"), ("cuda:7", "cuda"), ("meta", "runs on")])
def test_bad_devices_are_one_line_errors(folder, text, tmp_path, device, phrase):
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    fails_in_one_line(runner.invoke(app, ["embed", str(text), str(tmp_path / "o.h5"), "-m", str(folder),
                                          "--device", device]), "--device", phrase)


def test_thread_counts_torch_cannot_start_are_refused(folder, text, tmp_path):
    result = runner.invoke(app, ["embed", str(text), str(tmp_path / "o.h5"), "-m", str(folder), "--threads", "100000"])
    assert result.exit_code == 2 and "--threads" in result.output and not (tmp_path / "o.h5").exists()


@pytest.fixture
def lm_folder(tmp_path, tiny_bilm) -> Path:
    vocab = Vocab(["<S>", "</S>", "<UNK>", "the", "cat", "dog"])
    return write_model_dir(tiny_bilm, FullSoftmax(len(vocab), tiny_bilm.options.lstm.projection_dim), vocab,
                           tmp_path / "lm", {"tokenizer": "whitespace"})


def test_evaluate_output_is_checked_before_and_its_folders_created(lm_folder, text, tmp_path):
    (tmp_path / "taken").mkdir()
    fails_in_one_line(runner.invoke(app, ["evaluate", str(lm_folder), str(text), "-o", str(tmp_path / "taken"),
                                          "--no-progress"]), "is a folder")
    fails_in_one_line(runner.invoke(app, ["evaluate", str(lm_folder), str(text), "-o", str(text), "--no-progress"]),
                      "is the input")
    fails_in_one_line(runner.invoke(app, ["evaluate", str(lm_folder), str(text), "--device", "bogus"]), "unknown device")
    report = tmp_path / "new" / "deeper" / "ppl.json"
    result = runner.invoke(app, ["evaluate", str(lm_folder), str(text), "-o", str(report), "--no-progress"])
    assert result.exit_code == 0, printed(result)
    assert json.loads(report.read_text())["sentences"] == 2


def test_convert_refuses_files_and_its_own_input(folder, tmp_path):
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    fails_in_one_line(runner.invoke(app, ["convert", str(existing), "-m", str(folder)]), "is a file")
    assert existing.read_text() == "keep me"
    fails_in_one_line(runner.invoke(app, ["convert", str(folder), "-m", str(folder)]), "is the input")
    pair = tmp_path / "pair"
    assert runner.invoke(app, ["convert", str(pair), "-m", str(folder), "--to", "allennlp"]).exit_code == 0
    # Writing the pair again over itself, under the same names, would read and write one file.
    fails_in_one_line(runner.invoke(app, ["convert", str(pair), "--to", "allennlp", "--options-file",
                                          str(pair / "elmo_options.json"), "--weight-file",
                                          str(pair / "elmo_weights.hdf5")]), "is the input")
    fails_in_one_line(runner.invoke(app, ["convert", str(tmp_path / "x"), "-m", str(folder), "--to", "onnx"]), "--to")


# ---- temporaries ------------------------------------------------------------------------------------


EMBED_FOREVER = """
import sys
import spacy_elmo.bilm.embedder as embedder
from spacy_elmo.cli import app

real = embedder.Embedder.embed_batch
def slow(self, sentences):  # a long run: the test kills it while the temporary file exists
    import time; time.sleep(0.05)
    return real(self, sentences)
embedder.Embedder.embed_batch = slow
app(sys.argv[1:])
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM")
def test_sigterm_during_embed_leaves_no_temporary_file(folder, tmp_path):
    source = tmp_path / "long.txt"
    source.write_text("the cat sat on the mat .\n" * 2000)
    output = tmp_path / "out" / "vectors.h5"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", EMBED_FOREVER, "embed", str(source), str(output), "-m", str(folder),
                             "--batch-size", "4", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while not list(output.parent.glob(".vectors.h5.*.tmp")):
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no temporary output after 120 s"
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out, out
    assert list(output.parent.iterdir()) == [], "a temporary file (or a half output) was left behind"


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "vectors.h5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".vectors.h5.{dead.pid}.abcd1234.tmp"
    live = tmp_path / f".vectors.h5.{os.getppid()}.abcd1234.tmp"
    old_style = tmp_path / ".vectors.h5.k2j3h4g5.tmp"  # written before the pid was in the name
    for path in (stale, live, old_style):
        path.write_text("x")
    assert sorted(remove_stale_temporaries(target)) == sorted([stale, old_style])
    assert live.exists()
    # Every atomic write does the same first, so any command's next run cleans up after a SIGKILL.
    stale.write_text("x")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert not stale.exists() and live.exists() and target.read_text() == "new"


def test_a_failed_write_leaves_no_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


# ---- embed memory bounded by --max-batch-tokens --------------------------------------------------


def test_windows_cover_every_token_once():
    assert windows(0, 4) == []
    assert windows(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert windows(8, 4) == [(0, 4), (4, 8)]


def test_long_lines_are_embedded_in_windows_within_the_token_budget(folder, tmp_path, monkeypatch):
    from spacy_elmo.bilm import load_bilm

    bilm = load_bilm(model=folder)
    words = [f"w{i % 7}" for i in range(50)]
    source = tmp_path / "in.txt"
    source.write_text(" ".join(words) + "\nshort line\n\n" + " ".join(words[:9]) + "\n")
    seen: list[int] = []
    real = Embedder.embed_batch

    def counting(self, sentences):
        seen.append(len(sentences) * max(len(s) for s in sentences))  # tokens in the batch, padding included
        return real(self, sentences)

    monkeypatch.setattr(Embedder, "embed_batch", counting)
    embedder = Embedder(bilm, batch_size=64, max_batch_tokens=8)
    with pytest.warns(UserWarning, match="windows"):
        assert embed_file(embedder, source, tmp_path / "all.h5", progress=False) == 4
    assert seen and max(seen) <= 8, seen  # never more than the budget in flight
    with h5py.File(tmp_path / "all.h5") as f:
        got = f["0"][...]
        assert got.shape == (3, 50, bilm.output_dim) and f["2"].shape == (3, 0, bilm.output_dim)
        assert f["3"].shape == (3, 9, bilm.output_dim)
        short = f["1"][...]
    # Each window is the model's output for those tokens read on their own (to float32 rounding:
    # the last window shares a padded batch with other short pieces, which moves the last bit).
    for a, b in windows(50, 8):
        expected = real(embedder, [words[a:b]])[0]
        np.testing.assert_allclose(got[:, a:b], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(short, real(embedder, [["short", "line"]])[0], rtol=0, atol=1e-6)
    # The in-memory API gives the same arrays, and --top / --average reduce window by window.
    with pytest.warns(UserWarning, match="windows"):
        in_memory = embedder.embed_sentences([words])[0]
    np.testing.assert_allclose(in_memory, got, rtol=0, atol=1e-6)
    with pytest.warns(UserWarning, match="windows"):
        embed_file(embedder, source, tmp_path / "avg.h5", output_format="average", progress=False)
    with h5py.File(tmp_path / "avg.h5") as f:
        np.testing.assert_allclose(f["0"][...], got.mean(axis=0), rtol=1e-6)


def test_lines_within_the_budget_are_unchanged_by_windowing(folder, tmp_path):
    from spacy_elmo.bilm import load_bilm

    bilm = load_bilm(model=folder)
    words = "a line of exactly eight words here .".split()
    embedder = Embedder(bilm, max_batch_tokens=8)
    whole = embedder.embed_batch([words])[0]
    np.testing.assert_array_equal(embedder.embed_sentences([words])[0], whole)


def test_ctrl_c_while_a_model_loads_says_the_download_resumes(tmp_path, monkeypatch):
    """`embed --model allennlp:original` with downloading allowed: Ctrl-C during the download ends
    with a line saying what is kept, not a traceback from inside requests."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("spacy_elmo.cli._common.resolve_model_files", interrupted)
    (tmp_path / "in.txt").write_text("One line .\n")
    result = CliRunner().invoke(app, ["embed", str(tmp_path / "in.txt"), str(tmp_path / "out.hdf5"), "--model", "allennlp:small"])
    assert result.exit_code == 130
    assert "Interrupted while loading allennlp:small" in printed(result) and "resumes" in printed(result)
    assert not (tmp_path / "out.hdf5").exists()
