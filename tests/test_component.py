"""The `elmo` component: factory, outputs against the biLM core, batching, hooks, edge-case docs."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc

from spacy_elmo import default_model
from spacy_elmo.bilm import ScalarMix, batch_to_ids, load_bilm, save_model_dir
from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.component import PIPE_WINDOW_BATCHES

pytestmark = pytest.mark.usefixtures("single_thread")

WIDTH, N_LAYERS = 16, 3  # conftest's tiny_options



def fixture_elmo(fixture_dir: Path, **config) -> spacy.Language:
    nlp = spacy.blank("en")
    files = {"options_file": str(fixture_dir / "options.json"), "weight_file": str(fixture_dir / "lm_weights.hdf5")}
    nlp.add_pipe("elmo", config={**files, **config})
    return nlp


def make_nlp(model_dir: str, **config) -> spacy.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir, **config})
    return nlp


def core_layers(model_dir: str, words: list[str]) -> np.ndarray:
    """What the biLM core gives for one sentence: (n_layers, len(words), dim)."""
    with torch.no_grad():
        return load_bilm(model_dir)(batch_to_ids([words])).stacked()[0].numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- factory and configuration -------------------------------------------------------------------


def test_factory_is_found_through_the_entry_point(model_dir):
    code = textwrap.dedent(
        f"""
        import sys, spacy
        from spacy.util import registry
        assert "spacy_elmo" not in sys.modules
        nlp = spacy.blank("en")
        nlp.add_pipe("elmo", config={{"model": {model_dir!r}}})
        registry.architectures.get("spacy-elmo.ElmoListener.v1")
        print(nlp("Entry points work .")._.elmo.shape)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(4, {WIDTH})"


@pytest.mark.parametrize("name", ["spacy-elmo.ElmoListener.v1", "spacy-elmo.ElmoEmbed.v1"])
def test_each_architecture_is_found_through_the_entry_point(name):
    """A config may name an architecture before anything imported spacy_elmo (spaCy looks each
    name up on its own: a missing entry point fails the first lookup, not later ones)."""
    code = f"import sys; from spacy.util import registry; registry.architectures.get({name!r}); print('spacy_elmo' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


def test_default_model_is_used_when_present_and_explained_when_absent(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(ValueError, match="default model is not installed") as err:
        spacy.blank("en").add_pipe("elmo")
    assert "'model'" in str(err.value) and "options_file" in str(err.value) and "weight_file" in str(err.value)
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_DIR", Path(model_dir))
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    assert nlp("It works .")._.elmo.shape == (3, WIDTH)


def test_options_file_and_weight_file_pair(model_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"options_file": f"{model_dir}/options.json", "weight_file": f"{model_dir}/weights.hdf5"})
    np.testing.assert_array_equal(nlp("Same weights .")._.elmo, make_nlp(model_dir)("Same weights .")._.elmo)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"output": "bottom"}, "output must be one of"),
        ({"output": 3}, "layers 0..2"),
        ({"output": -4}, "layers 0..2"),
        ({"mix_weights": [1.0, 2.0, 3.0]}, "only apply to output='mix'"),
        ({"gamma": 2.0}, "only apply to output='mix'"),
        ({"output": "mix", "mix_weights": [1.0, 2.0]}, "2 values, the biLM has 3 layers"),
        ({"device": "tpu"}, "unknown device"),
        ({"device": "meta"}, "runs on cpu, cuda"),
        ({"threads": -1}, "between 0 .* and 1024"),
        ({"threads": 100000}, "between 0 .* and 1024"),  # torch.set_num_threads would kill the process
        ({"words_per_batch": 0}, "must be positive"),
        ({"window_size": -1}, "must be positive"),
        ({"context": "paragraph"}, "context must be one of auto, sentence, doc"),
    ],
)
def test_bad_settings_give_clear_errors(model_dir, config, message):
    with pytest.raises(ValueError, match=message):
        make_nlp(model_dir, **config)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"model": "/nonexistent/elmo"}, "not a model directory"),
        ({"options_file": "/nonexistent/options.json"}, "both options_file and weight_file"),
        ({"options_file": "/nonexistent/options.json", "weight_file": "/nonexistent/w.hdf5"}, "weight file not found"),
    ],
)
def test_missing_files_give_clear_errors(config, message):
    with pytest.raises(ValueError, match=message) as err:
        spacy.blank("en").add_pipe("elmo", config=config)
    assert "nlp.add_pipe('elmo'" in str(err.value)


