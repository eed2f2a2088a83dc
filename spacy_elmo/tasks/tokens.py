"""Word splitting with spaCy's English tokenizer rules (the split `spacy.blank("en")` makes)."""

from __future__ import annotations

from typing import Sequence


def english_tokenizer():
    """The tokenizer of `spacy.blank("en")`, built by spaCy's own tokenizer factory.

    Why not spacy.blank: creating a Language loads every installed spaCy plugin's entry points,
    so one broken plugin (or this package mid-install) would stop a word split.
    """
    from types import SimpleNamespace

    from spacy.lang.en import English
    from spacy.language import create_tokenizer
    from spacy.vocab import Vocab

    return create_tokenizer()(SimpleNamespace(Defaults=English.Defaults, vocab=Vocab()))


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Whitespace + punctuation split (spaCy's English tokenizer rules); space tokens dropped."""
    tokenizer = english_tokenizer()
    return [[t.text for t in doc if t.text.strip()] for doc in tokenizer.pipe(texts)]
