"""An inference-only int8 copy of a biLM: int8 weights, float activations.

Every matrix product of the LSTM (input, hidden, projection) and of the character encoder's
highway and projection layers runs as an int8 x int8 -> int32 product (`torch._int_mm`, oneDNN on
the CPU: VNNI / AMX where the CPU has them). The int8 weights take a quarter of the float32 bytes,
so a layer's step reads from cache rather than memory.

- Weights: symmetric, one scale per output column (per channel), computed once from the float32
  weights.
- Activations stay float between products; each product quantizes its input on the fly with one
  scale per row (per token). A per-tensor scale (what `torch.ao.quantization.quantize_dynamic`
  uses) would make a sentence's vectors depend on the other sentences of its batch; per row they
  do not, and the integer product itself is exact.
- The character embedding and convolutions stay float32 (small, and run once per distinct token).

The modules below subclass the float ones and override only their products, so the recurrence,
the highway formula and the char CNN are shared, not repeated.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .char_encoder import CharEncoder, Highway
from .lstm import BiLstmLayer
from .model import BiLM

INT8_MAX = 127
TINY = 1e-12  # keeps all-zero rows and columns from dividing by zero


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: x (n, k) float -> (int8 (n, k), scale (n, 1))."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp(min=TINY) / INT8_MAX
    return torch.round(x / scale).to(torch.int8), scale


class Int8Linear(nn.Module):
    """y = x @ W (+ bias), built from a float W (in, out) in the bilm-tf layout; int8, one scale per column."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        # Stored (out, in) like nn.Linear and torchao's int8 layouts, used through a transposed view.
        w_q, w_scale = quantize_rows(weight.detach().float().t())  # one scale per output column
        self.register_buffer("weight", w_q.contiguous())  # (out, in) int8
        self.register_buffer("scale", w_scale.squeeze(1).contiguous())  # (out,)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(
        self, x: torch.Tensor, add: torch.Tensor | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (..., in) -> (..., out) float32, plus `add` (..., out) when given (the gates' input
        part); written into `out` when given."""
        shape = x.shape[:-1]
        rows = x.reshape(-1, x.shape[-1]).float()  # (n, in)
        if rows.shape[0] == 0:
            return rows.new_zeros(*shape, self.weight.shape[0]) if out is None else out
        x_q, x_scale = quantize_rows(rows)
        # Exact int32 accumulation, then back to float: one scale per row, then one per column in
        # the same pass (addcmul) that adds the bias or `add`.
        y = torch._int_mm(x_q, self.weight.t()).float().mul_(x_scale).reshape(*shape, -1)  # (..., out)
        if add is not None and self.bias is not None:
            add = add + self.bias
        base = self.bias if add is None else add
        if base is None:
            return y.mul_(self.scale) if out is None else torch.mul(y, self.scale, out=out)
        return torch.addcmul(base, y, self.scale, out=out)


def _per_direction(linears: nn.ModuleList, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """(2, n, in) -> (2, n, out): direction d through linears[d], straight into one tensor."""
    out = x.new_empty(2, x.shape[1], linears[0].weight.shape[0], dtype=torch.float32)
    for d, linear in enumerate(linears):
        linear(x[d], None if add is None else add[d], out=out[d])
    return out


class Int8BiLstmLayer(BiLstmLayer):
    """A `BiLstmLayer` whose three products run in int8; built from a float layer."""

    def __init__(self, layer: BiLstmLayer):
        nn.Module.__init__(self)  # the int8 buffers replace the float parameters
        self.input_dim, self.cell_dim, self.proj_dim = layer.input_dim, layer.cell_dim, layer.proj_dim
        self.cell_clip, self.proj_clip = layer.cell_clip, layer.proj_clip
        bias = layer.gate_bias()  # (2, 4cell), the run-time forget bias included
        self.inputs = nn.ModuleList(Int8Linear(layer.W_input[d], bias[d]) for d in range(2))
        self.hiddens = nn.ModuleList(Int8Linear(layer.W_hidden[d]) for d in range(2))
        self.projections = nn.ModuleList(Int8Linear(layer.W_proj[d]) for d in range(2))

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        return _per_direction(self.inputs, x)

    def hidden_gates(self, x_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return _per_direction(self.hiddens, h, add=x_gates)

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

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.projection(h)


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
    replace.update({id(layer): Int8BiLstmLayer(layer) for layer in bilm.lstm.layers})
    return copy.deepcopy(bilm, memo=replace).eval()
