"""Reuse the frozen biLM's layers for docs it has already read.

Training a downstream component on a frozen biLM reads the same train docs once per epoch and
the same dev docs at every evaluation: 4,000 NER steps on CoNLL-2003 run the biLM over its
200k train words about twenty times, for the same numbers each time. The cache keeps each doc's
layers (n_layers + 1, len(doc), dim) under a key made of what the biLM's output depends on: the
token texts and, when the doc has them, its sentence boundaries (see layers/bilm.py `doc_rows`).

It is only correct while the weights do not change: the `elmo` component clears it when it gets
new weights and bypasses it when a listener fine-tunes the biLM (grad_factor != 0).
When full, it keeps what it has and stops adding: training reads docs in a cycle, which an
evicting cache (LRU) would turn into all misses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from spacy.attrs import ORTH, SENT_START
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import registry
from thinc.types import Floats3d

MB = 2**20


def doc_key(doc: Doc) -> tuple[bytes, bytes]:
    """What the biLM's output for `doc` depends on: its tokens and (if set) its sentence starts."""
    sents = doc.to_array(SENT_START).tobytes() if doc.has_annotation("SENT_START") else b""
    return doc.to_array(ORTH).tobytes(), sents


class LayerCache:
    """At most `max_mb` megabytes of biLM layers, keyed by doc_key; 0 = off."""

    def __init__(self, max_mb: float = 0) -> None:
        if max_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {max_mb}")
        self.max_bytes = int(max_mb * MB)
        self.nbytes = 0
        self._store: dict[tuple[bytes, bytes], Floats3d] = {}

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()
        self.nbytes = 0

    def layers(self, docs: Sequence[Doc], compute: Callable[[list[Doc]], list[Floats3d]]) -> list[Floats3d]:
        """Each doc's layers: from the cache, or from compute(docs not found), which are then kept."""
        if not self.enabled:
            return compute(list(docs))
        keys = [doc_key(doc) for doc in docs]
        found: list[Floats3d | None] = [self._store.get(k) for k in keys]
        missing = [i for i, x in enumerate(found) if x is None]
        if missing:
            for i, x in zip(missing, compute([docs[i] for i in missing])):
                found[i] = self._keep(keys[i], x)
        return found  # type: ignore[return-value]

    def _keep(self, key: tuple[bytes, bytes], x: Floats3d) -> Floats3d:
        if key in self._store or self.nbytes + x.nbytes > self.max_bytes:
            return x
        # Shared by every later reader: a write through one of them must fail, not change the rest.
        if isinstance(x, np.ndarray):  # cupy arrays have no read-only flag
            x.flags.writeable = False
        self._store[key] = x
        self.nbytes += x.nbytes
        return x


@registry.misc("spacy-elmo.saved_without_layer_cache.v1")
def saved_without_layer_cache_v1() -> Callable[[Language], Language]:
    """A `[training.before_to_disk]` callback (`spacy_misc` entry point): the pipelines that
    `spacy train` saves (model-last, model-best) get `cache_mb = 0` for every `elmo` component in
    their config, so a service that loads them does not keep the layers of every doc it reads (up
    to the training's cache_mb, in each process). The training itself keeps its cache: only the
    config that is written changes.
    """

    def before_to_disk(nlp: Language) -> Language:
        for name in nlp.component_names:
            if nlp.get_pipe_meta(name).factory == "elmo":
                nlp.get_pipe_config(name)["cache_mb"] = 0
        return nlp

    return before_to_disk
