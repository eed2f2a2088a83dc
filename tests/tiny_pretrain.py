"""A tiny pretraining setup for the tests: a config small enough to train in seconds, a corpus of
a small grammar that such a model learns quickly, helpers that run `pretrain()` on them, and the
fixtures the pretraining test modules share (import them into the module to use them).

Imported by the test modules (pytest puts tests/ on sys.path); no tests here.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from spacy_elmo.pretrain import load_config, pretrain
from spacy_elmo.pretrain.checkpoint import load_checkpoint
from spacy_elmo.pretrain.metrics import read_events

TINY_CONFIG = """
[system]
seed = 0
device = "cpu"
deterministic = true
threads = 1

[model]

[model.lstm]
n_layers = 2
dim = 32
projection_dim = 16

[model.char_cnn]
filters = [[1, 8], [2, 8], [3, 16]]
n_highway = 1

[model.char_cnn.embedding]
dim = 8

[vocab]
max_size = 100
min_count = 1

[softmax]
type = "full"
n_samples = 32
cutoffs = [15, 40]
div_value = 2.0

[training]
batch_size = 8
unroll_steps = 10
chunk_windows = 3
max_steps = 40
max_epochs = 0
optimizer = "adam"
learning_rate = 0.03
dropout = 0.1
mixed_precision = "no"
checkpoint_every = 0
log_every = 1
eval_every = 0
"""


def grammar_corpus(path: Path, n_lines: int = 300, seed: int = 0) -> Path:
    """Sentences of a small grammar (~60 words): easy to learn, so the loss must fall quickly."""
    rng = random.Random(seed)
    det = "the a every some no".split()
    adj = "red big old small happy quiet green fast lazy bright".split()
    noun = "cat dog bird fish horse mouse lion tiger bear wolf fox owl frog duck goat sheep cow pig ant bee".split()
    verb = "sees chases likes eats finds follows hears meets helps watches".split()
    prep = "near under over behind beside".split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_lines):
            words = [rng.choice(det), rng.choice(adj), rng.choice(noun), rng.choice(verb), rng.choice(det), rng.choice(noun)]
            if rng.random() < 0.5:
                words += [rng.choice(prep), rng.choice(det), rng.choice(noun)]
            f.write(" ".join(words) + " .\n")
    return path


def write_config(directory: Path, corpus: Path, extra: str = "") -> Path:
    path = directory / "tiny.cfg"
    path.write_text(f'[paths]\ntrain = "{corpus}"\n' + TINY_CONFIG + extra, encoding="utf-8")
    return path


def train(config_path: Path, output: Path, resume: bool = False, **overrides) -> Path:
    config = load_config(config_path, {k.replace("__", "."): v for k, v in overrides.items()})
    return pretrain(config, output, resume=resume, progress=False)


def train_losses(output: Path) -> list[float]:
    return [e["loss"] for e in read_events(output / "metrics.jsonl") if e["event"] == "train"]


def assert_same_run(resumed: Path, reference: Path, steps: int) -> tuple[dict, dict]:
    """A resumed run and an uninterrupted one ended in the same place: step, weights, softmax and
    training curve identical. Returns both final checkpoints for further checks."""
    a = load_checkpoint(resumed / "checkpoints" / "last.pt")
    b = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == steps
    for part in ("model", "softmax"):
        for name, value in b[part].items():
            assert torch.equal(a[part][name], value), f"{part}.{name}"
    assert train_losses(resumed) == train_losses(reference)
    return a, b


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return grammar_corpus(tmp_path_factory.mktemp("corpus") / "train.txt")


@pytest.fixture(scope="module")
def dev_corpus(tmp_path_factory) -> Path:
    return grammar_corpus(tmp_path_factory.mktemp("dev") / "dev.txt", n_lines=40, seed=1)


@pytest.fixture(autouse=True)
def restore_torch_globals():
    """Training sets threads and deterministic mode process-wide: put them back for other tests."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def free_port() -> int:
    """A TCP port nobody listens on, for a process group's MASTER_PORT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(worker: Callable, world_size: int, *args, timeout: float) -> None:
    """Run worker(rank, world_size, port, *args) in world_size processes, as torchrun would; fail
    the test (killing them) if they have not all finished after `timeout` seconds."""
    context = mp.spawn(worker, args=(world_size, free_port(), *args), nprocs=world_size, join=False)
    deadline = time.time() + timeout
    while not context.join(timeout=5):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"distributed training did not finish in {timeout:g} s")
