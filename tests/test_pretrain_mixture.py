"""The declared pretraining mixture (spacy_elmo/tasks/pretrain_mixture.py) on tiny files: weights,
deduplication, exclusion of evaluation text by word 8-grams, seeds, and the meta data."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from spacy_elmo.tasks.pretrain_corpus import describe_corpus
from spacy_elmo.tasks.pretrain_mixture import Mixture, MixtureError, prepare_mixture

# Lines of 10+ words each, so any of them could hold a protected 8-gram.
NEWS = [f"news story number {i} says the markets rose sharply on {i} good reports today" for i in range(10)]
BOOKS = [f"chapter {i} the old house on the hill stood quietly in the long evening light" for i in range(20)]
# In the WikiText test file below (written with its @-@ / @,@ markers): this line must go.
LEAKED_WIKI = "In 1 , 000 the well - known actor Robert Boulter appeared in a guest starring role on television ."
# Shares only 7 consecutive words with the protected paragraph: it stays.
SEVEN_WORDS = "yesterday the well known actor robert boulter appeared and then nothing more was said"
# Shares 8 words with a CoNLL test sentence of 10+ tokens: it goes.
LEAKED_CONLL = "reporters said that Japan began the defence of their Asian Cup title with a win"
# Shares 8 words with a CoNLL sentence of fewer than 10 tokens: short sentences protect nothing.
SHORT_CONLL = "analysts noted that one two three four five six seven eight was counted"

WIKITEXT = (
    " = Robert Boulter = \n \n"
    " In 1 @,@ 000 the well @-@ known actor Robert Boulter appeared in a guest @-@ starring role on television . \n"
)
CONLL = "-DOCSTART- -X- -X- O\n\n" + "".join(
    f"{w} NN O O\n" for w in "Japan began the defence of their Asian Cup title with a win".split()
) + "\n" + "".join(f"{w} CD O O\n" for w in "one two three four five six seven eight".split()) + "\n"


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    (root / "news").mkdir(parents=True)
    (root / "books").mkdir()
    (root / "eval").mkdir()
    # news: duplicate lines inside the source; a leaked and a harmless line.
    (root / "news" / "a.txt").write_text("\n".join(NEWS + [NEWS[0], LEAKED_CONLL, SHORT_CONLL]) + "\n\n")
    (root / "news" / "b.txt").write_text("\n".join([LEAKED_WIKI, SEVEN_WORDS]) + "\n")
    # books (gzip): repeats a news line (a duplicate across sources).
    with gzip.open(root / "books" / "c.txt.gz", "wt") as f:
        f.write("\n".join(BOOKS + [NEWS[1]]) + "\n")
    (root / "eval" / "wiki.test.tokens").write_text(WIKITEXT)
    (root / "eval" / "test.txt").write_text(CONLL)
    return root


def declaration(path: Path, news_weight: float = 2, books_weight: float = 0.5, seed: int = 0) -> Path:
    path.write_text(f"""
[mixture]
seed = {seed}

[mixture.sources]

[mixture.sources.news]
files = ["news/a.txt", "news/b.txt"]
weight = {news_weight}

[mixture.sources.books]
files = ["books/c.txt.gz"]
weight = {books_weight}

