"""CoNLL-2003 reading and conversion, span P/R/F1 on hand-made cases, and agreement with spaCy."""

import random

import pytest
from test_tasks_helpers import CONLL_DOCS, write_conll

from spacy_elmo.tasks.ner import (
    conll_to_docbin,
    conll_to_text,
    doc_spans,
    from_spacy_evaluate,
    iob_to_spans,
    read_conll,
    span_prf,
    write_ner_metrics,
)


def test_iob2_spans():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert iob_to_spans(tags) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC"), (7, 8, "ORG")]


def test_iob1_and_broken_sequences():
    # IOB1: I- starts an entity after O; a type change also starts a new one.
    assert iob_to_spans(["I-PER", "I-PER", "O", "I-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC")]
    assert iob_to_spans(["B-PER", "I-LOC", "I-LOC"]) == [(0, 1, "PER"), (1, 3, "LOC")]
    assert iob_to_spans([]) == []
    assert iob_to_spans(["O", "O"]) == []


def test_span_prf_known_counts():
    gold = [[(0, 2, "PER"), (3, 4, "LOC")], [(1, 2, "ORG"), (5, 7, "PER")]]
    pred = [[(0, 2, "PER"), (3, 5, "LOC")], [(1, 2, "ORG"), (5, 7, "LOC"), (8, 9, "MISC")]]
    # PER: tp 1 (0-2), fn 1 (5-7 predicted as LOC). LOC: fp 2 (3-5, 5-7), fn 1 (3-4).
    # ORG: tp 1. MISC: fp 1. Overall tp 2, fp 3, fn 2.
    scores = span_prf(gold, pred)
    per = scores["per_type"]
    assert per["PER"] == pytest.approx({"p": 1.0, "r": 0.5, "f": 2 / 3, "tp": 1, "fp": 0, "fn": 1})
    assert per["LOC"] == pytest.approx({"p": 0.0, "r": 0.0, "f": 0.0, "tp": 0, "fp": 2, "fn": 1})
    assert per["ORG"] == pytest.approx({"p": 1.0, "r": 1.0, "f": 1.0, "tp": 1, "fp": 0, "fn": 0})
    assert per["MISC"]["p"] == 0.0 and per["MISC"]["fp"] == 1
    overall = scores["overall"]
    assert overall["p"] == pytest.approx(2 / 5)
    assert overall["r"] == pytest.approx(2 / 4)
    assert overall["f"] == pytest.approx(2 * (2 / 5) * (1 / 2) / (2 / 5 + 1 / 2))


def test_span_prf_needs_aligned_documents():
    with pytest.raises(ValueError):
        span_prf([[]], [[], []])


def test_read_conll_documents_and_sentences(tmp_path):
    docs = read_conll(write_conll(tmp_path / "train.txt"))
    assert len(docs) == 2
    assert [len(d) for d in docs] == [2, 3]
    assert docs[1][1].tags == [t for _, t in CONLL_DOCS[1][1]]


