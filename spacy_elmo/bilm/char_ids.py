"""Tokens -> character ids, exactly as every bilm-tf / AllenNLP ELMo weight file assumes.

A token is its UTF-8 bytes (ids 0-255), framed by begin/end-of-word markers and padded to 50 ids.
Sentence markers are pseudo-tokens holding one special id. Finally every id is shifted by +1 so
that 0 can mean "no token here" (batch padding).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

MAX_CHARS_PER_TOKEN = 50

BEGIN_OF_SENTENCE = 256
END_OF_SENTENCE = 257
BEGIN_OF_WORD = 258
END_OF_WORD = 259
PADDING = 260

# The shift that frees id 0 for batch padding; ids stored in tensors are `raw id + 1`.
SHIFT = 1
N_CHAR_IDS = PADDING + SHIFT + 1  # 262 ids in tensors: 0 (batch padding) .. 261


def _marker_token(marker: int) -> list[int]:
    ids = [PADDING] * MAX_CHARS_PER_TOKEN
    ids[0], ids[1], ids[2] = BEGIN_OF_WORD, marker, END_OF_WORD
    return [i + SHIFT for i in ids]


BOS_CHAR_IDS = _marker_token(BEGIN_OF_SENTENCE)
EOS_CHAR_IDS = _marker_token(END_OF_SENTENCE)
BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def token_to_char_ids(token: str) -> list[int]:
    """The 50 shifted character ids of one token.

    Any string works: text is encoded as UTF-8 with 'surrogatepass' so that lone surrogates (which
    can come out of badly decoded files) still map to bytes instead of raising. Tokens longer than
    48 bytes are cut, as in bilm-tf (the cut may split a multi-byte character; the model was trained
    that way). `<S>` and `</S>` are the sentence markers, as in the reference vocabulary files.
    """
    if token == BOS_TOKEN:
        return list(BOS_CHAR_IDS)
    if token == EOS_TOKEN:
        return list(EOS_CHAR_IDS)
    if not isinstance(token, str):
        raise TypeError(f"ELMo tokens must be str, got {type(token).__name__}: {token!r}")
    raw = token.encode("utf-8", "surrogatepass")[: MAX_CHARS_PER_TOKEN - 2]
    ids = [BEGIN_OF_WORD, *raw, END_OF_WORD]
    ids += [PADDING] * (MAX_CHARS_PER_TOKEN - len(ids))
    return [i + SHIFT for i in ids]


def batch_to_ids(
    sentences: Sequence[Sequence[str]],
    encode: Callable[[str], list[int]] = token_to_char_ids,
    width: int = MAX_CHARS_PER_TOKEN,
) -> torch.Tensor:
    """Character ids for a batch of tokenized sentences, without sentence markers.

    Returns a LongTensor of shape (batch, max_tokens, 50); rows of shorter sentences are padded
    with zeros. An empty batch gives shape (0, 0, 50); an empty sentence gives an all-zero row.
    `encode` and `width` serve models with their own vocabulary (`vocab.TokenIds`).
    """
    if isinstance(sentences, str):
        raise TypeError("batch_to_ids expects a list of tokenized sentences, not a string")
    for i, sentence in enumerate(sentences):
        if isinstance(sentence, str) or not isinstance(sentence, Sequence):
            kind = "a string" if isinstance(sentence, str) else type(sentence).__name__
            raise TypeError(f"sentence {i} is {kind}; pass a list of tokens (e.g. text.split())")
    n_tokens = max((len(s) for s in sentences), default=0)
    ids = torch.zeros((len(sentences), n_tokens, width), dtype=torch.long)
    cache: dict[str, list[int]] = {}
    for i, sentence in enumerate(sentences):
        if not sentence:
            continue
        rows = []
        for token in sentence:
            row = cache.get(token) if isinstance(token, str) else None
            if row is None:
                row = cache[token] = encode(token)
            rows.append(row)
        ids[i, : len(rows)] = torch.tensor(rows, dtype=torch.long)
    return ids
