"""`spacy-elmo pretrain` after kills, beside other runs, on full disks (issue 18, items 8-9): one run
per output folder, a resume after a kill during the final export ends with the same meta.json as
an uninterrupted run and no staging folder, and every failure is a one-line error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_elmo.cli import app
from spacy_elmo.pretrain.checkpoint import load_checkpoint
from spacy_elmo.pretrain.export import write_model_dir
from spacy_elmo.pretrain.lock import LOCK_NAME, OutputFolderError
from cli_output import printed
from tiny_pretrain import corpus, restore_torch_globals, train, write_config  # noqa: F401 (fixtures)

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def cli_pretrain(config: Path, output: Path, *extra: str):
    return runner.invoke(app, ["pretrain", str(config), "-o", str(output), "--training.max_steps", "3",
                               "--no-progress", *extra])


def one_line_failure(result, *phrases: str) -> None:
    __tracebackhide__ = True
    out = printed(result)
    assert result.exit_code == 1, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for phrase in phrases:
        assert phrase in out, out


HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0)
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_on_the_same_output_is_refused(tmp_path, corpus):
    config, out = write_config(tmp_path, corpus), tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputFolderError, match="another `spacy-elmo pretrain`"):
            train(config, out, training__max_steps=2)
        one_line_failure(cli_pretrain(config, out), "another `spacy-elmo pretrain`", str(out))
        assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder (SIGKILL included): the folder is usable at once.
    train(config, out, training__max_steps=2)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2


def test_output_that_is_a_file_and_unknown_devices_are_one_line_errors(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    a_file = tmp_path / "taken"
    a_file.write_text("keep")
    one_line_failure(cli_pretrain(config, a_file), "is a file")
    assert a_file.read_text() == "keep"
    one_line_failure(cli_pretrain(config, tmp_path / "o1", "--system.device", "bogus"), "unknown device")
    one_line_failure(cli_pretrain(config, tmp_path / "o2", "--system.device", "nonsense:3"), "unknown device")
    # torch.set_num_threads(10**5) would kill the process: refused before anything runs
    one_line_failure(cli_pretrain(config, tmp_path / "o3", "--system.threads", "100000"), "system.threads", "1024")
    assert not (tmp_path / "o3" / "checkpoints").exists()


DIE_DURING_EXPORT = """
import os, signal, sys
import spacy_elmo.pretrain.export as export
from spacy_elmo.pretrain import load_config, pretrain

real = export.save_model_dir
def save_then_die(bilm, staging, meta):
    real(bilm, staging, meta)
    if "model-best" not in str(staging) and os.path.basename(str(staging)).startswith(".model."):
        os.kill(os.getpid(), signal.SIGKILL)  # mid-export: the staging folder is half written
    return staging
