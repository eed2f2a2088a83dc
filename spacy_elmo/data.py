"""What the `elmo` component leaves on Docs: the `._.elmo` extensions and the similarity hooks.

    doc._.elmo          (n_tokens, dim) float32   the configured output, one row per token
    doc._.elmo_layers   (n_layers + 1, n_tokens, dim) float32, or None unless all_layers=True
    token._.elmo        (dim,)  a view of doc._.elmo[token.i]
    span._.elmo         (dim,)  mean of the span's rows

Values live in `doc.user_data`, as numpy arrays, so `DocBin(store_user_data=True)` and
`doc.to_bytes()` keep them. spaCy never stores hooks, so docs from a DocBin, `Doc.from_bytes` or
`nlp.pipe(n_process>1)` come back without them; a mark in `user_data` remembers that the doc had
them, and reading `doc._.elmo` (or a span's or token's) puts them back. `set_similarity_hooks(doc)`
does it by hand.
"""

from __future__ import annotations

import numpy as np
from spacy.tokens import Doc, Span, Token

EXTENSION = "elmo"
LAYERS_EXTENSION = "elmo_layers"
# Where spaCy keeps a plain extension's value, so docs saved before the getter existed still load.
VALUE_KEY = ("._.", EXTENSION, None, None)
HOOKS_KEY = ("spacy-elmo", "similarity_hooks")  # set when the doc got the hooks


LAYERS_KEY = ("._.", LAYERS_EXTENSION, None, None)


def _check_rows(doc: Doc, name: str, rows: int) -> None:
    """Rows that no longer match the tokens would give every token, span and similarity another
    word's vector: say so instead."""
    if rows != len(doc):
        raise ValueError(
            f"doc._.{name} has {rows} rows but the doc has {len(doc)} tokens: the doc was retokenized "
            f"(e.g. by merge_entities or doc.retokenize()) after the 'elmo' component ran. Put 'elmo' after "
            f"the components that change the tokens, or run the doc through it again."
        )


def _get_doc_elmo(doc: Doc) -> np.ndarray | None:
    value = doc.user_data.get(VALUE_KEY)
    if value is not None:
        _check_rows(doc, EXTENSION, len(value))
    if value is not None and doc.user_data.get(HOOKS_KEY) and "similarity" not in doc.user_hooks:
        set_similarity_hooks(doc)  # lost in serialisation: spaCy does not store hooks
    return value


def _set_doc_elmo(doc: Doc, value: np.ndarray | None) -> None:
    doc.user_data[VALUE_KEY] = value


def _get_doc_layers(doc: Doc) -> np.ndarray | None:
    value = doc.user_data.get(LAYERS_KEY)  # (n_layers + 1, len(doc), dim)
    if value is not None:
        _check_rows(doc, LAYERS_EXTENSION, value.shape[1])
    return value


def _set_doc_layers(doc: Doc, value: np.ndarray | None) -> None:
    doc.user_data[LAYERS_KEY] = value


def _token_elmo(token: Token) -> np.ndarray | None:
    rows = token.doc._.get(EXTENSION)
    return None if rows is None else rows[token.i]


def _span_elmo(span: Span) -> np.ndarray | None:
    rows = span.doc._.get(EXTENSION)
    if rows is None:
        return None
    if len(span) == 0:  # the mean of nothing: a zero vector rather than NaNs
        return np.zeros((rows.shape[1],), dtype=rows.dtype)
    return rows[span.start : span.end].mean(axis=0)


def install_extensions() -> None:
    """Register the `._.elmo` attributes (idempotent; done when spacy_elmo.component is imported)."""
    if not Doc.has_extension(EXTENSION):
        Doc.set_extension(EXTENSION, getter=_get_doc_elmo, setter=_set_doc_elmo)
    if not Doc.has_extension(LAYERS_EXTENSION):
        Doc.set_extension(LAYERS_EXTENSION, getter=_get_doc_layers, setter=_set_doc_layers)
    if not Token.has_extension(EXTENSION):
        Token.set_extension(EXTENSION, getter=_token_elmo)
    if not Span.has_extension(EXTENSION):
        Span.set_extension(EXTENSION, getter=_span_elmo)


# ---- similarity hooks ----------------------------------------------------------------------------
# Module-level functions rather than lambdas, so docs with hooks still pickle.

Vectored = Doc | Span | Token


def _doc_vector(doc: Doc) -> np.ndarray:
    return _span_elmo(doc[:])


def _has_vector(obj: Vectored) -> bool:
    # False for empty docs and spans and for whitespace tokens (their rows are zero).
    vector = obj.vector
    return vector is not None and bool(np.any(vector))


def _norm(obj: Vectored) -> float:
    vector = obj.vector
    return 0.0 if vector is None else float(np.linalg.norm(vector))


def _elmo_vector(obj) -> np.ndarray | None:
    """The ELMo vector of a Doc, Span or Token, hooks or not (None for anything else)."""
    if isinstance(obj, Doc):
        return _doc_vector(obj)
    if isinstance(obj, Span):
        return _span_elmo(obj)
    if isinstance(obj, Token):
        return _token_elmo(obj)
    return None


def _similarity(this: Vectored, other) -> float:
    """Cosine of the two ELMo vectors; 0.0 when either is all zeros (as spaCy does for vectors)."""
    a, b = _elmo_vector(this), _elmo_vector(other)
    if a is None or b is None or a.shape != b.shape:
        raise ValueError(
            f"cannot compare {type(this).__name__} and {type(other).__name__} by ELMo vectors "
            f"(shapes {getattr(a, 'shape', None)} and {getattr(b, 'shape', None)}): "
            f"run both through the same 'elmo' component"
        )
    norm = float(np.linalg.norm(a)) * float(np.linalg.norm(b))
    if norm == 0.0:
        return 0.0
    return float(np.dot(a, b) / norm)


def set_similarity_hooks(doc: Doc) -> None:
    """Make `.vector`, `.vector_norm`, `.has_vector` and `.similarity()` of the doc, its spans
    and tokens use `doc._.elmo` (mean-pooled for docs and spans)."""
    doc.user_data[HOOKS_KEY] = True
    doc.user_hooks["vector"] = _doc_vector
    doc.user_hooks["vector_norm"] = _norm
    doc.user_hooks["has_vector"] = _has_vector
    doc.user_hooks["similarity"] = _similarity
    doc.user_span_hooks["vector"] = _span_elmo
    # No span "vector_norm" hook: spaCy's Span.vector_norm calls the "vector" hook for it.
    doc.user_span_hooks["has_vector"] = _has_vector
    doc.user_span_hooks["similarity"] = _similarity
    doc.user_token_hooks["vector"] = _token_elmo
    doc.user_token_hooks["vector_norm"] = _norm
    doc.user_token_hooks["has_vector"] = _has_vector
    doc.user_token_hooks["similarity"] = _similarity
