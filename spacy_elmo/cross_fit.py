"""Cross-fitting: train a task on layers of biLM copies that never saw the sentence at hand.

A biLM fine-tuned on a task's own training text has read those very sentences (CoNLL-2003, three
epochs: perplexity 50 on the train words, 91 on the dev words). Its layers on the training
sentences are therefore sharper than on any new text, and a task model trained on them learns to
trust features that are weaker at test time. Cross-fitting removes the mismatch:

    split the training text into K folds (by document)
    fine-tune K copies, copy k on every fold but k
    training (Elmo.update): a doc of fold k is read by copy k, which never saw it
    prediction (dev, test, nlp(text)): the copy fine-tuned on all the text, as before

The folds are given as the text files of the held-out sentences, one per line (what
`scripts/cross_fit_folds.py` writes); a doc belongs to fold k when its words, whitespace-normalised,
are a line of fold k's file. A doc in no fold is read by the main model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from spacy.tokens import Doc


def text_key(text: str) -> bytes:
    """A 16-byte digest of the words of a line or doc, whatever whitespace separates them."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


class HeldOutFolds:
    """Which fold, if any, each doc belongs to: fold k = the lines of held_out_texts[k]."""

    def __init__(self, held_out_texts: Sequence[str | Path]) -> None:
        self.paths = [Path(p) for p in held_out_texts]
        self._fold: dict[bytes, int] = {}
        self.n_shared = 0  # lines found in more than one fold (kept in the first)
        for k, path in enumerate(self.paths):
            if not path.is_file():
                raise ValueError(f"cross-fitting: held-out text {path} not found")
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    key = text_key(line)
                    if self._fold.setdefault(key, k) != k:
                        self.n_shared += 1

    def __len__(self) -> int:
        return len(self.paths)

    def fold_of(self, doc: Doc) -> int | None:
        return self._fold.get(text_key(doc.text))

    def split(self, docs: Sequence[Doc]) -> dict[int | None, list[int]]:
        """Positions of the docs of each fold (None: in no fold), in order."""
        groups: dict[int | None, list[int]] = {}
        for i, doc in enumerate(docs):
            groups.setdefault(self.fold_of(doc), []).append(i)
        return groups
