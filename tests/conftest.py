"""Shared fixtures for the test suite.

- `shared_dir`: the `../shared` folder next to the repository (fixtures and data that are not
  part of the repo; never copied into it).
- `fixture_dir`: the AllenNLP reference files (`../shared/fixtures/allennlp_elmo`); tests that use
  it are skipped when it is absent.
- `tiny_options`, `tiny_bilm`, `make_bilm`: a small biLM with random weights (seeded), for tests
  that need a model but no reference outputs.
- `model_dir`: `make_bilm()`'s biLM saved as a model directory, for the component and its listeners.
- `single_thread`: runs a test with one torch thread (opt in with
  `pytestmark = pytest.mark.usefixtures("single_thread")`). The biLM tests run many tiny ops, for
  which a second thread gains nothing, and on a busy 2-core machine thread hand-offs made them
  10x slower.
- `default_allocator` (autouse): `spacy-elmo pretrain` switches its own process's allocator to heap
  reuse (spacy_elmo/pretrain/memory.py); the CLI tests run it inside pytest's process, which keeps
  glibc's defaults for the tests after them. test_pretrain_memory.py tests the real switch, in
  subprocesses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import torch

from spacy_elmo.bilm import BiLM, CharCnnOptions, ElmoOptions, LstmOptions, save_model_dir

# SPACY_ELMO_SHARED points elsewhere (e.g. from a second worktree, whose ../shared is not there).
SHARED_DIR = Path(os.environ.get("SPACY_ELMO_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
FIXTURE_SUBDIR = Path("fixtures") / "allennlp_elmo"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` (may be absent: tests that need files in it skip themselves)."""
    return SHARED_DIR


@pytest.fixture(scope="session")
def fixture_dir(shared_dir: Path) -> Path:
    """The AllenNLP ELMo reference files; skips the test when the folder is absent."""
    path = shared_dir / FIXTURE_SUBDIR
    if not path.is_dir():
        pytest.skip("../shared/fixtures/allennlp_elmo is absent: parity tests need the AllenNLP reference files")
    return path


@pytest.fixture(scope="session")
def efml_dir(shared_dir: Path) -> Path:
    """The ELMoForManyLangs fixture (a random-weight model in the released format, with the package's
    outputs); skips the test when the folder is absent."""
    path = shared_dir / "fixtures" / "elmoformanylangs"
    if not path.is_dir():
        pytest.skip("../shared/fixtures/elmoformanylangs is absent: the ELMoForManyLangs tests need it")
    return path


@pytest.fixture(autouse=True)
def default_allocator(request, monkeypatch):
    if request.module.__name__.rpartition(".")[2] == "test_pretrain_memory":
        return
    from spacy_elmo.pretrain import memory

    monkeypatch.setattr(memory, "reuse_freed_memory", lambda: False)


@pytest.fixture
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _tiny_options() -> ElmoOptions:
    return ElmoOptions(
        char_cnn=CharCnnOptions(
            embedding_dim=4,
            filters=((1, 4), (2, 4), (3, 8)),
            n_highway=1,
            activation="relu",
            n_characters=262,
        ),
        lstm=LstmOptions(
            n_layers=2,
            dim=16,
            projection_dim=8,
            cell_clip=3.0,
            proj_clip=3.0,
            use_skip_connections=True,
        ),
    )


def random_bilm(options: ElmoOptions, seed: int = 0, stateful: bool = False) -> BiLM:
    """A BiLM whose every parameter (biases included) is random, so that no part of the model is
    trivially zero or one, scaled by fan-in so that activations stay of order 1 (as in a trained
    model; float32 tolerances like 1e-6 are meaningful only then). Row 0 of the character
    embedding (batch padding) stays zero."""
    generator = torch.Generator().manual_seed(seed)
    model = BiLM(options, stateful=stateful)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 or name.endswith("bias"):
                std = 0.5  # biases (the LSTM's includes the forget gate)
            elif name.endswith("char_embed.weight"):
                std = 1.0
            elif param.dim() == 3 and "convolutions" in name:  # (n_filters, char_dim, width)
                std = (param.shape[1] * param.shape[2]) ** -0.5
            else:  # x @ W layout: (..., fan_in, fan_out)
                std = param.shape[-2] ** -0.5
            param.copy_(torch.randn(param.shape, generator=generator) * std)
        model.char_encoder.char_embed.weight[0].zero_()
    return model.eval()


@pytest.fixture
def tiny_options() -> ElmoOptions:
    """A small valid architecture: 3 layers of width 16, 16 CNN filters, one highway layer."""
    return _tiny_options()


@pytest.fixture
def make_bilm() -> Callable[..., BiLM]:
    """Factory: make_bilm(options=None, seed=0, stateful=False) -> a random-weight BiLM."""

    def make(options: ElmoOptions | None = None, seed: int = 0, stateful: bool = False) -> BiLM:
        return random_bilm(options or _tiny_options(), seed=seed, stateful=stateful)

    return make


@pytest.fixture
def tiny_bilm(tiny_options: ElmoOptions) -> BiLM:
    """A stateless random-weight biLM of `tiny_options`, in eval mode."""
    return random_bilm(tiny_options, seed=0)


@pytest.fixture
def model_dir(make_bilm, tmp_path) -> str:
    """A model directory (options.json + weights.hdf5) holding `make_bilm()`'s tiny biLM."""
    return str(save_model_dir(make_bilm(), tmp_path / "model"))
