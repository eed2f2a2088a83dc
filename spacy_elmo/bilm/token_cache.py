"""Layer-0 vectors of recently read tokens, so the character CNN encodes each spelling once.

Layer 0 depends on a token's characters only. On running text most tokens of a batch were already
in an earlier batch (word frequencies follow Zipf's law), so a frozen model can keep their
vectors and run the character CNN on the new spellings alone: the CNN is up to a fifth of an
int8 or bf16 step (docs/inference.md). Values are those the CNN gives, so results do not change.

Only valid while the weights stay as they were. The owner clears the cache when it sets new
weights; as a second guard, every lookup compares the parameters' storage and in-place version
counters with those the entries were made with. Never used while autograd records (training)
or under autocast (the CNN's output type would differ).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch

from .blocked import version_key

# 10 MB of float32 vectors for the default model (128 per token), 40 MB at the original size (512).
# The 20,000 most recent distinct words cover almost all of the tokens of running text.
DEFAULT_TOKEN_CACHE = 20_000


class TokenCache:
    """At most `max_tokens` layer-0 vectors, least recently used dropped first; 0 = off."""

    def __init__(self, max_tokens: int):
        if max_tokens < 0:
            raise ValueError(f"token_cache must be >= 0, got {max_tokens}")
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self._slots: OrderedDict[bytes, int] = OrderedDict()  # character ids -> row of the table
        self._table: torch.Tensor | None = None  # (rows allocated, dim)
        self._signature: tuple | None = None
        self._weights: list[torch.Tensor] = []  # what the signature was taken of (see blocked.version_key)

    def __len__(self) -> int:
        return len(self._slots)

    # A copy of a model (deepcopy, pickle) starts with an empty cache of the same size.
    def __deepcopy__(self, memo: dict) -> TokenCache:
        return TokenCache(self.max_tokens)

    def __reduce__(self):
        return (TokenCache, (self.max_tokens,))

    def enabled_now(self, rows: torch.Tensor) -> bool:
        """False while autograd records (training) or under autocast: the cache is bypassed."""
        return self.max_tokens > 0 and not torch.is_grad_enabled() and not torch.is_autocast_enabled(rows.device.type)

    def encode(
        self,
        rows: torch.Tensor,
        encode: Callable[[torch.Tensor], torch.Tensor],
        parameters: Iterable[torch.Tensor],
    ) -> torch.Tensor:
        """Distinct character-id rows (n, ids_per_token) -> their layer-0 vectors (n, dim).

        `encode` computes vectors for the rows not kept yet; `parameters` are the weights it uses.
        A batch with more distinct tokens than the cache holds is encoded whole, without it.
        """
        parameters = list(parameters)
        signature = version_key(parameters)
        if rows.shape[0] > self.max_tokens or signature is None:  # too many, or weights that count no versions
            return encode(rows)
        keys = [row.tobytes() for row in rows.cpu().numpy()]
        with self._lock:
            if signature != self._signature:
                self.clear()
                self._signature = signature
                self._weights = [p.detach() for p in parameters]
            slots = self._slots
            found = [slots.get(key) for key in keys]
            for key, slot in zip(keys, found):
                if slot is not None:
                    slots.move_to_end(key)  # most recent last; eviction takes from the front
            missing = [i for i, slot in enumerate(found) if slot is None]
            if missing:
                vectors = encode(rows[missing])  # (n_missing, dim)
                # Free rows first, then the least recently used entries; those are never this batch's
                # own (it has at most max_tokens rows and its hits were just moved to the end).
                new_slots = self._free_slots(len(missing), vectors)
                self._table[torch.tensor(new_slots, device=vectors.device)] = vectors
                for i, slot in zip(missing, new_slots):
                    slots[keys[i]] = slot
                    found[i] = slot
            index = torch.tensor(found, device=self._table.device)
            return self._table.index_select(0, index)  # (n, dim), a copy: later batches may reuse rows

    def _free_slots(self, n: int, like: torch.Tensor) -> list[int]:
        used = len(self._slots)
        fresh = min(n, self.max_tokens - used)
        rows = 0 if self._table is None else self._table.shape[0]
        if used + fresh > rows or self._table.dtype != like.dtype:
            # Grow by doubling (a small model need not hold max_tokens rows at once). A plain
            # tensor even under inference_mode, so that later no_grad calls may write to it.
            size = min(self.max_tokens, max(used + fresh, 2 * rows, 1024))
            with torch.inference_mode(False):
                table = torch.empty(size, like.shape[1], dtype=like.dtype, device=like.device)
                if self._table is not None and used:
                    table[:rows] = self._table
            self._table = table
        slots = list(range(used, used + fresh))
        while len(slots) < n:
            _, slot = self._slots.popitem(last=False)
            slots.append(slot)
        return slots
