"""BiLM behaviour that needs no reference outputs: shapes, masks, batch invariance, state handling
and awkward inputs. Uses a small model with random weights (see conftest.py)."""

from __future__ import annotations

import pytest
import torch

from spacy_elmo.bilm import BiLM, BiLMOutput, CharCnnOptions, ElmoOptions, batch_to_ids
from spacy_elmo.bilm.blocked import plain_products

pytestmark = pytest.mark.usefixtures("single_thread")

TOL = dict(rtol=0.0, atol=1e-6)

LONG = "a b c d e f g h i j k l".split()
MID = "the quick brown fox jumps".split()
SHORT = ["hi"]


def run(model: BiLM, batch) -> BiLMOutput:
    with torch.no_grad():
        return model(batch_to_ids(batch))


def assert_rows_equal(out_a: BiLMOutput, row_a: int, out_b: BiLMOutput, row_b: int, n_tokens: int):
    assert len(out_a.layers) == len(out_b.layers)
    for k, (la, lb) in enumerate(zip(out_a.layers, out_b.layers)):
        torch.testing.assert_close(
            la[row_a, :n_tokens], lb[row_b, :n_tokens], **TOL, msg=lambda m, k=k: f"layer {k}: {m}"
        )


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---- structure ---------------------------------------------------------------------------------


def test_output_shapes_and_mask(tiny_bilm):
    batch = [LONG, MID, SHORT]
    out = run(tiny_bilm, batch)
    width = 2 * tiny_bilm.options.lstm.projection_dim
    assert tiny_bilm.output_dim == width
    assert len(out.layers) == tiny_bilm.options.lstm.n_layers + 1 == tiny_bilm.n_layers
    for layer in out.layers:
        assert tuple(layer.shape) == (3, len(LONG), width)
        assert layer.dtype == torch.float32
        assert torch.isfinite(layer).all()
    expected_mask = torch.tensor([[j < len(s) for j in range(len(LONG))] for s in batch])
    assert torch.equal(out.mask, expected_mask)
    assert tuple(out.stacked().shape) == (3, tiny_bilm.n_layers, len(LONG), width)


def test_padding_positions_are_zero_in_every_layer(tiny_bilm):
    out = run(tiny_bilm, [LONG, SHORT])
    for layer in out.layers:
        assert layer[1, len(SHORT) :].eq(0).all()
        # Real positions are not zero (the test above would pass trivially otherwise).
        assert layer[1, : len(SHORT)].abs().sum() > 0


def test_layer0_is_the_char_encoding_for_both_directions(tiny_bilm):
    out = run(tiny_bilm, [MID])
    proj = tiny_bilm.options.lstm.projection_dim
    layer0 = out.layers[0][0]
    assert torch.equal(layer0[:, :proj], layer0[:, proj:])
    with torch.no_grad():
        encoded = tiny_bilm.char_encoder(batch_to_ids([MID]))[0]
    torch.testing.assert_close(layer0[:, :proj], encoded, **TOL)


