"""The pipeline pickles, so nlp.pipe(n_process>1) works under every start method; the similarity
hooks come back after serialisation; the `threads` setting reaches torch."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import DocBin
from test_serialization import TEXTS, build_nlp

from spacy_elmo.data import HOOKS_KEY


def test_pickled_pipeline_links_its_listener_to_the_copied_component(model_dir):
    nlp = build_nlp(model_dir)
    nlp("The bank of the river .")  # leaves layers pending for the listener: they must not travel
    copy = pickle.loads(pickle.dumps(nlp))
    elmo_copy, listener_copy = copy.get_pipe("elmo"), copy.get_pipe("elmo").listeners[0]
    assert listener_copy.upstream() is elmo_copy and elmo_copy is not nlp.get_pipe("elmo")
    assert len(elmo_copy._pending) == 0
    for a, b in zip(nlp.pipe(TEXTS), copy.pipe(TEXTS)):
        np.testing.assert_array_equal(a._.elmo, b._.elmo)
        assert a.cats == pytest.approx(b.cats, abs=1e-7)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_n_process_2_under_start_method(model_dir, start_method):
    # In a subprocess, so that the start method is this test's alone and a hang fails the test.
    code = textwrap.dedent(
        f"""
        import multiprocessing, sys, warnings
        import numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_serialization import build_nlp

        if __name__ == "__main__":
            multiprocessing.set_start_method({start_method!r})
            nlp = build_nlp({model_dir!r})
            texts = [f"Process {{i}} reads sentence number {{i}} ." for i in range(8)]
            single = list(nlp.pipe(texts))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # spaCy's W109: user hooks do not cross processes
                docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
            assert [d.text for d in docs] == texts
            print(max(float(np.abs(d._.elmo - s._.elmo).max()) for d, s in zip(docs, single)))
            print(max(abs(d.cats["A"] - s.cats["A"]) for d, s in zip(docs, single)))
            print(docs[0][1].similarity(docs[1][1]) - single[0][1].similarity(single[1][1]))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"nlp.pipe(n_process=2) under {start_method} hung")
    assert proc.returncode == 0, stderr
    vectors_diff, cats_diff, similarity_diff = (float(line) for line in stdout.split())
    assert vectors_diff < 1e-5 and cats_diff < 1e-5 and abs(similarity_diff) < 1e-5


def test_similarity_hooks_come_back_after_a_docbin_round_trip(model_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir})
    river, money = nlp("The bank of the river ."), nlp("She paid the bank .")
    expected = river[1].similarity(money[3])
    assert expected != pytest.approx(1.0)  # without the hooks spaCy says 1.0 for the same word
    stored = DocBin(store_user_data=True, docs=[river, money]).to_bytes()
    river2, money2 = DocBin().from_bytes(stored).get_docs(nlp.vocab)
    assert "similarity" not in river2.user_hooks  # spaCy does not store hooks...
    assert river2[1]._.elmo is not None  # ...reading the vectors puts them back
    assert river2[1].similarity(money2[3]) == pytest.approx(expected, abs=1e-6)
    assert river2.similarity(money2) == pytest.approx(river.similarity(money), abs=1e-6)


def test_no_hooks_come_back_where_the_component_set_none(model_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir, "similarity_hooks": False})
    doc = nlp("The bank of the river .")
    assert HOOKS_KEY not in doc.user_data
    assert doc._.elmo is not None and "similarity" not in doc.user_hooks


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_setting_reaches_torch(model_dir, threads):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        nlp = spacy.blank("en")
        nlp.add_pipe("elmo", config={"model": model_dir, "threads": threads})
        nlp("The bank of the river .")
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(previous)


def test_threads_zero_leaves_torch_alone_and_negative_is_an_error(model_dir):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        nlp = spacy.blank("en")
        nlp.add_pipe("elmo", config={"model": model_dir})
        nlp("The bank of the river .")
        assert torch.get_num_threads() == 3
        with pytest.raises(ValueError, match="threads must be between 0"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spacy.blank("en").add_pipe("elmo", config={"model": model_dir, "threads": -1})
    finally:
        torch.set_num_threads(previous)
