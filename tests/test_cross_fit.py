"""Cross-fitting: training docs read by the biLM copy that never saw them, prediction by the main model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import spacy
from elmo_pipelines import elmo_nlp, listener, ner_model
from spacy.training import Example

from spacy_elmo.bilm import save_model_dir
from spacy_elmo.cross_fit import HeldOutFolds, text_key

pytestmark = pytest.mark.usefixtures("single_thread")

FOLD0 = ["Peter Blackburn met the EU in Brussels .", "Germany rejects the call ."]
FOLD1 = ["Rain fell on London all day ."]
ELSEWHERE = "Nobody wrote this line down ."


@pytest.fixture
def folds(tmp_path) -> list[str]:
    paths = []
    for k, lines in enumerate([FOLD0, FOLD1]):
        path = tmp_path / f"fold{k}.txt"
        # whitespace differs from the docs' on purpose: folds are matched on the words
        path.write_text("\n".join("  ".join(line.split()) for line in lines) + "\n\n", encoding="utf-8")
        paths.append(str(path))
    return paths


@pytest.fixture
def copies(make_bilm, tmp_path) -> list[str]:
    """Two biLMs shaped like conftest's model_dir, with other weights (as fine-tuned copies would be)."""
    paths = []
    for k in range(2):
        path = tmp_path / f"copy{k}"
        save_model_dir(make_bilm(seed=10 + k), path)
        paths.append(str(path))
    return paths


def cross_fit_nlp(model_dir: str, copies: list[str], folds: list[str]) -> spacy.Language:
    nlp = elmo_nlp(model_dir, cross_fit_models=copies, cross_fit_texts=folds, cache_mb=16)
    nlp.add_pipe("ner", config={"model": ner_model(listener())})
    return nlp


def test_held_out_folds_match_docs_by_their_words(folds):
    nlp = spacy.blank("en")
    held_out = HeldOutFolds(folds)
    assert len(held_out) == 2
    docs = [nlp(FOLD0[1]), nlp(FOLD1[0]), nlp(ELSEWHERE), nlp(FOLD0[0])]
    assert [held_out.fold_of(doc) for doc in docs] == [0, 1, None, 0]
    assert held_out.split(docs) == {0: [0, 3], 1: [1], None: [2]}
    assert text_key("a  b\n") == text_key("a b") != text_key("a b c")


def test_a_line_in_two_folds_is_counted(tmp_path):
    for k in range(2):
        (tmp_path / f"f{k}.txt").write_text("the same line\nline %d\n" % k, encoding="utf-8")
    held_out = HeldOutFolds([tmp_path / "f0.txt", tmp_path / "f1.txt"])
    assert held_out.n_shared == 1
    assert held_out.fold_of(spacy.blank("en")("the same line")) == 0


def test_training_reads_each_doc_with_its_fold_copy_and_prediction_with_the_main_model(model_dir, copies, folds):
    nlp = cross_fit_nlp(model_dir, copies, folds)
    texts = [FOLD0[0], FOLD1[0], ELSEWHERE]
    examples = [Example.from_dict(nlp.make_doc(t), {"entities": ["U-PER"] + ["O"] * (len(t.split()) - 1)}) for t in texts]
    optimizer = nlp.initialize(lambda: examples)
    elmo = nlp.get_pipe("elmo")
    docs = [eg.predicted for eg in examples]
    main = elmo.predict(docs)
    expected = [elmo_nlp(copies[0]).get_pipe("elmo").predict(docs[:1])[0],
                elmo_nlp(copies[1]).get_pipe("elmo").predict(docs[1:2])[0],
                main[2]]
    received = []
    ner_listener = elmo.listeners[0]
    original = ner_listener.receive
    ner_listener.receive = lambda d, layers, backprop: (received.append(layers), original(d, layers, backprop))
    nlp.update(examples, sgd=optimizer)
    (layers,) = received
    for got, want in zip(layers, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(layers[0], main[0]) and not np.allclose(layers[1], main[1])
    # prediction, training done or not, reads the main model
    for doc, want in zip(nlp.pipe(texts), main):
        np.testing.assert_allclose(doc._.elmo, elmo._select(elmo.model.ops.to_numpy(want)), atol=1e-5)


def test_cross_fit_is_not_saved_with_the_pipeline_and_reloads_without_the_copies(model_dir, copies, folds, tmp_path):
    nlp = cross_fit_nlp(model_dir, copies, folds)
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc(FOLD0[0]), {"entities": ["U-PER"] + ["O"] * 7})])
    nlp.to_disk(tmp_path / "pipeline")
    for path in copies:  # gone, as after training on another machine
        shutil.rmtree(path)
    for path in folds:
        Path(path).unlink()
    reloaded = spacy.load(tmp_path / "pipeline")
    doc = reloaded(FOLD0[0])
    assert doc._.elmo.shape == (8, 16)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"cross_fit_models": ["{copy}"], "cross_fit_texts": []}, "one held-out text per model"),
        ({"cross_fit_models": ["{copy}"], "cross_fit_texts": ["{missing}"]}, "held-out text"),
        ({"cross_fit_models": ["{missing}"], "cross_fit_texts": ["{fold}"]}, "not a model directory"),
    ],
)
def test_bad_cross_fit_settings_give_clear_errors(model_dir, copies, folds, tmp_path, settings, message):
    names = {"copy": copies[0], "fold": folds[0], "missing": str(tmp_path / "missing")}
    config = {key: [v.format(**names) for v in value] for key, value in settings.items()}
    with pytest.raises(ValueError, match=message):
        elmo_nlp(model_dir, **config)


def test_a_copy_of_another_shape_is_refused(model_dir, folds, make_bilm, tiny_options, tmp_path):
    narrow = dataclasses.replace(tiny_options, lstm=dataclasses.replace(tiny_options.lstm, projection_dim=4))
    save_model_dir(make_bilm(narrow), tmp_path / "narrow")
    with pytest.raises(ValueError, match="layers of"):
        elmo_nlp(model_dir, cross_fit_models=[str(tmp_path / "narrow")], cross_fit_texts=folds[:1])


def test_cross_fit_refuses_a_fine_tuned_biLM(model_dir, copies, folds):
    nlp = elmo_nlp(model_dir, cross_fit_models=copies, cross_fit_texts=folds)
    nlp.add_pipe("ner", config={"model": ner_model(listener(grad_factor=1.0))})
    examples = [Example.from_dict(nlp.make_doc(FOLD0[0]), {"entities": ["U-PER"] + ["O"] * 7})]
    optimizer = nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="frozen biLM"):
        nlp.update(examples, sgd=optimizer)
