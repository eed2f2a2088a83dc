"""spacy-elmo.ElmoListener.v1: the task's own scalar mix, one shared biLM run, a frozen biLM, spacy train."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_elmo.bilm import ScalarMix, save_model_dir
from spacy_elmo.bilm.blocked import onednn_linear_available, plain_products
from spacy_elmo.layers import ElmoScalarMix

from elmo_pipelines import elmo_nlp, listener, ner_model

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIGS = Path(__file__).parents[1] / "configs"

DATA = [
    ("Alice met Bob in Paris .", [(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")], "POS"),
    ("Bob hates London .", [(0, 3, "PER"), (10, 16, "LOC")], "NEG"),
    ("Paris is lovely in spring .", [(0, 5, "LOC")], "POS"),
    ("Alice found the trip to London dreadful .", [(0, 5, "PER"), (24, 30, "LOC")], "NEG"),
]



def build_nlp(model_dir: str, textcat_grad_factor: float = 0.0, elmo: bool = True) -> spacy.Language:
    """elmo + textcat + ner, both downstream components listening to the one elmo component."""
    nlp = elmo_nlp(model_dir) if elmo else spacy.blank("en")
    nlp.add_pipe(
        "textcat",
        config={"model": {"@architectures": "spacy.TextCatEnsemble.v2", "tok2vec": listener(textcat_grad_factor), "nO": None,
                          "linear_model": {"@architectures": "spacy.TextCatBOW.v3", "exclusive_classes": True,
                                           "ngram_size": 1, "no_output_layer": False, "nO": None}}},
    )
    nlp.add_pipe("ner", config={"model": ner_model(listener())})
    return nlp


def examples(nlp: spacy.Language) -> list[Example]:
    return [
        Example.from_dict(nlp.make_doc(text), {"entities": ents, "cats": {"POS": float(cat == "POS"), "NEG": float(cat == "NEG")}})
        for text, ents, cat in DATA
    ]


def mix_of(nlp: spacy.Language, component: str):
    (mix,) = [node for node in nlp.get_pipe(component).model.walk() if node.name == "elmo_scalar_mix"]
    return mix


def count_bilm_runs(nlp: spacy.Language) -> list:
    calls: list = []
    nlp.get_pipe("elmo").get_bilm().register_forward_hook(lambda *args: calls.append(1))
    return calls


# ---- the mix layer -------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_norm", [False, True])
def test_mix_and_its_gradients_match_the_core_scalar_mix(layer_norm):
    rng = np.random.default_rng(0)
    docs = [rng.normal(size=(3, n, 5)).astype("f") for n in (4, 1, 6)]
    d_outputs = [rng.normal(size=(n, 5)).astype("f") for n in (4, 1, 6)]
    weights, gamma = [0.2, -0.4, 0.9], 1.3
    mix = ElmoScalarMix(initial_weights=weights, gamma=gamma, layer_norm=layer_norm, grad_to_input=True)
    mix.initialize(X=docs)
    outputs, backprop = mix.begin_update(docs)
    d_inputs = backprop(d_outputs)
    core = ScalarMix(3, initial_weights=weights, gamma=gamma, layer_norm=layer_norm)
    for x, y, dy, dx in zip(docs, outputs, d_outputs, d_inputs):  # the core mix, one doc at a time
        layers = [torch.tensor(x[j][None], requires_grad=True) for j in range(3)]  # (1, n, 5) each
        expected = core(layers, mask=torch.ones(1, x.shape[1], dtype=torch.bool))[0]
        np.testing.assert_allclose(y, expected.detach().numpy(), atol=1e-5)
        (expected * torch.from_numpy(dy)).sum().backward()
        np.testing.assert_allclose(dx, np.stack([t.grad[0].numpy() for t in layers]), atol=1e-5)
    np.testing.assert_allclose(mix.get_grad("w"), core.weights.grad.numpy(), atol=1e-4)
    np.testing.assert_allclose(mix.get_grad("gamma"), core.gamma.grad.numpy(), atol=1e-4)


def test_mix_dropout_only_in_training():
    x = [np.ones((3, 50, 8), dtype="f")]
    mix = ElmoScalarMix(dropout=0.5)
    mix.initialize(X=x)
    assert (mix.predict(x)[0] == 1.0).all()
    trained, _ = mix.begin_update(x)
    assert (trained[0] == 0).any() and (trained[0] == 2.0).any()  # inverted dropout: 1 / (1 - 0.5)


# ---- linking and prediction ----------------------------------------------------------------------


def test_listeners_read_the_layers_of_one_bilm_run(model_dir):
    nlp = build_nlp(model_dir)
    nlp.initialize(lambda: examples(nlp))
    elmo = nlp.get_pipe("elmo")
    assert elmo.listening_components == ["textcat", "ner"]
    for name in ("textcat", "ner"):
        assert mix_of(nlp, name).get_dim("nL") == 3 and mix_of(nlp, name).get_dim("nO") == 16
    calls = count_bilm_runs(nlp)
    doc = nlp("Alice met Bob in London .")
    assert len(calls) == 1  # two listeners, one biLM run
    assert len(elmo._pending) == 0  # released once both listeners have read it
    kept = list(nlp.pipe([text for text, _, _ in DATA] * 5, batch_size=8))
    # 20 short docs: one window of words, so one biLM batch whatever pipe's batch_size; docs still alive
    assert len(calls) == 1 + 1 and len(elmo._pending) == 0
    # Without the elmo component the listeners run the biLM themselves: same vectors, same answers.
    with nlp.select_pipes(disable=["elmo"]):
        alone = nlp("Alice met Bob in London .")
    assert alone._.elmo is None and len(calls) > 2
    assert alone.cats == pytest.approx(doc.cats, abs=1e-6)
    assert [(e.text, e.label_) for e in alone.ents] == [(e.text, e.label_) for e in doc.ents]
    assert kept[0].cats == pytest.approx(nlp(DATA[0][0]).cats, abs=1e-6)


def test_a_listener_without_an_elmo_component_explains(model_dir):
    nlp = build_nlp(model_dir, elmo=False)
    with pytest.raises(ValueError, match="add one before the component"):
        nlp.initialize(lambda: examples(nlp))


def test_a_listener_names_the_upstream_it_wants(model_dir):
    nlp = elmo_nlp(model_dir)
    nlp.add_pipe("ner", config={"model": ner_model(listener(upstream="elmo2"))})
    assert nlp.get_pipe("elmo").listening_components == []
    with pytest.raises(ValueError, match="add one before the component.* named 'elmo2'"):
        nlp.initialize(lambda: examples(nlp))


@pytest.mark.parametrize("dropout", [1.0, 1.5, -0.1])
def test_listener_dropout_outside_0_1_is_refused(model_dir, dropout):
    nlp = elmo_nlp(model_dir)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        nlp.add_pipe("ner", config={"model": ner_model(listener(dropout=dropout))})


def test_replace_listeners_is_refused_before_anything_changes(model_dir, tmp_path):
    """spaCy would put the elmo component's `model` path where the listener's config was: a pipeline
    that predicts until it is saved and then no longer loads. Refused, and the pipeline is intact."""
    nlp = build_nlp(model_dir)
    nlp.initialize(lambda: examples(nlp))
    before = nlp.config.to_str()
    with pytest.raises(ValueError, match="does not support nlp.replace_listeners"):
        nlp.replace_listeners("elmo", "ner", ["model.tok2vec"])
    assert nlp.config.to_str() == before
    assert nlp.get_pipe("elmo").listening_components == ["textcat", "ner"]
    doc = nlp(DATA[0][0])
    nlp.to_disk(tmp_path / "nlp")
    assert spacy.load(tmp_path / "nlp")(DATA[0][0]).cats == pytest.approx(doc.cats, abs=1e-6)


def test_a_doc_retokenized_after_elmo_gets_layers_for_its_new_tokens(model_dir):
    """merge_entities & co. between elmo and a listening component: the kept layers (and a training
    batch's) describe the old tokens, so the listener reads the doc again instead."""
    nlp = build_nlp(model_dir)
    nlp.initialize(lambda: examples(nlp))
    elmo = nlp.get_pipe("elmo")
    (ner_listener,) = [node for node in nlp.get_pipe("ner").model.walk() if node.name == "elmo_listener"]
    doc = elmo(nlp.make_doc("Alice met Bob in New York ."))
    old = elmo.layers_for([nlp.make_doc(doc.text)])[0]
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[4:6])
    fresh = elmo.predict([nlp.make_doc("Alice met Bob in New York .")])  # same text: old tokens
    assert old.shape[1] == 7 and len(doc) == 6
    (layers,) = elmo.layers_for([doc])
    assert layers.shape[1] == len(doc)
    np.testing.assert_allclose(layers, elmo.predict([doc])[0], atol=1e-6)
    # the second listener (textcat and ner listen) gets the fresh layers without another biLM run
    calls: list[int] = []
    elmo.get_bilm().register_forward_hook(lambda module, args, out: calls.append(1))
    (again,) = elmo.layers_for([doc])
    assert again is layers and calls == [] and len(elmo._pending) == 0
    # training: Elmo.update handed the listener the batch's layers before a component retokenized
    train_doc = nlp.make_doc("Alice met Bob in New York .")
    ner_listener.receive([train_doc], fresh, None)
    with train_doc.retokenize() as retokenizer:
        retokenizer.merge(train_doc[0:2])
    (layers,), _ = ner_listener.begin_update([train_doc])
    assert layers.shape[1] == len(train_doc) == 6


