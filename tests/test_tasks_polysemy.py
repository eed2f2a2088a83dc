"""PCA projection, the polysemous-word sentences, and the pretraining-text preparation."""

import gzip
import json
import zipfile

import numpy as np
import pytest

from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.tasks.features import mean_pooled, token_vectors, variants
from spacy_elmo.tasks.polysemy import POLYSEMOUS, occurrences, pca_2d, project_polysemy
from spacy_elmo.tasks.pretrain_corpus import clean_lines, meta_path, prepare_corpus


def test_pca_of_points_on_a_line():
    # Points t * (3, 4) / 5 for t = -2, 0, 1, 1: all variance on one axis, coords = t - mean(t).
    t = np.array([-2.0, 0.0, 1.0, 1.0])
    x = np.outer(t, [0.6, 0.8])
    coords, ratio = pca_2d(x)
    assert np.allclose(np.abs(coords[:, 0]), np.abs(t - t.mean()))
    assert np.allclose(coords[:, 1], 0.0)
    assert ratio == pytest.approx([1.0, 0.0])


def test_pca_recovers_the_two_main_axes():
    # Two uncorrelated zero-mean columns (+-10 and +-3 in orthogonal patterns) plus an offset.
    x = np.full((40, 5), 7.0)
    x[:, 2] = 10 * np.tile([1, -1], 20)  # most variance
    x[:, 4] = 3 * np.tile([1, 1, -1, -1], 10)
    coords, ratio = pca_2d(x)
    centred = x - x.mean(axis=0)
    assert np.allclose(np.abs(coords[:, 0]), np.abs(centred[:, 2]))
    assert np.allclose(np.abs(coords[:, 1]), np.abs(centred[:, 4]))
    assert ratio == pytest.approx([100 / 109, 9 / 109])


def test_occurrences_point_at_the_word():
    items = occurrences()
    assert len(items) == sum(len(v) for v in POLYSEMOUS.values())
    for item in items:
        assert item.tokens[item.index].lower() == item.word
    assert all(len({o.sense for o in items if o.word == w}) == 2 for w in POLYSEMOUS)  # two senses each
    with pytest.raises(ValueError):
        occurrences({"bank": [("x", "no such word here")]})


def test_project_polysemy_layer_0_collapses_a_word(make_bilm):
    projection = project_polysemy(Embedder(make_bilm()))
    occ = projection["occurrences"]
    coords = np.array(projection["variants"]["layer_0"]["coords"])  # (n, 2)
    for word in POLYSEMOUS:
        rows = [k for k, o in enumerate(occ) if o["word"] == word]
        # Context-free: every occurrence of a word is the same point.
        assert np.allclose(coords[rows], coords[rows[0]], atol=1e-5)
    top = np.array(projection["variants"]["layer_2"]["coords"])
    rows = [k for k, o in enumerate(occ) if o["word"] == "bank"]
    assert not np.allclose(top[rows], top[rows[0]], atol=1e-5)


def test_feature_helpers(make_bilm):
    embedder = Embedder(make_bilm())
    sentences = [["a", "b", "c"], [], ["d"]]
    pooled = mean_pooled(embedder, sentences)  # (3, 3, dim)
    full = embedder.embed_sentences(sentences)
    assert np.allclose(pooled[0], full[0].mean(axis=1), atol=1e-6)
    assert np.allclose(pooled[1], 0.0)
    picked = token_vectors(embedder, [["a", "b", "c"], ["d"]], [2, 0])
    assert np.allclose(picked[0], full[0][:, 2], atol=1e-6)
    with pytest.raises(ValueError):
        token_vectors(embedder, [["a"]], [1])
    v = variants(pooled)
    assert np.allclose(v["mix"], pooled.mean(axis=1))
    assert np.array_equal(v["layer_1"], pooled[:, 1])


def test_clean_lines_drops_headings_and_blanks():
    lines = [" \n", " = Title = \n", " = = Section = = \n", " Some text = with an equals sign . \n", "Plain\n"]
    assert list(clean_lines(lines)) == ["Some text = with an equals sign .", "Plain"]