export.save_model_dir = save_then_die
pretrain(load_config(sys.argv[1], {"training.max_steps": 6}), sys.argv[2], progress=False)
"""


def test_resume_after_a_kill_during_the_export_writes_the_same_model(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", DIE_DURING_EXPORT, str(config), str(killed)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (killed / "model").exists()
    assert [p.name for p in killed.glob(".model.*")], "the kill should have left a staging folder"

    train(config, killed, resume=True, training__max_steps=6)
    train(config, tmp_path / "reference", training__max_steps=6)
    assert [p.name for p in killed.glob(".model*")] == [], "staging folder left behind"
    resumed = json.loads((killed / "model" / "meta.json").read_text())
    reference = json.loads((tmp_path / "reference" / "model" / "meta.json").read_text())
    assert resumed["perplexity"] is not None and resumed["train_perplexity"] is not None
    # Training time is the only thing two runs cannot share; it is the killed run's own.
    assert resumed.pop("training_seconds") == round(load_checkpoint(killed / "checkpoints" / "last.pt")["elapsed"], 1)
    reference.pop("training_seconds")
    assert resumed == reference
    for name in ("weights.hdf5", "softmax.hdf5", "vocab.txt", "options.json"):
        assert (killed / "model" / name).read_bytes() == (tmp_path / "reference" / "model" / name).read_bytes(), name


def test_a_stale_old_model_folder_is_removed_by_the_next_export(tmp_path, tiny_bilm):
    from spacy_elmo.pretrain import Vocab
    from spacy_elmo.pretrain.softmax import FullSoftmax

    vocab = Vocab(["<S>", "</S>", "<UNK>", "a"])
    softmax = FullSoftmax(len(vocab), tiny_bilm.options.lstm.projection_dim)
    (tmp_path / ".model.old").mkdir()  # a run killed between its two renames
    (tmp_path / ".model.k3j4h5g6").mkdir()  # a run killed while filling its staging folder
    write_model_dir(tiny_bilm, softmax, vocab, tmp_path / "model", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


DISK_FULL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from spacy_elmo.cli import app
app(sys.argv[2:])
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_a_full_disk_while_checkpointing_is_a_one_line_error(tmp_path, corpus):
    config, out = write_config(tmp_path, corpus), tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", DISK_FULL, str(64 << 10), "pretrain", str(config), "-o", str(out),
                           "--training.max_steps", "3", "--no-progress"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "disk full" in output, output[-3000:]
    assert "last.pt" in output
    assert [p.name for p in (out / "checkpoints").iterdir()] == [], "a temporary checkpoint was left behind"


TERM_DURING_EXPORT = """
import os, signal, sys
import spacy_elmo.pretrain.export as export
from spacy_elmo.cli import app

real = export.save_model_dir
def save_then_terminate(bilm, staging, meta):
    real(bilm, staging, meta)
    os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a scheduler's time limit would
    return staging
export.save_model_dir = save_then_terminate
app(sys.argv[1:])
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM")
def test_sigterm_during_the_export_leaves_no_staging_folder(tmp_path, corpus):
    config, out = write_config(tmp_path, corpus), tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", TERM_DURING_EXPORT, "pretrain", str(config), "-o", str(out),
                           "--training.max_steps", "3", "--no-progress"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".model")) == []
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3  # ready for --resume