def test_a_listener_refuses_an_elmo_model_of_another_width(model_dir, tmp_path, make_bilm, tiny_options):
    nlp = build_nlp(model_dir)
    nlp.initialize(lambda: examples(nlp))
    nlp.remove_pipe("elmo")
    narrow = dataclasses.replace(tiny_options, lstm=dataclasses.replace(tiny_options.lstm, projection_dim=4))
    save_model_dir(make_bilm(narrow), tmp_path / "narrow")
    with pytest.raises(ValueError, match="nO=16, but component 'elmo' has nO=8"):
        nlp.add_pipe("elmo", first=True, config={"model": str(tmp_path / "narrow")})


# ---- training ------------------------------------------------------------------------------------


def test_training_feeds_every_mix_from_one_frozen_bilm_run(model_dir):
    nlp = build_nlp(model_dir)
    optimizer = nlp.initialize(lambda: examples(nlp))
    bilm = nlp.get_pipe("elmo").get_bilm()
    before = {k: v.clone() for k, v in bilm.state_dict().items()}
    calls = count_bilm_runs(nlp)
    for _ in range(4):
        nlp.update(examples(nlp), sgd=optimizer)
    assert len(calls) == 4  # one biLM run per update for both listeners
    # (Not on the first update: textcat's output layer starts at zero and passes no gradient.)
    nlp.update(examples(nlp), sgd=False)  # gradients, no step
    for name in ("textcat", "ner"):
        assert np.abs(mix_of(nlp, name).get_grad("w")).sum() > 0
        assert np.abs(mix_of(nlp, name).get_grad("gamma")).sum() > 0
    assert all(p.grad is None for p in bilm.parameters())
    textcat_w, ner_w = mix_of(nlp, "textcat").get_param("w"), mix_of(nlp, "ner").get_param("w")
    assert np.abs(textcat_w).max() > 0 and np.abs(ner_w).max() > 0  # both moved away from zeros...
    assert not np.allclose(textcat_w, ner_w)  # ...each its own way
    assert mix_of(nlp, "ner").get_param("gamma")[0] != 1.0
    for key, value in bilm.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_grad_factor_fine_tunes_the_bilm(model_dir):
    nlp = build_nlp(model_dir, textcat_grad_factor=1.0)
    optimizer = nlp.initialize(lambda: examples(nlp))
    bilm = nlp.get_pipe("elmo").get_bilm()
    before = {k: v.clone() for k, v in bilm.state_dict().items()}
    for _ in range(3):
        nlp.update(examples(nlp), sgd=optimizer)
    changed = [k for k, v in bilm.state_dict().items() if not torch.equal(v, before[k])]
    assert "lstm.layers.1.W_proj" in changed and "char_encoder.W_proj" in changed


