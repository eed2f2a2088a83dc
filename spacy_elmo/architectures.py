"""Registered architectures (`spacy_architectures` entry point; also imported by the component).

    [components.ner.model.tok2vec]
    @architectures = "spacy-elmo.ElmoListener.v1"        # ELMo alone, or concatenated with a tok2vec

    [components.ner.model.tok2vec.embed]
    @architectures = "spacy-elmo.ElmoEmbed.v1"           # ELMo at the input of the task's encoder
"""

from __future__ import annotations

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Maxout, Model, chain, concatenate, with_array
from thinc.types import Floats2d

from .layers.listener import ElmoListener
from .layers.mix import ElmoScalarMix


@registry.architectures("spacy-elmo.ElmoListener.v1")
def elmo_listener_v1(
    upstream: str = "*",
    mix_weights: list[float] | None = None,
    gamma: float = 1.0,
    layer_norm: bool = False,
    dropout: float = 0.5,
    grad_factor: float = 0.0,
) -> Model[list[Doc], list[Floats2d]]:
    """A tok2vec layer that reads the `elmo` component's layers and learns this task's own mix.

    Output per doc: (len(doc), dim) = dropout(gamma * sum_j softmax(w)_j * layer_j), with w and gamma
    learned by the downstream component (Peters et al. 2018, eq. 1). The biLM runs once, in the
    `elmo` component, however many components listen to it.

    upstream (str): name of the `elmo` component to listen to; "*" = any.
    mix_weights (list[float] | None): starting un-normalised weights w, one per layer
        (n_layers + 1); null = zeros, an equal-weight average.
    gamma (float): starting value of the scale gamma.
    layer_norm (bool): normalise each layer (per doc, over its tokens and features) before mixing.
    dropout (float): dropout on the mixed vectors during training. Fixed here: spaCy's
        [training] dropout does not override it.
    grad_factor (float): 0 keeps the biLM frozen (the default, as in the paper). Non-zero
        multiplies the gradients sent back into the biLM, which is then fine-tuned (slow, memory-hungry).
    """
    listener = ElmoListener(upstream_name=upstream, grad_factor=grad_factor)
    mix = ElmoScalarMix(
        initial_weights=mix_weights,
        gamma=gamma,
        layer_norm=layer_norm,
        dropout=dropout,
        grad_to_input=grad_factor != 0,
    )
    model = chain(listener, mix)
    model.init = _init_listener_mix
    model.set_ref("listener", listener)  # spaCy's textcat looks here for the width
    return model


@registry.architectures("spacy-elmo.ElmoEmbed.v1")
def elmo_embed_v1(
    embed: Model[list[Doc], list[Floats2d]],
    elmo: Model[list[Doc], list[Floats2d]],
    width: int,
    maxout_pieces: int = 3,
) -> Model[list[Doc], list[Floats2d]]:
    """ELMo joined to a task's own word embeddings, as the `embed` of spacy.Tok2Vec.v2.

    Peters et al. 2018 (section 3.3) concatenate the ELMo vector with the task model's own
    context-free token vector and feed the result to the task's contextual encoder, which can then
    combine the ELMo vectors of neighbouring words. Here:
    Maxout(concatenate(embed, elmo)) -> (n_tokens, width), the input the encoder expects.

    embed (Model[List[Doc], List[Floats2d]]): the task's own embeddings (e.g. spacy.MultiHashEmbed.v2).
    elmo (Model[List[Doc], List[Floats2d]]): the ELMo vectors, a spacy-elmo.ElmoListener.v1.
    width (int): output width; the encoder's width.
    maxout_pieces (int): pieces of the Maxout projection.
    """
    project = Maxout(nO=width, nP=maxout_pieces, dropout=0.0, normalize=True)
    model = chain(concatenate(embed, elmo), with_array(project))
    model.set_ref("embed", embed)
    model.set_ref("elmo", elmo)
    return model


def _init_listener_mix(model: Model, X: list[Doc] | None = None, Y=None) -> Model:
    """Take nL and nO from the linked `elmo` component; run it on X only if they are unknown."""
    listener, mix = model.layers
    for name in ("nL", "nO"):
        if listener.has_dim(name) and not mix.has_dim(name):
            mix.set_dim(name, listener.get_dim(name))
    sample = None
    if X is not None and not (mix.has_dim("nL") and mix.has_dim("nO")):
        sample = listener.predict(X)
    mix.initialize(X=sample)
    model.set_dim("nO", mix.get_dim("nO"))
    return model
