"""Stacked bidirectional LSTM with projections, cell/projection clipping and residual connections.

This is bilm-tf's `LSTMCell(num_units=dim, num_proj=projection_dim, cell_clip, proj_clip)` stacked
n_layers deep, once per direction. The two directions never see each other; they are run together
only to share the work:

- the input-to-hidden product of every time step is one big matrix product before the recurrence
  (at inference, one per group of steps of INPUT_GROUP_ROWS rows, made as the recurrence reaches it);
- forward and backward run in the same loop as a leading "direction" axis (batched matmuls; at
  inference on a CPU, oneDNN products with weights blocked once: blocked.py);
- the backward direction works on length-aware reversed sequences, so both directions have their
  padding at the end, and rows are sorted by length so each step only touches rows still running.

Weights are kept in the bilm-tf layout (x @ W, gates packed i, j, f, o), and like TensorFlow we
add the forget-gate bias of 1.0 at run time rather than storing it, so weights round-trip exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from .blocked import BlockedWeights, fast_cpu_inference
from .options import LstmOptions

FORGET_BIAS = 1.0
# Rows of one input-to-hidden product at inference (see BiLstmLayer.input_gates_by_group).
INPUT_GROUP_ROWS = 128


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `length` steps along dim 1, leaving the padding in place.

    x: (batch, time, ...), lengths: (batch,). Applying it twice gives x back.
    """
    batch, time = x.shape[:2]
    steps = torch.arange(time, device=x.device).unsqueeze(0)  # (1, time)
    lengths = lengths.to(x.device).unsqueeze(1)  # (batch, 1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (batch, time)
    index = index.view(batch, time, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def cell_update_autograd(
    gates: torch.Tensor, c: torch.Tensor, cell_clip: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM cell: gates (2, n, 4cell) packed i, j, f, o and the cell state c (2, n, cell) ->
    the new cell state and the cell output m = sigmoid(o) * tanh(c_new), both (2, n, cell)."""
    i, j, f, o = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
    if cell_clip is not None:
        c_new = c_new.clamp(-cell_clip, cell_clip)
    return c_new, torch.sigmoid(o) * torch.tanh(c_new)


def tanh_by_sigmoid_(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1, in place. On the CPU torch's float32 tanh took ten times as long
    as its sigmoid (290 against 30 us for 27 rows x 4,096 cells x 2 directions); this costs 55 us,
    within 1.8e-7 of the exact value (torch.tanh: 3e-8), measured over [-20, 20]."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def cell_update_inplace(
    gates: torch.Tensor, c: torch.Tensor, cell_clip: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cell_update_autograd for inference, written into `gates` (which it consumes): both results
    are views of it. On a CPU (blocked.fast_cpu_inference) tanh goes through sigmoid."""
    i, j, f, o = gates.chunk(4, dim=-1)
    tanh_ = tanh_by_sigmoid_ if fast_cpu_inference(gates) else torch.Tensor.tanh_
    c_new = f.sigmoid_().mul_(c)
    c_new.add_(i.sigmoid_().mul_(tanh_(j)))
    if cell_clip is not None:
        c_new.clamp_(-cell_clip, cell_clip)
    return c_new, o.sigmoid_().mul_(tanh_(j.copy_(c_new)))


class BiLstmLayer(nn.Module):
    """One layer, both directions. Parameters carry a leading direction axis of size 2."""

    def __init__(self, input_dim: int, options: LstmOptions):
        super().__init__()
        cell, proj = options.dim, options.projection_dim
        self.input_dim, self.cell_dim, self.proj_dim = input_dim, cell, proj
        self.cell_clip, self.proj_clip = options.cell_clip, options.proj_clip
        self.W_input = nn.Parameter(torch.empty(2, input_dim, 4 * cell))  # x -> gates
        self.W_hidden = nn.Parameter(torch.empty(2, proj, 4 * cell))  # h -> gates
        self.bias = nn.Parameter(torch.empty(2, 4 * cell))  # without the run-time forget bias
        self.W_proj = nn.Parameter(torch.empty(2, cell, proj))  # cell output -> h
        self.blocked = BlockedWeights()  # inference: the weights in oneDNN's layout (blocked.py)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = (6.0 / (self.input_dim + self.proj_dim + 4 * self.cell_dim)) ** 0.5
        nn.init.uniform_(self.W_input, -bound, bound)
        nn.init.uniform_(self.W_hidden, -bound, bound)
        nn.init.uniform_(self.W_proj, -(3.0 / self.cell_dim) ** 0.5, (3.0 / self.cell_dim) ** 0.5)
        nn.init.zeros_(self.bias)

    def gate_bias(self) -> torch.Tensor:
        """The stored bias plus TensorFlow's run-time forget-gate bias: (2, 4 cell)."""
        forget = torch.zeros_like(self.bias)
        forget[:, 2 * self.cell_dim : 3 * self.cell_dim] = FORGET_BIAS
        return self.bias + forget

    # The layer's three products. An inference-only int8 copy (quantized.py) overrides these and
    # nothing else, so both share the recurrence below. At inference on a CPU they run through
    # weights blocked once for oneDNN (blocked.py; None = not here, then torch's batched product).

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """(2, n, in) -> (2, n, 4cell): x @ W_input + the gate bias."""
        bias = self.gate_bias()
        fast = self.blocked.product("input", x, self.W_input, bias=bias)
        return fast if fast is not None else torch.baddbmm(bias.unsqueeze(1), x, self.W_input)

    def hidden_gates(self, x_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """(2, n, 4cell) + (2, n, proj) @ W_hidden -> (2, n, 4cell). The caller gives up x_gates:
        the int8 copy adds into its memory and returns it."""
        fast = self.blocked.product("hidden", h, self.W_hidden, add=x_gates)
        return fast if fast is not None else torch.baddbmm(x_gates, h, self.W_hidden)

    def project(self, m: torch.Tensor) -> torch.Tensor:
        """(2, n, cell) -> (2, n, proj): the cell output's projection to h."""
        fast = self.blocked.product("projection", m, self.W_proj)
        return fast if fast is not None else torch.bmm(m, self.W_proj)

    def input_gates_by_group(self, packed: torch.Tensor, active: list[int]) -> Iterator[torch.Tensor]:
        """Inference: the input-to-hidden products of consecutive steps, one group of at least
        INPUT_GROUP_ROWS rows at a time, made as the recurrence reaches them; yields each step's
        (2, n_t, 4cell). At the original size all of a batch's input gates at once are hundreds of
        MB of fresh memory, which the allocator maps (and the kernel zeroes) again for every batch;
        a group's ~17 MB is reused from one group to the next. Each row's product does not depend
        on the other rows of its product (blocked.py), so the numbers are those of one product."""
        start, rows = 0, 0
        group: list[int] = []
        for step, n in enumerate(active):
            group.append(n)
            rows += n
            if rows >= INPUT_GROUP_ROWS or step == len(active) - 1:
                yield from self.input_gates(packed[:, start : start + rows]).split(group, dim=1)
                start, rows, group = start + rows, 0, []

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run both directions over left-aligned inputs.

        x: (2, batch, time, input_dim): direction 0 in reading order, direction 1 already reversed
        per row. Rows must be sorted by length, longest first. lengths: (batch,) on the CPU.
        state: optional (h, c) of shapes (2, batch, proj) and (2, batch, cell).
        Returns outputs (2, batch, time, proj), zero past each row's length, and the final (h, c) of
        each row (the state after its last real step; rows of length 0 keep their initial state).
        """
        _, batch, time, _ = x.shape
        cell = self.cell_dim
        # The cell state sums over every step, so it stays in (at least) float32 even when the
        # products run in bfloat16; in float32 the casts below are no-ops.
        cell_dtype = torch.promote_types(x.dtype, torch.float32)
        if state is None:
            h = x.new_zeros(2, batch, self.proj_dim)
            c = x.new_zeros(2, batch, cell, dtype=cell_dtype)
        else:
            h, c = state
            c = c.to(cell_dtype)
        # Rows still running at each step (rows are sorted longest first, so they are a prefix).
        active = (lengths.unsqueeze(0) > torch.arange(time).unsqueeze(1)).sum(1).tolist()
        # The input-to-hidden product of every real position at once, packed time-major (as a
        # PackedSequence) so padding costs nothing and each step reads one contiguous block:
        # (2, n_real, in) @ (2, in, 4cell) + bias -> (2, n_real, 4cell).
        valid = (torch.arange(time).unsqueeze(1) < lengths.unsqueeze(0)).to(x.device)  # (time, batch)
        packed = x.transpose(1, 2)[:, valid]  # (2, n_real, in)
        if torch.is_grad_enabled():
            # Split once: slicing inside the loop would make backprop allocate a full-size zero
            # gradient per step.
            x_steps = iter(self.input_gates(packed).split(active, dim=1))  # time x (2, n_t, 4cell)
        else:
            x_steps = self.input_gates_by_group(packed, active)
        outputs = []
        # Without autograd the cell update can overwrite each step's fresh gate tensor instead of
        # allocating ten new ones: the same operations in the same order, so the same numbers.
        cell_update = cell_update_inplace if not torch.is_grad_enabled() else cell_update_autograd
        for t, x_step in zip(range(time), x_steps):
            n = active[t]
            gates = self.hidden_gates(x_step, h[:, :n])  # (2, n, 4cell), a new tensor or x_step's memory
            c_new, m = cell_update(gates.to(cell_dtype), c[:, :n], self.cell_clip)
            h_new = self.project(m.to(h.dtype))  # (2, n, proj)
            if self.proj_clip is not None:
                h_new = h_new.clamp(-self.proj_clip, self.proj_clip)
            if n < batch:  # finished rows keep their final state
                h = torch.cat([h_new, h[:, n:]], dim=1)
                c = torch.cat([c_new, c[:, n:]], dim=1)
            else:
                h, c = h_new, c_new
            outputs.append(h_new)
        # Unpack: (2, n_real, proj) -> (2, time, batch, proj) with zeros at padding -> batch-major.
        # (the outputs' dtype, not x's: under autocast the products run in bf16)
        dtype = outputs[0].dtype if outputs else x.dtype
        out = x.new_zeros(time, batch, 2, self.proj_dim, dtype=dtype)
        if outputs:
            out = out.index_put((valid,), torch.cat(outputs, dim=1).transpose(0, 1))
        out = out.permute(2, 1, 0, 3)  # (2, batch, time, proj)
        return out, (h, c)


class BiLstmStack(nn.Module):
    """n_layers of `BiLstmLayer`, residual connections between layers, optional carried state."""

    def __init__(self, input_dim: int, options: LstmOptions, dropout: float = 0.0):
        super().__init__()
        self.options = options
        self.layers = nn.ModuleList(
            BiLstmLayer(input_dim if k == 0 else options.projection_dim, options)
            for k in range(options.n_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        states: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        """Run the stack over left-aligned rows; lengths: (batch,), any order.

        x: (batch, time, input_dim): one sequence per row; the backward direction reads each row
           right to left, and its outputs are returned in reading order like the forward ones.
        x: (2, batch, time, input_dim): a separate input per direction, each already in the order
           that direction reads it (language-model training feeds the backward direction a
           reversed stream, so that state carried between windows is the right context). Outputs
           come back in the same per-direction order.
        states: optional per-layer (h, c), shapes (2, batch, proj) and (2, batch, cell), in batch
        order. Returns each layer's output as (2, batch, time, proj), zero at padded positions, and
        the per-layer final states (after each row's last real step) in batch order.
        """
        per_direction = x.dim() == 4
        lengths = lengths.cpu()
        order = torch.argsort(lengths, descending=True, stable=True)
        lengths_sorted = lengths[order]
        device_order = order.to(x.device)
        if per_direction:
            layer_input = x[:, device_order]  # (2, batch, time, in)
        else:
            x = x[device_order]
            layer_input = torch.stack([x, reverse_padded(x, lengths_sorted)])  # (2, batch, time, in)
        outputs, final_states = [], []
        for k, layer in enumerate(self.layers):
            state = None
            if states is not None:
                h0, c0 = states[k]
                state = (h0[:, device_order], c0[:, device_order])
            out, (h, c) = layer(self.dropout(layer_input), lengths_sorted, state)
            if k > 0 and self.options.use_skip_connections:
                out = out + layer_input
            outputs.append(out)
            final_states.append((h, c))
            layer_input = out
        restore = torch.argsort(order).to(x.device)
        results = []
        for out in outputs:
            out = self.dropout(out)
            if not per_direction:
                out = torch.stack([out[0], reverse_padded(out[1], lengths_sorted)])
            results.append(out[:, restore])
        final_states = [(h[:, restore], c[:, restore]) for h, c in final_states]
        return results, final_states