def test_fine_tuning_never_predicts_from_layer0_vectors_of_old_weights(model_dir):
    # Prediction keeps layer-0 vectors (bilm/token_cache.py); fine-tuning changes the char CNN, so
    # after each update the predictions must be those of the new weights, as without the cache.
    nlp = build_nlp(model_dir, textcat_grad_factor=1.0)
    optimizer = nlp.initialize(lambda: examples(nlp))
    elmo = nlp.get_pipe("elmo")
    texts = [text for text, _, _ in DATA]
    for _ in range(4):  # the char CNN's weights first move at the second update
        cached = [doc._.elmo.copy() for doc in nlp.pipe(texts)]
        assert len(elmo.get_bilm().char_encoder.token_cache) > 0
        cache, elmo.get_bilm().char_encoder.token_cache = elmo.get_bilm().char_encoder.token_cache, None
        fresh = [doc._.elmo.copy() for doc in nlp.pipe(texts)]
        elmo.get_bilm().char_encoder.token_cache = cache
        for a, b in zip(cached, fresh):
            np.testing.assert_array_equal(a, b)
        nlp.update(examples(nlp), sgd=optimizer)


def test_fine_tuning_never_predicts_from_blocked_copies_of_old_weights(model_dir):
    # Prediction on a CPU runs through copies of the weights blocked for oneDNN (bilm/blocked.py).
    # Thinc's optimizer updates the weights in place through numpy, which leaves their address and
    # version counter unchanged: after each update prediction must still follow the new weights,
    # i.e. match the plain products (within their ~1e-6) rather than the copies made before.
    if not onednn_linear_available():
        pytest.skip("this torch has no oneDNN linear: no blocked copies to go stale")
    nlp = build_nlp(model_dir, textcat_grad_factor=1.0)
    optimizer = nlp.initialize(lambda: examples(nlp))
    texts = [text for text, _, _ in DATA]
    moved = 0.0
    before = [doc._.elmo.copy() for doc in nlp.pipe(texts)]  # the blocked copies are made here
    for _ in range(3):
        nlp.update(examples(nlp), sgd=optimizer)
        predicted = [doc._.elmo.copy() for doc in nlp.pipe(texts)]
        with plain_products():
            plain = [doc._.elmo.copy() for doc in nlp.pipe(texts)]
        for a, b, old in zip(predicted, plain, before):
            np.testing.assert_allclose(a, b, atol=1e-5)
            moved = max(moved, float(np.abs(b - old).max()))
    assert moved > 1e-3  # the weights did change, so stale copies would have shown