def test_read_conll_rejects_non_iob_tags(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU NNP B-NP ORG\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_conll(path)


@pytest.mark.parametrize("n_sents", [1, 2, 0])
def test_conll_to_docbin_round_trip(tmp_path, n_sents):
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    path = write_conll(tmp_path / "train.txt")
    counts = conll_to_docbin(path, tmp_path / "out" / "train.spacy", n_sents=n_sents)
    docs = list(DocBin().from_disk(tmp_path / "out" / "train.spacy").get_docs(Vocab()))
    sentences = [s for d in CONLL_DOCS for s in d]
    assert counts["sentences"] == len(sentences) and counts["tokens"] == sum(map(len, sentences))
    # Sentences never cross a -DOCSTART- boundary: doc 1 has 2 sentences, doc 2 has 3.
    # n_sents 0 = one Doc per document.
    assert len(docs) == counts["docs"] == {1: 5, 2: 1 + 2, 0: 2}[n_sents]
    words = [t.text for d in docs for t in d]
    assert words == [w for s in sentences for w, _ in s]
    ents = [(e.text, e.label_) for d in docs for e in d.ents]
    assert ents == [
        ("EU", "ORG"), ("German", "MISC"), ("Peter Blackburn", "PER"), ("BRUSSELS", "LOC"),
        ("European Commission", "ORG"), ("Germany", "LOC"), ("Werner Zwingmann", "PER"),
    ]
    assert counts["entities"] == {"LOC": 2, "MISC": 1, "ORG": 2, "PER": 2}
    assert sum(len(list(d.sents)) for d in docs) == len(sentences)


def test_conll_to_docbin_limit(tmp_path):
    path = write_conll(tmp_path / "train.txt")
    counts = conll_to_docbin(path, tmp_path / "train.spacy", n_sents=2, limit=3)
    assert counts["sentences"] == 3
    assert counts["tokens"] == 5 + 2 + 2


def test_conll_to_text_writes_the_docbin_words(tmp_path):
    """The fine-tuning text holds exactly the NER Docs' sentences (same tokens, no labels, no
    -DOCSTART-), so the biLM is adapted to what the NER component will feed it."""
    path = write_conll(tmp_path / "train.txt")
    counts = conll_to_text(path, tmp_path / "out" / "train.txt")
    lines = (tmp_path / "out" / "train.txt").read_text(encoding="utf-8").splitlines()
    sentences = [s for d in CONLL_DOCS for s in d]
    assert lines == [" ".join(w for w, _ in s) for s in sentences]
    assert counts == {"lines": len(sentences), "sentences": len(sentences), "tokens": sum(map(len, sentences))}
    assert not any("DOCSTART" in line or "B-" in line for line in lines)
    assert conll_to_text(path, tmp_path / "two.txt", limit=2)["sentences"] == 2
    assert len((tmp_path / "two.txt").read_text(encoding="utf-8").splitlines()) == 2


@pytest.mark.parametrize("n_sents, expected", [(0, [[0, 1], [2, 3, 4]]), (2, [[0, 1], [2, 3], [4]])])
def test_conll_to_text_groups_lines_as_the_docbin_groups_docs(tmp_path, n_sents, expected):
    """With --n-sents the biLM is fine-tuned on the same multi-sentence rows that the elmo
    component's context="doc" feeds it: one line per Doc, never across a -DOCSTART-."""
    path = write_conll(tmp_path / "train.txt")
    counts = conll_to_text(path, tmp_path / "train.txt.out", n_sents=n_sents)
    lines = (tmp_path / "train.txt.out").read_text(encoding="utf-8").splitlines()
    sentences = [s for d in CONLL_DOCS for s in d]
    assert lines == [" ".join(w for k in group for w, _ in sentences[k]) for group in expected]
    assert counts["lines"] == len(expected) and counts["sentences"] == len(sentences)
    docs_counts = conll_to_docbin(path, tmp_path / "train.spacy", n_sents=n_sents)
    assert docs_counts["docs"] == counts["lines"]
    with pytest.raises(ValueError, match="n_sents"):
        conll_to_text(path, tmp_path / "bad.txt", n_sents=-1)


def test_span_prf_agrees_with_spacy_scorer():
    """Random gold/predicted entities: our counts must equal spaCy's Scorer (what `spacy evaluate`
    reports), so the two NER figures of the report are comparable."""
    from spacy.scorer import Scorer
    from spacy.tokens import Doc, Span
    from spacy.training import Example
    from spacy.vocab import Vocab

    rng = random.Random(0)
    vocab = Vocab()
    examples, gold_spans, pred_spans = [], [], []

    def random_ents(doc):
        ents, i = [], 0
        while i < len(doc):
            if rng.random() < 0.3:
                end = min(len(doc), i + rng.randint(1, 3))
                ents.append(Span(doc, i, end, label=rng.choice(["PER", "LOC", "ORG"])))
                i = end
            else:
                i += 1
        return ents

    for _ in range(30):
        words = [f"w{k}" for k in range(rng.randint(1, 12))]
        gold, pred = Doc(vocab, words=words), Doc(vocab, words=words)
        gold.ents, pred.ents = random_ents(gold), random_ents(pred)
        examples.append(Example(pred, gold))
        gold_spans.append(doc_spans(gold))
        pred_spans.append(doc_spans(pred))
    theirs = Scorer.score_spans(examples, "ents")
    ours = span_prf(gold_spans, pred_spans)
    assert ours["overall"]["f"] == pytest.approx(theirs["ents_f"])
    assert ours["overall"]["p"] == pytest.approx(theirs["ents_p"])
    assert ours["overall"]["r"] == pytest.approx(theirs["ents_r"])
    for label, scores in theirs["ents_per_type"].items():
        assert ours["per_type"][label]["f"] == pytest.approx(scores["f"])


def test_from_spacy_evaluate(tmp_path):
    import json

    spacy_json = {
        "token_acc": 1.0, "ents_p": 0.8, "ents_r": 0.6, "ents_f": 0.6857, "speed": 1234.5,
        "ents_per_type": {"PER": {"p": 0.9, "r": 0.7, "f": 0.7875}, "LOC": {"p": 0.5, "r": 0.5, "f": 0.5}},
    }
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(spacy_json))
    data = write_ner_metrics(path, tmp_path / "m" / "ner.json", "elmo", "some/model")
    assert data["overall"] == {"p": 0.8, "r": 0.6, "f": 0.6857}
    assert list(data["per_type"]) == ["LOC", "PER"]
    assert data["per_type"]["PER"] == {"p": 0.9, "r": 0.7, "f": 0.7875}
    assert data["words_per_second"] == 1234.5
    assert json.loads((tmp_path / "m" / "ner.json").read_text()) == data
    assert data["environment"] is None  # no record of where it was trained
    # The environment scripts/record_environment.py wrote at training time is copied in.
    (tmp_path / "environment.json").write_text(json.dumps({"environment": {"cpu": "Xeon", "versions": {"spacy": "3.8"}}}))
    data = write_ner_metrics(path, tmp_path / "ner.json", "elmo", environment_json=tmp_path / "environment.json")
    assert data["environment"] == {"cpu": "Xeon", "versions": {"spacy": "3.8"}}
    assert write_ner_metrics(path, tmp_path / "ner.json", "elmo", environment_json=tmp_path / "absent.json")["environment"] is None
    # The evaluated pipeline's budget and seed are copied in from its config (the report compares them).
    assert data["training"] is None  # "some/model" is not there
    model = tmp_path / "model-best"
    model.mkdir()
    (model / "config.cfg").write_text("[system]\nseed = 3\n\n[training]\nseed = ${system.seed}\nmax_steps = 300\n")
    assert write_ner_metrics(path, tmp_path / "ner.json", "elmo", str(model))["training"] == {"max_steps": 300, "seed": 3}
    # Nothing is invented for a run that scored no entities.
    empty = from_spacy_evaluate({"speed": 10.0})
    assert empty["overall"] == {"p": None, "r": None, "f": None} and empty["per_type"] == {}
