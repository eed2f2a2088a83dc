"""Raw text -> tokens, before the vocabulary and the character ids.

The biLM reads characters, so any tokenization works; what matters is that training and use agree.
`whitespace` suits pre-tokenized corpora (WikiText, the 1B Word Benchmark); `spacy-blank:LANG`
tokenizes as the spaCy pipeline that will feed the `elmo` component does.
"""

from __future__ import annotations

from typing import Callable

Tokenizer = Callable[[str], list[str]]


class TokenizerError(ValueError):
    """The tokenizer name is not one we know."""


def make_tokenizer(name: str) -> Tokenizer:
    """"whitespace" or "spacy-blank:<lang>" (e.g. "spacy-blank:en") -> a function text -> tokens."""
    if name == "whitespace":
        return str.split
    if name.startswith("spacy-blank:"):
        lang = name.split(":", 1)[1]
        import spacy  # only when asked for: importing spaCy costs a second or two

        try:
            nlp = spacy.blank(lang)
        except (ImportError, KeyError, ValueError) as err:
            raise TokenizerError(f"tokenizer {name!r}: spaCy has no language {lang!r} ({err})") from None
        spacy_tokenizer = nlp.tokenizer

        def tokenize(text: str) -> list[str]:
            # spaCy keeps runs of extra whitespace as tokens; the LM has no use for them.
            return [t.text for t in spacy_tokenizer(text) if not t.is_space]

        return tokenize
    raise TokenizerError(f"unknown tokenizer {name!r}: use 'whitespace' or 'spacy-blank:<lang>' (e.g. 'spacy-blank:en')")