def test_weights_that_do_not_fit_the_options_give_a_clear_error(model_dir, tmp_path, make_bilm, tiny_options):
    other = dataclasses.replace(tiny_options, lstm=dataclasses.replace(tiny_options.lstm, projection_dim=4))
    save_model_dir(make_bilm(other), tmp_path / "other")
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"options_file": f"{model_dir}/options.json", "weight_file": str(tmp_path / "other/weights.hdf5")})
    with pytest.raises(ValueError, match="do not belong together"):
        nlp("Mismatched weights .")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused(model_dir):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        make_nlp(model_dir, device="cuda")
    assert make_nlp(model_dir, device="cpu")("On the CPU .")._.elmo.shape == (4, WIDTH)


# ---- outputs -------------------------------------------------------------------------------------


def test_every_layer_equals_the_bilm_core_per_sentence(model_dir):
    nlp = make_nlp(model_dir, all_layers=True)
    words = ["The", "bank", "closed", ".", "Rivers", "flood", "their", "banks", "."]
    doc = nlp(Doc(nlp.vocab, words=words, sent_starts=[True] + [False] * 3 + [True] + [False] * 4))
    layers = doc._.elmo_layers
    assert layers.shape == (N_LAYERS, len(words), WIDTH) and layers.dtype == np.float32
    for sent in doc.sents:
        np.testing.assert_allclose(layers[:, sent.start : sent.end], core_layers(model_dir, words[sent.start : sent.end]), atol=1e-6)
    # Without sentence boundaries, the whole doc is one sequence.
    whole = nlp(Doc(nlp.vocab, words=words))._.elmo_layers
    np.testing.assert_allclose(whole, core_layers(model_dir, words), atol=1e-6)
    assert not np.allclose(whole[1:, 4:], layers[1:, 4:], atol=1e-4)  # context differs
    np.testing.assert_allclose(whole[0], layers[0], atol=1e-6)  # layer 0 is context-free


def test_context_doc_reads_across_sentence_boundaries_and_sentence_within_them(model_dir):
    """context="doc" runs the biLM over the doc's sentences together (up to window_size tokens,
    cut between sentences); context="sentence" over each sentence alone, boundaries guessed when
    the doc has none. Neither touches the doc's own sentence annotation."""
    words = ["The", "bank", "closed", ".", "Rivers", "flood", "their", "banks", "."]
    starts = [True] + [False] * 3 + [True] + [False] * 4
    doc_nlp = make_nlp(model_dir, all_layers=True, context="doc")
    np.testing.assert_allclose(
        doc_nlp(Doc(doc_nlp.vocab, words=words, sent_starts=starts))._.elmo_layers, core_layers(model_dir, words), atol=1e-6
    )
    # A window of 6 holds one 4- or 5-token sentence at a time, never a part of one.
    small = make_nlp(model_dir, all_layers=True, context="doc", window_size=6)
    layers = small(Doc(small.vocab, words=words, sent_starts=starts))._.elmo_layers
    np.testing.assert_allclose(layers[:, :4], core_layers(model_dir, words[:4]), atol=1e-6)
    np.testing.assert_allclose(layers[:, 4:], core_layers(model_dir, words[4:]), atol=1e-6)
    sent_nlp = make_nlp(model_dir, all_layers=True, context="sentence")
    doc = sent_nlp(Doc(sent_nlp.vocab, words=words))  # no boundaries: the sentencizer's guess
    np.testing.assert_allclose(doc._.elmo_layers[:, 4:], core_layers(model_dir, words[4:]), atol=1e-6)
    assert not doc.has_annotation("SENT_START")
    assert doc_nlp.get_pipe("elmo").model.attrs["context"] == "doc"
    assert spacy.blank("en").from_config(doc_nlp.config).get_pipe("elmo").model.attrs["context"] == "doc"


MIX_WEIGHTS, MIX_GAMMA = [0.5, -1.0, 2.0], 0.7