[exclude]
files = ["eval/wiki.test.tokens", "eval/test.txt"]
ngram = 8
min_tokens = 10
""")
    return path


def test_weights_dedup_and_exclusions(tmp_path, data):
    out = tmp_path / "mix.txt"
    meta = prepare_mixture(declaration(tmp_path / "mix.cfg"), out, data_dir=data, progress=False)
    lines = out.read_text().splitlines()
    counts = Counter(lines)
    news_kept = NEWS + [SEVEN_WORDS, SHORT_CONLL]
    assert all(counts[line] == 2 for line in news_kept)  # weight 2: every line twice, duplicates once
    assert LEAKED_WIKI not in counts and LEAKED_CONLL not in counts
    books = [line for line in lines if line.startswith("chapter")]
    assert len(books) == 10 and len(set(books)) == 10  # weight 0.5: half of the 20 lines, once each
    assert NEWS[1] in counts and counts[NEWS[1]] == 2  # the books' copy of a news line was a duplicate
    news, book = meta["sources"]["news"], meta["sources"]["books"]
    assert (news["duplicate_lines"], news["excluded_lines"]) == (1, 2)
    assert (book["duplicate_lines"], book["excluded_lines"]) == (1, 0)
    assert news["words_written"] == 2 * sum(len(line.split()) for line in news_kept)
    assert meta["words"] == sum(len(line.split()) for line in lines) == news["words_written"] + book["words_written"]
    assert meta["lines"] == len(lines)
    assert json.loads((tmp_path / "mix.txt.meta.json").read_text()) == meta
    assert "news" in describe_corpus(meta) and f"{meta['words']:,} words" in describe_corpus(meta)


def test_the_same_seed_gives_the_same_bytes_and_another_seed_another_order(tmp_path, data):
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / f"{name}.txt"
        prepare_mixture(declaration(tmp_path / f"{name}.cfg", seed=seed), out, data_dir=data, progress=False)
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    # Another seed samples other book lines, but the news lines (weight 2, no sampling) are the same.
    news = [Counter(line for line in text.splitlines() if not line.startswith("chapter")) for text in outs]
    assert news[0] == news[2]


def test_max_words_keeps_the_first_lines_of_the_same_shuffle(tmp_path, data):
    full, small = tmp_path / "full.txt", tmp_path / "small.txt"
    decl = declaration(tmp_path / "mix.cfg")
    prepare_mixture(decl, full, data_dir=data, progress=False)
    meta = prepare_mixture(decl, small, data_dir=data, max_words=60, progress=False)
    kept = small.read_text().splitlines()
    assert kept == full.read_text().splitlines()[: len(kept)]
    assert meta["words"] <= 60 and meta["words"] + len(full.read_text().splitlines()[len(kept)].split()) > 60


def test_bad_declarations_are_clear_errors(tmp_path, data):
    with pytest.raises(MixtureError, match="not found"):
        prepare_mixture(declaration(tmp_path / "mix.cfg"), tmp_path / "out.txt", data_dir=tmp_path, progress=False)
    with pytest.raises(MixtureError, match="weight must be a number >= 0"):
        Mixture.from_file(declaration(tmp_path / "neg.cfg", news_weight=-1))
    (tmp_path / "empty.cfg").write_text("[mixture]\nseed = 0\n")
    with pytest.raises(MixtureError, match="declare the sources"):
        Mixture.from_file(tmp_path / "empty.cfg")
    with pytest.raises(MixtureError, match="declaration not found"):
        Mixture.from_file(tmp_path / "nope.cfg")
    assert not (tmp_path / "out.txt").exists()


def test_the_shipped_declarations_name_files_of_the_shared_data():
    root = Path(__file__).parents[1]
    for name in ("corpus_en.cfg", "corpus_demo.cfg"):
        mixture = Mixture.from_file(root / "configs" / name)
        assert mixture.exclude is not None and mixture.exclude.ngram == 8
        assert {"wikitext103/wiki.test.tokens", "conll2003/test.txt"} <= set(mixture.exclude.files)
        # BBC News is an evaluation set (topics): the biLM must not read it.
        assert not any("bbc" in f for source in mixture.sources for f in source.files)


def test_prepare_corpus_script_writes_the_mixture_only_without_the_preferred_source(tmp_path, data):
    spec = importlib.util.spec_from_file_location("prep", Path(__file__).parents[1] / "scripts" / "prepare_corpus.py")
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    app = typer.Typer()
    app.command()(prep.main)
    decl = declaration(tmp_path / "mix.cfg")
    out = tmp_path / "out.txt"
    args = [str(out), "absent.zip", "--mixture", str(decl), "--data-dir", str(data)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out.txt.meta.json").read_text())["kind"] == "mixture"
    result = CliRunner().invoke(app, [str(out), "news/b.txt"] + args[2:])  # the preferred source exists
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == [LEAKED_WIKI, SEVEN_WORDS]