def test_char_encoder_pads_to_a_few_shapes_without_changing_vectors(tiny_bilm):
    from spacy_elmo.bilm.kernel_cache import padded_rows

    # A bounded set of row counts (oneDNN keeps a kernel per shape), never fewer rows than asked.
    sizes = [padded_rows(n) for n in range(1, 4097)]
    assert all(size >= n and size - n <= max(7, n // 16) for n, size in enumerate(sizes, 1))
    assert len(set(sizes)) <= 100
    ids = batch_to_ids([MID, LONG])
    with torch.no_grad():
        padded = tiny_bilm.char_encoder(ids)  # 17 distinct tokens -> 24 rows encoded
        for row, sentence in enumerate([MID, LONG]):
            direct = tiny_bilm.char_encoder.encode_unique(ids[row, : len(sentence)])
            torch.testing.assert_close(padded[row, : len(sentence)], direct, **TOL)


def test_token_cache_gives_the_same_vectors_and_stays_bounded(make_bilm):
    import copy
    import pickle

    from spacy_elmo.bilm.token_cache import TokenCache

    plain, cached = make_bilm(), make_bilm()
    cached.char_encoder.token_cache = TokenCache(12)
    batches = [[MID, LONG], [SHORT, MID], [LONG, ["fox", "new", "words", "here"]], [MID]]
    for batch in batches:  # hits, misses, evictions (17 distinct tokens in the first batch alone)
        fresh = make_bilm()
        fresh.char_encoder.token_cache = TokenCache(12)  # all misses
        with_history, without = run(cached, batch), run(fresh, batch)
        for la, lb, lc in zip(with_history.layers, without.layers, run(plain, batch).layers):
            assert torch.equal(la, lb)  # bit for bit: what came before never shows
            torch.testing.assert_close(la, lc, **TOL)  # and the numbers of a model without a cache
        assert len(cached.char_encoder.token_cache) <= 12
    assert len(cached.char_encoder.token_cache) > 0
    # Copies of the model start with an empty cache of their own.
    for clone in (copy.deepcopy(cached), pickle.loads(pickle.dumps(cached))):
        assert clone.char_encoder.token_cache is not cached.char_encoder.token_cache
        assert clone.char_encoder.token_cache.max_tokens == 12 and len(clone.char_encoder.token_cache) == 0


def test_token_cache_is_bypassed_in_training_and_follows_in_place_weight_changes(make_bilm):
    from spacy_elmo.bilm.token_cache import TokenCache

    plain, cached = make_bilm(), make_bilm()
    cached.char_encoder.token_cache = TokenCache(100)
    ids = batch_to_ids([MID])
    cached.char_encoder(ids).sum().backward()  # autograd on: no lookup, gradients reach the CNN
    assert len(cached.char_encoder.token_cache) == 0
    assert cached.char_encoder.convolutions[0].weight.grad is not None
    run(cached, [MID])
    assert len(cached.char_encoder.token_cache) == len(MID) + 2  # and <S>, </S>
    with torch.no_grad():  # an optimizer step: in place
        for model in (plain, cached):
            model.char_encoder.W_proj.mul_(0.5)
    for la, lb in zip(run(plain, [MID]).layers, run(cached, [MID]).layers):
        torch.testing.assert_close(la, lb, **TOL)  # stale vectors would be off by ~half their size


def test_layer0_is_context_free_but_lstm_layers_are_not(tiny_bilm):
    out = run(tiny_bilm, [["bank", "of", "river"], ["money", "in", "bank"]])
    first, second = (0, 0), (1, 2)  # "bank" in both
    torch.testing.assert_close(out.layers[0][first], out.layers[0][second], **TOL)
    for k in range(1, len(out.layers)):
        assert max_diff(out.layers[k][first], out.layers[k][second]) > 1e-3


def test_forward_and_backward_halves_see_their_own_context(tiny_bilm):
    # The forward half of token j depends only on tokens <= j, the backward half only on tokens >= j.
    proj = tiny_bilm.options.lstm.projection_dim
    a = run(tiny_bilm, [["x", "y", "z", "end1"]])
    b = run(tiny_bilm, [["x", "y", "z", "end2"]])
    c = run(tiny_bilm, [["start", "y", "z", "end1"]])
    top_a, top_b, top_c = a.layers[-1][0], b.layers[-1][0], c.layers[-1][0]
    torch.testing.assert_close(top_a[:3, :proj], top_b[:3, :proj], **TOL)  # forward, before the change
    assert max_diff(top_a[3, :proj], top_b[3, :proj]) > 1e-4
    assert max_diff(top_a[:3, proj:], top_b[:3, proj:]) > 1e-4  # backward sees the change
    torch.testing.assert_close(top_a[1:, proj:], top_c[1:, proj:], **TOL)  # backward, after the change
    assert max_diff(top_a[1:, :proj], top_c[1:, :proj]) > 1e-4


def test_wrong_char_ids_shape_is_a_value_error(tiny_bilm):
    with pytest.raises(ValueError, match="char_ids"):
        tiny_bilm(torch.ones(2, 3, 49, dtype=torch.long))
    with pytest.raises(ValueError, match="char_ids"):
        tiny_bilm(torch.ones(3, 50, dtype=torch.long))


# ---- batch invariance (stateless) ---------------------------------------------------------------


def test_sentence_alone_equals_sentence_in_a_batch(tiny_bilm):
    alone = run(tiny_bilm, [MID])
    batched = run(tiny_bilm, [LONG, MID, SHORT])
    assert_rows_equal(alone, 0, batched, 1, len(MID))
    # Also first and last in the batch.
    assert_rows_equal(run(tiny_bilm, [LONG]), 0, batched, 0, len(LONG))
    assert_rows_equal(run(tiny_bilm, [SHORT]), 0, batched, 2, len(SHORT))


def test_inference_gives_the_numbers_of_the_training_path_exactly(tiny_bilm):
    """Without autograd the LSTM updates its cell in place (lstm.cell_update_inplace); with it, out
    of place. Same operations in the same order: bit-identical layers, padding and ragged rows included.
    (Inside plain_products, inference runs the training path's products: blocked.py.)"""
    char_ids = batch_to_ids([LONG, MID, SHORT, []])
    with torch.no_grad(), plain_products():
        inference = tiny_bilm(char_ids)
    with torch.enable_grad(), plain_products():
        training = tiny_bilm(char_ids)
    assert any(layer.requires_grad for layer in training.layers)
    for k, (a, b) in enumerate(zip(inference.layers, training.layers)):
        assert torch.equal(a, b.detach()), f"layer {k}"


def test_inference_input_products_by_group_give_the_numbers_of_one_product(tiny_bilm, monkeypatch):
    """At inference the input-to-hidden products run a group of steps at a time (lstm.INPUT_GROUP_ROWS
    rows): however the steps are grouped, the layers are the same, and the groups do cover every step."""
    import spacy_elmo.bilm.lstm as lstm_module

    char_ids = batch_to_ids([LONG, MID, SHORT, []])
    results = {}
    for rows in (1, 3, 10**9):
        monkeypatch.setattr(lstm_module, "INPUT_GROUP_ROWS", rows)
        with torch.no_grad():
            results[rows] = tiny_bilm(char_ids).layers
    for rows in (1, 3):
        for k, (a, b) in enumerate(zip(results[rows], results[10**9])):
            torch.testing.assert_close(a, b, **TOL, msg=lambda m, k=k: f"{rows} rows, layer {k}: {m}")
    with torch.enable_grad():  # the training path: one product for all steps
        training = tiny_bilm(char_ids).layers
    for a, b in zip(results[3], training):
        torch.testing.assert_close(a, b.detach(), rtol=0.0, atol=1e-5)


def test_calling_twice_gives_identical_results(tiny_bilm, make_bilm):
    batch = [LONG, MID, SHORT]
    first, second = run(tiny_bilm, batch), run(tiny_bilm, batch)
    for a, b in zip(first.layers, second.layers):
        assert torch.equal(a, b)
    # The same weights in stateful mode do change on the second call: the comparison above
    # would catch a state leak.
    stateful = make_bilm(seed=0, stateful=True)
    s1, s2 = run(stateful, batch), run(stateful, batch)
    torch.testing.assert_close(s1.layers[-1], first.layers[-1], **TOL)
    assert max_diff(s1.layers[-1], s2.layers[-1]) > 1e-4


def test_calls_with_other_batches_in_between_do_not_leak(tiny_bilm):
    before = run(tiny_bilm, [MID])
    run(tiny_bilm, [LONG, SHORT, LONG])
    after = run(tiny_bilm, [MID])
    for a, b in zip(before.layers, after.layers):
        assert torch.equal(a, b)


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 2, 0), (0, 2, 1), (1, 0, 2)])
def test_batch_order_does_not_matter(tiny_bilm, order):
    batch = [LONG, MID, SHORT]
    reference = run(tiny_bilm, batch)
    permuted = run(tiny_bilm, [batch[i] for i in order])
    for new_row, old_row in enumerate(order):
        assert_rows_equal(permuted, new_row, reference, old_row, len(batch[old_row]))