def expected_output(layers: np.ndarray, output) -> np.ndarray:
    if output == "top":
        return layers[-1]
    if output == "average":
        return layers.mean(axis=0)
    if output == "mix":  # the core's ScalarMix with fixed weights
        mix = ScalarMix(N_LAYERS, initial_weights=MIX_WEIGHTS, gamma=MIX_GAMMA, trainable=False)
        return mix([torch.from_numpy(x) for x in layers]).numpy()
    return layers[output]


@pytest.mark.parametrize("output", ["top", "average", 1, -1, "mix"])
def test_each_output_choice(model_dir, output):
    words = ["Deep", "contextualized", "word", "representations", "."]
    mix = {"mix_weights": MIX_WEIGHTS, "gamma": MIX_GAMMA} if output == "mix" else {}
    nlp = make_nlp(model_dir, output=output, **mix)
    doc = nlp(Doc(nlp.vocab, words=words))
    expected = expected_output(core_layers(model_dir, words), output)
    np.testing.assert_allclose(doc._.elmo, expected, atol=1e-6)
    assert doc._.elmo_layers is None  # only kept when asked
    np.testing.assert_array_equal(doc[2]._.elmo, doc._.elmo[2])
    np.testing.assert_allclose(doc[1:4]._.elmo, doc._.elmo[1:4].mean(axis=0), atol=1e-7)


def test_whitespace_tokens_are_skipped_and_get_zero_rows(model_dir):
    nlp = make_nlp(model_dir, all_layers=True)
    doc = nlp("Hello\n\nworld  !")
    spaces = [t.i for t in doc if t.is_space]
    assert spaces, "the tokenizer should have made whitespace tokens here"
    assert not doc._.elmo_layers[:, spaces].any()
    words = [t.i for t in doc if not t.is_space]
    np.testing.assert_allclose(doc._.elmo_layers[:, words], core_layers(model_dir, [doc[i].text for i in words]), atol=1e-6)


def test_doc_tensor_is_the_elmo_array_when_asked(model_dir):
    doc = make_nlp(model_dir, set_doc_tensor=True)("Fill the tensor .")
    assert doc.tensor is doc._.elmo and doc.tensor.shape == (4, WIDTH)
    assert make_nlp(model_dir)("Leave it .").tensor.size == 0


def test_allennlp_reference_outputs(fixture_dir):
    nlp = fixture_elmo(fixture_dir, output="top")
    sentences = json.loads((fixture_dir / "sentences.json").read_text())
    # Sentence 0 of each list is the first batch bilm-tf ran, from zero state: the stateless case.
    for k in range(3):
        doc = nlp(Doc(nlp.vocab, words=sentences[k][0].split()))
        with h5py.File(fixture_dir / f"lm_embeddings_{k}.hdf5", "r") as f:
            forward, backward = f["0"][...]
        np.testing.assert_allclose(doc._.elmo, np.concatenate([forward, backward], axis=-1), atol=2e-6)


# ---- batching and streaming ------------------------------------------------------------------------


def test_the_core_batching_the_component_uses_respects_the_word_budget(tiny_bilm):
    # What the component relies on (it passes words_per_batch as both limits).
    lengths = [5, 3, 9, 1, 12, 7, 7, 2]
    batches = list(Embedder(tiny_bilm, batch_size=14, max_batch_tokens=14).batches([["w"] * n for n in lengths]))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 14


def test_vectors_do_not_depend_on_the_batch(model_dir):
    texts = [" ".join(["word"] * n + ["."]) if n % 3 else f"Sentence {n} is here . And another one ." for n in range(1, 25)]
    one_by_one = [doc._.elmo for doc in make_nlp(model_dir).pipe(texts, batch_size=1)]
    nlp = make_nlp(model_dir, words_per_batch=12)  # many small, differently packed biLM batches
    batched = [doc._.elmo for doc in nlp.pipe(texts[::-1], batch_size=64)][::-1]
    for a, b in zip(one_by_one, batched):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_pipe_streams(model_dir):
    nlp = make_nlp(model_dir, words_per_batch=10)
    pulled = []

    def texts():
        for i in itertools.count():
            pulled.append(i)
            yield f"Text number {i} ."

    docs = list(itertools.islice(nlp.pipe(texts(), batch_size=8), 3))
    assert [d.text for d in docs] == [f"Text number {i} ." for i in range(3)]
    # An endless stream is fine: nothing waits for its end. The component reads ahead a window of
    # PIPE_WINDOW_BATCHES biLM batches (of 4-word texts here), whatever the caller's batch_size.
    assert len(pulled) <= PIPE_WINDOW_BATCHES * 10 // 4 + 8