def test_a_garbage_or_truncated_checkpoint_is_a_one_line_error(tmp_path, corpus):
    config, out = write_config(tmp_path, corpus), tmp_path / "out"
    train(config, out, training__max_steps=2)
    checkpoint = out / "checkpoints" / "last.pt"
    real = checkpoint.read_bytes()
    for damaged in (b"garbage\n", real[: len(real) // 2]):
        checkpoint.write_bytes(damaged)
        result = cli_pretrain(config, out, "--resume")
        one_line_failure(result, str(checkpoint), "unreadable or corrupted")
        # not torch's pages of advice, which suggest the unsafe weights_only=False load
        assert "weights_only" not in result.output and "torch.load" not in result.output, result.output
        assert "\n" not in printed(result)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_that_fails_its_checks_leaves_no_new_folder_or_files(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"\n \n")
    (tmp_path / "vocab.txt").write_text("not a vocabulary\n")
    failures = [
        (("--paths.train", str(tmp_path / "missing.txt")), "corpus not found"),
        (("--paths.train", str(tmp_path / "empty.txt")), "the corpus is empty"),
        (("--paths.train", str(tmp_path / "blank.txt")), "no usable text"),  # found by reading the corpus
        (("--paths.vocab", str(tmp_path / "vocab.txt")), "vocab.txt"),  # after corpus_stats.json is written
        (("--resume",), "no checkpoint"),
        (("--init-from", str(tmp_path / "no_model")), "not a model directory"),
    ]
    new = tmp_path / "new" / "out"  # both folders would be created
    for extra, phrase in failures:
        one_line_failure(cli_pretrain(config, new, *extra), phrase)
        assert not (tmp_path / "new").exists(), extra

    # A folder made beforehand stays as it was: empty.
    made = tmp_path / "made"
    made.mkdir()
    for extra, phrase in failures:
        one_line_failure(cli_pretrain(config, made, *extra), phrase)
        assert list(made.iterdir()) == [], extra

    # An earlier run's folder too: no file added, none changed (config.cfg included).
    run = tmp_path / "run"
    train(config, run, training__max_steps=2)
    before = files_under(run)
    assert LOCK_NAME in before
    for extra, phrase in [(("--resume", "--paths.train", str(tmp_path / "missing.txt")), "corpus not found"),
                          ((), "already holds a checkpoint"),
                          (("--resume", "--training.batch_size", "4"), "config differs")]:
        one_line_failure(cli_pretrain(config, run, *extra), phrase)
        assert files_under(run) == before, extra
    train(config, run, resume=True, training__max_steps=3)  # and it resumes
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3


def test_a_held_out_set_without_text_fails_before_training(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    (tmp_path / "dev.txt").write_bytes(b"\n\x00\x01\x02\x03\x04\n  \n")
    new = tmp_path / "new"
    one_line_failure(cli_pretrain(config, new, "--paths.dev", str(tmp_path / "dev.txt")),
                     "no usable text in the held-out set", "dev.txt")
    assert not new.exists()  # not after the training, with its steps spent


def test_an_output_folder_inside_the_corpus_folder_resumes(tmp_path, corpus):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_bytes(corpus.read_bytes())
    config, out = write_config(tmp_path, folder), folder / "runs" / "run1"
    train(config, out, training__max_steps=2)
    # Its checkpoint, model and metrics are not corpus files: not "the corpus changed".
    train(config, out, resume=True, training__max_steps=3)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["corpus"] == [[str(folder / "train.txt"), corpus.stat().st_size]]


def test_a_resume_past_the_step_limit_says_nothing_is_left_to_train(tmp_path, corpus, capsys):
    config, out = write_config(tmp_path, corpus), tmp_path / "out"
    train(config, out, training__max_steps=3)
    capsys.readouterr()
    train(config, out, resume=True, training__max_steps=2)
    assert "Nothing to train: the run is at step 3, its step limit is 2" in capsys.readouterr().out


def test_ctrl_c_says_how_to_continue(tmp_path, corpus, monkeypatch):
    import spacy_elmo.pretrain as pretrain_module

    def interrupted(config, output, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_module, "pretrain", interrupted)
    config, out = write_config(tmp_path, corpus), tmp_path / "out"
    result = cli_pretrain(config, out)
    assert result.exit_code == 130 and "Interrupted before the first checkpoint" in printed(result), result.output
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"x")
    result = cli_pretrain(config, out)
    assert result.exit_code == 130, result.output
    assert "--resume" in printed(result) and str(out / "checkpoints" / "last.pt") in printed(result)


def test_a_process_that_lost_the_others_of_a_torchrun_launch_says_so_in_one_line(tmp_path, corpus, monkeypatch):
    import spacy_elmo.pretrain as pretrain_module

    error = RuntimeError("[../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:6555. This is "
                         "typically caused by a remote worker crashing.")

    def lost(config, output, **kwargs):
        raise error

    monkeypatch.setattr(pretrain_module, "pretrain", lost)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    config = write_config(tmp_path, corpus)
    one_line_failure(cli_pretrain(config, tmp_path / "out"), "process 1 of 2", "another process", "Connection closed by peer")
    # Any other RuntimeError, or one process alone, keeps its traceback: a bug to report.
    error = RuntimeError("something else")
    assert isinstance(cli_pretrain(config, tmp_path / "out").exception, RuntimeError)
    error = RuntimeError("a bug whose message says Broken pipe, typically a remote worker")  # too loose to mean a peer
    assert isinstance(cli_pretrain(config, tmp_path / "out").exception, RuntimeError)
    monkeypatch.setenv("WORLD_SIZE", "1")
    error = RuntimeError("Connection closed by peer")
    assert isinstance(cli_pretrain(config, tmp_path / "out").exception, RuntimeError)


def test_the_help_keeps_its_table_of_main_keys():
    output = runner.invoke(app, ["pretrain", "--help"]).output
    lines = [line.strip() for line in output.splitlines()]
    # one key per line, not run together into a paragraph
    assert any(line.startswith("--paths.dev PATH") for line in lines), output
    assert any(line.startswith("--corpus.tokenizer T") for line in lines), output
