"""The listener: how a downstream model (ner, textcat, ...) gets the `elmo` component's layers.

As in spacy-transformers, the biLM runs once per batch, in the `elmo` component, and every
listening model gets all its layers (each then applies its own scalar mix):

- training: `Elmo.update` runs the biLM over the batch and hands the layers to each listener
  (`receive`); the listener's backprop sends gradients back only when grad_factor != 0;
- prediction: the listener takes the layers `Elmo.set_annotations` kept in memory for the docs
  it has just processed (released once every listener has read them).

A doc found in neither place (the `elmo` component disabled, a doc processed twice, the sample
docs of `initialize`) is run through the linked `elmo` component's biLM: same vectors, more time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats3d

from .bilm import ElmoLayers

UpstreamBackprop = Callable[[list[tuple[Doc, Floats3d]]], None]


class UpstreamLink:
    """A weak link to the `elmo` component (no reference cycle keeps a pipeline alive).

    It pickles as the component itself: pickling a pipeline stores each object once, so the copy
    links to the copied component (nlp.pipe(n_process>1) under spawn or forkserver).
    """

    def __init__(self, component: Any = None) -> None:
        self._ref = None if component is None else weakref.ref(component)

    def __call__(self) -> Any:
        return None if self._ref is None else self._ref()

    def __reduce__(self):
        return (UpstreamLink, (self(),))


class ElmoListener(Model):
    """Stands in for the `elmo` component inside a downstream model: List[Doc] -> ElmoLayers."""

    name = "elmo_listener"

    def __init__(self, upstream_name: str = "*", grad_factor: float = 0.0) -> None:
        super().__init__(
            self.name,
            _forward,
            dims={"nL": None, "nO": None},
            attrs={"upstream_name": upstream_name, "grad_factor": float(grad_factor)},
        )
        self._received: dict[int, tuple[Doc, Floats3d]] = {}
        self._backprop: UpstreamBackprop | None = None
        self._upstream = UpstreamLink()

    @property
    def upstream_name(self) -> str:
        return self.attrs["upstream_name"]

    @property
    def grad_factor(self) -> float:
        return self.attrs["grad_factor"]

    def attach(self, component: Any) -> None:
        """Link to an `elmo` component (called by its add_listener) and take its dims."""
        self._upstream = UpstreamLink(component)
        bilm = component.model
        for name in ("nL", "nO"):
            if not bilm.has_dim(name):
                continue  # weights not read yet (pipeline being loaded): from_disk sets them
            value = bilm.get_dim(name)
            if self.has_dim(name) and self.get_dim(name) != value:
                raise ValueError(
                    f"this ElmoListener was trained on an ELMo model with {name}={self.get_dim(name)}, "
                    f"but component '{component.name}' has {name}={value}"
                )
            self.set_dim(name, value)

    def receive(self, docs: list[Doc], layers: ElmoLayers, backprop: UpstreamBackprop | None) -> None:
        """Take the upstream's output for a training batch (and how to send gradients back)."""
        self._received = {id(doc): (doc, x) for doc, x in zip(docs, layers)}
        self._backprop = backprop

    def clear(self) -> None:
        self._received = {}
        self._backprop = None

    def upstream(self) -> Any:
        component = self._upstream()
        if component is None:
            named = "" if self.upstream_name == "*" else (
                f" It listens to the one named '{self.upstream_name}' (its upstream setting; '*' = any)."
            )
            raise ValueError(
                f"ElmoListener (upstream '{self.upstream_name}') has no ELMo output for these docs and is "
                f"not linked to an 'elmo' component: add one before the component that uses this "
                f"listener, e.g. nlp.add_pipe('elmo', first=True).{named}"
            )
        return component


def _forward(model: ElmoListener, docs: list[Doc], is_train: bool) -> tuple[ElmoLayers, Callable]:
    received = model._received if is_train else {}
    layers: list[Floats3d | None] = []
    from_batch: list[bool] = []
    for doc in docs:
        hit = received.get(id(doc))
        # hit[1]: this doc's layers as the batch was read; a doc retokenized since has other tokens
        ok = hit is not None and hit[0] is doc and hit[1].shape[1] == len(doc)
        layers.append(hit[1] if ok else None)
        from_batch.append(ok)
    missing = [i for i, x in enumerate(layers) if x is None]
    if missing:
        for i, x in zip(missing, model.upstream().layers_for([docs[i] for i in missing])):
            layers[i] = x
    upstream_backprop = model._backprop if is_train else None

    def backprop(d_layers: ElmoLayers) -> list[Doc]:
        if upstream_backprop is not None and d_layers and model.grad_factor != 0:
            upstream_backprop(
                [(doc, d * model.grad_factor) for doc, d, ok in zip(docs, d_layers, from_batch) if ok]
            )
        model.clear()  # the batch is done with: free it
        return []

    return layers, backprop
