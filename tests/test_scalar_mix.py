"""ScalarMix (Peters et al. 2018, eq. 1): gamma * sum_j softmax(w)_j * h_j, optional masked layer norm."""

from __future__ import annotations

import math

import pytest
import torch

from spacy_elmo.bilm import ScalarMix, masked_layer_norm

pytestmark = pytest.mark.usefixtures("single_thread")


def random_layers(n_layers=3, batch=2, tokens=5, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, tokens, dim, generator=g, dtype=torch.float64) for _ in range(n_layers)]


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_default_weights_give_the_plain_average():
    layers = random_layers()
    mixed = ScalarMix(3)(layers)
    expected = (layers[0] + layers[1] + layers[2]) / 3
    torch.testing.assert_close(mixed, expected)


def test_softmax_normalisation_of_initial_weights():
    w = [1.0, -0.5, 2.0]
    mix = ScalarMix(3, initial_weights=w)
    s = softmax(w)
    torch.testing.assert_close(mix.normalized_weights(), torch.tensor(s, dtype=torch.float32))
    assert float(mix.normalized_weights().detach().sum()) == pytest.approx(1.0, abs=1e-6)
    layers = random_layers()
    expected = sum(sj * layer for sj, layer in zip(s, layers))
    torch.testing.assert_close(mix(layers), expected, rtol=1e-6, atol=1e-6)


def test_softmax_is_shift_invariant():
    layers = random_layers()
    a = ScalarMix(3, initial_weights=[0.1, 0.2, 0.3])(layers)
    b = ScalarMix(3, initial_weights=[10.1, 10.2, 10.3])(layers)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_one_dominant_weight_selects_that_layer():
    layers = random_layers()
    mixed = ScalarMix(3, initial_weights=[-50.0, 50.0, -50.0])(layers)
    torch.testing.assert_close(mixed, layers[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, -3.0])
def test_gamma_scales_the_mix(gamma):
    layers = random_layers()
    base = ScalarMix(3, initial_weights=[0.3, 0.0, -0.7])(layers)
    scaled = ScalarMix(3, initial_weights=[0.3, 0.0, -0.7], gamma=gamma)(layers)
    torch.testing.assert_close(scaled, gamma * base, rtol=1e-6, atol=1e-7)


def test_stacked_tensor_input_equals_list_input():
    layers = random_layers()
    mix = ScalarMix(3, initial_weights=[0.2, -0.1, 0.4], gamma=1.5)
    torch.testing.assert_close(mix(torch.stack(layers)), mix(layers))


def test_wrong_number_of_layers_is_an_error():
    with pytest.raises(ValueError):
        ScalarMix(3)(random_layers(n_layers=2))
    with pytest.raises(ValueError):
        ScalarMix(2, initial_weights=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        ScalarMix(0)


def test_several_independent_mixes_over_the_same_layers():
    layers = [layer.float().requires_grad_(False) for layer in random_layers()]
    mixes = [
        ScalarMix(3, initial_weights=[1.0, 0.0, 0.0], gamma=1.0),
        ScalarMix(3, initial_weights=[0.0, 0.0, 1.0], gamma=2.0),
    ]
    outputs = [mix(layers) for mix in mixes]
    for mix, out, w, gamma in zip(mixes, outputs, ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0]), (1.0, 2.0)):
        expected = gamma * sum(sj * layer for sj, layer in zip(softmax(w), layers))
        torch.testing.assert_close(out, expected)
    assert not torch.allclose(outputs[0], outputs[1])
    # Training one mix leaves the other untouched and does not change the shared layers.
    before = [layer.clone() for layer in layers]
    outputs[0].sum().backward()
    assert mixes[0].weights.grad is not None and mixes[0].gamma.grad is not None
    assert mixes[1].weights.grad is None and mixes[1].gamma.grad is None
    for layer, original in zip(layers, before):
        assert torch.equal(layer, original)
    # Parameters are separate objects.
    assert mixes[0].weights is not mixes[1].weights


