"""The `elmo` component's cache_mb: a frozen biLM reads each doc once, with the same results."""

from __future__ import annotations

import numpy as np
import pytest
import spacy
from spacy.training import Example
from thinc.api import fix_random_seed

from spacy_elmo.bilm import save_model_dir
from spacy_elmo.cache import LayerCache, doc_key, saved_without_layer_cache_v1

from elmo_pipelines import elmo_nlp, listener, ner_model

pytestmark = pytest.mark.usefixtures("single_thread")

TEXTS = ["Alice met Bob in Paris .", "Bob hates London .", "Paris is lovely in spring ."]
ENTS = [[(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")], [(0, 3, "PER"), (10, 16, "LOC")], [(0, 5, "LOC")]]



def elmo_ner_nlp(model_dir: str, cache_mb: float, grad_factor: float = 0.0) -> spacy.Language:
    """elmo + an ner that listens to it."""
    nlp = elmo_nlp(model_dir, cache_mb=cache_mb)
    nlp.add_pipe("ner", config={"model": ner_model(listener(grad_factor))})
    return nlp


def examples(nlp: spacy.Language) -> list[Example]:
    return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in zip(TEXTS, ENTS)]


def bilm_rows_read(nlp: spacy.Language) -> list[int]:
    """Number of rows (sentences) the torch biLM reads, call by call."""
    calls: list[int] = []
    nlp.get_pipe("elmo").get_bilm().register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def test_cached_layers_are_the_fresh_ones_and_the_bilm_reads_each_doc_once(model_dir):
    cached, fresh = elmo_ner_nlp(model_dir, cache_mb=10), elmo_ner_nlp(model_dir, cache_mb=0)
    for nlp in (cached, fresh):
        nlp.initialize()
    elmo, reference = cached.get_pipe("elmo"), fresh.get_pipe("elmo")
    elmo.cache.clear()  # of the sample docs nlp.initialize read
    calls = bilm_rows_read(cached)
    first = elmo.predict([cached.make_doc(t) for t in TEXTS])
    assert sum(calls) == 3
    # New Doc objects with the same tokens: all found, nothing read again.
    again = elmo.predict([cached.make_doc(t) for t in reversed(TEXTS)])
    assert sum(calls) == 3 and len(elmo.cache) == 3
    assert [a is b for a, b in zip(again, reversed(first))] == [True] * 3
    expected = reference.predict([fresh.make_doc(t) for t in TEXTS])
    for got, want in zip(first, expected):
        np.testing.assert_array_equal(got, want)
    # A doc with one new token is a different doc.
    elmo.predict([cached.make_doc("Alice met Bob in Rome .")])
    assert sum(calls) == 4


def test_training_with_the_cache_gives_the_same_model(model_dir):
    """Same seed, same batches: identical losses and predictions with and without the cache."""
    results = []
    for cache_mb in (0, 10):
        fix_random_seed(0)
        nlp = elmo_ner_nlp(model_dir, cache_mb=cache_mb)
        egs = examples(nlp)
        optimizer = nlp.initialize(lambda egs=egs: egs)
        calls = bilm_rows_read(nlp)
        losses = []
        for _ in range(4):
            step: dict[str, float] = {}
            nlp.update(examples(nlp), sgd=optimizer, losses=step)
            losses.append(step["ner"])
        ents = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(TEXTS)]
        results.append((losses, ents, sum(calls)))
    (plain_losses, plain_ents, plain_reads), (cached_losses, cached_ents, cached_reads) = results
    assert cached_losses == plain_losses
    assert cached_ents == plain_ents
    assert plain_reads == 5 * 3  # 4 updates + 1 nlp.pipe, 3 sentences each
    assert cached_reads == 0  # nlp.initialize read the three sample docs; every later read found them


def test_fine_tuning_the_bilm_bypasses_the_cache(model_dir):
    nlp = elmo_ner_nlp(model_dir, cache_mb=10, grad_factor=1.0)
    egs = examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    elmo = nlp.get_pipe("elmo")
    elmo.predict([nlp.make_doc(t) for t in TEXTS])
    assert len(elmo.cache) == 3
    calls = bilm_rows_read(nlp)
    nlp.update(examples(nlp), sgd=optimizer)
    assert len(elmo.cache) == 0 and sum(calls) == 3  # read afresh: the weights change at every step
    before = elmo.predict([nlp.make_doc(TEXTS[0])])[0].copy()
    nlp.update(examples(nlp), sgd=optimizer)
    after = elmo.predict([nlp.make_doc(TEXTS[0])])[0]
    assert not np.array_equal(before, after)  # no stale layers from before the update


def test_new_weights_empty_the_cache(model_dir, make_bilm):
    nlp = elmo_ner_nlp(model_dir, cache_mb=10)
    nlp.initialize()
    elmo = nlp.get_pipe("elmo")
    old = elmo.predict([nlp.make_doc(TEXTS[0])])[0]
    elmo.from_bytes(elmo_ner_nlp(str(save_model_dir(make_bilm(seed=1), f"{model_dir}_other")), 0).get_pipe("elmo").to_bytes())
    assert len(elmo.cache) == 0
    assert not np.array_equal(old, elmo.predict([nlp.make_doc(TEXTS[0])])[0])


def test_cached_layers_are_read_only(model_dir):
    nlp = elmo_nlp(model_dir, cache_mb=10, all_layers=True)
    doc = nlp("Alice met Bob in Paris .")
    with pytest.raises(ValueError, match="read-only"):
        doc._.elmo_layers[0, 0, 0] = 1.0
    assert doc._.elmo.flags.writeable  # the selected output is the doc's own copy


def test_the_key_is_the_tokens_and_the_sentence_boundaries():
    nlp = spacy.blank("en")
    a, b = nlp.make_doc("Bob left . Alice stayed ."), nlp.make_doc("Bob left . Alice stayed .")
    assert doc_key(a) == doc_key(b)
    assert doc_key(a) != doc_key(nlp.make_doc("Bob left . Alice stayed !"))
    b[3].is_sent_start = True  # the biLM then reads two rows instead of one
    assert doc_key(a) != doc_key(b)


def test_a_full_cache_keeps_what_it_has_and_stays_within_budget():
    one_doc = np.zeros((3, 10, 16), dtype="f")  # 1,920 bytes
    cache = LayerCache(max_mb=2.5 * one_doc.nbytes / 2**20)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(" ".join(f"w{i}{j}" for j in range(10))) for i in range(4)]
    computed: list[int] = []

    def compute(batch):
        computed.append(len(batch))
        return [np.full((3, len(d), 16), float(d[0].text[1]), dtype="f") for d in batch]

    out = cache.layers(docs, compute)
    assert [float(x[0, 0, 0]) for x in out] == [0.0, 1.0, 2.0, 3.0]  # every doc gets its own layers
    assert len(cache) == 2 and cache.nbytes == 2 * one_doc.nbytes <= cache.max_bytes
    cache.layers(docs, compute)
    assert computed == [4, 2]  # the two kept docs were found, the other two computed again
    with pytest.raises(ValueError, match="cache_mb"):
        LayerCache(-1)
    off = LayerCache(0)
    off.layers(docs, compute)
    assert not off.enabled and len(off) == 0


def test_pipelines_saved_by_training_serve_without_the_cache(model_dir, tmp_path):
    """configs/*_elmo.cfg's [training.before_to_disk]: the saved config says cache_mb = 0, the
    running training keeps its cache."""
    nlp = elmo_ner_nlp(model_dir, cache_mb=64)
    nlp.initialize(lambda: examples(nlp))
    before_to_disk = spacy.util.registry.misc.get("spacy-elmo.saved_without_layer_cache.v1")()
    assert before_to_disk(nlp) is nlp
    nlp.to_disk(tmp_path / "nlp")
    assert nlp.get_pipe("elmo").cache.max_bytes == 64 * 2**20  # the training's cache is untouched
    loaded = spacy.load(tmp_path / "nlp")
    assert loaded.config["components"]["elmo"]["cache_mb"] == 0
    assert loaded.get_pipe("elmo").cache.max_bytes == 0
    assert saved_without_layer_cache_v1 is spacy.util.registry.misc.get("spacy-elmo.saved_without_layer_cache.v1")
