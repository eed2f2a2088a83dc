"""The GPU paths, on a CUDA device: the `elmo` component and its listeners under spaCy's GPU ops,
`spacy train --gpu-id`, `embed` and `evaluate --device`, and pretraining in float32, bf16 and fp16
with exact resuming, and over NCCL with two GPUs.

Without a GPU (CI, the 2-core machines this project is built on) every test here skips.
`benchmarks/gpu_check.sh` runs them, with the GPU timings, in one go on a GPU machine.
A dry run of the test logic on the CPU: `SPACY_ELMO_TEST_DEVICE=cpu pytest tests/test_gpu.py`
(the tests that need spaCy's GPU ops or two GPUs skip then).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import spacy
import torch
from spacy.training import Example
from typer.testing import CliRunner

from elmo_pipelines import elmo_nlp, listener, ner_model
from spacy_elmo.bilm import load_bilm
from spacy_elmo.cli import app
from spacy_elmo.pretrain import PretrainSettings, load_config
from spacy_elmo.pretrain.checkpoint import load_checkpoint
from spacy_elmo.pretrain.distributed import init_distributed, shutdown
from spacy_elmo.pretrain.train import Trainer
from tiny_pretrain import (  # noqa: F401 (corpus, dev_corpus, restore_torch_globals: fixtures)
    assert_same_run, corpus, dev_corpus, free_port, run_processes, restore_torch_globals, train, train_losses, write_config,
)

# cuBLAS reads this when it starts, before the first test here runs on the GPU: the deterministic
# resume test needs it (pretraining sets it too, but only once it starts, which can be too late).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
DEVICE = os.environ.get("SPACY_ELMO_TEST_DEVICE", "cuda")
ON_GPU = torch.device(DEVICE).type == "cuda"
CONFIGS = Path(__file__).parents[1] / "configs"

pytestmark = pytest.mark.skipif(
    ON_GPU and not torch.cuda.is_available(),
    reason="needs a CUDA GPU (torch sees none); benchmarks/gpu_check.sh runs these on a GPU machine",
)
needs_spacy_gpu = pytest.mark.skipif(not ON_GPU, reason="spaCy's GPU ops need a CUDA device")

TEXTS = ["I sat on the bank of the river .", "The bank lent me money .", "", "Zürich ’s naïve café !"]
DATA = [
    ("Alice met Bob in Paris .", [(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")]),
    ("Bob hates London .", [(0, 3, "PER"), (10, 16, "LOC")]),
    ("Paris is lovely in spring .", [(0, 5, "LOC")]),
]
runner = CliRunner()


def close(a: np.ndarray, b: np.ndarray, rel: float = 1e-3) -> bool:
    """Equal up to GPU float rounding (cuDNN convolutions may use TF32): rel of the largest value."""
    return a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= rel * max(1.0, float(np.abs(b).max(initial=0.0)))


@pytest.fixture
def spacy_on_gpu():
    """spaCy/Thinc on the GPU (CupyOps, as `spacy train --gpu-id 0` sets up), put back afterwards."""
    if not ON_GPU:
        pytest.skip("spaCy's GPU ops need a CUDA device")
    pytest.importorskip("cupy", reason="spaCy's GPU ops need CuPy")
    spacy.require_gpu(0)
    try:
        yield
    finally:
        spacy.require_cpu()


def ner_nlp(model_dir: str, grad_factor: float = 0.0, **elmo_settings) -> spacy.Language:
    nlp = elmo_nlp(model_dir, **elmo_settings)
    nlp.add_pipe("ner", config={"model": ner_model(listener(grad_factor))})
    return nlp


def examples(nlp: spacy.Language) -> list[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in DATA]


def bilm_device(nlp: spacy.Language) -> torch.device:
    return next(nlp.get_pipe("elmo").get_bilm().parameters()).device


# ---- the component ------------------------------------------------------------------------------


@pytest.mark.parametrize("device", [DEVICE, f"{DEVICE}:0" if ON_GPU else DEVICE])
def test_component_on_the_device_matches_the_cpu(model_dir, device):
    on_cpu, on_device = spacy.blank("en"), spacy.blank("en")
    on_cpu.add_pipe("elmo", config={"model": model_dir, "device": "cpu", "all_layers": True})
    on_device.add_pipe("elmo", config={"model": model_dir, "device": device, "all_layers": True})
    assert bilm_device(on_device).type == torch.device(DEVICE).type
    for a, b in zip(on_cpu.pipe(TEXTS), on_device.pipe(TEXTS)):
        assert isinstance(b._.elmo, np.ndarray) and b._.elmo.dtype == np.float32  # on the host, for users
        assert close(b._.elmo, a._.elmo) and close(b._.elmo_layers, a._.elmo_layers), a.text
    river, money = on_device(TEXTS[0]), on_device(TEXTS[1])
    expected = on_cpu(TEXTS[0])[4].similarity(on_cpu(TEXTS[1])[1])
    assert river[4].similarity(money[1]) == pytest.approx(expected, abs=1e-3)


@needs_spacy_gpu
def test_auto_device_follows_spacy_onto_the_gpu(model_dir, spacy_on_gpu):
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir})  # device = "auto"
    doc = nlp(TEXTS[0])
    assert bilm_device(nlp).type == "cuda"
    assert isinstance(doc._.elmo, np.ndarray) and doc._.elmo.shape[0] == len(doc)
    spacy.require_cpu()
    on_cpu = spacy.blank("en")
    on_cpu.add_pipe("elmo", config={"model": model_dir})
    assert bilm_device(on_cpu).type == "cpu" and close(doc._.elmo, on_cpu(TEXTS[0])._.elmo)


@needs_spacy_gpu
@pytest.mark.parametrize("cache_mb", [0, 64])
def test_listeners_train_on_the_gpu_and_the_pipeline_loads_on_the_cpu(model_dir, spacy_on_gpu, tmp_path, cache_mb):
    nlp = ner_nlp(model_dir, cache_mb=cache_mb)
    optimizer = nlp.initialize(lambda: examples(nlp))
    bilm = nlp.get_pipe("elmo").get_bilm()
    before = {k: v.detach().cpu().clone() for k, v in bilm.state_dict().items()}
    losses = [nlp.update(examples(nlp), sgd=optimizer, losses={})["ner"] for _ in range(12)]
    assert all(math.isfinite(x) for x in losses), losses
    assert sum(losses[-3:]) < sum(losses[1:4]), losses  # learning (the first update's loss is lower: untrained output layer)
    assert bilm_device(nlp).type == "cuda"
    for key, value in bilm.state_dict().items():  # frozen: the listener learns only its mix
        assert torch.equal(value.cpu(), before[key]), key
    (mix,) = [node for node in nlp.get_pipe("ner").model.walk() if node.name == "elmo_scalar_mix"]
    w, gamma = (nlp.get_pipe("ner").model.ops.to_numpy(mix.get_param(name)) for name in ("w", "gamma"))
    assert np.abs(w).max() > 0 or gamma[0] != 1.0
    vectors = nlp(DATA[0][0])._.elmo
    nlp.to_disk(tmp_path / "pipeline")
    spacy.require_cpu()
    loaded = spacy.load(tmp_path / "pipeline")
    assert bilm_device(loaded).type == "cpu"
    (loaded_mix,) = [node for node in loaded.get_pipe("ner").model.walk() if node.name == "elmo_scalar_mix"]
    assert np.array_equal(loaded_mix.get_param("w"), w) and np.array_equal(loaded_mix.get_param("gamma"), gamma)
    assert close(loaded(DATA[0][0])._.elmo, vectors)


@needs_spacy_gpu
def test_grad_factor_fine_tunes_the_bilm_on_the_gpu(model_dir, spacy_on_gpu):
    nlp = ner_nlp(model_dir, grad_factor=1.0)
    optimizer = nlp.initialize(lambda: examples(nlp))
    bilm = nlp.get_pipe("elmo").get_bilm()
    before = {k: v.detach().clone() for k, v in bilm.state_dict().items()}
    for _ in range(3):
        nlp.update(examples(nlp), sgd=optimizer)
    changed = [k for k, v in bilm.state_dict().items() if not torch.equal(v, before[k])]
    assert "lstm.layers.1.W_proj" in changed and "char_encoder.W_proj" in changed
    assert all(torch.isfinite(v).all() for v in bilm.state_dict().values())


@needs_spacy_gpu
def test_spacy_train_with_gpu_id(model_dir, tmp_path):
    pytest.importorskip("cupy", reason="spacy train --gpu-id needs CuPy")
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    data = DocBin(docs=[eg.reference for eg in examples(nlp) * 3])
    data.to_disk(tmp_path / "ner.spacy")
    command = [sys.executable, "-m", "spacy", "train", str(CONFIGS / "ner_elmo.cfg"), "--output", str(tmp_path / "out"),
               "--paths.train", str(tmp_path / "ner.spacy"), "--paths.dev", str(tmp_path / "ner.spacy"),
               "--paths.elmo_model", model_dir, "--training.max_steps", "6", "--training.eval_frequency", "3",
               "--gpu-id", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "GPU" in result.stdout + result.stderr  # spaCy says which device it trains on
    loaded = spacy.load(tmp_path / "out" / "model-last")  # a GPU-trained pipeline, read on the CPU
    assert loaded.pipe_names == ["elmo", "ner"] and loaded(DATA[0][0])._.elmo.shape[0] == 6


# ---- the command line -----------------------------------------------------------------------------


def test_embed_on_the_device_writes_what_the_cpu_writes(model_dir, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(t for t in TEXTS if t) + "\n", encoding="utf-8")
    for device in ("cpu", DEVICE):
        result = runner.invoke(app, ["embed", str(source), str(tmp_path / f"{device}.hdf5"), "--model", model_dir,
                                     "--device", device])
        assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "cpu.hdf5") as cpu, h5py.File(tmp_path / f"{DEVICE}.hdf5") as dev:
        assert sorted(cpu) == sorted(dev) and len(cpu) == 4  # three sentences + sentence_to_index
        for key in cpu:
            if key != "sentence_to_index":
                assert close(dev[key][...], cpu[key][...]), key


# ---- pretraining --------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
def test_pretraining_on_the_device_learns(tmp_path, corpus, dev_corpus, precision):
    model_dir = train(write_config(tmp_path, corpus), tmp_path / "out", system__device=DEVICE,
                      training__mixed_precision=precision, paths__dev=str(dev_corpus))
    losses = train_losses(tmp_path / "out")
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.4, (first, last)
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["dev_perplexity"]["avg"] < 0.6 * meta["vocab_size"]
    # The exported weights are float32 on the host: they load and evaluate on the CPU.
    bilm = load_bilm(model=model_dir)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in bilm.parameters())
    reports = {}
    for device in ("cpu", DEVICE):
        report = tmp_path / f"ppl_{device}.json"
        result = runner.invoke(app, ["evaluate", str(model_dir), str(dev_corpus), "-o", str(report),
                                     "--device", device, "--no-progress"])
        assert result.exit_code == 0, result.output
        reports[device] = json.loads(report.read_text())["ppl"]
    assert reports[DEVICE] == pytest.approx(reports["cpu"], rel=1e-3)
    assert meta["dev_perplexity"]["avg"] == pytest.approx(reports["cpu"], rel=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resuming_on_the_device_is_exact(tmp_path, corpus, precision):
    config = write_config(tmp_path, corpus, "")
    settings = dict(system__device=DEVICE, system__deterministic=True, training__mixed_precision=precision,
                    softmax__type="sampled", training__dropout=0.2)
    train(config, tmp_path / "resumed", training__max_steps=6, **settings)
    train(config, tmp_path / "resumed", resume=True, training__max_steps=12, **settings)
    train(config, tmp_path / "reference", training__max_steps=12, **settings)
    resumed, reference = assert_same_run(tmp_path / "resumed", tmp_path / "reference", 12)
    assert resumed["scaler"] == reference["scaler"]  # fp16's loss scale carries over


def _nccl_worker(rank: int, world_size: int, port: int, config_path: str, output: str) -> None:
    """One process of a torchrun-style launch on GPU `rank`: the environment torchrun sets."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    config = load_config(config_path, {"training.max_steps": 6, "softmax.type": "sampled",
                                       "training.mixed_precision": "bf16"})
    info = init_distributed("cuda")
    try:
        assert torch.distributed.get_backend() == "nccl" and info.device == torch.device("cuda", rank)
        trainer = Trainer(PretrainSettings.from_config(config), config, Path(output), info, resume=False, progress=False)
        trainer.train()
        torch.save({k: v.detach().cpu().clone() for k, v in trainer.lm.state_dict().items()}, Path(output) / f"rank{rank}.pt")
    finally:
        shutdown(info)


@pytest.mark.skipif(not ON_GPU or torch.cuda.device_count() < 2, reason="DDP over NCCL needs two CUDA GPUs")
def test_two_gpus_over_nccl_end_with_identical_weights(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    output = tmp_path / "ddp"
    run_processes(_nccl_worker, 2, str(config), str(output), timeout=300)
    ranks = [torch.load(output / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
    assert load_checkpoint(output / "checkpoints" / "last.pt")["world_size"] == 2
    trained = load_bilm(model=output / "model").state_dict()
    for name, value in trained.items():
        assert torch.allclose(value, ranks[0][f"bilm.{name}"], atol=1e-6), name
