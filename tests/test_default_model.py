"""The English model shipped inside the package works out of the box."""

from __future__ import annotations

import json

import pytest
import spacy

from spacy_elmo.bilm import load_bilm
from spacy_elmo.default_model import DEFAULT_MODEL_DIR, default_model_dir

pytestmark = pytest.mark.usefixtures("single_thread")


def test_default_model_is_shipped_with_its_card():
    path = default_model_dir()
    assert path == DEFAULT_MODEL_DIR
    bilm = load_bilm(path)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    card = (path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert meta["steps"] > 0 and meta["corpus"]
    assert f"{sum(p.numel() for p in bilm.parameters()):,}" in card
    assert bilm.output_dim == 2 * bilm.options.lstm.projection_dim


def test_add_pipe_without_config_uses_the_default_model_and_separates_senses():
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    river = nlp("They had a picnic on the bank of the river .")
    money1 = nlp("The bank raised its interest rates again .")
    money2 = nlp("The bank cut its interest rates again .")
    assert river._.elmo.shape == (len(river), load_bilm(default_model_dir()).output_dim)
    same_sense = money1[1].similarity(money2[1])
    other_sense = money1[1].similarity(river[6])
    assert river[6].text == money1[1].text == "bank"
    assert same_sense > other_sense
    # Same word, same context: identical vectors.
    again = nlp("The bank raised its interest rates again .")
    assert (again._.elmo == money1._.elmo).all()
