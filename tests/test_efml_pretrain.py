"""Fine-tuning a converted ELMoForManyLangs model with `pretrain --init-from` (issue 23).

The converted fixture (own char vocabulary + word vectors, no softmax) is trained a few steps on a
tiny text: the batches and the held-out evaluation use the model's own ids, a fresh softmax is
counted from the corpus, the exported model keeps chars.json / words.json and loads again, and a
run resumed from its checkpoint ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch

from spacy_elmo.bilm import load_bilm
from spacy_elmo.bilm.efml import convert_efml
from spacy_elmo.pretrain.batches import WindowBatcher
from spacy_elmo.pretrain.checkpoint import load_checkpoint
from spacy_elmo.pretrain.corpus import CorpusSettings, TextStream
from spacy_elmo.pretrain.export import load_language_model
from spacy_elmo.pretrain.metrics import read_events
from spacy_elmo.pretrain.vocab import build_vocab, count_tokens
from tiny_pretrain import assert_same_run, restore_torch_globals, train, write_config  # noqa: F401 (fixture)

TEXT = [
    "the bank of the river .",
    "Paris is in a bank of money .",
    "the river is near the bank .",
    "a zebra eats grass in Paris .",  # "zebra", "eats", "grass" are not in the fixture's words
] * 20


@pytest.fixture(scope="module")
def converted(efml_dir, tmp_path_factory) -> Path:
    return convert_efml(efml_dir, tmp_path_factory.mktemp("efml") / "model", meta={"lang": "xx"})


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("\n".join(TEXT) + "\n", encoding="utf-8")
    return path


def finetune(tmp_path: Path, converted: Path, text: Path, out: str, **overrides) -> Path:
    config = write_config(tmp_path, text)
    settings = {"training__max_steps": 12, "training__batch_size": 4, "training__unroll_steps": 6,
                "training__learning_rate": 0.01, "paths__init_from": str(converted), **overrides}
    return train(config, tmp_path / out, **settings)


def test_batches_use_the_models_own_ids(converted, text):
    bilm = load_bilm(model=converted)
    width = bilm.options.ids_per_token
    assert width == bilm.options.char_cnn.max_characters_per_token + 1  # + the word id
    vocab = build_vocab(count_tokens(TextStream([text], str.split, CorpusSettings(), repeat=False)))
    batcher = WindowBatcher(TextStream([text], str.split, CorpusSettings()), vocab, 2, 5, 2, token_ids=bilm.token_ids)
    batch = batcher.next_batch()
    assert batch.char_ids.shape == (2, 2, 5, width)
    rows = batch.char_ids[0, 0]
    bos, eos = bilm.marker_rows
    assert rows[0].tolist() == bos  # the stream's <S> is the model's own begin-of-sentence row
    assert rows[1:6].tolist() == bilm.batch_to_ids([TEXT[0].split()[:4]])[0].tolist()
    unknown = bilm.options.word_embedding.unknown + 1
    zebra = bilm.token_ids.token_ids("zebra")
    assert zebra[-1] == unknown and bilm.token_ids.token_ids("bank")[-1] != unknown
    assert eos[-1] != unknown


def test_finetuned_converted_model_loads_and_embeds(tmp_path, converted, text):
    out = finetune(tmp_path, converted, text, "tuned", paths__dev=str(text), training__eval_every=6,
                   training__eval_max_sentences=20)
    events = read_events(tmp_path / "tuned" / "metrics.jsonl")
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    assert min(losses[-3:]) < losses[0]
    evals = [e for e in events if e["event"] == "eval"]
    assert evals and all(math.isfinite(e["ppl"]) for e in evals)

    # A fresh softmax over the new corpus's words; the biLM moved away from the converted weights.
    lm = load_language_model(out)
    assert lm.softmax is not None and "zebra" in lm.vocab.tokens
    before = load_bilm(model=converted).state_dict()
    after = lm.bilm.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # The word table is not grown: same shape, the corpus's new words read as the unknown word.
    name = next(k for k in before if "word_embed" in k)
    assert after[name].shape == before[name].shape

    # The vocabulary files and options round-trip.
    for file in ("chars.json", "words.json"):
        assert json.loads((out / file).read_text(encoding="utf-8")) == json.loads((converted / file).read_text(encoding="utf-8"))
    assert json.loads((out / "options.json").read_text()) == json.loads((converted / "options.json").read_text())
    assert json.loads((out / "meta.json").read_text())["init_from"] == str(converted)

    reloaded = load_bilm(model=out)
    assert reloaded.token_ids.chars == lm.bilm.token_ids.chars and reloaded.token_ids.words == lm.bilm.token_ids.words
    nlp = spacy.blank("xx")
    nlp.add_pipe("elmo", config={"model": str(out)})
    vectors = np.asarray(nlp("Paris is a zebra bank .")._.elmo)
    assert vectors.shape == (6, reloaded.output_dim) and np.isfinite(vectors).all()


def test_resume_of_a_finetuned_converted_model_is_exact(tmp_path, converted, text):
    common = {"training__checkpoint_every": 3, "softmax__type": "sampled", "softmax__n_samples": 8}
    finetune(tmp_path, converted, text, "resumed", training__max_steps=6, **common)
    # The architecture comes from the checkpoint, not from the config's [model] nor --init-from's folder.
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["architecture"]["words"] is not None
    finetune(tmp_path, converted, text, "resumed", training__max_steps=10, resume=True, **common)
    finetune(tmp_path, converted, text, "reference", training__max_steps=10, **common)
    resumed, reference = assert_same_run(tmp_path / "resumed", tmp_path / "reference", 10)
    assert resumed["ranks"][0]["data"] == reference["ranks"][0]["data"]


def test_leg_resume_needs_neither_the_checkpoint_nor_the_converted_folder(tmp_path, converted, text):
    """A fresh machine with only model/ and leg_state.json: the architecture and vocabularies come
    from model/ (the converted folder is gone)."""
    source = tmp_path / "efml-copy"
    shutil.copytree(converted, source)
    finetune(tmp_path, source, text, "legs", training__max_steps=4)
    shutil.rmtree(tmp_path / "legs" / "checkpoints")
    shutil.rmtree(source)
    out = finetune(tmp_path, source, text, "legs", training__max_steps=7, resume=True)
    assert json.loads((out / "meta.json").read_text())["steps"] == 7
    assert load_bilm(model=out).token_ids.words == load_bilm(model=converted).token_ids.words
