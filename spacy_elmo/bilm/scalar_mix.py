"""Scalar mix (Peters et al. 2018, eq. 1): ELMo_k = gamma * sum_j softmax(w)_j * h_k,j.

Each downstream task owns one mix over the same biLM layers; the biLM runs once.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def masked_layer_norm(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Normalise x (batch, tokens, dim) with one mean and variance over all unmasked values.

    As in the paper's implementation, statistics pool every real token and feature of the batch
    (not per token), so padding never shifts them. All-masked input is returned unchanged.
    """
    keep = mask.unsqueeze(-1).to(x.dtype)  # (batch, tokens, 1)
    count = keep.sum() * x.shape[-1]
    if float(count) == 0:
        return x
    mean = (x * keep).sum() / count
    var = (((x - mean) * keep) ** 2).sum() / count
    return (x - mean) / torch.sqrt(var + eps)


class ScalarMix(nn.Module):
    """A learned, softmax-weighted sum of layers, scaled by gamma.

    n_layers: how many layers are mixed (the biLM's n_layers + 1).
    initial_weights: the un-normalised weights w (default: zeros = a plain average).
    gamma: initial scale.
    layer_norm: normalise each layer over its unmasked positions before mixing.
    trainable: if False, w and gamma are fixed buffers.
    """

    def __init__(
        self,
        n_layers: int,
        initial_weights: Sequence[float] | None = None,
        gamma: float = 1.0,
        layer_norm: bool = False,
        trainable: bool = True,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError("a scalar mix needs at least one layer")
        if initial_weights is None:
            initial_weights = [0.0] * n_layers
        if len(initial_weights) != n_layers:
            raise ValueError(f"got {len(initial_weights)} initial weights for {n_layers} layers")
        weights = torch.tensor([float(w) for w in initial_weights])
        scale = torch.tensor([float(gamma)])
        if trainable:
            self.weights = nn.Parameter(weights)
            self.gamma = nn.Parameter(scale)
        else:
            self.register_buffer("weights", weights)
            self.register_buffer("gamma", scale)
        self.n_layers = n_layers
        self.layer_norm = layer_norm

    def normalized_weights(self) -> torch.Tensor:
        """s = softmax(w): (n_layers,)."""
        return torch.softmax(self.weights, dim=0)

    def l2_penalty(self) -> torch.Tensor:
        """||w||^2, the paper's regulariser (multiply by lambda, e.g. 0.001)."""
        return (self.weights**2).sum()

    def forward(self, layers: Sequence[torch.Tensor] | torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """layers: n_layers tensors (..., dim) or one tensor (n_layers, ..., dim) -> (..., dim)."""
        if len(layers) != self.n_layers:
            raise ValueError(f"this mix expects {self.n_layers} layers, got {len(layers)}")
        if self.layer_norm:
            if mask is None:
                raise ValueError("layer_norm=True needs the mask of real tokens")
            layers = [masked_layer_norm(layer, mask) for layer in layers]
        s = self.normalized_weights().to(layers[0].dtype)
        mixed = sum(w * layer for w, layer in zip(s, layers))
        return self.gamma.to(layers[0].dtype) * mixed
