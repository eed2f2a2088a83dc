"""What a new user reads from the command line: help text, `info`'s summary, `--threads`, and a
progress bar that moves while `embed` works."""

from __future__ import annotations

import json

import pytest
import torch
from cli_output import printed
from typer.testing import CliRunner

from spacy_elmo.bilm import save_model_dir
from spacy_elmo.bilm.embedder import Embedder, count_words, embed_file
from spacy_elmo.cli import app
from spacy_elmo.cli.model_tools import training_summary

runner = CliRunner()

META = {
    "name": "tiny",
    "corpus_files": ["news.txt", "wiki.txt"],
    "words": 8058880,
    "steps": 6296,
    "epochs": 2.0,
    "dev_perplexity": {"avg": 370.1, "fwd": 375.2, "bwd": 365.0, "files": ["wiki.valid.tokens"]},
    "test_perplexity": {"ppl": 355.7, "fwd_ppl": 360.9, "bwd_ppl": 350.5, "source": "wiki.test.tokens"},
}


@pytest.mark.parametrize("command", ["embed", "evaluate", "pretrain", "convert", "info"])
def test_help_names_every_option_in_full(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    if command in ("embed", "evaluate"):
        assert "--threads" in result.output
    if command == "embed":
        assert "--max-batch-tokens" in result.output and "--use-sentence-keys" in result.output


def test_command_list_shows_whole_summaries():
    result = runner.invoke(app, ["--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands:")[1]
    assert "embed" in commands and "pretrain" in commands
    assert "..." not in commands and "…" not in commands


def test_convert_help_names_the_files_it_writes():
    text = printed(runner.invoke(app, ["convert", "--help"]))
    assert "elmo_options.json" in text and "elmo_weights.hdf5" in text


def test_info_labels_dev_and_test_perplexity(make_bilm, tmp_path):
    model = save_model_dir(make_bilm(), tmp_path / "model", meta=META)
    result = runner.invoke(app, ["info", "--model", str(model)])
    assert result.exit_code == 0, result.output
    text = printed(result)
    assert "perplexity, test text 355.7 (fwd 360.9 / bwd 350.5) on wiki.test.tokens" in text
    assert "perplexity, dev text 370.1 (fwd 375.2 / bwd 365.0) on wiki.valid.tokens" in text
    assert "8,058,880 words, 6,296 steps, 2 epochs" in text
    assert '"dev_perplexity"' not in result.output  # the raw meta.json is for --json
    raw = json.loads(runner.invoke(app, ["info", "--model", str(model), "--json"]).output)
    assert raw["meta"] == META


def test_training_summary_skips_what_is_absent_or_malformed():
    assert training_summary({}) == []
    assert training_summary({"test_perplexity": "n/a", "dev_perplexity": {"avg": None}, "words": "many"}) == []


def test_embed_threads_sets_torch_threads(model_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("The bank raised its rates .\n")
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = runner.invoke(app, ["embed", str(source), str(tmp_path / "out.hdf5"), "--model", model_dir,
                                     "--threads", "1", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_embedding_reports_progress_in_words_as_windows_are_written(make_bilm, tmp_path, monkeypatch):
    import tqdm

    reported: dict[str, list] = {"total": [], "updates": []}

    class Bar:  # stands in for tqdm: records what embed_file tells it
        def __init__(self, total=None, **_):
            reported["total"].append(total)

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def update(self, n=1):
            reported["updates"].append(n)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    path = tmp_path / "text.txt"
    path.write_text("".join(" ".join(["word"] * (1 + i % 7)) + "\n" for i in range(40)) + "\n", encoding="utf-8")
    embed_file(Embedder(make_bilm(), batch_size=4, max_batch_tokens=5), path, tmp_path / "out.hdf5", progress=True)
    assert reported["total"] == [count_words(path)] == [sum(1 + i % 7 for i in range(40))]
    assert sum(reported["updates"]) == count_words(path)
    assert len(reported["updates"]) > 40  # window by window (lines of 6-7 words take two), not at the end
    (tmp_path / "words.txt").write_text("a b  c\n\nd\n", encoding="utf-8")
    assert count_words(tmp_path / "words.txt") == 4

