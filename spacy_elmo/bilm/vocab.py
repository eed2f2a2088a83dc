"""Tokens -> id rows for models with their own character (and word) vocabulary.

The ELMoForManyLangs models look characters up in a vocabulary instead of using UTF-8 bytes, and
may add a word vector. A token's row is then

    [begin_of_word, char ids (unknown when not listed), end_of_word, padding ...]   max_chars ids
    + [word id (unknown when not listed)]                                           with word vectors

every id shifted by +1, so that 0 still means "no token here" as in `char_ids`. Tokens longer
than max_chars - 2 characters are cut first, and the cut token is the one looked up as a word.

The vocabularies live next to options.json as JSON objects {token: raw id}, read as data with
size caps (`read_vocabulary`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from .char_ids import BOS_CHAR_IDS, EOS_CHAR_IDS, SHIFT, batch_to_ids
from .options import MAX_VOCABULARY_SIZE, ElmoOptions, parse_json, read_small_text

MAX_VOCABULARY_BYTES = 512 * 1024 * 1024
# The pseudo-tokens that stand for the sentence markers, as in ELMoForManyLangs.
BOS_WORD = "<bos>"
EOS_WORD = "<eos>"


class VocabularyError(ValueError):
    """A vocabulary file is missing, too large, or not a {token: id} map that fits the options."""


def read_vocabulary(path: str | Path, size: int) -> dict[str, int]:
    """Read a {token: raw id} JSON file whose ids must lie in 0..size-1."""
    path = Path(path)
    # The same guarded readers as options.json: no FIFO, a size cap, and deep nesting as a
    # one-line error rather than a RecursionError traceback.
    try:
        text = read_small_text(path, MAX_VOCABULARY_BYTES)
    except FileNotFoundError:
        raise VocabularyError(f"{path}: vocabulary file not found (it belongs next to options.json)") from None
    except (OSError, ValueError) as err:  # ValueError includes UnicodeDecodeError
        raise VocabularyError(f"{path}: cannot read vocabulary file ({err})") from None
    try:
        table = parse_json(text)
    except ValueError as err:
        raise VocabularyError(f"{path}: not a readable JSON vocabulary ({err})") from None
    if not isinstance(table, dict) or len(table) > MAX_VOCABULARY_SIZE:
        raise VocabularyError(f"{path}: expected a JSON object {{token: id}} of at most {MAX_VOCABULARY_SIZE} entries")
    for token, i in table.items():
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < size:
            raise VocabularyError(f"{path}: id {i!r} of {token!r} is outside 0..{size - 1} (options.json says {size})")
    return table


def write_vocabulary(path: str | Path, table: dict[str, int]) -> None:
    Path(path).write_text(json.dumps(table, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


def marker_rows(options: ElmoOptions) -> tuple[list[int], list[int]]:
    """The shifted id rows of the sentence markers that frame every sentence."""
    vocab, words = options.char_cnn.vocabulary, options.word_embedding
    if vocab is None and words is None:
        return list(BOS_CHAR_IDS), list(EOS_CHAR_IDS)
    if vocab is None:
        raise ValueError("word vectors need a char vocabulary (char_cnn.vocabulary)")
    rows = []
    for char_marker, word_marker in (
        (vocab.begin_of_sentence, None if words is None else words.begin_of_sentence),
        (vocab.end_of_sentence, None if words is None else words.end_of_sentence),
    ):
        max_chars = options.char_cnn.max_characters_per_token
        raw = [vocab.begin_of_word, char_marker, vocab.end_of_word] + [vocab.padding] * (max_chars - 3)
        if word_marker is not None:
            raw.append(word_marker)
        rows.append([i + SHIFT for i in raw])
    return rows[0], rows[1]


class TokenIds:
    """Turns tokenized sentences into the (batch, tokens, ids_per_token) rows a BiLM reads.

    chars / words: the vocabularies ({token: raw id}); None for a UTF-8 byte model (and no words).
    """

    def __init__(self, options: ElmoOptions, chars: dict[str, int] | None = None, words: dict[str, int] | None = None):
        vocab, word_options = options.char_cnn.vocabulary, options.word_embedding
        if (vocab is None) != (chars is None) or (word_options is None) != (words is None):
            raise ValueError("TokenIds: give exactly the vocabularies the options describe")
        self.options = options
        self.chars, self.words = chars, words
        self.max_chars = options.char_cnn.max_characters_per_token
        self.width = options.ids_per_token
        self.bos_row, self.eos_row = marker_rows(options)

    def token_ids(self, token: str) -> list[int]:
        """The shifted id row of one token (vocabulary models only)."""
        if not isinstance(token, str):
            raise TypeError(f"ELMo tokens must be str, got {type(token).__name__}: {token!r}")
        token = token[: self.max_chars - 2]
        if token == BOS_WORD:
            return list(self.bos_row)
        if token == EOS_WORD:
            return list(self.eos_row)
        vocab, chars = self.options.char_cnn.vocabulary, self.chars
        assert vocab is not None and chars is not None
        raw = [vocab.begin_of_word, *(chars.get(c, vocab.unknown) for c in token), vocab.end_of_word]
        raw += [vocab.padding] * (self.max_chars - len(raw))
        if self.words is not None:
            word_options = self.options.word_embedding
            raw.append(self.words.get(token, word_options.unknown))
        return [i + SHIFT for i in raw]

    def batch_to_ids(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """(batch, max_tokens, ids_per_token), zero rows past each sentence's end."""
        if self.chars is None:
            return batch_to_ids(sentences)
        return batch_to_ids(sentences, encode=self.token_ids, width=self.width)


def load_token_ids(options: ElmoOptions, folder: str | Path) -> TokenIds:
    """The TokenIds of a model whose vocabulary files (if any) are in `folder`."""
    folder = Path(folder)
    chars = words = None
    if options.char_cnn.vocabulary is not None:
        chars = read_vocabulary(folder / options.char_cnn.vocabulary.file, options.char_cnn.n_characters)
    if options.word_embedding is not None:
        words = read_vocabulary(folder / options.word_embedding.file, options.word_embedding.n_words)
    return TokenIds(options, chars, words)
