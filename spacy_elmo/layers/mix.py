"""A task's own scalar mix of the biLM layers, as a Thinc layer (Peters et al. 2018, eq. 1).

    per doc (n_layers, n_tokens, dim)  ->  gamma * sum_j softmax(w)_j * h_j    (n_tokens, dim)

The formula is `spacy_elmo.bilm.ScalarMix`'s (the tests check that the two agree). It is written
again for Thinc because a downstream component cannot know the number of layers when its config
is built: Thinc infers `nL` and `nO` at initialisation, and w and gamma then serialise with the
component that owns the mix (its `ner` or `textcat` folder), not with the biLM.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from thinc.api import Model
from thinc.types import Floats1d, Floats2d, Floats3d

LAYER_NORM_EPS = 1e-12  # as in spacy_elmo.bilm.masked_layer_norm


def mix_layers(xp, layers: Floats3d, weights: Floats1d, gamma: float) -> Floats2d:
    """gamma * sum_j weights_j * layers_j: (n_layers, n, dim) -> (n, dim). Weights already normalised."""
    return gamma * xp.tensordot(weights, layers, axes=1)


def ElmoScalarMix(
    initial_weights: Sequence[float] | None = None,
    gamma: float = 1.0,
    layer_norm: bool = False,
    dropout: float = 0.0,
    grad_to_input: bool = False,
) -> Model[list[Floats3d], list[Floats2d]]:
    """Learned softmax weights w (nL,) and scale gamma (1,) over the layers of each doc.

    initial_weights: un-normalised starting w (default zeros = a plain average).
    layer_norm: normalise each layer of each doc over its tokens and features before mixing.
    dropout: dropout rate on the mixed vectors. Kept under its own attribute, so spaCy's
        [training] dropout (which overwrites every "dropout_rate") does not replace it.
    grad_to_input: also compute the gradient for the layers (only needed to fine-tune the biLM).
    """
    if not 0.0 <= dropout < 1.0:  # thinc's mask would zero every vector at >= 1 and do nothing below 0
        raise ValueError(f"ELMo listener: dropout must be in [0, 1), got {dropout}")
    return Model(
        "elmo_scalar_mix",
        _forward,
        init=_init,
        dims={"nL": None, "nO": None},
        params={"w": None, "gamma": None},
        attrs={
            "initial_weights": None if initial_weights is None else [float(v) for v in initial_weights],
            "initial_gamma": float(gamma),
            "layer_norm": bool(layer_norm),
            "elmo_dropout": float(dropout),
            "grad_to_input": bool(grad_to_input),
        },
    )


def _init(model: Model, X: list[Floats3d] | None = None, Y=None) -> None:
    if X:
        n_layers, _, width = X[0].shape
        for name, value in (("nL", n_layers), ("nO", width)):
            if model.has_dim(name) and model.get_dim(name) != value:
                raise ValueError(
                    f"this ELMo mix was built for {name}={model.get_dim(name)}, but the biLM gives {value}: "
                    f"a downstream component cannot switch to an ELMo model of another size without retraining"
                )
            model.set_dim(name, value)
    if not model.has_dim("nL") or not model.has_dim("nO"):
        raise ValueError(
            "cannot initialise the ELMo scalar mix: the number of layers is unknown. Put an 'elmo' "
            "component before the component that uses spacy-elmo.ElmoListener.v1 and initialise the "
            "whole pipeline (nlp.initialize() or spacy train)."
        )
    n_layers = model.get_dim("nL")
    initial = model.attrs["initial_weights"]
    if initial is None:
        initial = [0.0] * n_layers
    if len(initial) != n_layers:
        raise ValueError(f"mix_weights has {len(initial)} values but the biLM has {n_layers} layers")
    model.set_param("w", model.ops.asarray1f(initial))
    model.set_param("gamma", model.ops.asarray1f([model.attrs["initial_gamma"]]))


def _layer_norm(xp, x: Floats3d) -> tuple[Floats3d, Floats3d]:
    """Normalise each layer of one doc, x (nL, n, dim), over its n * dim values; also 1 / std."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    inv_std = 1.0 / xp.sqrt(((x - mean) ** 2).mean(axis=(1, 2), keepdims=True) + LAYER_NORM_EPS)
    return (x - mean) * inv_std, inv_std


def _forward(
    model: Model, Xs: list[Floats3d], is_train: bool
) -> tuple[list[Floats2d], Callable[[list[Floats2d]], list[Floats3d]]]:
    ops, xp = model.ops, model.ops.xp
    if not Xs:
        return [], lambda dYs: []
    lengths = [x.shape[1] for x in Xs]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    H = xp.concatenate(Xs, axis=1) if len(Xs) > 1 else Xs[0]  # (nL, N, dim)
    inv_stds = None
    if model.attrs["layer_norm"]:
        # Per doc, not per batch: a doc's vectors must not depend on what it is batched with.
        H = H.copy()
        inv_stds = []
        for a, b in itertools.pairwise(offsets):
            if b > a:
                H[:, a:b], inv_std = _layer_norm(xp, H[:, a:b])
                inv_stds.append(inv_std)
            else:
                inv_stds.append(None)
    s = ops.softmax(model.get_param("w"))  # (nL,)
    gamma = model.get_param("gamma")  # (1,)
    mixed = mix_layers(xp, H, s, 1.0)  # (N, dim), before gamma
    Y = mixed * gamma[0]
    rate = model.attrs["elmo_dropout"]
    mask = ops.get_dropout_mask(Y.shape, rate) if is_train and rate > 0 else None
    if mask is not None:
        Y = Y * mask
    Ys = [Y[a:b] for a, b in itertools.pairwise(offsets)]

    def backprop(dYs: list[Floats2d]) -> list[Floats3d]:
        dY = xp.concatenate(dYs, axis=0) if len(dYs) > 1 else dYs[0]  # (N, dim)
        if mask is not None:
            dY = dY * mask
        ds = gamma[0] * xp.tensordot(H, dY, axes=([1, 2], [0, 1]))  # (nL,)
        model.inc_grad("w", s * (ds - (s * ds).sum()))  # through the softmax
        model.inc_grad("gamma", ops.asarray1f([float((dY * mixed).sum())]))
        if not model.attrs["grad_to_input"]:
            return []
        dH = (gamma[0] * s)[:, None, None] * dY[None]  # (nL, N, dim)
        dXs = []
        for k, (a, b) in enumerate(itertools.pairwise(offsets)):
            d = dH[:, a:b]
            if inv_stds is not None and inv_stds[k] is not None:
                y = H[:, a:b]
                d = inv_stds[k] * (
                    d - d.mean(axis=(1, 2), keepdims=True) - y * (d * y).mean(axis=(1, 2), keepdims=True)
                )
            dXs.append(d)
        return dXs

    return Ys, backprop