def test_equal_length_rows_keep_their_identity(tiny_bilm):
    # Sorting by length must be stable and undone exactly, also for ties.
    batch = [["a", "b"], ["c", "d"], ["e", "f"]]
    out = run(tiny_bilm, batch)
    for i, sentence in enumerate(batch):
        assert_rows_equal(run(tiny_bilm, [sentence]), 0, out, i, 2)


def test_duplicate_sentences_in_a_batch(tiny_bilm):
    out = run(tiny_bilm, [MID, MID, SHORT, MID])
    assert_rows_equal(out, 0, out, 1, len(MID))
    assert_rows_equal(out, 0, out, 3, len(MID))


# ---- stateful mode ------------------------------------------------------------------------------


def test_stateful_carries_state_per_row(make_bilm):
    first = [LONG, SHORT, MID]  # lengths 12, 1, 5: the LSTM reorders these rows internally
    second = [["x", "y"], ["u", "v", "w", "z"], ["q"]]
    together = make_bilm(seed=1, stateful=True)
    run(together, first)
    out = run(together, second)
    for i in range(3):
        alone = make_bilm(seed=1, stateful=True)
        run(alone, [first[i]])
        assert_rows_equal(run(alone, [second[i]]), 0, out, i, len(second[i]))


def test_stateful_smaller_batch_uses_the_first_rows_state(make_bilm):
    model = make_bilm(seed=2, stateful=True)
    run(model, [MID, LONG])
    out = run(model, [SHORT])
    reference = make_bilm(seed=2, stateful=True)
    run(reference, [MID])
    assert_rows_equal(run(reference, [SHORT]), 0, out, 0, len(SHORT))


