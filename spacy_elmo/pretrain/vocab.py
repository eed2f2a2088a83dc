"""The softmax's word vocabulary, in bilm-tf's vocabulary-file convention.

One token per line, sorted by descending corpus count, the first three lines `<S>`, `</S>`,
`<UNK>`. The vocabulary only concerns the *output* side: the model reads characters, so a word
missing here still gets a proper input vector; as a target it counts as `<UNK>`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..bilm import BOS_TOKEN, EOS_TOKEN
from ..atomic import atomic_path

UNK_TOKEN = "<UNK>"
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
BOS_ID, EOS_ID, UNK_ID = 0, 1, 2


class VocabError(ValueError):
    """A vocabulary file is missing or not in the bilm-tf convention."""


@dataclass(frozen=True)
class VocabSettings:
    max_size: int = 50_000  # softmax rows, the three special tokens included
    min_count: int = 1  # words seen fewer times are <UNK>


class Vocab:
    """Token <-> softmax row. Ids 0, 1, 2 are <S>, </S>, <UNK>; the rest follow by frequency."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[:3]) != SPECIAL_TOKENS:
            got = [t if len(t) <= 40 else t[:40] + "..." for t in tokens[:3]]  # a binary file's "lines" are long
            raise VocabError(f"a vocabulary must start with {', '.join(SPECIAL_TOKENS)}; got {got}")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        if len(self.index) != len(tokens):
            dupes = [t for t, n in Counter(tokens).items() if n > 1][:5]
            raise VocabError(f"the vocabulary lists some tokens twice: {dupes}")

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self.index.get
        return [get(t, UNK_ID) for t in tokens]

    def fingerprint(self) -> str:
        return hashlib.sha1("\n".join(self.tokens).encode("utf-8", "surrogatepass")).hexdigest()

    # ---- files ---------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            raise VocabError(f"{path}: vocabulary file not found") from None
        except OSError as err:
            raise VocabError(f"{path}: cannot read the vocabulary ({err})") from None
        tokens = [line.rstrip("\r") for line in text.split("\n")]
        tokens = [t for t in tokens if t]
        try:
            return cls(tokens)
        except VocabError as err:
            raise VocabError(f"{path}: {err}") from None

    def to_file(self, path: str | Path) -> None:
        """Write atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(self.tokens) + "\n", encoding="utf-8", errors="surrogatepass")


def build_vocab(counts: Counter, settings: VocabSettings = VocabSettings()) -> Vocab:
    """The `max_size - 3` most frequent tokens seen at least `min_count` times (ties by text)."""
    if settings.max_size < len(SPECIAL_TOKENS) + 1:
        raise VocabError(f"vocab.max_size must be at least 4, got {settings.max_size}")
    candidates = [
        (n, t) for t, n in counts.items()
        # A token with whitespace inside could not be written one per line; specials are fixed.
        if n >= settings.min_count and t not in SPECIAL_TOKENS and not any(c.isspace() for c in t)
    ]
    candidates.sort(key=lambda item: (-item[0], item[1]))
    words = [t for _, t in candidates[: settings.max_size - len(SPECIAL_TOKENS)]]
    return Vocab([*SPECIAL_TOKENS, *words])


def count_tokens(stream, progress: bool = False) -> Counter:
    """Token counts over one pass of a `TextStream` (built with repeat=False)."""
    from tqdm import tqdm

    counts: Counter = Counter()
    with tqdm(desc="Counting words", unit=" lines", disable=not progress, mininterval=1.0, leave=False) as bar:
        while (line := stream.next_line()) is not None:
            for piece in line:
                counts.update(piece)
            bar.update()
    return counts