def test_n_process_2_gives_the_same_vectors(model_dir):
    # In a subprocess: a worker that hangs (PyTorch's thread pool after fork) must fail the test,
    # not block the test run.
    code = textwrap.dedent(
        f"""
        import warnings, numpy as np, spacy, torch
        torch.set_num_threads(2)
        torch.ones(512, 512) @ torch.ones(512, 512)  # the parent's thread pool is up before the fork
        nlp = spacy.blank("en")
        nlp.add_pipe("elmo", config={{"model": {model_dir!r}}})
        texts = [f"Process {{i}} reads sentence number {{i}} ." for i in range(12)]
        single = [d._.elmo for d in nlp.pipe(texts)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spaCy's W109: user hooks do not cross processes
            docs = list(nlp.pipe(texts, n_process=2, batch_size=4))
        assert len(docs) == len(texts)
        print(max(float(np.abs(d._.elmo - e).max()) for d, e in zip(docs, single)))
        assert "similarity" in docs[0].user_hooks  # reading doc._.elmo above put the hooks back
        a, b = docs[0]._.elmo.mean(axis=0), docs[1]._.elmo.mean(axis=0)
        print(docs[0].similarity(docs[1]) - float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        proc.communicate()
        pytest.fail("nlp.pipe(n_process=2) hung")
    assert proc.returncode == 0, stderr
    max_diff, similarity_diff = (float(line) for line in stdout.split())
    assert max_diff < 1e-5 and abs(similarity_diff) < 1e-6


# ---- similarity hooks and polysemy -----------------------------------------------------------------


def test_similarity_hooks_for_doc_span_and_token(model_dir):
    nlp = make_nlp(model_dir)
    river, money = nlp("The bank of the river was muddy ."), nlp("I took money to the bank .")
    np.testing.assert_allclose(river.vector, river._.elmo.mean(axis=0), atol=1e-7)
    np.testing.assert_allclose(river[1:4].vector, river._.elmo[1:4].mean(axis=0), atol=1e-7)
    np.testing.assert_array_equal(river[1].vector, river._.elmo[1])
    assert river.vector_norm == pytest.approx(np.linalg.norm(river.vector), rel=1e-6)
    assert river[1].vector_norm == pytest.approx(np.linalg.norm(river._.elmo[1]), rel=1e-6)
    assert river.similarity(money) == pytest.approx(cosine(river.vector, money.vector), abs=1e-6)
    assert river[1:4].similarity(money) == pytest.approx(cosine(river[1:4].vector, money.vector), abs=1e-6)
    bank1, bank2 = river[1], money[5]
    assert bank1.text == bank2.text == "bank"
    # spaCy's own Token.similarity says 1.0 for two identical words; ELMo tells the senses apart.
    assert bank1.similarity(bank2) == pytest.approx(cosine(bank1.vector, bank2.vector), abs=1e-6)
    assert bank1.similarity(bank2) < 0.9999
    assert river.has_vector and river[0:2].has_vector and bank1.has_vector
    assert not river[2:2].has_vector and not nlp("").has_vector


def test_no_hooks_when_switched_off(model_dir):
    doc = make_nlp(model_dir, similarity_hooks=False)("No hooks here .")
    assert doc._.elmo is not None
    assert not doc.user_hooks and not doc.user_span_hooks and not doc.user_token_hooks


def _bank_vectors(nlp):
    river = nlp("We sat on the bank of the river .")
    money = nlp("We borrowed money from the bank today .")
    again = nlp("We sat on the bank of the river .")
    return river, money, again, river[4], money[5], again[4]


def test_polysemy_random_model(model_dir):
    nlp = make_nlp(model_dir, all_layers=True, output="top")
    river, money, _, b1, b2, b3 = _bank_vectors(nlp)
    assert b1.text == b2.text == "bank"
    assert not np.allclose(b1.vector, b2.vector, atol=1e-4)  # two contexts, two vectors
    np.testing.assert_array_equal(b1.vector, b3.vector)  # same context, same vector
    np.testing.assert_array_equal(river._.elmo_layers[0, 4], money._.elmo_layers[0, 5])  # char layer
    assert b1.similarity(b3) == pytest.approx(1.0, abs=1e-6)


def test_polysemy_trained_fixture_model(fixture_dir):
    nlp = fixture_elmo(fixture_dir)
    river, _, again, b1, b2, b3 = _bank_vectors(nlp)
    assert b1.similarity(b3) == pytest.approx(1.0, abs=1e-6)
    assert b1.similarity(b2) < 0.999
    np.testing.assert_array_equal(river._.elmo, again._.elmo)


# ---- edge-case documents ----------------------------------------------------------------------------


def test_empty_and_whitespace_only_docs(model_dir):
    nlp = make_nlp(model_dir, all_layers=True)
    empty = nlp("")
    assert empty._.elmo.shape == (0, WIDTH) and empty._.elmo_layers.shape == (N_LAYERS, 0, WIDTH)
    assert not empty.has_vector and empty.vector.shape == (WIDTH,) and not empty.vector.any()
    blank = nlp("   \n\t  ")
    assert len(blank) > 0 and blank._.elmo.shape == (len(blank), WIDTH)
    assert not blank._.elmo.any() and not blank.has_vector
    assert [d._.elmo.shape[0] for d in nlp.pipe(["", "  ", "One .", ""])] == [0, 1, 2, 0]


def test_a_doc_retokenized_after_elmo_says_so_instead_of_reading_other_words_vectors(model_dir):
    nlp = make_nlp(model_dir)
    doc = nlp("Alice lives in New York .")
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[3:5])
    for read in (lambda: doc._.elmo, lambda: doc[4]._.elmo, lambda: doc[1:3]._.elmo, lambda: doc[4].similarity(doc[0])):
        with pytest.raises(ValueError, match="6 rows but the doc has 5 tokens: the doc was retokenized"):
            read()
    assert nlp(doc)._.elmo.shape == (5, WIDTH)  # run through the component again: aligned
    layers_nlp = make_nlp(model_dir, all_layers=True)
    doc = layers_nlp("Alice lives in New York .")
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[3:5])
    with pytest.raises(ValueError, match="elmo_layers has 6 rows but the doc has 5 tokens"):
        doc._.elmo_layers


def test_emoji_and_cjk_text(model_dir):
    nlp = make_nlp(model_dir)
    doc = nlp("I ❤️ 東京 🎉😀 and 北京大学 ! " + "東" * 30)  # the last token is 90 UTF-8 bytes
    assert doc._.elmo.shape == (len(doc), WIDTH)
    assert np.isfinite(doc._.elmo).all()
    assert all(doc._.elmo[t.i].any() for t in doc if not t.is_space)
    assert not np.allclose(doc[2]._.elmo, doc[5]._.elmo)  # 東京 and 北京大学 differ


def test_a_20000_token_doc_is_read_in_windows_of_whole_sentences(model_dir):
    nlp = make_nlp(model_dir, all_layers=True, window_size=256)
    doc = nlp("The cat sat on the mat . " * 2858)
    assert len(doc) >= 20000
    assert doc._.elmo.shape == (len(doc), WIDTH) and np.isfinite(doc._.elmo).all()
    assert doc._.elmo.any(axis=1).all()  # every token got a vector: nothing truncated
    # The first window holds 36 whole 7-token sentences (252 <= 256 tokens).
    first = [t.text for t in doc[:252]]
    np.testing.assert_allclose(doc._.elmo_layers[:, :252], core_layers(model_dir, first), atol=1e-5)
    assert not doc.has_annotation("SENT_START")  # the doc itself is left alone


def test_an_over_long_sentence_is_split_with_a_warning(model_dir):
    nlp = make_nlp(model_dir, window_size=50)
    with pytest.warns(UserWarning, match="longer than window_size=50.*guessed by spaCy's sentencizer: set them on the doc"):
        doc = nlp("word " * 120)
    assert doc._.elmo.shape == (120, WIDTH) and doc._.elmo.any(axis=1).all()
    words = ["w"] * 60
    with pytest.warns(UserWarning, match="60 tokens") as caught:
        doc = nlp(Doc(nlp.vocab, words=words, sent_starts=[True] + [False] * 59))
    assert "guessed" not in str(caught[0].message)  # the doc's own boundaries
    assert doc._.elmo.any(axis=1).all()
