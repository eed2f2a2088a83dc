"""Token streams -> fixed-length windows for truncated back-propagation through time.

Each of the `batch_size` rows is its own stream of sentences `<S> w1 ... wn </S> <S> ...`, fed by
whole lines from the shared `TextStream`. A row's stream is cut into *chunks* of
`chunk_windows * unroll_steps` tokens, and each chunk is read in windows of `unroll_steps`:

    forward  reads the chunk left to right, window k = chunk[kT : kT+T], targets shifted by +1;
    backward reads the same chunk right to left, window k = reversed(chunk)[kT : kT+T].

So each direction's LSTM state, carried from one window to the next, is exactly the context that
direction has read so far. Consecutive chunks of a row overlap by one token, so the forward stream
is seamless across chunks; the backward state must restart (zero) at every chunk, since the right
context of a chunk's end is the next chunk, not yet read: `Batch.new_chunk` says when.

Targets that are trivially predictable are ignored (-1): forward `<S>` (it always follows `</S>`)
and backward `</S>` (it always follows `<S>`). What is left is, per sentence, w1 ... wn </S>
forward and wn ... w1 <S> backward: the same predictions `evaluate` scores.

Tokens become id rows as the model reads them: UTF-8 bytes (`token_to_char_ids`), or, for a model
with its own char (and word) vocabulary, its `TokenIds` (`stream_encoder`), `<S>` and `</S>` being
its sentence-marker rows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import torch

from ..bilm import BOS_TOKEN, EOS_TOKEN, token_to_char_ids
from ..bilm.vocab import TokenIds
from .corpus import TextStream
from .vocab import BOS_ID, EOS_ID, Vocab

IGNORE = -1


@dataclass
class Batch:
    char_ids: torch.Tensor  # (2, batch, T, ids_per_token): [forward inputs, backward inputs]
    targets: torch.Tensor  # (2, batch, T): next word ids per direction, IGNORE where not scored
    new_chunk: bool  # backward states must be reset before this batch
    n_words: int  # stream tokens this batch advances (batch * T)


Encoder = Callable[[str], list[int]]


def stream_encoder(token_ids: TokenIds | None) -> Encoder:
    """token -> id row for the pretraining stream: UTF-8 bytes, or the model's own vocabulary
    (`<S>`/`</S>` are then its marker rows; unlisted chars and words get its unknown ids)."""
    if token_ids is None or token_ids.chars is None:
        return token_to_char_ids
    markers = {BOS_TOKEN: token_ids.bos_row, EOS_TOKEN: token_ids.eos_row}

    def encode(token: str) -> list[int]:
        row = markers.get(token)
        return list(row) if row is not None else token_ids.token_ids(token)

    return encode


class CharIdCache:
    """token -> id row (50 char ids, + 1 word id with word vectors), memoised (bounded: cleared when
    it grows past `max_size`)."""

    def __init__(self, max_size: int = 500_000, encode: Encoder = token_to_char_ids):
        self.rows: dict[str, torch.Tensor] = {}
        self.max_size = max_size
        self.encode = encode

    def __call__(self, tokens: list[str]) -> torch.Tensor:
        rows = self.rows
        if len(rows) > self.max_size:
            rows.clear()
        out = []
        for t in tokens:
            row = rows.get(t)
            if row is None:
                row = rows[t] = torch.tensor(self.encode(t), dtype=torch.long)
            out.append(row)
        return torch.stack(out)  # (len(tokens), ids_per_token)


class WindowBatcher:
    def __init__(
        self,
        stream: TextStream,
        vocab: Vocab,
        batch_size: int,
        unroll_steps: int,
        chunk_windows: int,
        token_ids: TokenIds | None = None,
    ):
        """token_ids: the model's own vocabulary (`BiLM.token_ids`); None or a byte model's: UTF-8 bytes."""
        if min(batch_size, unroll_steps, chunk_windows) < 1:
            raise ValueError("batch_size, unroll_steps and chunk_windows must be positive")
        self.stream, self.vocab = stream, vocab
        self.batch_size, self.unroll_steps, self.chunk_windows = batch_size, unroll_steps, chunk_windows
        self.pending: list[deque[str]] = [deque() for _ in range(batch_size)]  # framed tokens not yet in a chunk
        self.chunks: list[list[str]] = [[] for _ in range(batch_size)]  # current chunk of each row
        self.window = chunk_windows  # next window of the chunks; == chunk_windows: refill first
        self.char_ids = CharIdCache(encode=stream_encoder(token_ids))

    @property
    def chunk_tokens(self) -> int:
        return self.chunk_windows * self.unroll_steps

    # ---- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "stream": self.stream.state_dict(),
            "pending": [list(p) for p in self.pending],
            "chunks": [list(c) for c in self.chunks],
            "window": self.window,
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["chunks"]) != self.batch_size:
            raise ValueError(f"checkpoint has {len(state['chunks'])} rows per batch, the config {self.batch_size}")
        self.stream.load_state_dict(state["stream"])
        self.pending = [deque(p) for p in state["pending"]]
        self.chunks = [list(c) for c in state["chunks"]]
        self.window = int(state["window"])

    # ---- batches ---------------------------------------------------------------------------------

    def _take(self, row: int, n: int) -> list[str]:
        """The next n tokens of a row's stream, pulling whole lines from the corpus as needed."""
        pending = self.pending[row]
        while len(pending) < n:
            line = self.stream.next_line()
            if line is None:
                raise EOFError("the corpus stream ended (repeat=False)")
            for piece in line:
                pending.append(BOS_TOKEN)
                pending.extend(piece)
                pending.append(EOS_TOKEN)
        return [pending.popleft() for _ in range(n)]

    def _refill(self) -> None:
        for row in range(self.batch_size):
            previous = self.chunks[row]
            if previous:  # overlap by one token: the forward stream stays seamless
                self.chunks[row] = [previous[-1], *self._take(row, self.chunk_tokens)]
            else:
                self.chunks[row] = self._take(row, self.chunk_tokens + 1)
        self.window = 0

    def next_batch(self) -> Batch:
        new_chunk = self.window >= self.chunk_windows
        if new_chunk:
            self._refill()
        T, k = self.unroll_steps, self.window
        tokens, targets = [], []
        for direction in (0, 1):
            for chunk in self.chunks:  # chunk: chunk_tokens + 1 tokens
                seq = chunk if direction == 0 else chunk[::-1]
                tokens.extend(seq[k * T : k * T + T])
                targets.extend(seq[k * T + 1 : k * T + T + 1])
        self.window += 1
        B = self.batch_size
        char_ids = self.char_ids(tokens).view(2, B, T, -1)  # (2, B, T, ids_per_token)
        target_ids = torch.tensor(self.vocab.encode(targets), dtype=torch.long).view(2, B, T)
        # Not scored: forward <S> (always follows </S>), backward </S> (always follows <S>).
        target_ids[0][target_ids[0] == BOS_ID] = IGNORE
        target_ids[1][target_ids[1] == EOS_ID] = IGNORE
        return Batch(char_ids, target_ids, new_chunk, n_words=B * T)
