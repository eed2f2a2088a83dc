"""An inference-only int8 copy of a biLM: int8 weights, float activations.

Every matrix product of the LSTM (input, hidden, projection) and of the character encoder's
highway and projection layers runs as an int8 x int8 product with exact integer sums: oneDNN's
int8 linear with the weight blocked once (`torch.ops.onednn.qlinear_pointwise`, VNNI / AMX where
the CPU has them), or `torch._int_mm` where torch has no oneDNN. The int8 weights take a quarter
of the float32 bytes.

- Weights: symmetric, one scale per output column (per channel), computed once from the float32
  weights.
- Activations stay float between products; each product quantizes its input on the fly with one
  scale per row (per token), or, where the input is bounded by construction (the LSTM's clipped h,
  its cell output m in (-1, 1), and a lower layer's clipped output), with the fixed scale of that
  bound. A per-tensor scale
  computed from the batch (what `torch.ao.quantization.quantize_dynamic` uses) would make a
  sentence's vectors depend on the other sentences of its batch; per row or fixed they do not,
  and the integer product itself is exact.
- The character embedding and convolutions stay float32 (small, and run once per distinct token).

The modules below subclass the float ones and override only their products, so the recurrence,
the highway formula and the char CNN are shared, not repeated.
"""

from __future__ import annotations

import copy
import functools
import math

import torch
from torch import nn

from .blocked import BlockedWeights
from .char_encoder import CharEncoder, Highway
from .lstm import BiLstmLayer
from .model import BiLM
from .precision import cpu_supports

INT8_MAX = 127
TINY = 1e-12  # keeps all-zero rows and columns from dividing by zero