def test_gradients_reach_weights_gamma_and_layers():
    layers = [layer.float().requires_grad_(True) for layer in random_layers()]
    mix = ScalarMix(3, initial_weights=[0.5, -0.5, 0.0], gamma=1.5)
    mixed = mix(layers)
    mixed.sum().backward()
    assert mix.weights.grad is not None and mix.gamma.grad is not None
    assert mix.weights.grad.abs().sum() > 0
    # d(sum(gamma * m))/d gamma = sum(m)
    unscaled = sum(sj * layer for sj, layer in zip(softmax([0.5, -0.5, 0.0]), layers))
    torch.testing.assert_close(mix.gamma.grad, unscaled.sum().detach().reshape(1), rtol=1e-5, atol=1e-5)
    # d/dlayer_j = gamma * s_j
    s = softmax([0.5, -0.5, 0.0])
    for sj, layer in zip(s, layers):
        torch.testing.assert_close(layer.grad, torch.full_like(layer, 1.5 * sj))
    # An optimiser step changes the weights.
    before = mix.weights.detach().clone()
    torch.optim.SGD(mix.parameters(), lr=0.1).step()
    assert not torch.equal(mix.weights.detach(), before)


def test_l2_penalty_is_the_squared_norm_of_w():
    mix = ScalarMix(3, initial_weights=[1.0, -2.0, 0.5])
    assert float(mix.l2_penalty().detach()) == pytest.approx(1.0 + 4.0 + 0.25)


def test_not_trainable_has_no_parameters_and_still_mixes():
    mix = ScalarMix(3, initial_weights=[0.1, 0.2, 0.3], gamma=0.7, trainable=False)
    assert list(mix.parameters()) == []
    assert {name for name, _ in mix.named_buffers()} == {"weights", "gamma"}
    layers = random_layers()
    expected = 0.7 * sum(sj * layer for sj, layer in zip(softmax([0.1, 0.2, 0.3]), layers))
    torch.testing.assert_close(mix(layers), expected, rtol=1e-6, atol=1e-6)
    # Fixed buffers move with the module's state dict.
    assert set(mix.state_dict()) == {"weights", "gamma"}


def test_trainable_has_exactly_weights_and_gamma():
    mix = ScalarMix(4)
    assert {name for name, _ in mix.named_parameters()} == {"weights", "gamma"}
    assert tuple(mix.weights.shape) == (4,) and tuple(mix.gamma.shape) == (1,)


# ---- layer norm --------------------------------------------------------------------------------


def masked_example(seed=0):
    layers = random_layers(seed=seed)
    mask = torch.tensor([[True, True, True, True, True], [True, True, False, False, False]])
    return layers, mask


def test_masked_layer_norm_uses_only_real_positions():
    layers, mask = masked_example()
    x = layers[0] * 3 + 5
    out = masked_layer_norm(x, mask)
    real = x[mask]  # (n_real, dim)
    mean, std = real.mean(), real.std(unbiased=False)
    torch.testing.assert_close(out[mask], (real - mean) / std)
    # Statistics of the normalised real values: mean 0, variance 1.
    assert float(out[mask].mean()) == pytest.approx(0.0, abs=1e-9)
    assert float(out[mask].var(unbiased=False)) == pytest.approx(1.0, abs=1e-9)


def test_masked_layer_norm_all_masked_is_identity():
    x = random_layers()[0]
    out = masked_layer_norm(x, torch.zeros(x.shape[:2], dtype=torch.bool))
    assert torch.equal(out, x)


def test_layer_norm_ignores_padded_values():
    layers, mask = masked_example()
    mix = ScalarMix(3, initial_weights=[0.3, -0.2, 0.1], gamma=1.3, layer_norm=True)
    reference = mix(layers, mask)
    g = torch.Generator().manual_seed(99)
    changed = []
    for layer in layers:
        noisy = layer.clone()
        noise = torch.randn(noisy.shape, generator=g, dtype=noisy.dtype) * 1000
        noisy[~mask] = noise[~mask]
        changed.append(noisy)
    out = mix(changed, mask)
    torch.testing.assert_close(out[mask], reference[mask])
    # ...whereas without the mask (all positions real) the padded values would matter.
    all_real = torch.ones_like(mask)
    assert not torch.allclose(mix(changed, all_real)[mask], mix(layers, all_real)[mask])


def test_layer_norm_mix_matches_the_formula():
    layers, mask = masked_example(seed=3)
    w, gamma = [0.3, -0.2, 0.1], 1.3
    out = ScalarMix(3, initial_weights=w, gamma=gamma, layer_norm=True)(layers, mask)
    expected = torch.zeros_like(layers[0][mask])
    for sj, layer in zip(softmax(w), layers):
        real = layer[mask]
        expected = expected + sj * (real - real.mean()) / real.std(unbiased=False)
    torch.testing.assert_close(out[mask], gamma * expected, rtol=1e-6, atol=1e-6)


def test_layer_norm_needs_a_mask():
    with pytest.raises(ValueError):
        ScalarMix(3, layer_norm=True)(random_layers())
