"""Tiny data sets and a tiny biLM for the task and project tests (made in tmp dirs, seconds).

Other test modules import the fixtures from here. The tests at the bottom check that the tiny
files are read back as written, so a broken helper fails here and not somewhere obscure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spacy_elmo.bilm import save_model_dir

CONLL_DOCS = [
    [
        [("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC"), ("call", "O"), (".", "O")],
        [("Peter", "B-PER"), ("Blackburn", "I-PER")],
    ],
    [
        [("BRUSSELS", "B-LOC"), ("1996-08-22", "O")],
        [("The", "O"), ("European", "B-ORG"), ("Commission", "I-ORG"), ("said", "O"), ("on", "O"), ("Thursday", "O"), (".", "O")],
        [("Germany", "B-LOC"), ("'s", "O"), ("representative", "O"), ("Werner", "B-PER"), ("Zwingmann", "I-PER"), ("said", "O"), (".", "O")],
    ],
]

STS_ROWS = [
    # genre, file, year, id, score, s1, s2 [, extra source columns]
    ("main-captions", "MSRvid", "2012test", "0001", "5.000", "A plane is taking off.", "An air plane is taking off."),
    ("main-captions", "MSRvid", "2012test", "0004", "3.800", "A man is playing a large flute.", "A man is playing a flute."),
    ("main-news", "headlines", "2016", "0012", "1.0", "Driver backs into stroller", "Senate confirms nominee", "Europe Media Monitor", "Europe Media Monitor"),
    ("main-forums", "deft-forum", "2014", "0003", "0.2", "I like apples.", "The river is wide."),
    ("main-news", "headlines", "2013", "0007", "2.5", "Stocks fall in Asia.", "Asian shares drop."),
    ("main-captions", "images", "2015", "0008", "4.4", "A cat sits on a mat.", "A cat is sitting on a mat."),
]

WIC_ROWS = [
    ("bank", "N", "1-3", "the bank of the river was muddy", "she paid the bank a visit", "F"),
    ("bass", "N", "2-3", "he plays bass in a band", "they caught a bass today", "F"),
    ("plant", "N", "1-1", "the plant needs water", "the plant grew tall", "T"),
    ("bat", "N", "1-3", "a bat flew out", "he swung the bat hard", "F"),
    ("run", "V", "1-1", "they run fast", "we run quickly", "T"),
    ("play", "V", "1-1", "kids play outside", "dogs play together", "T"),
]


def tiny_options_dict() -> dict:
    return {
        "lstm": {"n_layers": 2, "dim": 16, "projection_dim": 8, "use_skip_connections": True, "cell_clip": 3.0, "proj_clip": 3.0},
        "char_cnn": {"embedding": {"dim": 4}, "filters": [[1, 4], [2, 4], [3, 8]], "n_highway": 1, "n_characters": 262},
    }


def write_tiny_model(directory: Path, make_bilm) -> Path:
    from spacy_elmo.bilm import ElmoOptions

    return save_model_dir(make_bilm(ElmoOptions.from_dict(tiny_options_dict()), seed=3), directory)


def write_conll(path: Path, docs=CONLL_DOCS) -> Path:
    lines = []
    for doc in docs:
        lines += ["-DOCSTART- -X- -X- O", ""]
        for sentence in doc:
            lines += [f"{word} NNP B-NP {tag}" for word, tag in sentence] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_stsb(path: Path, rows=STS_ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_wic(folder: Path, rows=WIC_ROWS, splits=("train", "dev", "test")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        (folder / f"{split}.data.txt").write_text("".join("\t".join(r[:5]) + "\n" for r in rows), encoding="utf-8")
        (folder / f"{split}.gold.txt").write_text("".join(r[5] + "\n" for r in rows), encoding="utf-8")
    return folder


REVIEW_WORDS = {"pos": "a superb , moving film with great acting", "neg": "a dull , clumsy film with awful acting"}
TOPIC_WORDS = {
    "business": "Shares and profits rose at the bank.", "entertainment": "The film star won an award.",
    "politics": "The minister told parliament about the election.", "sport": "The striker scored in the cup final.",
    "tech": "The phone maker released new software.",
}


def write_movie_reviews(path: Path, per_label: int = 10) -> Path:
    """movie_reviews.tsv as in ../shared/data: label <tab> file id <tab> review (lower-cased)."""
    rows = [f"{label}\tcv{k:03d}_{label}.txt\t{text} , review {k} .\n" for k in range(per_label) for label, text in REVIEW_WORDS.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(rows), encoding="utf-8")
    return path


def write_bbc_news(path: Path, per_label: int = 6) -> Path:
    """bbc_news.labels.tsv as in ../shared/data: topic <tab> article."""
    rows = [f"{topic}\tStory {k}. {text}\n" for k in range(per_label) for topic, text in TOPIC_WORDS.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_model_dir(tmp_path: Path, make_bilm) -> Path:
    """A model directory (options.json + weights.hdf5) of a random tiny biLM."""
    return write_tiny_model(tmp_path / "tiny_model", make_bilm)


# ---- the helpers themselves ----------------------------------------------------------------------


def test_tiny_files_read_back(tmp_path, tiny_model_dir):
    from spacy_elmo.bilm import load_bilm
    from spacy_elmo.tasks.ner import read_conll
    from spacy_elmo.tasks.stsb import read_stsb
    from spacy_elmo.tasks.wic import read_wic

    docs = read_conll(write_conll(tmp_path / "c.txt"))
    assert [[s.words for s in d] for d in docs] == [[[w for w, _ in s] for s in d] for d in CONLL_DOCS]
    pairs = read_stsb(write_stsb(tmp_path / "s.csv"))
    assert [p.score for p in pairs] == [float(r[4]) for r in STS_ROWS]
    wic = read_wic(write_wic(tmp_path / "wic") / "dev.data.txt", tmp_path / "wic" / "dev.gold.txt")
    assert [p.label for p in wic] == [r[5] == "T" for r in WIC_ROWS]
    assert all(p.tokens1[p.index1] == p.word == p.tokens2[p.index2] for p in wic)
    assert load_bilm(tiny_model_dir).n_layers == 3


def die_without_a_python_error(*args) -> None:
    """A training-grid worker killed mid-run (as by the kernel's OOM killer)."""
    import os

    os._exit(9)
