"""Inference products with each weight blocked once into oneDNN's layout.

`torch.addmm` and `torch.bmm` hand float32 products to MKL, which re-blocks (packs) the weight on
every call. The LSTM's per-step products have one row per running sentence and large weights
(512 x 16,384 at the original size), so re-blocking costs about as much as the arithmetic; on the
AMD EPYC these figures come from, MKL also ran square float32 products at less than half of
oneDNN's speed (docs/inference.md). Here each weight is blocked once with oneDNN
(`torch.ops.mkldnn._reorder_linear_weight`) and its products run through
`torch.ops.mkldnn._linear_pointwise`: the ops torch's own compiler uses for frozen linear layers on
the CPU.

- Used only without autograd, outside autocast, on the CPU, for float32 weights (and bfloat16
  weights on CPUs that run bf16 natively), where torch has oneDNN and `torch.backends.mkldnn.enabled`
  is on (the switch that turns it off). Anywhere else `product` returns None and the caller runs
  its plain torch product: training and fine-tuning never take this path.
- The blocked copy is made on first use and remade whenever the weight changes (another storage,
  dtype or in-place version: an optimizer step, `load_state_dict`), so it is never stale. It is
  never saved, copied or pickled: a copy of a module starts without blocked weights.
- A row's result does not depend on the other rows of the product (tested bit for bit); against
  MKL's product the numbers differ in the last bits (about 1e-6 on the LSTM's outputs).
- It keeps one more copy of each weight it has used (the same bytes as the weight).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from .precision import cpu_has_native_bf16


@functools.cache
def onednn_linear_available() -> bool:
    """Whether torch has oneDNN's blocked linear and it gives addmm's numbers on a small product."""
    if not torch.backends.mkldnn.is_available():
        return False
    if not (hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    try:
        generator = torch.Generator().manual_seed(0)
        x, weight, bias = (torch.randn(*shape, generator=generator) for shape in ((3, 8), (8, 5), (5,)))
        blocked = torch.ops.mkldnn._reorder_linear_weight(weight.t().contiguous(), None)
        y = torch.ops.mkldnn._linear_pointwise(x, blocked, bias, "none", [], "")
        return bool(torch.allclose(y, torch.addmm(bias, x, weight), atol=1e-5))
    except (RuntimeError, NotImplementedError):
        return False


@contextlib.contextmanager
def plain_products() -> Iterator[None]:
    """Inside it, inference runs the training path's arithmetic: torch's plain products and
    torch.tanh (the numbers of releases before these shortcuts). It turns torch's oneDNN switch off,
    which also moves convolutions off oneDNN; the previous setting comes back on exit."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


@functools.cache
def _blockable_dtypes() -> tuple[torch.dtype, ...]:
    return (torch.float32, torch.bfloat16) if cpu_has_native_bf16() else (torch.float32,)


def fast_cpu_inference(x: torch.Tensor) -> bool:
    """Whether `x` is read at inference on a CPU (no autograd, no autocast) with torch's oneDNN
    switch on: where the biLM takes its inference shortcuts (blocked products here, tanh through
    sigmoid in lstm.py). `plain_products()` turns them all off."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.enabled
    )


def version_key(tensors) -> tuple | None:
    """What tells whether `tensors` changed since the key was taken (storage, in-place version,
    shape, dtype, device of each), or None when that cannot be told: tensors made under
    torch.inference_mode() count no versions, so nothing made from them may be kept. A holder of
    a key also keeps the tensors themselves (detached: the same storage, no copy), so that their
    memory cannot be reused by a new weight that would then show the same address and version.

    The storage object is part of the key, not only its address: Thinc's optimizer updates a
    weight in place through numpy and then sets `param.data` to a new tensor over the same memory
    (PyTorchShim.finish_update), which leaves the address and the version counter as they were.
    A change made through numpy without that step cannot be told from here."""
    tensors = list(tensors)
    if any(t.is_inference() for t in tensors):
        return None
    return tuple(
        (t.untyped_storage()._cdata, t.data_ptr(), t._version, tuple(t.shape), t.dtype, t.device) for t in tensors
    )


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x @ weight runs through a blocked weight here (inference on a CPU with oneDNN, a
    weight whose changes can be told: see version_key)."""
    return (
        fast_cpu_inference(x)
        and x.dtype == weight.dtype
        and x.dtype in _blockable_dtypes()
        and not weight.is_inference()
        and onednn_linear_available()
    )


class BlockedWeights:
    """A module's weights in oneDNN's blocked layout, by name, each remade when its weight changes."""

    def __init__(self) -> None:
        # name -> (version key, blocked weight, the weight it was made from: see version_key)
        self._blocked: dict[str, tuple[tuple, torch.Tensor, torch.Tensor]] = {}

    # A copy of a module (deepcopy, pickle, a worker process) starts empty: oneDNN's blocked
    # tensors cannot be copied, and a copy may get other weights.
    def __deepcopy__(self, memo: dict) -> BlockedWeights:
        return BlockedWeights()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._blocked = {}

    def blocked(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """`weight` (in, out) blocked as oneDNN's (out, in) linear weight, made once per version."""
        key = version_key([weight])
        held = self._blocked.get(name)
        if held is None or held[0] != key:
            source = weight.detach()
            self._blocked[name] = held = (key, torch.ops.mkldnn._reorder_linear_weight(source.t(), None), source)
        return held[1]

    def product(
        self,
        name: str,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        add: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """x (n, in) @ weight (in, out) + bias (out,) + add (n, out); or None where blocked weights
        do not apply (then the caller runs its own product). The LSTM's batched form has a leading
        direction axis on all four: x (2, n, in), weight (2, in, out), bias (2, out), add (2, n, out)
        -> (2, n, out), direction d with weight[d]."""
        if not applies(x, weight):
            return None
        if weight.dim() == 2:
            y = self._product(name, x, weight, bias)
            return y if add is None else y.add_(add)
        if add is None:
            return torch.stack([self._product(f"{name}{d}", x[d], weight[d], _pick(bias, d)) for d in range(len(weight))])
        # `add` is summed while each direction's result is written into place: one pass fewer than
        # oneDNN's fused add followed by torch.stack (3.6 against 4.2 ms for the LSTM's hidden
        # product at 27 rows, original size).
        out = add.new_empty(add.shape)
        for d in range(len(weight)):
            torch.add(self._product(f"{name}{d}", x[d], weight[d], _pick(bias, d)), add[d], out=out[d])
        return out

    def _product(self, name: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        bias = None if bias is None else bias.detach()
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.blocked(name, weight), bias, "none", [], "")


def _pick(tensor: torch.Tensor | None, direction: int) -> torch.Tensor | None:
    return None if tensor is None else tensor[direction]
