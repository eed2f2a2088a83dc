"""Inference through weights blocked once for oneDNN (bilm/blocked.py): the training path's numbers
within float32 rounding, batch-invariant bit for bit, never stale, never copied, never trained."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from spacy_elmo.bilm import batch_to_ids
from spacy_elmo.bilm.blocked import BlockedWeights, applies, onednn_linear_available, plain_products
from spacy_elmo.bilm.precision import native_bf16, with_precision

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    pytest.mark.skipif(not onednn_linear_available(), reason="this torch build has no oneDNN linear"),
]

SENTENCES = [
    ["The", "bank", "raised", "its", "rates", "again", "."],
    ["Hello", "world"],
    ["A"],
    ["Stocks", "fell", "sharply", "in", "Tokyo", "on", "Monday", "after", "the", "report", "."],
]


def layers(bilm, sentences) -> list[torch.Tensor]:
    with torch.no_grad():
        return [layer.float() for layer in bilm(batch_to_ids(sentences)).layers]


def assert_follows_the_new_weights(bilm, before: list[torch.Tensor]) -> None:
    """The blocked products give what the plain ones give for the changed weights, not `before`."""
    after = layers(bilm, SENTENCES)
    with plain_products():
        expected = layers(bilm, SENTENCES)
    for a, b, old in zip(after, expected, before):
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-5)
        assert not torch.allclose(a, old, atol=1e-3)


def blocked_names(bilm) -> set[str]:
    names = set()
    for module_name, module in bilm.named_modules():
        held = getattr(module, "blocked", None)
        if isinstance(held, BlockedWeights):
            names.update(f"{module_name}.{name}" for name in held._blocked)
    return names


def test_inference_uses_blocked_weights_and_matches_the_plain_products(tiny_bilm):
    fast = layers(tiny_bilm, SENTENCES)
    used = blocked_names(tiny_bilm)
    # Every product of the LSTM (both directions) and the char encoder's convolutions, highways and projection.
    convolutions = {f"char_encoder.conv{k}" for k in range(len(tiny_bilm.char_encoder.convolutions))}
    assert {"lstm.layers.0.hidden0", "lstm.layers.0.hidden1", "lstm.layers.1.input0", "lstm.layers.1.projection1",
            "char_encoder.projection", "char_encoder.highways.0.carry", "char_encoder.highways.0.transform"} | convolutions <= used
    with plain_products():
        plain = layers(tiny_bilm, SENTENCES)
    for k, (a, b) in enumerate(zip(fast, plain)):
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-5, msg=lambda m, k=k: f"layer {k}: {m}")
    assert any(not torch.equal(a, b) for a, b in zip(fast, plain))  # they did take another path


def test_blocked_inference_is_batch_invariant_bit_for_bit(tiny_bilm):
    together = layers(tiny_bilm, SENTENCES)
    for i, sentence in enumerate(SENTENCES):
        for alone, batched in zip(layers(tiny_bilm, [sentence]), together):
            assert torch.equal(alone[0, : len(sentence)], batched[i, : len(sentence)])


def test_training_and_autocast_never_take_the_blocked_path(tiny_bilm):
    x, weight = torch.randn(3, 4), torch.randn(4, 5)
    with torch.no_grad():
        assert applies(x, weight)
    with torch.enable_grad():
        assert not applies(x, weight)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not applies(x, weight)
    with torch.no_grad():
        assert not applies(x.double(), weight.double())
    with torch.enable_grad():
        out = tiny_bilm(batch_to_ids(SENTENCES))
        out.layers[-1].sum().backward()
    assert blocked_names(tiny_bilm) == set()
    assert tiny_bilm.lstm.layers[0].W_hidden.grad is not None


def test_changed_weights_are_blocked_again(tiny_bilm):
    before = layers(tiny_bilm, SENTENCES)
    with torch.no_grad():  # an optimizer step changes the weights in place
        for parameter in tiny_bilm.parameters():
            parameter.mul_(1.1)
    assert_follows_the_new_weights(tiny_bilm, before)
    # load_state_dict copies into the same storage: blocked again as well
    state = {name: value * 0.5 for name, value in tiny_bilm.state_dict().items()}
    tiny_bilm.load_state_dict(state)
    reloaded = layers(tiny_bilm, SENTENCES)
    with plain_products():
        expected = layers(tiny_bilm, SENTENCES)
    for a, b in zip(reloaded, expected):
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-5)


def test_copies_start_without_blocked_weights_and_give_the_same_numbers(tiny_bilm):
    first = layers(tiny_bilm, SENTENCES)
    assert blocked_names(tiny_bilm)
    for twin in (copy.deepcopy(tiny_bilm), pickle.loads(pickle.dumps(tiny_bilm))):
        assert blocked_names(twin) == set()
        for a, b in zip(layers(twin, SENTENCES), first):
            assert torch.equal(a, b)
    assert tiny_bilm.state_dict().keys() == copy.deepcopy(tiny_bilm).state_dict().keys()


@pytest.mark.skipif(not native_bf16("cpu"), reason="this CPU has no native bf16")
def test_bfloat16_copy_uses_blocked_weights_too(tiny_bilm):
    reduced = with_precision(tiny_bilm, "bfloat16")
    fast = layers(reduced, SENTENCES)
    assert "lstm.layers.0.hidden0" in blocked_names(reduced)
    with plain_products():
        plain = layers(reduced, SENTENCES)
    for a, b in zip(fast, plain):
        assert float((a - b).abs().max()) < 0.05 * float(b.abs().max())


def test_blocked_convolutions_match_conv1d_and_take_no_tokens(tiny_bilm):
    encoder = tiny_bilm.char_encoder
    char_ids = batch_to_ids(SENTENCES).reshape(-1, 50)
    with torch.no_grad():
        x = encoder.char_embed(char_ids).transpose(1, 2)
        fast = encoder.convolve_blocked(x)
        plain = torch.cat([conv(x).max(dim=-1).values for conv in encoder.convolutions], dim=-1)
        torch.testing.assert_close(fast, plain, rtol=0.0, atol=1e-5)
        assert encoder.convolve_blocked(x[:0]).shape == (0, plain.shape[1])
        # one token alone gets the bits it gets among the others
        assert torch.equal(encoder.convolve_blocked(x[3:4]), fast[3:4])
    with torch.enable_grad():
        assert encoder.convolve_blocked(x) is None


def test_tanh_through_sigmoid_is_within_two_float32_steps_of_tanh():
    from spacy_elmo.bilm.lstm import tanh_by_sigmoid_

    x = torch.linspace(-20, 20, 100_001)
    exact = torch.tanh(x.double())
    assert float((tanh_by_sigmoid_(x.clone()).double() - exact).abs().max()) < 2.5e-7
    assert torch.equal(tanh_by_sigmoid_(torch.tensor([0.0, float("inf"), -float("inf")])), torch.tensor([0.0, 1.0, -1.0]))


def test_a_model_made_in_inference_mode_runs_and_keeps_nothing_it_cannot_check(tiny_options):
    """Tensors made under torch.inference_mode() have no version counter: neither the blocked
    copies nor the token cache can tell when they change, so neither is kept for them."""
    from conftest import random_bilm
    from spacy_elmo.bilm.token_cache import TokenCache

    reference = random_bilm(tiny_options, seed=0)
    with torch.inference_mode():
        made_there = random_bilm(tiny_options, seed=0)
    made_there.char_encoder.token_cache = TokenCache(100)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            got = made_there(batch_to_ids(SENTENCES)).layers
            again = made_there(batch_to_ids(SENTENCES)).layers
        for a, b, c in zip(got, layers(reference, SENTENCES), again):
            torch.testing.assert_close(a, b, rtol=0.0, atol=1e-5)
            assert torch.equal(a, c)
    assert blocked_names(made_there) == set()
    with torch.inference_mode():  # changed in place, where no version is counted
        for parameter in made_there.parameters():
            parameter.mul_(1.1)
        changed = made_there(batch_to_ids(SENTENCES)).layers
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.mul_(1.1)
    for a, b in zip(changed, layers(reference, SENTENCES)):
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-5)


def test_weights_replaced_by_new_tensors_are_blocked_again(tiny_bilm):
    """`param.data = new` keeps the Parameter but not its storage: the blocked copy follows."""
    layers(tiny_bilm, SENTENCES)
    for _ in range(3):  # new storage each time; the old one is held until it is blocked again
        with torch.no_grad():
            for parameter in tiny_bilm.parameters():
                parameter.data = parameter.data * 0.9
        fast = layers(tiny_bilm, SENTENCES)
        with plain_products():
            plain = layers(tiny_bilm, SENTENCES)
        for a, b in zip(fast, plain):
            torch.testing.assert_close(a, b, rtol=0.0, atol=1e-5)


def test_weights_updated_in_place_by_thincs_optimizer_are_blocked_again(tiny_bilm):
    """Thinc's PyTorchShim.finish_update writes the new values through a numpy view of the same
    memory and then sets `param.data` to a tensor over it: address and version stay the same."""
    from thinc.api import torch2xp, xp2torch

    before = layers(tiny_bilm, SENTENCES)
    for parameter in tiny_bilm.parameters():
        values = torch2xp(parameter.data)
        values *= 1.1  # in place, as the optimizer does
        address, version = parameter.data_ptr(), parameter._version
        parameter.data = xp2torch(values, requires_grad=True, device=parameter.device)
        assert (parameter.data_ptr(), parameter._version) == (address, version)
    assert_follows_the_new_weights(tiny_bilm, before)
