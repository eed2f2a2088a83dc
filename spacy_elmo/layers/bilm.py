"""The biLM as a Thinc layer: Docs in, every layer for every token out.

    docs
      -> rows of token indices, by `context`: "sentence" = one row per sentence; "doc" = the whole
         doc, or, past `window_size` tokens, windows of whole consecutive sentences; "auto" =
         "sentence" when the doc has sentence boundaries, else "doc". Boundaries the doc lacks are
         guessed by spaCy's rule-based sentencizer; whitespace tokens are left out
      -> rows sorted by length, packed into batches of at most `words_per_batch` padded tokens
      -> BiLM (PyTorch, through a PyTorchShim)        (batch, n_layers + 1, tokens, dim)
      -> one array per doc                            (n_layers + 1, len(doc), dim)

Rows are independent (the biLM is stateless), so a doc's vectors never depend on its batch.
Whitespace tokens ("\\n\\n", "  ") never reach the biLM, whose training text had none, and get zero
rows. The torch module is attached after construction (`set_bilm`), so that a pipeline can be
built from its config before its weights are read from disk.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable

import numpy as np
import torch
from spacy.pipeline import Sentencizer
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, PyTorchShim, torch2xp, xp2torch
from thinc.types import Floats3d

from ..bilm import BiLM
from ..bilm.device import check_threads
from ..bilm.embedder import Embedder, windows
from ..bilm.precision import with_precision
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE, TokenCache

ElmoLayers = list[Floats3d]  # per doc: (n_layers + 1, len(doc), dim)
Row = tuple[int, np.ndarray]  # (doc index, token indices)

_SENTENCIZER: Sentencizer | None = None
_FORKED = False


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True


# nlp.pipe(n_process>1) forks. A child that enters PyTorch's OpenMP pool after the parent has
# used it hangs forever; one thread per child avoids the pool (and oversubscribing the cores).
os.register_at_fork(after_in_child=_after_fork_in_child)


CONTEXTS = ("auto", "sentence", "doc")


def ElmoBiLM(
    words_per_batch: int = 2000,
    window_size: int = 256,
    context: str = "auto",
    threads: int = 0,
    token_cache: int = DEFAULT_TOKEN_CACHE,
) -> Model[list[Doc], ElmoLayers]:
    """A Thinc model running an ELMo biLM over Docs; attach the torch module with `set_bilm`.

    words_per_batch: largest padded batch (rows x longest row) sent to the biLM at once.
    window_size: most tokens the biLM reads in one row; longer docs are split into windows.
    context: what one biLM row holds: "sentence", "doc" (as much of the doc as window_size allows,
        cut between sentences) or "auto" (sentences if the doc has boundaries, else "doc").
    threads: torch threads while the biLM runs (process-wide, as torch has it); 0 = torch's default.
    token_cache: layer-0 vectors of this many recently read distinct tokens kept for prediction,
        so the character CNN runs on new spellings only (bilm/token_cache.py); 0 = off.
    """
    check_threads(threads)
    if token_cache < 0:
        raise ValueError(f"token_cache must be >= 0 (0 = off), got {token_cache}")
    if words_per_batch < 1 or window_size < 1:
        raise ValueError("words_per_batch and window_size must be positive")
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    return Model(
        "elmo_bilm",
        _forward,
        dims={"nL": None, "nO": None},
        attrs={
            "words_per_batch": int(words_per_batch),
            "window_size": int(window_size),
            "context": context,
            "threads": int(threads),
            "token_cache": int(token_cache),
            # spaCy's nlp.replace_listeners calls this before it changes anything: refuse there.
            "replace_listener_cfg": _refuse_replace_listeners,
        },
    )


def _refuse_replace_listeners(elmo_model_cfg, tok2vec_cfg) -> None:
    """nlp.replace_listeners would put a copy of this model, without its weights, where the
    listener was, and the `elmo` component's `model` setting (a path) into the downstream config:
    a pipeline that works until it is saved and then no longer loads."""
    raise ValueError(
        "spacy-elmo does not support nlp.replace_listeners (nor replace_listeners in a config's "
        "[components.X] source block): the biLM's weights belong to the 'elmo' component, not to the "
        "components that listen to it. Keep the 'elmo' component in the pipeline (when you source "
        "a listening component, source the 'elmo' component with it). Each listening component "
        "already owns its scalar mix; the biLM stays frozen unless a listener sets grad_factor != 0."
    )


def set_bilm(model: Model, bilm: BiLM, device: torch.device | None = None, precision: str = "float32") -> None:
    """Attach (or replace) the torch biLM; device None = the device of the current Thinc ops.

    shims[0] holds the float32 biLM (trained and saved); with precision "bfloat16" or "int8" a
    second shim holds its inference copy, which prediction uses (bilm/precision.py).
    """
    weights = PyTorchShim(bilm.eval(), device=device)
    inference = with_precision(bilm, precision, weights.device)
    # A new, empty cache of layer-0 vectors: none may come from other weights. Used only where no
    # gradient is recorded; the component also clears it before it fine-tunes the biLM.
    size = model.attrs.get("token_cache", 0)
    inference.char_encoder.token_cache = TokenCache(size) if size else None
    model.shims[:] = [weights] if inference is bilm else [weights, PyTorchShim(inference, device=weights.device)]
    model.set_dim("nL", bilm.n_layers, force=True)
    model.set_dim("nO", bilm.output_dim, force=True)


def clear_token_cache(model: Model) -> None:
    """Forget the layer-0 vectors kept for prediction (before the biLM's weights change)."""
    for shim in model.shims:
        cache = shim._model.char_encoder.token_cache
        if cache is not None:
            cache.clear()


def get_bilm(model: Model) -> BiLM | None:
    """The float32 biLM (None before `set_bilm`)."""
    return model.shims[0]._model if model.shims else None


# ---- splitting docs into rows --------------------------------------------------------------------


def _guess_sentence_starts(doc: Doc) -> list[int]:
    """Sentence starts by spaCy's punctuation rules, without touching the doc's annotation."""
    global _SENTENCIZER
    if _SENTENCIZER is None:
        _SENTENCIZER = Sentencizer()
    guesses = _SENTENCIZER.predict([doc])[0]
    return [i for i, is_start in enumerate(guesses) if is_start] or [0]


def doc_rows(doc: Doc, window_size: int, context: str = "auto") -> list[np.ndarray]:
    """The token indices of each biLM row of `doc`, in order, whitespace tokens left out."""
    n = len(doc)
    if n == 0:
        return []
    keep = doc.to_array("IS_SPACE") == 0  # (n,) bool
    has_sents = doc.has_annotation("SENT_START")
    whole_doc = context == "doc" or (context == "auto" and not has_sents)
    if whole_doc and int(keep.sum()) <= window_size:
        units = [(0, n)]
    else:
        starts = [s.start for s in doc.sents] if has_sents else _guess_sentence_starts(doc)
        units = list(zip(starts, starts[1:] + [n]))
    indices = np.arange(n)
    rows = [indices[a:b][keep[a:b]] for a, b in units]
    rows = [r for r in rows if len(r)]
    if whole_doc:
        rows = _pack(rows, window_size)
    out = []
    for row in rows:
        if len(row) > window_size:
            # Guessed boundaries fail on text without sentence-final punctuation (tables, lists).
            hint = "" if has_sents else (
                " The sentence ends were guessed by spaCy's sentencizer: set them on the doc (e.g. with a parser or senter)"
                " to split it better."
            )
            warnings.warn(
                f"spacy-elmo: a sentence of {len(row)} tokens is longer than window_size={window_size}; "
                f"it is read in consecutive windows of {window_size} tokens (no token is dropped, but "
                f"the windows do not see each other). Raise window_size to keep it whole.{hint}",
                stacklevel=2,
            )
            out.extend(row[a:b] for a, b in windows(len(row), window_size))
        else:
            out.append(row)
    return out


def _pack(sentences: list[np.ndarray], window_size: int) -> list[np.ndarray]:
    """Greedily join consecutive whole sentences into windows of at most window_size tokens."""
    windows: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for sent in sentences:
        if current and size + len(sent) > window_size:
            windows.append(np.concatenate(current))
            current, size = [], 0
        current.append(sent)
        size += len(sent)
    if current:
        windows.append(np.concatenate(current))
    return windows


def _use_threads(requested: int) -> None:
    """Set torch's thread count for this run: `requested`, or torch's default when 0.

    In a worker of nlp.pipe(n_process>1) "default" means one thread: n workers with all cores each
    oversubscribe the machine, and a forked child must not enter the OpenMP pool its parent used.
    """
    if _FORKED:
        requested = 1  # whatever was asked: more threads would hang a forked child
    elif requested == 0 and multiprocessing.parent_process() is not None:
        requested = 1  # a spawn or forkserver worker
    if requested and torch.get_num_threads() != requested:
        torch.set_num_threads(requested)


# ---- forward / backward --------------------------------------------------------------------------


def _forward(model: Model, docs: list[Doc], is_train: bool) -> tuple[ElmoLayers, Callable]:
    if not model.shims:
        raise ValueError(
            "the ELMo biLM has no weights yet: call nlp.initialize(), or load the pipeline from disk"
        )
    _use_threads(model.attrs.get("threads", 0))
    shim = model.shims[0] if is_train else model.shims[-1]  # the float32 biLM or its inference copy
    ops = model.ops
    n_layers, width = model.get_dim("nL"), model.get_dim("nO")
    window, per_batch, context = model.attrs["window_size"], model.attrs["words_per_batch"], model.attrs["context"]
    rows: list[Row] = [(d, idx) for d, doc in enumerate(docs) for idx in doc_rows(doc, window, context)]
    outputs = [ops.alloc3f(n_layers, len(doc), width) for doc in docs]
    words = [[t.text for t in doc] for doc in docs]
    device = shim.device
    row_words = [[words[d][i] for i in idx] for d, idx in rows]
    # The core's length-sorted batching; every row has a token, so only the token budget binds.
    batcher = Embedder(shim._model, batch_size=per_batch, max_batch_tokens=per_batch)
    graphs: list[tuple[list[int], torch.Tensor]] = []  # kept only when training
    for batch in batcher.batches(row_words):
        char_ids = shim._model.batch_to_ids([row_words[r] for r in batch]).to(device)
        if is_train:
            stacked = shim._model(char_ids).stacked()  # (batch, nL, tokens, dim), with autograd
            graphs.append((batch, stacked))
        else:
            stacked = shim.predict(ArgsKwargs(args=(char_ids,), kwargs={})).stacked()  # no_grad
        values = torch2xp(stacked.detach().float(), ops=ops)  # bf16 has no numpy type
        for k, r in enumerate(batch):
            d, idx = rows[r]
            outputs[d][:, idx] = values[k, :, : len(idx)]

    def backprop(d_outputs: ElmoLayers) -> list[Doc]:
        for batch, stacked in graphs:
            grads = ops.alloc(stacked.shape, dtype="float32")
            for k, r in enumerate(batch):
                d, idx = rows[r]
                grads[k, :, : len(idx)] = d_outputs[d][:, idx]
            # retain_graph: every listener may send its gradient through the same forward pass.
            torch.autograd.backward(stacked, xp2torch(grads, device=device), retain_graph=True)
        return []

    return outputs, backprop