def torch_has_onednn_int8() -> bool:
    """Whether torch has oneDNN's prepacked int8 linear (x86 builds with oneDNN)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_prepack")


@functools.cache  # asked on every product of every step
def use_onednn_int8() -> bool:
    """Whether the int8 products go through oneDNN's prepacked int8 linear: where torch has it and
    the CPU has AMX tiles or VNNI, where it was measured fast (activations signed on AMX, unsigned
    with VNNI alone: see PackedInt8Weight). Without VNNI (AVX2 only) oneDNN's unsigned int8 kernels
    may saturate their 16-bit intermediate sums: there torch._int_mm runs. Both give the same exact
    integer sums."""
    return torch_has_onednn_int8() and (_cpu_has_amx() or _cpu_has_vnni())


def _cpu_has_amx() -> bool:
    return cpu_supports("_is_amx_tile_supported")


def _cpu_has_vnni() -> bool:
    return cpu_supports("_is_vnni_supported")


class PackedInt8Weight:
    """An int8 weight (out, in) in oneDNN's blocked layout, made once: `torch._int_mm` would
    re-block the weight on every call, which costs about a copy of it. `exact_product(x_q)` is
    x_q @ weight.T as float32, computed with unit scales so that oneDNN's int32 result is only
    converted (the same numbers as `torch._int_mm(...).float()`, whatever the number of rows).

    On CPUs with VNNI but no AMX the activations go in unsigned: x_q + 128 with zero point 128
    (the same sums). oneDNN's kernels for signed activations there fell to a path that took 545 ms
    for a (32 x 512) @ (512 x 1,024) product that torch._int_mm did in 0.16 ms (an AMD EPYC,
    2026-12-03); unsigned, a (32 x 512) @ (512 x 16,384) product takes 0.40 ms against 0.60 ms
    for torch._int_mm (0.11 against 0.44 ms for one row). On AMX signed activations were measured."""

    def __init__(self, weight: torch.Tensor):
        self.packed = torch.ops.onednn.qlinear_prepack(weight, None)
        self.ones = torch.ones(weight.shape[0])
        self.zeros = torch.zeros(weight.shape[0], dtype=torch.int64)
        self.input_zero_point = 0 if _cpu_has_amx() else 128

    def kernel_input(self, x_q: torch.Tensor) -> torch.Tensor:
        """int8 activations as the kernel takes them: as they are, or + 128 as uint8 (flipping
        the sign bit of the two's complement byte adds 128)."""
        return x_q if self.input_zero_point == 0 else x_q.view(torch.uint8).bitwise_xor(128)

    def exact_product(self, x_q: torch.Tensor) -> torch.Tensor:
        return self.scaled_product(x_q, self.ones)

    def accumulate_into(self, x_q: torch.Tensor, scale: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """target += (x_q @ weight.T) * scale, in place (oneDNN's "sum" post-op: the numbers of
        scaled_product with add=target, without a new output and a copy). target: (n, out)
        float32, contiguous."""
        return torch.ops.onednn.qlinear_pointwise.binary(
            self.kernel_input(x_q), 1.0, self.input_zero_point, self.packed, scale, self.zeros, target, None, 1.0, 0,
            torch.float32, 1.0, 0, "sum", 1.0, "none", [], "",
        )

    def scaled_product(
        self, x_q: torch.Tensor, scale: torch.Tensor, add: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(x_q @ weight.T) * scale + (add (n, out) or bias (out,)), float32, in one pass. The input
        scale is 1 and each output element is its exact integer sum times its column's scale (plus
        `add` or `bias`), so a row's result does not depend on the other rows (tested)."""
        x, zero_point = self.kernel_input(x_q), self.input_zero_point
        if add is None:
            return torch.ops.onednn.qlinear_pointwise(
                x, 1.0, zero_point, self.packed, scale, self.zeros, bias, 1.0, 0, torch.float32, "none", [], ""
            )
        return torch.ops.onednn.qlinear_pointwise.binary(
            x, 1.0, zero_point, self.packed, scale, self.zeros, add.contiguous(), None, 1.0, 0, torch.float32,
            1.0, 0, "add", 1.0, "none", [], "",
        )


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: x (n, k) float -> (int8 (n, k), scale (n, 1))."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp(min=TINY) / INT8_MAX
    return torch.round(x / scale).to(torch.int8), scale


class Int8Linear(nn.Module):
    """y = x @ W (+ bias), built from a float W (in, out) in the bilm-tf layout; int8, one scale per column.

    input_bound: where every input value is known to lie in [-input_bound, input_bound] (the
        LSTM's clipped h, its cell output m in (-1, 1)), inputs are quantized with that fixed
        scale, folded into the column scales: no per-call reduction, and still batch-invariant.
        None: one scale per input row (per token), from the row's largest value.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, input_bound: float | None = None):
        super().__init__()
        # Stored (out, in) like nn.Linear and torchao's int8 layouts, used through a transposed view.
        w_q, w_scale = quantize_rows(weight.detach().float().t())  # one scale per output column
        self.register_buffer("weight", w_q.contiguous())  # (out, in) int8
        self.register_buffer("scale", w_scale.squeeze(1).contiguous())  # (out,)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        if input_bound is not None and not (math.isfinite(input_bound) and input_bound > 0):
            raise ValueError(f"input_bound must be a positive number, got {input_bound}")
        self.input_bound = input_bound
        if input_bound is not None:  # y = (x_q * bound / 127) @ (W_q * scale): one scale per column
            self.scale = self.scale * (input_bound / INT8_MAX)
        self._packed: PackedInt8Weight | None = None  # made on first use; never saved or pickled

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_packed"] = None  # an opaque oneDNN tensor: rebuilt from the int8 weight
        return state

    def packed(self) -> PackedInt8Weight | None:
        """The oneDNN-blocked weight (made once), or None where torch has no oneDNN int8 linear."""
        if self._packed is None and use_onednn_int8():
            self._packed = PackedInt8Weight(self.weight)
        return self._packed

    def integer_product(self, x_q: torch.Tensor) -> torch.Tensor:
        """x_q (n, in) int8 @ W_q -> (n, out), exact integer sums (int32, or float32 from oneDNN)."""
        packed = self.packed()
        return torch._int_mm(x_q, self.weight.t()) if packed is None else packed.exact_product(x_q)

    def quantize_bounded(self, rows: torch.Tensor) -> torch.Tensor:
        """Inputs known to lie within input_bound, to int8 with its fixed scale."""
        return rows.mul(INT8_MAX / self.input_bound).round_().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)

    def accumulate(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """target += x @ W (+ bias), in place; returns target. x (n, in), target (n, out) float32.
        The same numbers as forward(x, add=target); with a fixed input scale and oneDNN the product
        adds into target's own memory (no new (n, out) tensor, no copy: the LSTM's per-step gates)."""
        packed = self.packed()
        if packed is None or self.input_bound is None or self.bias is not None or not target.is_contiguous():
            return target.copy_(self(x, add=target))
        if x.shape[0] == 0:
            return target
        return packed.accumulate_into(self.quantize_bounded(x.float()), self.scale, target)

    def forward(
        self, x: torch.Tensor, add: torch.Tensor | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (..., in) -> (..., out) float32, plus `add` (..., out) when given (the gates' input
        part); written into `out` when given."""
        shape = x.shape[:-1]
        rows = x.reshape(-1, x.shape[-1]).float()  # (n, in)
        if rows.shape[0] == 0:
            return rows.new_zeros(*shape, self.weight.shape[0]) if out is None else out
        if add is not None and self.bias is not None:
            add = add + self.bias
        base = self.bias if add is None else add
        if self.input_bound is not None:
            x_q = self.quantize_bounded(rows)
            packed = self.packed()
            if packed is not None:  # the scaling and `add` inside the product's own output pass
                if add is None:  # base is the bias or nothing
                    y = packed.scaled_product(x_q, self.scale, bias=base)
                else:
                    y = packed.scaled_product(x_q, self.scale, add=base.reshape(rows.shape[0], -1))
                y = y.reshape(*shape, -1)
                return y if out is None else out.copy_(y)
            y = self.integer_product(x_q).reshape(*shape, -1)  # (..., out) int32
        else:
            x_q, x_scale = quantize_rows(rows)
            # One scale per row here, then one per column in the pass that adds the bias or `add`.
            y = self.integer_product(x_q).float().mul_(x_scale).reshape(*shape, -1)  # (..., out)
        if base is None:
            return torch.mul(y, self.scale, out=out) if out is not None else torch.mul(y, self.scale)
        return torch.addcmul(base, y, self.scale, out=out)


def _per_direction(linears: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """(2, n, in) -> (2, n, out): direction d through linears[d], straight into one tensor."""
    out = x.new_empty(2, x.shape[1], linears[0].weight.shape[0], dtype=torch.float32)
    for d, linear in enumerate(linears):
        linear(x[d], out=out[d])
    return out


class Int8BiLstmLayer(BiLstmLayer):
    """A `BiLstmLayer` whose three products run in int8; built from a float layer."""

    def __init__(self, layer: BiLstmLayer, input_bound: float | None = None):
        nn.Module.__init__(self)  # the int8 buffers replace the float parameters
        self.input_dim, self.cell_dim, self.proj_dim = layer.input_dim, layer.cell_dim, layer.proj_dim
        self.cell_clip, self.proj_clip = layer.cell_clip, layer.proj_clip
        bias = layer.gate_bias()  # (2, 4cell), the run-time forget bias included
        # The per-step products read h, clipped to [-proj_clip, proj_clip] where the model clips it,
        # and m = sigmoid(o) * tanh(c), always in (-1, 1): fixed input scales, no per-step reduction.
        self.inputs = nn.ModuleList(Int8Linear(layer.W_input[d], bias[d], input_bound) for d in range(2))
        self.hiddens = nn.ModuleList(Int8Linear(layer.W_hidden[d], input_bound=layer.proj_clip) for d in range(2))
        self.projections = nn.ModuleList(Int8Linear(layer.W_proj[d], input_bound=1.0) for d in range(2))

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        return _per_direction(self.inputs, x)

    def hidden_gates(self, x_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # Into x_gates' own memory: it is this step's fresh input part, read only here.
        for d, linear in enumerate(self.hiddens):
            linear.accumulate(h[d], x_gates[d])
        return x_gates

    def project(self, m: torch.Tensor) -> torch.Tensor:
        return _per_direction(self.projections, m)


class Int8Highway(Highway):
    """A `Highway` layer whose carry and transform products run in int8."""

    def __init__(self, highway: Highway):
        nn.Module.__init__(self)
        self.carry_int8 = Int8Linear(highway.W_carry, highway.b_carry)
        self.transform_int8 = Int8Linear(highway.W_transform, highway.b_transform)

    def carry(self, x: torch.Tensor) -> torch.Tensor:
        return self.carry_int8(x)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform_int8(x)


class Int8CharEncoder(CharEncoder):
    """A `CharEncoder` whose highway and projection products run in int8 (embedding and CNN float)."""

    def __init__(self, encoder: CharEncoder):
        nn.Module.__init__(self)
        self.options, self.output_dim, self.activation = encoder.options, encoder.output_dim, encoder.activation
        self.char_embed = copy.deepcopy(encoder.char_embed)
        self.convolutions = copy.deepcopy(encoder.convolutions)
        self.word_embed = copy.deepcopy(encoder.word_embed)  # ELMoForManyLangs word vectors, or None
        self.highways = nn.ModuleList(Int8Highway(hw) for hw in encoder.highways)
        self.projection = Int8Linear(encoder.W_proj, encoder.b_proj)
        self.token_cache = copy.deepcopy(encoder.token_cache)  # its own, empty: other weights
        self.blocked = BlockedWeights()  # the float32 convolutions' filters for oneDNN (blocked.py)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.projection(h)


def layer_input_bound(bilm: BiLM, k: int) -> float | None:
    """The largest |value| layer k of the LSTM can read at inference, or None (unbounded): layer 0
    reads the character encoder; layer k > 0 reads layer k-1's output, clipped to proj_clip, plus
    with skip connections the input of layer k-1 (so k x proj_clip)."""
    options = bilm.options.lstm
    if k == 0 or options.proj_clip is None:
        return None
    return options.proj_clip * (k if options.use_skip_connections else 1)


@torch.no_grad()
def quantize_bilm(bilm: BiLM) -> BiLM:
    """An int8 inference copy of a float `bilm` (on the CPU); `bilm` itself is left unchanged."""
    if bilm.stateful:
        raise ValueError("int8 inference needs a stateless biLM (stateful=False)")
    if bilm.char_encoder.char_embed.weight.device.type != "cpu":
        raise ValueError("int8 inference runs on the CPU: move the biLM to the CPU first")
    # A copy of everything else, with the int8 modules in place of the float ones (deepcopy takes
    # objects already in its memo as they are): no second set of float weights is made.
    replace = {id(bilm.char_encoder): Int8CharEncoder(bilm.char_encoder)}
    replace.update({id(layer): Int8BiLstmLayer(layer, layer_input_bound(bilm, k)) for k, layer in enumerate(bilm.lstm.layers)})
    return copy.deepcopy(bilm, memo=replace).eval()
