"""The ELMo bidirectional language model: character encoder + stacked bi-LSTM.

    char ids (batch, tokens, 50)
      -> add <S> ... </S> per row                       (batch, tokens + 2, 50)
      -> CharEncoder                                    (batch, tokens + 2, proj)
      -> BiLstmStack                                    n_layers x (2, batch, tokens + 2, proj)
      -> drop the boundary positions, concat directions (n_layers + 1) x (batch, tokens, 2 proj)

Layer 0 is the character encoder's output duplicated for both directions.
Models with their own vocabulary (ELMoForManyLangs) read rows of max_chars ids (+ 1 word id) made
by `BiLM.batch_to_ids`, framed by their own sentence-marker rows; the rest is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .char_encoder import CharEncoder
from .char_ids import BOS_CHAR_IDS, EOS_CHAR_IDS
from .lstm import BiLstmStack
from .options import ElmoOptions
from .vocab import TokenIds, marker_rows


@dataclass
class BiLMOutput:
    layers: list[torch.Tensor]  # n_layers + 1 tensors of shape (batch, tokens, 2 * proj)
    mask: torch.Tensor  # (batch, tokens) bool: True where a real token is

    def stacked(self) -> torch.Tensor:
        """All layers as one tensor: (batch, n_layers + 1, tokens, 2 * proj)."""
        return torch.stack(self.layers, dim=1)


def add_sentence_boundaries(
    char_ids: torch.Tensor, bos_row: Sequence[int] = BOS_CHAR_IDS, eos_row: Sequence[int] = EOS_CHAR_IDS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame each row with the <S> and </S> tokens right around its real tokens.

    char_ids: (batch, tokens, 50) -> ((batch, tokens + 2, 50), lengths (batch,) incl. markers).
    Rows must be left-aligned (real tokens first); an empty row becomes just <S> </S>.
    bos_row / eos_row: the markers' id rows, for models with their own vocabulary.
    """
    batch, n_tokens, n_chars = char_ids.shape
    lengths = (char_ids > 0).any(dim=-1).sum(dim=-1)  # (batch,)
    framed = char_ids.new_zeros((batch, n_tokens + 2, n_chars))
    framed[:, 1:-1] = char_ids
    framed[:, 0] = torch.tensor(bos_row, dtype=char_ids.dtype, device=char_ids.device)
    eos = torch.tensor(eos_row, dtype=char_ids.dtype, device=char_ids.device)
    framed[torch.arange(batch, device=char_ids.device), lengths + 1] = eos
    return framed, lengths + 2


class BiLM(nn.Module):
    """ELMo's biLM. `forward(char_ids)` returns every layer for every token, plus a mask.

    stateful=False (the default): every call starts from a zero LSTM state, so a sentence's vectors
    never depend on the rest of its batch or on earlier calls.
    stateful=True: the final state of each batch row is carried into the same row of the next call
    (bilm-tf and AllenNLP behaviour; only needed to reproduce their reference outputs). Call
    `reset_states()` to start over.
    """

    # "float32"; "bfloat16" or "int8" on an inference-only copy made by precision.with_precision
    precision = "float32"

    def __init__(
        self, options: ElmoOptions, stateful: bool = False, dropout: float = 0.0, token_ids: TokenIds | None = None
    ):
        super().__init__()
        self.options = options
        self.stateful = stateful
        # tokens -> id rows: UTF-8 bytes, or the model's own vocabulary (given by `load_bilm`).
        if token_ids is None and options.char_cnn.vocabulary is None and options.word_embedding is None:
            token_ids = TokenIds(options)
        self.token_ids = token_ids
        self.marker_rows = marker_rows(options)
        proj = options.lstm.projection_dim
        self.char_encoder = CharEncoder(options.char_cnn, output_dim=proj, words=options.word_embedding)
        self.lstm = BiLstmStack(proj, options.lstm, dropout=dropout)
        self._states: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def output_dim(self) -> int:
        return self.options.output_dim

    @property
    def n_layers(self) -> int:
        return self.options.n_layers

    def reset_states(self) -> None:
        self._states = None

    def batch_to_ids(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """Tokenized sentences -> the (batch, tokens, ids_per_token) rows `forward` reads."""
        if self.token_ids is None:
            raise ValueError("this biLM has its own vocabulary, which was not loaded: use load_bilm(model_dir)")
        return self.token_ids.batch_to_ids(sentences)

    def _carried_states(self, batch: int, device, dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Stored states for the first `batch` rows, growing the store with zeros as needed."""
        lstm = self.options.lstm
        if self._states is None:
            self._states = [
                (torch.zeros(2, 0, lstm.projection_dim, device=device, dtype=dtype),
                 torch.zeros(2, 0, lstm.dim, device=device, dtype=dtype))
                for _ in range(lstm.n_layers)
            ]
        grown = []
        for h, c in self._states:
            if h.shape[1] < batch:
                h = torch.cat([h, h.new_zeros(2, batch - h.shape[1], h.shape[2])], dim=1)
                c = torch.cat([c, c.new_zeros(2, batch - c.shape[1], c.shape[2])], dim=1)
            grown.append((h, c))
        self._states = grown
        return [(h[:, :batch], c[:, :batch]) for h, c in grown]

    def forward(self, char_ids: torch.Tensor) -> BiLMOutput:
        """char_ids: (batch, tokens, ids_per_token) from `self.batch_to_ids` (no sentence markers)."""
        ids_width = self.options.ids_per_token
        if char_ids.dim() != 3 or char_ids.shape[-1] != ids_width:
            raise ValueError(f"char_ids must have shape (batch, tokens, {ids_width}), got {tuple(char_ids.shape)}")
        batch, n_tokens, _ = char_ids.shape
        mask = (char_ids > 0).any(dim=-1)  # (batch, tokens)
        width = self.output_dim
        if batch == 0:
            empty = self.char_encoder.char_embed.weight.new_zeros(0, n_tokens, width)
            return BiLMOutput([empty] * self.n_layers, mask)
        framed, lengths = add_sentence_boundaries(char_ids, *self.marker_rows)
        tokens = self.char_encoder(framed)  # (batch, tokens + 2, proj)
        states = None
        if self.stateful:
            states = self._carried_states(batch, tokens.device, tokens.dtype)
        lstm_outputs, final_states = self.lstm(tokens, lengths, states)
        if self.stateful:
            self._store_states(final_states, lengths)

        layers = [torch.cat([tokens, tokens], dim=-1)[:, 1:-1]]
        for out in lstm_outputs:  # (2, batch, tokens + 2, proj)
            layers.append(torch.cat([out[0], out[1]], dim=-1)[:, 1:-1])
        # Drop the </S> position of shorter rows too: everything past a row's length is zero.
        keep = mask.unsqueeze(-1).to(layers[0].dtype)
        layers = [layer * keep for layer in layers]
        return BiLMOutput(layers, mask)

    def _store_states(self, final_states, lengths: torch.Tensor) -> None:
        batch = lengths.shape[0]
        new = []
        for (h_all, c_all), (h, c) in zip(self._states, final_states):
            h_all, c_all = h_all.clone(), c_all.clone()
            h_all[:, :batch] = h.detach()
            c_all[:, :batch] = c.detach()
            new.append((h_all, c_all))
        self._states = new