def test_reset_states_starts_over(make_bilm):
    model = make_bilm(seed=3, stateful=True)
    batch = [MID, SHORT]
    first = run(model, batch)
    second = run(model, batch)
    assert max_diff(first.layers[-1], second.layers[-1]) > 1e-4
    model.reset_states()
    again = run(model, batch)
    for a, b in zip(first.layers, again.layers):
        torch.testing.assert_close(a, b, **TOL)


def test_stateful_first_call_equals_stateless(make_bilm):
    stateless, stateful = make_bilm(seed=4), make_bilm(seed=4, stateful=True)
    batch = [LONG, MID, SHORT]
    a, b = run(stateless, batch), run(stateful, batch)
    for la, lb in zip(a.layers, b.layers):
        torch.testing.assert_close(la, lb, **TOL)


# ---- awkward inputs -----------------------------------------------------------------------------


def test_empty_sentence_in_a_batch(tiny_bilm):
    out = run(tiny_bilm, [MID, [], SHORT])
    assert out.mask[1].sum() == 0
    for layer in out.layers:
        assert layer[1].eq(0).all()
        assert torch.isfinite(layer).all()
    assert_rows_equal(run(tiny_bilm, [MID]), 0, out, 0, len(MID))
    assert_rows_equal(run(tiny_bilm, [SHORT]), 0, out, 2, len(SHORT))


@pytest.mark.parametrize("batch", [[[]], [[], []]], ids=["one", "two"])
def test_only_empty_sentences(tiny_bilm, batch):
    out = run(tiny_bilm, batch)
    assert len(out.layers) == tiny_bilm.n_layers
    for layer in out.layers:
        assert tuple(layer.shape) == (len(batch), 0, tiny_bilm.output_dim)
    assert tuple(out.mask.shape) == (len(batch), 0)


