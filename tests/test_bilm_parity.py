"""Parity with the reference outputs of the original TensorFlow biLM (bilm-tf), as shipped with
AllenNLP's test fixtures in ../shared/fixtures/allennlp_elmo (see PROVENANCE.md there).

Skipped when the fixture folder is absent. Nothing here is copied into the repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo.bilm import BOS_TOKEN, EOS_TOKEN, BiLM, batch_to_ids, load_bilm, token_to_char_ids

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("single_thread")]

TOLERANCE = 1e-5
N_BATCHES = 10
N_LISTS = 3


@dataclass
class Reference:
    options_file: Path
    weight_file: Path
    vocab: list[str]
    token_embeddings: np.ndarray  # (458, 16)
    sentences: list[list[str]]  # the 3 lists of 10 sentences, not yet split
    top_layers: list[list[np.ndarray]]  # [list k][sentence i] -> (n_tokens, 32)

    def batch(self, i: int) -> list[list[str]]:
        """Batch i: sentence i of list 0, 1 and 2, split on whitespace."""
        return [self.sentences[k][i].split() for k in range(N_LISTS)]


@pytest.fixture(scope="module")
def reference(fixture_dir: Path) -> Reference:
    vocab = (fixture_dir / "vocab_test.txt").read_text(encoding="utf-8").split("\n")
    with h5py.File(fixture_dir / "elmo_token_embeddings.hdf5", "r") as f:
        token_embeddings = f["embedding"][...]
    sentences = json.loads((fixture_dir / "sentences.json").read_text(encoding="utf-8"))
    top_layers = []
    for k in range(N_LISTS):
        with h5py.File(fixture_dir / f"lm_embeddings_{k}.hdf5", "r") as f:
            # (2, n_tokens, 16): forward and backward, side by side on the last axis.
            top_layers.append([np.concatenate([f[str(i)][0], f[str(i)][1]], axis=-1) for i in range(N_BATCHES)])
    return Reference(
        options_file=fixture_dir / "options.json",
        weight_file=fixture_dir / "lm_weights.hdf5",
        vocab=vocab,
        token_embeddings=token_embeddings,
        sentences=sentences,
        top_layers=top_layers,
    )


def load(reference: Reference, stateful: bool) -> BiLM:
    return load_bilm(options_file=reference.options_file, weight_file=reference.weight_file, stateful=stateful)


def top_layer(model: BiLM, batch: list[list[str]]) -> np.ndarray:
    with torch.no_grad():
        return model(batch_to_ids(batch)).layers[-1].numpy()


def batch_differences(reference: Reference, i: int, top: np.ndarray) -> list[float]:
    """Max |ours - reference| for each row of batch i (checking the shapes on the way)."""
    batch = reference.batch(i)
    diffs = []
    for k, sentence in enumerate(batch):
        expected = reference.top_layers[k][i]
        assert expected.shape == (len(sentence), 32), (i, k, expected.shape)
        got = top[k, : len(sentence)]
        diffs.append(float(np.abs(got - expected).max()))
        # Positions past the sentence are padding: zero.
        assert not top[k, len(sentence) :].any()
    return diffs


# ---- the data itself -----------------------------------------------------------------------------


def test_reference_data_is_as_described(reference):
    assert len(reference.vocab) == 458
    assert reference.token_embeddings.shape == (458, 16)
    assert all(token for token in reference.vocab), "empty line in vocab_test.txt"
    assert {BOS_TOKEN, EOS_TOKEN, "<UNK>"} <= set(reference.vocab)
    assert [len(sentences) for sentences in reference.sentences] == [N_BATCHES] * N_LISTS


# ---- the character encoder -----------------------------------------------------------------------


def test_char_encoder_matches_reference_token_embeddings(reference):
    model = load(reference, stateful=False)
    ids = torch.tensor([token_to_char_ids(token) for token in reference.vocab]).unsqueeze(0)  # (1, 458, 50)
    with torch.no_grad():
        encoded = model.char_encoder(ids)[0].numpy()
    diff = np.abs(encoded - reference.token_embeddings).max(axis=-1)
    worst = int(diff.argmax())
    assert diff.max() <= TOLERANCE, f"token {reference.vocab[worst]!r} (row {worst}) is off by {diff.max():.3g}"


def test_layer0_of_the_bilm_matches_reference_token_embeddings(reference):
    # Layer 0 is context-free: the whole vocabulary as one "sentence" gives each token's embedding,
    # twice (forward and backward halves).
    model = load(reference, stateful=False)
    with torch.no_grad():
        layer0 = model(batch_to_ids([reference.vocab])).layers[0][0].numpy()  # (458, 32)
    for half in (layer0[:, :16], layer0[:, 16:]):
        np.testing.assert_allclose(half, reference.token_embeddings, rtol=0, atol=TOLERANCE)


def test_sentence_markers_match_reference_rows(reference):
    model = load(reference, stateful=False)
    for marker in (BOS_TOKEN, EOS_TOKEN):
        row = reference.vocab.index(marker)
        ids = torch.tensor([token_to_char_ids(marker)]).unsqueeze(0)
        with torch.no_grad():
            encoded = model.char_encoder(ids)[0, 0].numpy()
        np.testing.assert_allclose(encoded, reference.token_embeddings[row], rtol=0, atol=TOLERANCE)


# ---- the full biLM -------------------------------------------------------------------------------


def test_top_layer_matches_reference_in_stateful_mode(reference):
    model = load(reference, stateful=True)
    failures = []
    for i in range(N_BATCHES):
        diffs = batch_differences(reference, i, top_layer(model, reference.batch(i)))
        failures += [(i, k, d) for k, d in enumerate(diffs) if not d <= TOLERANCE]
    assert not failures, f"(batch, list, max abs difference) beyond {TOLERANCE}: {failures}"


def test_first_batch_matches_reference_in_stateless_mode(reference):
    model = load(reference, stateful=False)
    diffs = batch_differences(reference, 0, top_layer(model, reference.batch(0)))
    assert max(diffs) <= TOLERANCE, diffs


def test_stateless_mode_does_not_reproduce_later_batches(reference):
    # The reference carried LSTM state between batches; without it, every later batch is off.
    # (This proves that the stateful test above really exercises the carried state.)
    model = load(reference, stateful=False)
    for i in range(1, N_BATCHES):
        diffs = batch_differences(reference, i, top_layer(model, reference.batch(i)))
        assert min(diffs) > 1e-2, f"batch {i}: stateless output matches the stateful reference: {diffs}"


def test_stateful_reset_reproduces_the_first_batch_again(reference):
    model = load(reference, stateful=True)
    for i in range(3):
        top_layer(model, reference.batch(i))
    model.reset_states()
    diffs = batch_differences(reference, 0, top_layer(model, reference.batch(0)))
    assert max(diffs) <= TOLERANCE, diffs
    diffs = batch_differences(reference, 1, top_layer(model, reference.batch(1)))
    assert max(diffs) <= TOLERANCE, diffs


def test_stateful_state_belongs_to_the_batch_row(reference):
    # Row k of each batch continues list k: feeding the lists in another row order, with the
    # reference rows permuted the same way, must still match (state follows the row, not the list
    # content or the length order the LSTM uses internally).
    model = load(reference, stateful=True)
    order = [2, 0, 1]
    for i in range(4):
        batch = reference.batch(i)
        top = top_layer(model, [batch[k] for k in order])
        for row, k in enumerate(order):
            expected = reference.top_layers[k][i]
            np.testing.assert_allclose(top[row, : len(batch[k])], expected, rtol=0, atol=TOLERANCE)