def test_memory_stays_flat_over_a_long_stream(model_dir):
    nlp = build_nlp(model_dir)
    nlp.initialize(lambda: examples(nlp))
    elmo = nlp.get_pipe("elmo")
    texts = (f"{DATA[i % 4][0]} Day {i % 20} ." for i in range(1500))
    tracemalloc.start()
    try:
        for i, doc in enumerate(nlp.pipe(texts, batch_size=32)):
            assert doc.cats and doc._.elmo is not None
            if i == 300:
                gc.collect()
                start = tracemalloc.get_traced_memory()[0]
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(elmo._pending) == 0
    # 1200 more docs went through; keeping even one (3, ~10, 16) float array each would add ~2 MB.
    assert end - start < 500_000, end - start


# ---- spacy train with the shipped configs ----------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    nlp = spacy.blank("en")
    path = tmp_path_factory.mktemp("corpus")
    ner, textcat = DocBin(), DocBin()
    for eg in examples(nlp) * 3:
        ner.add(eg.reference)
        textcat.add(eg.reference)
    ner.to_disk(path / "ner.spacy")
    textcat.to_disk(path / "textcat.spacy")
    return path


def train(config: str, data: Path, output: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "spacy", "train", str(CONFIGS / config), "--output", str(output),
        "--paths.train", str(data), "--paths.dev", str(data),
        "--training.max_steps", "6", "--training.eval_frequency", "3", *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("config, data, component", [("ner_elmo.cfg", "ner.spacy", "ner"), ("textcat_elmo.cfg", "textcat.spacy", "textcat")])
def test_spacy_train_learns_the_mix_and_leaves_the_bilm_alone(model_dir, corpus, tmp_path, config, data, component):
    result = train(config, corpus / data, tmp_path, "--paths.elmo_model", model_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    nlp = spacy.load(tmp_path / "model-last")
    assert nlp.pipe_names == ["elmo", component]
    mix = mix_of(nlp, component)
    assert np.abs(mix.get_param("w")).max() > 0 or mix.get_param("gamma")[0] != 1.0
    with h5py.File(Path(model_dir) / "weights.hdf5", "r") as original, \
            h5py.File(tmp_path / "model-last" / "elmo" / "model" / "weights.hdf5", "r") as trained:
        names = []
        original.visit(lambda name: names.append(name) if isinstance(original[name], h5py.Dataset) else None)
        assert names and all(np.array_equal(original[n][...], trained[n][...]) for n in names)
    doc = nlp(DATA[0][0])
    assert doc._.elmo.shape == (len(doc), 16)
    # the training cached layers (cache_mb > 0 in the config); the saved pipeline serves without
    assert nlp.config["components"]["elmo"]["cache_mb"] == 0 and nlp.get_pipe("elmo").cache.max_bytes == 0


@pytest.mark.slow
def test_spacy_train_baseline(corpus, tmp_path):
    result = train("ner_baseline.cfg", corpus / "ner.spacy", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert spacy.load(tmp_path / "model-last").pipe_names == ["ner"]


def test_elmo_embed_feeds_elmo_and_the_task_embeddings_to_the_encoder(model_dir):
    """spacy-elmo.ElmoEmbed.v1 as the embed of spacy.Tok2Vec.v2: width-wide rows, both inputs learned."""
    tok2vec = {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {"@architectures": "spacy-elmo.ElmoEmbed.v1", "width": 12, "maxout_pieces": 2,
                  "embed": {"@architectures": "spacy.MultiHashEmbed.v2", "width": 12, "attrs": ["NORM", "SHAPE"],
                            "rows": [100, 50], "include_static_vectors": False},
                  "elmo": listener()},
        "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": 12, "depth": 1, "window_size": 1, "maxout_pieces": 2},
    }
    nlp = elmo_nlp(model_dir)
    nlp.add_pipe("ner", config={"model": ner_model(tok2vec)})
    assert nlp.get_pipe("elmo").listening_components == ["ner"]  # found inside the embed
    egs = examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    embed = next(node for node in nlp.get_pipe("ner").model.walk() if node.has_ref("elmo") and node.has_ref("embed"))
    docs = [eg.predicted for eg in egs]
    rows = embed.predict(docs)
    assert [r.shape for r in rows] == [(len(doc), 12) for doc in docs]
    mix = mix_of(nlp, "ner")
    hash_tables = [n for n in embed.get_ref("embed").walk() if n.name.startswith("hashembed")]
    before = [mix.get_param("w").copy()] + [t.get_param("E").copy() for t in hash_tables]
    for _ in range(3):
        nlp.update(examples(nlp), sgd=optimizer)
    after = [mix.get_param("w")] + [t.get_param("E") for t in hash_tables]
    assert len(hash_tables) == 2
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))  # the mix and the embeddings learn