def test_prepare_corpus_prefers_the_first_existing_source(tmp_path):
    archive = tmp_path / "wikitext-103-raw-v1.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("wikitext-103-raw/wiki.train.raw", " \n = T = \n one two three \n four five \n")
        z.writestr("wikitext-103-raw/wiki.valid.raw", "not this\n")
    fallback = tmp_path / "fallback.txt.gz"
    with gzip.open(fallback, "wt", encoding="utf-8") as f:
        f.write("fallback text here\nmore\n")

    meta = prepare_corpus([archive, fallback], tmp_path / "out" / "train.txt")
    assert (tmp_path / "out" / "train.txt").read_text() == "one two three\nfour five\n"
    assert meta["fallback_used"] is False and meta["words"] == 5 and meta["lines"] == 2
    assert json.loads(meta_path(tmp_path / "out" / "train.txt").read_text()) == meta

    meta = prepare_corpus([tmp_path / "absent.zip", fallback], tmp_path / "fb.txt", max_words=3)
    assert meta["fallback_used"] is True and meta["source"] == str(fallback)
    assert (tmp_path / "fb.txt").read_text() == "fallback text here\n"  # whole lines only

    with pytest.raises(FileNotFoundError):
        prepare_corpus([tmp_path / "absent.zip"], tmp_path / "x.txt")


def test_prepare_corpus_joins_files_with_plus_relative_to_data_dir(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "news.txt").write_text("one two\nthree\n")
    (tmp_path / "wiki.txt").write_text(" = Heading = \nfour five six\n")
    sources = ["absent.zip", "a/news.txt+wiki.txt", "a/news.txt"]
    meta = prepare_corpus(sources, tmp_path / "out.txt", data_dir=tmp_path)
    assert (tmp_path / "out.txt").read_text() == "one two\nthree\nfour five six\n"
    assert meta["fallback_used"] is True and meta["words"] == 6
    assert meta["files"] == {str(tmp_path / "a" / "news.txt"): 3, str(tmp_path / "wiki.txt"): 3}
    assert meta["source"] == f"{tmp_path / 'a' / 'news.txt'} + {tmp_path / 'wiki.txt'}"

    # The word budget stops in the first file: the second is never read.
    meta = prepare_corpus(sources, tmp_path / "cut.txt", data_dir=tmp_path, max_words=2)
    assert (tmp_path / "cut.txt").read_text() == "one two\n"
    assert meta["files"] == {str(tmp_path / "a" / "news.txt"): 2}

    # A group is used only when every file of it exists; otherwise the next candidate.
    meta = prepare_corpus(["a/news.txt+missing.txt", "wiki.txt"], tmp_path / "x.txt", data_dir=tmp_path)
    assert meta["source"] == str(tmp_path / "wiki.txt")


def test_prepare_corpus_shuffles_lines_across_files_reproducibly(tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"a{k} x\n" for k in range(50)))
    (tmp_path / "b.txt").write_text("".join(f"b{k} y\n" for k in range(50)))
    in_order = prepare_corpus(["a.txt+b.txt"], tmp_path / "ordered.txt", data_dir=tmp_path)
    first = prepare_corpus(["a.txt+b.txt"], tmp_path / "s1.txt", data_dir=tmp_path, shuffle_seed=3)
    prepare_corpus(["a.txt+b.txt"], tmp_path / "s2.txt", data_dir=tmp_path, shuffle_seed=3)
    ordered = (tmp_path / "ordered.txt").read_text().splitlines()
    shuffled = (tmp_path / "s1.txt").read_text().splitlines()
    assert ordered[:50] == [f"a{k} x" for k in range(50)] and in_order["shuffle_seed"] is None
    assert sorted(shuffled) == sorted(ordered) and shuffled != ordered  # same lines, new order
    assert (tmp_path / "s2.txt").read_text().splitlines() == shuffled  # the seed fixes the order
    assert first["shuffle_seed"] == 3 and first["words"] == 200
    # Both sources are mixed into the first half, and a word budget samples from both.
    assert {line[0] for line in shuffled[:50]} == {"a", "b"}
    cut = prepare_corpus(["a.txt+b.txt"], tmp_path / "cut.txt", data_dir=tmp_path, shuffle_seed=3, max_words=40)
    assert cut["words"] == 40 and all(n > 0 for n in cut["files"].values()) and len(cut["files"]) == 2


def test_sense_cosines_pair_each_words_sentences(make_bilm, tmp_path):
    from spacy_elmo.tasks.plots import plot_polysemy

    projection = project_polysemy(Embedder(make_bilm()))
    pairs = projection["cosines"]
    assert len(pairs) == 3 * len(POLYSEMOUS)  # three sentences per word: three pairs
    bank = [p for p in pairs if p["word"] == "bank"]
    assert [p["sentences"] for p in bank] == [(1, 2), (1, 3), (2, 3)]
    assert [p["same_sense"] for p in bank] == [False, False, True]  # river, money, money
    for pair in pairs:
        assert pair["cosines"]["layer_0"] == pytest.approx(1.0, abs=1e-5)  # context-free
    assert any(p["cosines"]["layer_2"] < 0.999 for p in pairs)
    png = plot_polysemy(projection, tmp_path / "polysemy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
