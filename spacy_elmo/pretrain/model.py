"""The training objective: forward and backward language models sharing the character encoder and
the softmax (Peters et al. 2018, eq. 3).

    char ids (2, B, T, 50 [+1])  --char encoder (shared)-->  (2, B, T, proj)
        --BiLstmStack, one input per direction, carried state-->  top layer (2, B, T, proj)
        --softmax (shared)-->  -log p(next word) per position and direction

loss = (mean forward NLL + mean backward NLL) / 2: the paper's sum of both log likelihoods, halved
so the number reads as a per-word loss (bilm-tf does the same).
"""

from __future__ import annotations

import torch
from torch import nn

from ..bilm import BiLM
from .batches import IGNORE
from .softmax import SoftmaxHead

States = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: h (2, B, proj), c (2, B, cell)


class BidirectionalLM(nn.Module):
    def __init__(self, bilm: BiLM, softmax: SoftmaxHead):
        super().__init__()
        self.bilm = bilm
        self.softmax = softmax

    def forward(
        self, char_ids: torch.Tensor, targets: torch.Tensor, states: States | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, States]:
        """char_ids (2, B, T, ids_per_token), targets (2, B, T) with IGNORE where not scored.

        Returns (loss, nll sums (2,), scored counts (2,), final LSTM states).
        """
        _, B, T, n_chars = char_ids.shape
        tokens = self.bilm.char_encoder(char_ids.reshape(2 * B, T, n_chars))  # (2B, T, proj)
        tokens = tokens.view(2, B, T, -1)  # (2, B, T, proj)
        lengths = torch.full((B,), T, dtype=torch.long)
        outputs, final_states = self.bilm.lstm(tokens, lengths, states)
        top = outputs[-1]  # (2, B, T, proj), each direction in its own reading order
        scored = targets != IGNORE  # (2, B, T)
        nll = self.softmax(top[scored], targets[scored])  # (n_scored,), direction-major order
        counts = scored.view(2, -1).sum(1)  # (2,)
        fwd, bwd = nll.split(counts.tolist())
        sums = torch.stack([fwd.sum(), bwd.sum()])  # (2,)
        loss = 0.5 * (sums / counts.clamp(min=1)).sum()
        return loss, sums.detach(), counts, final_states


def detach_states(states: States) -> States:
    """Cut the graph between windows (truncated BPTT); keep the values. States stay float32."""
    return [(h.detach().float(), c.detach().float()) for h, c in states]


def reset_backward(states: States) -> States:
    """Zero the backward direction's state: a new chunk starts, its right context is unread."""
    out = []
    for h, c in states:
        h, c = h.clone(), c.clone()
        h[1].zero_()
        c[1].zero_()
        out.append((h, c))
    return out
