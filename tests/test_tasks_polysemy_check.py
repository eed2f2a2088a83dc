"""The polysemy check (issue 17): its hand-written data, its scoring on hand-made vectors, its
report row, and the check itself on the shipped default model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import spacy

from spacy_elmo.tasks.polysemy_check import (
    DATA_PATH,
    TARGET,
    TIE_TOLERANCE,
    cosine,
    data_problems,
    elmo_pipeline,
    load_pairs,
    run_polysemy_check,
    score_word,
    summarise,
    target_index,
)
from spacy_elmo.tasks.report import ReportInputs, collect
from spacy_elmo.tasks.table import NA, rows


@pytest.fixture(scope="module")
def blank_en():
    return spacy.blank("en")


# ---- the data ------------------------------------------------------------------------------------


def test_data_file_has_50_plus_well_formed_words(blank_en):
    pairs = load_pairs()
    assert len(pairs) >= 50
    for word, senses in pairs.items():
        assert len(senses) == 2 and all(len(sentences) == 2 for sentences in senses.values()), word
        for sentences in senses.values():
            for sentence in sentences:
                tokens = [t.text for t in blank_en.make_doc(sentence)]
                assert target_index(tokens, word) > 0, sentence  # never first, so never capitalised
    assert data_problems(pairs, blank_en) == []
    header = DATA_PATH.read_text(encoding="utf-8").split("\nword\t")[0]
    assert "by hand" in header and "not taken from any data set" in header


def test_data_problems_are_found(blank_en):
    pairs = {
        "bank": {
            "river": ["The river bank flooded after the storm last night.", "Bank robbers hid near the bank of the river."],
            "money": ["The bank raised its rates.", "The BANK on the corner lends money to farmers."],
        }
    }
    problems = "\n".join(data_problems(pairs, blank_en))
    assert "exactly once" in problems and "Bank robbers" in problems  # 'Bank' and 'bank' in one sentence
    assert "BANK on the corner" in problems  # another surface form
    assert "5 words" in problems  # too short
    assert "both senses" not in problems
    pairs["bank"]["money"][1] = "The bank on the corner lends money to farmers by the river."
    assert "both senses' sentences use ['river']" in "\n".join(data_problems(pairs, blank_en))


def test_load_pairs_rejects_a_wrong_shape_or_header(tmp_path):
    lines = ["word\tsense\tsentence", "bat\tanimal\tA bat flew.", "bat\tanimal\tThe bat slept.",
             "bat\tsport\tHe swung the bat.", "bat\tsport\tThe bat broke.", "bat\tsport\tShe sold the bat."]
    path = tmp_path / "pairs.tsv"
    path.write_text("# comment\n" + "\n".join(lines[:5]) + "\n")
    expected = {"animal": ["A bat flew.", "The bat slept."], "sport": ["He swung the bat.", "The bat broke."]}
    assert load_pairs(path) == {"bat": expected}
    path.write_text("\n".join(lines) + "\n")  # a third sentence for one sense
    with pytest.raises(ValueError, match="2 senses x 2 sentences"):
        load_pairs(path)
    path.write_text("word\tmeaning\tsentence\n" + "\n".join(lines[1:5]) + "\n")
    with pytest.raises(ValueError, match="header"):
        load_pairs(path)


def test_target_index_needs_exactly_one_match():
    assert target_index(["He", "swung", "the", "bat", "."], "bat") == 3
    with pytest.raises(ValueError, match="found 0"):
        target_index(["A", "Bat", "flew", "."], "bat")
    with pytest.raises(ValueError, match="found 2"):
        target_index(["bat", "and", "bat"], "bat")


# ---- scoring -------------------------------------------------------------------------------------


def test_same_sense_closer_passes_and_the_means_are_right():
    a1, a2, b1, b2 = np.array([1.0, 0, 0]), np.array([0.9, 0.1, 0]), np.array([0, 1.0, 0]), np.array([0.1, 0.9, 0])
    result = score_word("w", {"a": [a1, a2], "b": [b1, b2]})
    assert result.same == pytest.approx((cosine(a1, a2) + cosine(b1, b2)) / 2)
    assert result.different == pytest.approx((cosine(a1, b1) + cosine(a1, b2) + cosine(a2, b1) + cosine(a2, b2)) / 4)
    assert result.passed and not result.tie
    # The same vectors grouped the other way round: the different senses are now the close ones.
    assert not score_word("w", {"a": [a1, b1], "b": [a2, b2]}).passed


def test_ties_do_not_pass():
    v = np.array([0.3, -0.2, 0.9], dtype=np.float32)
    exact = score_word("w", {"a": [v, v], "b": [v, v]})
    assert exact.same == exact.different and exact.tie and not exact.passed
    noise = v + np.float32(1e-7) * np.array([1, 0, 0], dtype=np.float32)  # float noise, not context
    near = score_word("w", {"a": [v, noise], "b": [v, v]})
    assert abs(near.margin) <= TIE_TOLERANCE and not near.passed


def test_summary_counts_and_zero_vectors():
    a, b = np.array([1.0, 0]), np.array([0.0, 1])
    passing = score_word("p", {"x": [a, a], "y": [b, b]})
    failing = score_word("f", {"x": [a, b], "y": [a, b]})
    tie = score_word("t", {"x": [a, a], "y": [a, a]})
    assert summarise([passing, failing, tie]) == {"n_words": 3, "passed": 1, "ties": 1, "fraction": 1 / 3}
    assert summarise([])["fraction"] is None
    assert cosine(np.zeros(2), a) == 0.0


# ---- the report row ------------------------------------------------------------------------------


def _row(table):
    (row,) = [r for r in table if r["task"] == "Polysemy check"]
    return row


def test_report_row_from_a_metrics_file(tmp_path):
    block = lambda passed, ties: {"n_words": 65, "passed": passed, "ties": ties, "fraction": passed / 65, "words": []}  # noqa: E731
    data = {
        "settings": {"output": "average"}, "default": block(40, 0),
        "layers": {"layer_0": block(0, 65), "layer_1": block(39, 0), "layer_2": block(52, 0)},
    }
    path = tmp_path / "polysemy.json"
    path.write_text(json.dumps(data))
    fig = collect(ReportInputs(polysemy=path))
    assert fig["polysemy_check"]["default"] == {"passed": 40.0, "n_words": 65.0}
    assert fig["inputs"]["polysemy"]["status"] == "ok"
    row = _row(rows(fig))
    assert row["metric"] == "same-sense > different-sense (output=average)"
    assert row["cells"] == {
        "Baseline": "0 of 65 (0.0 %)", "+ELMo (mix)": "40 of 65 (61.5 %)",
        "ELMo layer 0": "0 of 65 (0.0 %)", "ELMo layer 1": "39 of 65 (60.0 %)", "ELMo layer 2": "52 of 65 (80.0 %)",
    }


def test_report_row_is_na_without_the_file(tmp_path):
    fig = collect(ReportInputs(polysemy=tmp_path / "absent.json"))
    assert fig["inputs"]["polysemy"]["status"].startswith("missing")
    assert set(_row(rows(fig))["cells"].values()) == {NA}


# ---- the check on the shipped default model ------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return run_polysemy_check()  # the shipped model, the component's default settings


@pytest.mark.slow
def test_shipped_model_figures_follow_from_the_per_word_results(shipped):
    n_words = len(load_pairs())
    for block in [shipped["default"], *shipped["layers"].values()]:
        words = block["words"]
        assert block["n_words"] == len(words) == n_words
        assert block["passed"] == sum(w["passed"] for w in words)
        assert block["fraction"] == block["passed"] / n_words
        for w in words:
            assert w["passed"] == (w["same"] - w["different"] > TIE_TOLERANCE), w
    # Layer 0 is the context-free character encoding: a word has one vector, every word ties.
    assert shipped["layers"]["layer_0"]["ties"] == n_words and shipped["layers"]["layer_0"]["passed"] == 0
    for name in ("layer_1", "layer_2"):  # the biLSTM layers see the context: no word ties
        assert shipped["layers"][name]["ties"] == 0, name


@pytest.mark.slow
def test_shipped_model_cosines_are_what_the_similarity_hook_gives(shipped):
    """The figures are a user's: token.similarity() of a fresh default pipeline gives the same cosines."""
    word, senses = next(iter(load_pairs().items()))
    nlp = elmo_pipeline()
    tokens = {s: [(d := nlp(text))[target_index([t.text for t in d], word)] for text in texts] for s, texts in senses.items()}
    first, second = tokens.values()
    same = np.mean([first[0].similarity(first[1]), second[0].similarity(second[1])])
    different = np.mean([a.similarity(b) for a in first for b in second])
    (measured,) = [w for w in shipped["default"]["words"] if w["word"] == word]
    assert measured["same"] == pytest.approx(same, abs=1e-5)
    assert measured["different"] == pytest.approx(different, abs=1e-5)


@pytest.mark.slow
def test_shipped_model_reaches_the_target(shipped):
    assert shipped["default"]["fraction"] >= TARGET