def test_empty_batch(tiny_bilm):
    out = run(tiny_bilm, [])
    assert len(out.layers) == tiny_bilm.n_layers
    for layer in out.layers:
        assert tuple(layer.shape) == (0, 0, tiny_bilm.output_dim)
    assert tuple(out.mask.shape) == (0, 0)


def test_empty_batch_in_stateful_mode(make_bilm):
    model = make_bilm(stateful=True)
    out = run(model, [])
    assert all(tuple(layer.shape) == (0, 0, model.output_dim) for layer in out.layers)


ODD_TOKENS = {
    "whitespace": [" ", "\t", "\n", "\u00a0", "\u3000", "  "],
    "empty_string": ["", "a", ""],
    "emoji": ["😀", "👍🏽", "🇫🇷", "👨‍👩‍👧"],
    "cjk": ["日本語", "中文", "한국어", "東京タワー"],
    "combining": ["e\u0301", "a\u0308\u0323", "\u0301", "Z\u0351\u0352\u0357\u0358"],
    "control": ["\x00", "\x01", "\x1b[31m", "\x7f", "\u202e", "\ufeff"],
    "lone_surrogates": ["\ud800", "a\udfffb", "\udc80\udc81"],
    "markers_lookalike": ["<s>", "<UNK>", "</s>"],
}


@pytest.mark.parametrize("name", sorted(ODD_TOKENS))
def test_odd_tokens(tiny_bilm, name):
    tokens = ODD_TOKENS[name]
    out = run(tiny_bilm, [["before", *tokens, "after"], SHORT])
    n = len(tokens) + 2
    assert out.mask[0].sum() == n  # every odd token is a real token
    for layer in out.layers:
        assert torch.isfinite(layer).all()
        assert (layer[0, :n].abs().sum(dim=-1) > 0).all()
    assert_rows_equal(run(tiny_bilm, [["before", *tokens, "after"]]), 0, out, 0, n)


def test_very_long_token_is_its_48_byte_prefix(tiny_bilm):
    long_token = "x" * 5_000 + "y" * 5_000
    out = run(tiny_bilm, [["a", long_token, "b"], SHORT])
    prefix = run(tiny_bilm, [["a", "x" * 48, "b"]])
    for layer in out.layers:
        assert torch.isfinite(layer).all()
    assert_rows_equal(out, 0, prefix, 0, 3)
    different = run(tiny_bilm, [["a", "x" * 47, "b"]])
    assert max_diff(different.layers[0][0, 1], out.layers[0][0, 1]) > 1e-4


def test_long_sentence(tiny_bilm):
    words = ["w%d" % (i % 97) for i in range(2_000)]
    out = run(tiny_bilm, [words, SHORT, MID])
    for layer in out.layers:
        assert tuple(layer.shape) == (3, 2_000, tiny_bilm.output_dim)
        assert torch.isfinite(layer).all()
        assert layer[0].abs().sum(dim=-1).gt(0).all()
    assert int(out.mask[0].sum()) == 2_000
    assert_rows_equal(run(tiny_bilm, [SHORT]), 0, out, 1, len(SHORT))
    assert_rows_equal(run(tiny_bilm, [MID]), 0, out, 2, len(MID))


# Non-str tokens and strings in place of token lists are rejected by batch_to_ids before the model
# sees anything: see test_char_ids.py.


def test_model_with_n_characters_261_runs(tiny_options):
    # options.json written by bilm-tf during training says n_characters 261; the options accept
    # it, and the character ids (up to 261) and weight files are the same as for 262.
    options = ElmoOptions(
        char_cnn=CharCnnOptions(**{**tiny_options.char_cnn.__dict__, "n_characters": 261}),
        lstm=tiny_options.lstm,
    )
    model = BiLM(options).eval()
    out = run(model, [MID, SHORT])
    assert all(torch.isfinite(layer).all() for layer in out.layers)
