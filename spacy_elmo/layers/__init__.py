"""Thinc layers: the biLM wrapper, the listener and the task-specific scalar mix."""

from .bilm import ElmoBiLM, ElmoLayers, clear_token_cache, doc_rows, get_bilm, set_bilm
from .listener import ElmoListener
from .mix import ElmoScalarMix, mix_layers

__all__ = [
    "ElmoBiLM", "ElmoLayers", "ElmoListener", "ElmoScalarMix", "clear_token_cache", "doc_rows", "get_bilm",
    "mix_layers", "set_bilm",
]
