"""Small pipelines for the tests: an `elmo` component and tiny downstream models that listen to it.

Imported by the test modules (pytest puts tests/ on sys.path); no tests here.
"""

from __future__ import annotations

import spacy


def listener(grad_factor: float = 0.0, **settings) -> dict:
    """Config of a spacy-elmo.ElmoListener.v1 (no dropout, frozen biLM unless grad_factor != 0)."""
    return {"@architectures": "spacy-elmo.ElmoListener.v1", "upstream": "elmo", "dropout": 0.0, "grad_factor": grad_factor, **settings}


def ner_model(tok2vec: dict) -> dict:
    """Config of a small transition-based NER model on top of `tok2vec`."""
    return {"@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
            "hidden_width": 16, "maxout_pieces": 2, "use_upper": True, "nO": None, "tok2vec": tok2vec}


def elmo_nlp(model_dir: str, **elmo_settings) -> spacy.Language:
    """A blank English pipeline with just the `elmo` component (no similarity hooks) reading model_dir."""
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir, "similarity_hooks": False, **elmo_settings})
    return nlp
