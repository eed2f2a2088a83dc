"""`spacy-elmo pretrain` end to end, on tiny models and generated corpora (CPU, a few seconds each).

Loss goes down; a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one;
two gloo processes (DistributedDataParallel) end with identical weights; dirty corpora train and
report their bad lines; missing or empty corpora fail clearly; the result loads as a model
directory and its perplexity is exact.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch
from typer.testing import CliRunner

from spacy_elmo.bilm import BiLM, ElmoOptions, batch_to_ids, load_bilm
from spacy_elmo.bilm.model import add_sentence_boundaries
from spacy_elmo.bilm.precision import native_bf16
from spacy_elmo.cli import app
from spacy_elmo.pretrain import (
    CheckpointError, ConfigError, CorpusError, PretrainSettings, Vocab, evaluate_perplexity, load_config,
)
from spacy_elmo.pretrain.checkpoint import load_checkpoint, save_checkpoint
from spacy_elmo.pretrain.distributed import init_distributed, shutdown
from spacy_elmo.pretrain.export import load_language_model
from spacy_elmo.pretrain.metrics import read_events
from spacy_elmo.pretrain.softmax import FullSoftmax
from spacy_elmo.pretrain.train import Trainer, decay_factor
from cli_output import printed
from tiny_pretrain import (  # noqa: F401 (corpus, dev_corpus, restore_torch_globals: fixtures)
    assert_same_run, corpus, dev_corpus, free_port, run_processes, grammar_corpus, restore_torch_globals, train, train_losses, write_config,
)

runner = CliRunner()


# ---- learning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("softmax", ["full", "sampled", "adaptive"])
def test_loss_decreases_within_a_few_dozen_steps(tmp_path, corpus, dev_corpus, softmax):
    config = write_config(tmp_path, corpus)
    model_dir = train(config, tmp_path / "out", softmax__type=softmax, paths__dev=str(dev_corpus))
    losses = train_losses(tmp_path / "out")
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.4, (first, last)  # nats per word (the sampled loss is an estimate, lower)
    # The held-out perplexity is exact, and well below chance (the vocabulary size; 54.6 untrained).
    meta = json.loads((model_dir / "meta.json").read_text())
    vocab_size = meta["vocab_size"]
    assert meta["steps"] == 40 and meta["perplexity_source"] == "dev (exact)"
    dev = meta["dev_perplexity"]
    assert dev["avg"] == pytest.approx((dev["fwd"] + dev["bwd"]) / 2)
    assert dev["fwd"] < 0.6 * vocab_size and dev["bwd"] < 0.6 * vocab_size, (dev, vocab_size)
    assert meta["corpus"] == [str(corpus)] and meta["corpus_stats"]["lines"] == 300


def test_outputs_model_directory_curves_and_allennlp_files(tmp_path, corpus):
    model_dir = train(write_config(tmp_path, corpus), tmp_path / "out", training__max_steps=6)
    out = tmp_path / "out"
    for name in ("config.cfg", "vocab.txt", "corpus_stats.json", "checkpoints/last.pt", "metrics.jsonl", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = read_events(out / "metrics.jsonl")
    assert [e["step"] for e in events] == list(range(1, 7))
    assert all({"loss", "fwd_ppl", "bwd_ppl", "ppl", "words_per_s", "rss_mb"} <= set(e) for e in events)
    if sys.platform == "linux":  # resident memory is logged where /proc gives it
        assert all(isinstance(e["rss_mb"], int) and e["rss_mb"] > 50 for e in events)
    # The model directory: AllenNLP's options.json + HDF5 pair, loadable by load_bilm.
    assert {p.name for p in model_dir.iterdir()} == {
        "options.json", "weights.hdf5", "meta.json", "vocab.txt", "softmax.hdf5"}
    bilm = load_bilm(model=model_dir)
    assert json.loads((model_dir / "options.json").read_text())["char_cnn"]["n_characters"] == 262
    with h5py.File(model_dir / "weights.hdf5") as f:
        assert f["char_embed"].shape == (261, 8)
        assert "RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0" in f
    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    assert checkpoint["step"] == 6
    for name, value in bilm.state_dict().items():  # the exported weights are the trained ones
        assert torch.allclose(value, checkpoint["model"][name], atol=1e-6), name
    lm = load_language_model(model_dir)
    assert lm.vocab.tokens == Vocab.from_file(out / "vocab.txt").tokens
    assert torch.equal(lm.softmax.weight, checkpoint["softmax"]["weight"])


# ---- resume ------------------------------------------------------------------------------------

KILLED_RUN = """
import sys
from spacy_elmo.pretrain import load_config, pretrain
pretrain(load_config(sys.argv[1], {"training.max_steps": 100000}), sys.argv[2], progress=False)
"""


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, corpus):
    config = write_config(tmp_path, corpus, "")
    overrides = {"softmax.type": "sampled", "training.checkpoint_every": 2, "training.dropout": 0.2}
    text = load_config(config, overrides).to_str()
    config.write_text(text)
    killed = tmp_path / "killed"
    ckpt = killed / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(config), str(killed)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not ckpt.exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, 0.3))  # land anywhere: between steps, mid-step, mid-checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved_step = load_checkpoint(ckpt)["step"]  # the last good checkpoint is never corrupted
    assert saved_step >= 2 and saved_step % 2 == 0
    total = saved_step + 6

    train(config, killed, resume=True, training__max_steps=total)
    train(config, tmp_path / "reference", training__max_steps=total)

    resumed = load_checkpoint(ckpt)
    reference = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    assert resumed["step"] == reference["step"] == total
    for part in ("model", "softmax"):
        for name, value in reference[part].items():
            assert torch.equal(resumed[part][name], value), f"{part}.{name}"
    for key, state in reference["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(resumed["optimizer"]["state"][key][name], value)
    assert resumed["ranks"][0]["data"] == reference["ranks"][0]["data"]
    # The curves line up too: every step logged once, the same losses after the resume point.
    resumed_losses = train_losses(killed)
    assert len(resumed_losses) == total
    assert resumed_losses == train_losses(tmp_path / "reference")


def test_checkpoint_is_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)

    def torch_save_dies_midway(obj, f):
        Path(f).write_bytes(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", torch_save_dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2, "weights": torch.zeros(3)}, path)
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


# ---- model-best -------------------------------------------------------------------------------


def scripted_perplexities(monkeypatch, values: list[float]) -> list[int]:
    """Make the held-out evaluations return `values` in turn (the weights still train for real);
    returns the list the evaluated steps' sentence counts are appended to."""
    import spacy_elmo.pretrain.train as train_module
    from spacy_elmo.pretrain.evaluate import evaluate_perplexity as real

    queue, counts = list(values), []

    def fake(*args, max_sentences: int = 0, **kwargs):
        result = real(*args, max_sentences=max_sentences, **kwargs)
        counts.append(max_sentences)
        ppl = queue.pop(0)
        return dataclasses.replace(result, fwd_ppl=ppl, bwd_ppl=ppl, ppl=ppl)

    monkeypatch.setattr(train_module, "evaluate_perplexity", fake)
    return counts


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_bilm(model=model_dir).state_dict()


def test_model_best_keeps_the_lowest_perplexity_model(tmp_path, corpus, dev_corpus, monkeypatch):
    config = write_config(tmp_path, corpus)
    settings = dict(paths__dev=str(dev_corpus), training__eval_every=5, training__eval_max_sentences=10)
    # Evaluations at steps 5, 10, 15, then the final model on the same 10 sentences, then on all.
    counts = scripted_perplexities(monkeypatch, [50.0, 30.0, 40.0, 35.0, 33.0])
    model_dir = train(config, tmp_path / "out", training__max_steps=20, **settings)
    assert counts == [10, 10, 10, 10, 0]
    best_dir = tmp_path / "out" / "model-best"
    selected = json.loads((best_dir / "meta.json").read_text())["selected_by"]
    assert (selected["step"], selected["ppl"], selected["sentences"]) == (10, 30.0, 10)
    assert json.loads((model_dir / "meta.json").read_text())["best_step"] == 10
    # model-best holds the weights of step 10: those of a run that stops there.
    monkeypatch.undo()
    reference = train(config, tmp_path / "ten_steps", training__max_steps=10)
    best, final = weights(best_dir), weights(model_dir)
    for name, value in weights(reference).items():
        assert torch.equal(best[name], value), name
    assert any(not torch.equal(best[name], final[name]) for name in best)
    assert load_language_model(best_dir).softmax is not None  # a full model directory: evaluate / resume from it


def test_model_best_survives_resume_and_is_replaced_only_by_a_better_model(tmp_path, corpus, dev_corpus, monkeypatch):
    config = write_config(tmp_path, corpus, "")
    config.write_text(load_config(config, {"training.checkpoint_every": 5}).to_str())
    settings = dict(paths__dev=str(dev_corpus), training__eval_every=5, training__eval_max_sentences=10)
    out = tmp_path / "out"
    scripted_perplexities(monkeypatch, [20.0, 25.0, 25.0])  # step 5; the final step 10 on 10 sentences, on all
    train(config, out, training__max_steps=10, **settings)
    selected = lambda: json.loads((out / "model-best" / "meta.json").read_text())["selected_by"]  # noqa: E731
    assert selected()["step"] == 5
    # Resumed: steps 15, 20 and 25 are worse than step 5, which only model-best/ remembers.
    scripted_perplexities(monkeypatch, [22.0, 21.0, 23.0, 23.0])
    train(config, out, resume=True, training__max_steps=25, **settings)
    assert (selected()["step"], selected()["ppl"]) == (5, 20.0)
    scripted_perplexities(monkeypatch, [18.0, 19.0, 19.0])  # step 30 is better
    train(config, out, resume=True, training__max_steps=35, **settings)
    assert (selected()["step"], selected()["ppl"]) == (30, 18.0)
    # A different eval_max_sentences makes the numbers incomparable: the next evaluation wins.
    scripted_perplexities(monkeypatch, [90.0, 90.0, 90.0])
    train(config, out, resume=True, training__max_steps=45, training__eval_every=5, training__eval_max_sentences=20,
          paths__dev=str(dev_corpus))
    assert (selected()["step"], selected()["sentences"]) == (40, 20)


def test_the_final_model_is_evaluated_once_when_eval_every_ends_on_the_last_step(tmp_path, corpus, dev_corpus, capsys):
    config = write_config(tmp_path, corpus)
    out = tmp_path / "out"
    # dev_corpus has 40 sentences, fewer than eval_max_sentences: the capped evaluation is the full one
    settings = dict(paths__dev=str(dev_corpus), training__eval_every=4, training__checkpoint_every=4)
    evals = lambda: [(e["step"], e["sentences"]) for e in read_events(out / "metrics.jsonl") if e["event"] == "eval"]  # noqa: E731
    printed_evals = lambda: [line.split(":")[0] for line in capsys.readouterr().out.splitlines()  # noqa: E731
                             if ": held-out perplexity" in line]
    train(config, out, training__max_steps=8, **settings)
    assert evals() == [(4, 40), (8, 40)]
    assert printed_evals() == ["step 4", "step 8"]
    train(config, out, resume=True, training__max_steps=12, **settings)
    assert evals() == [(4, 40), (8, 40), (12, 40)]
    assert printed_evals() == ["step 12"]
    # Resumed at its last step (as after a kill during the export): the same weights evaluated again, logged once.
    train(config, out, resume=True, training__max_steps=12, **settings)
    assert evals() == [(4, 40), (8, 40), (12, 40)]
    assert printed_evals() == ["step 12"]
    # A dev set larger than eval_max_sentences: the capped evaluation (model-best) and the full one.
    out = tmp_path / "capped"
    train(config, out, training__max_steps=4, **{**settings, "training__eval_max_sentences": 10})
    assert evals() == [(4, 10), (4, 40)]
    assert printed_evals() == ["step 4", "step 4"]


def test_no_model_best_without_periodic_evaluation(tmp_path, corpus, dev_corpus):
    train(write_config(tmp_path, corpus), tmp_path / "out", training__max_steps=4, paths__dev=str(dev_corpus))
    assert (tmp_path / "out" / "model").is_dir() and not (tmp_path / "out" / "model-best").exists()


def test_resume_refuses_what_would_not_be_the_same_run(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(config, tmp_path / "out", resume=True)
    train(config, tmp_path / "out", training__max_steps=2)
    with pytest.raises(CheckpointError, match="--resume"):
        train(config, tmp_path / "out", training__max_steps=2)
    with pytest.raises(CheckpointError, match="training.batch_size"):
        train(config, tmp_path / "out", resume=True, training__max_steps=4, training__batch_size=4)
    train(config, tmp_path / "out", resume=True, training__max_steps=4)  # a longer run is fine
    assert load_checkpoint(tmp_path / "out" / "checkpoints" / "last.pt")["step"] == 4


def test_max_minutes_ends_the_run_where_it_logs_and_a_resume_goes_on(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    out = tmp_path / "out"
    # 1e-5 minutes (0.6 ms) has passed by the first log point, step 3.
    model_dir = train(config, out, training__max_steps=40, training__max_minutes=1e-5, training__log_every=3)
    meta = json.loads((model_dir / "meta.json").read_text())
    assert (meta["steps"], meta["time_limit_reached"]) == (3, True)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    assert [e["step"] for e in read_events(out / "metrics.jsonl") if e["event"] == "train"] == [3]
    model_dir = train(config, out, resume=True, training__max_steps=7, training__max_minutes=0, training__log_every=3)
    meta = json.loads((model_dir / "meta.json").read_text())
    assert (meta["steps"], meta["time_limit_reached"]) == (7, False)
    assert [e["step"] for e in read_events(out / "metrics.jsonl") if e["event"] == "train"] == [3, 6, 7]
    # Each run (each leg) has its own time budget: a leg that follows long ones is not cut short.
    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    checkpoint["elapsed"] = 1e6  # earlier legs trained for ~11.6 days
    save_checkpoint(checkpoint, out / "checkpoints" / "last.pt")
    model_dir = train(config, out, resume=True, training__max_steps=12, training__max_minutes=10, training__log_every=3)
    meta = json.loads((model_dir / "meta.json").read_text())
    assert (meta["steps"], meta["time_limit_reached"]) == (12, False)
    # The run's total training time still adds up all legs (meta rounds to 0.1 s; this leg is shorter).
    assert meta["training_seconds"] >= 1e6
    # The time limit alone ends a run too.
    unlimited = train(config, tmp_path / "c", training__max_steps=0, training__max_minutes=1e-5, training__log_every=2)
    assert json.loads((unlimited / "meta.json").read_text())["steps"] == 2
    with pytest.raises(ConfigError, match="max_minutes must not be negative"):
        train(config, tmp_path / "a", training__max_minutes=-1)
    with pytest.raises(ConfigError, match="never end"):
        train(config, tmp_path / "b", training__max_steps=0, training__max_epochs=0)


def test_learning_rate_decays_linearly_and_a_later_leg_may_start_the_decay(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    decay = {"training__lr_decay_start": 4, "training__lr_decay_end": 8, "training__lr_final_fraction": 0.1}
    reference = tmp_path / "reference"
    train(config, reference, training__max_steps=10, **decay)
    rates = [e["lr"] for e in read_events(reference / "metrics.jsonl") if e["event"] == "train"]
    lr = 0.03  # step k (1-based) runs at the rate of k - 1 steps done
    assert rates == pytest.approx([lr] * 5 + [lr * f for f in (0.775, 0.55, 0.325, 0.1, 0.1)])
    # The decay is a change a resumed leg may make: four constant steps, then a leg with the decay,
    # ends exactly where the run with the decay from the start ended.
    legs = tmp_path / "legs"
    train(config, legs, training__max_steps=4)
    train(config, legs, resume=True, training__max_steps=10, **decay)
    assert_same_run(legs, reference, 10)
    optimizer = json.loads((legs / "model" / "meta.json").read_text())["optimizer"]
    assert optimizer["lr_decay"] == {"start": 4, "end": 8, "final_fraction": 0.1}
    assert (optimizer["name"], optimizer["learning_rate"]) == ("adam", lr)
    assert [decay_factor(s, 0, 0, 0.1) for s in (0, 10**9)] == [1.0, 1.0]  # both 0: constant
    assert decay_factor(10**9, 4, 8, 0.25) == 0.25
    with pytest.raises(ConfigError, match="lr_decay_end"):
        train(config, tmp_path / "a", training__max_steps=2, training__lr_decay_start=5, training__lr_decay_end=5)
    with pytest.raises(ConfigError, match="lr_final_fraction"):
        train(config, tmp_path / "b", training__max_steps=2, training__lr_decay_end=5, training__lr_final_fraction=0)


def test_a_leg_continues_on_a_fresh_machine_from_model_and_leg_state(tmp_path, corpus):
    """What a long run commits after each leg (model/ with its softmax + leg_state.json, no
    checkpoints/) is enough for the next leg: same step count, data position and curves; the
    optimizer's moments (under a learning-rate ramp), RNG streams and carried LSTM states start over."""
    config = write_config(tmp_path, corpus)
    out, reference = tmp_path / "legs", tmp_path / "reference"
    common = {"softmax__type": "sampled", "training__restart_warmup_steps": 4}
    train(config, out, training__max_steps=0, training__max_minutes=1e-5, training__log_every=5, **common)
    leg = json.loads((out / "leg_state.json").read_text())  # plain data, no tensors
    assert leg["step"] == 5 and not {"model", "softmax", "optimizer"} & set(leg)
    assert all(set(rank) == {"data"} for rank in leg["ranks"])
    shutil.rmtree(out / "checkpoints")  # a fresh machine: only the committed files
    with pytest.raises(CheckpointError, match="already holds"):
        train(config, out, training__max_steps=12, **common)
    train(config, out, resume=True, training__max_steps=12, training__max_minutes=0, training__log_every=1, **common)
    train(config, reference, training__max_steps=12, training__log_every=1, **common)

    resumed, ref = load_checkpoint(out / "checkpoints" / "last.pt"), load_checkpoint(reference / "checkpoints" / "last.pt")
    assert resumed["step"] == ref["step"] == 12
    assert resumed["ranks"][0]["data"] == ref["ranks"][0]["data"]  # the same text, in the same order
    rates = {e["step"]: e["lr"] for e in read_events(out / "metrics.jsonl") if e["event"] == "train"}
    assert sorted(rates) == [5] + list(range(6, 13))  # the first leg's curve is kept, nothing repeated
    lr = 0.03
    assert [rates[s] for s in (6, 7, 8, 9, 10)] == pytest.approx([lr / 4, lr / 2, 3 * lr / 4, lr, lr])
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert (meta["steps"], meta["optimizer_resets"]) == (12, [5])
    assert json.loads((reference / "model" / "meta.json").read_text())["optimizer_resets"] == []
    # A model/ that is not the one the leg state was written with is refused.
    shutil.rmtree(out / "checkpoints")
    (out / "leg_state.json").write_text(json.dumps({**json.loads((out / "leg_state.json").read_text()), "step": 11}))
    with pytest.raises(CheckpointError, match="not the model"):
        train(config, out, resume=True, training__max_steps=20, **common)


# ---- bf16 on the CPU -----------------------------------------------------------------------------

needs_native_bf16 = pytest.mark.skipif(not native_bf16("cpu"), reason="this CPU has no native bf16 (AVX-512 BF16 / AMX)")


@needs_native_bf16
def test_bf16_on_the_cpu_trains_like_float32_and_resumes_exactly(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    steps = {"training__max_steps": 30, "training__checkpoint_every": 10}
    train(config, tmp_path / "fp32", **steps)
    train(config, tmp_path / "bf16", training__mixed_precision="bf16", **steps)
    fp32, bf16 = train_losses(tmp_path / "fp32"), train_losses(tmp_path / "bf16")
    assert fp32 != bf16  # bf16 really ran: the products round differently
    assert abs(sum(bf16[-10:]) - sum(fp32[-10:])) / sum(fp32[-10:]) < 0.05
    assert sum(bf16[-10:]) < 0.9 * sum(bf16[:10])  # and it learns
    # Master weights stay float32; a resumed bf16 run ends bit-identical to an uninterrupted one.
    ckpt = load_checkpoint(tmp_path / "bf16" / "checkpoints" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values())
    train(config, tmp_path / "half", training__mixed_precision="bf16", training__max_steps=20, training__checkpoint_every=10)
    train(config, tmp_path / "half", resume=True, training__mixed_precision="bf16", **steps)
    assert train_losses(tmp_path / "half") == bf16
    resumed = load_checkpoint(tmp_path / "half" / "checkpoints" / "last.pt")
    for name, value in ckpt["model"].items():
        assert torch.equal(resumed["model"][name], value), name


def test_fp16_on_the_cpu_falls_back_to_float32_with_a_notice(tmp_path, corpus, capsys):
    config = write_config(tmp_path, corpus)
    train(config, tmp_path / "fp16", training__mixed_precision="fp16", training__max_steps=3)
    train(config, tmp_path / "fp32", training__max_steps=3)
    assert "fp16 is for GPUs; training in float32" in capsys.readouterr().out
    assert train_losses(tmp_path / "fp16") == train_losses(tmp_path / "fp32")


# ---- distributed -------------------------------------------------------------------------------


def _ddp_worker(rank: int, world_size: int, port: int, config_path: str, output: str) -> None:
    """One process of a torchrun-style launch: the same environment variables torchrun sets."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    config = load_config(config_path, {"training.max_steps": 6, "softmax.type": "sampled"})
    settings = PretrainSettings.from_config(config)
    info = init_distributed("cpu")
    try:
        trainer = Trainer(settings, config, Path(output), info, resume=False, progress=False)
        trainer.train()
        torch.save(
            {"params": {k: v.detach().clone() for k, v in trainer.lm.state_dict().items()},
             "chunks": trainer.batcher.chunks, "lines": trainer.batcher.stream.stats.lines},
            Path(output) / f"rank{rank}.pt",
        )
    finally:
        shutdown(info)


def test_two_gloo_processes_end_with_identical_weights(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    output = tmp_path / "ddp"
    run_processes(_ddp_worker, 2, str(config), str(output), timeout=150)
    ranks = [torch.load(output / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name
    assert ranks[0]["chunks"] != ranks[1]["chunks"]  # each rank trained on its own share of the corpus
    assert ranks[0]["lines"] > 0 and ranks[1]["lines"] > 0
    assert load_checkpoint(output / "checkpoints" / "last.pt")["world_size"] == 2
    initial = BiLM(PretrainSettings.from_config(load_config(config)).model).state_dict()
    trained = load_bilm(model=output / "model").state_dict()
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)
    for name, value in trained.items():
        assert torch.allclose(value, ranks[0]["params"][f"bilm.{name}"], atol=1e-6), name


def _ddp_resume_worker(rank: int, world_size: int, port: int, config_path: str, folder: str) -> None:
    """In one process group: 6 steps straight, and 3 steps then a --resume to 6."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    info = init_distributed("cpu")
    try:
        for name, steps, resume in (("reference", 6, False), ("cut", 3, False), ("cut", 6, True)):
            config = load_config(config_path, {"training.max_steps": steps, "training.checkpoint_every": 2})
            settings = PretrainSettings.from_config(config)
            Trainer(settings, config, Path(folder) / name, info, resume=resume, progress=False).train()
    finally:
        shutdown(info)


def test_two_gloo_processes_resume_exactly(tmp_path, corpus):
    run_processes(_ddp_resume_worker, 2, str(write_config(tmp_path, corpus)), str(tmp_path), timeout=150)
    resumed, reference = assert_same_run(tmp_path / "cut", tmp_path / "reference", steps=6)
    assert resumed["world_size"] == 2
    assert [r["data"] for r in resumed["ranks"]] == [r["data"] for r in reference["ranks"]]  # each process's position


# ---- dirty and missing corpora -------------------------------------------------------------------


def test_dirty_corpus_trains_and_reports_bad_lines(tmp_path, corpus):
    folder = tmp_path / "dirty"
    folder.mkdir()
    rng = random.Random(0)
    clean = corpus.read_bytes().splitlines(keepends=True)
    garbage = bytes(rng.randrange(256) for _ in range(3000))
    (folder / "a.txt").write_bytes(
        b"".join(clean[:100]) + b"\n\n   \n\t\n"  # empty and blank lines
        + garbage.replace(b"\n", b"") + b"\n"  # binary garbage
        + "na\u00efve caf\u00e9 in latin-1\n".encode("latin-1")  # another encoding
        + "r\u00e9sum\u00e9 in utf-16\n".encode("utf-16")  # and another
        + b"the cat sees the dog . " * 20_000 + b"\n"  # 140k tokens on one line
        + b"x" * 3_000_000 + b"\n"  # 3 MB without a space
    )
    (folder / "b.txt.gz").write_bytes(gzip.compress(b"".join(clean[100:])))
    model_dir = train(write_config(tmp_path, folder), tmp_path / "out", training__max_steps=5)
    meta = json.loads((model_dir / "meta.json").read_text())
    stats = meta["corpus_stats"]
    assert stats["binary"] >= 1 and stats["bad_encoding"] >= 1 and stats["long"] >= 2 and stats["empty"] >= 3
    assert stats["lines"] > 300  # both files read, the gzip one included
    assert load_bilm(model=model_dir) is not None


def test_missing_or_empty_corpus_is_a_clear_error(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    with pytest.raises(CorpusError, match="corpus not found"):
        train(config, tmp_path / "a", paths__train=str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        train(config, tmp_path / "b", paths__train=str(tmp_path / "empty.txt"))
    (tmp_path / "blank.txt").write_bytes(b"\n \n\x00\x01\x02\x03\n")
    with pytest.raises(CorpusError, match="no usable text"):
        train(config, tmp_path / "c", paths__train=str(tmp_path / "blank.txt"))
    result = runner.invoke(app, ["pretrain", str(config), "-o", str(tmp_path / "d"), "--paths.train",
                                 str(tmp_path / "missing.txt"), "--no-progress"])
    assert result.exit_code == 1 and "corpus not found" in printed(result)
    assert not (tmp_path / "d" / "model").exists()


# ---- command line, evaluation, fine-tuning ---------------------------------------------------------


def test_cli_pretrain_switches_its_process_allocator(tmp_path, corpus, monkeypatch):
    # the command owns its process, so it turns on heap reuse (pretrain/memory.py); `pretrain()`
    # called from a user's Python does not
    from spacy_elmo.pretrain import memory

    calls = []
    monkeypatch.setattr(memory, "reuse_freed_memory", lambda: calls.append(1) or True)
    config = write_config(tmp_path, corpus)
    train(config, tmp_path / "api", training__max_steps=1)
    assert calls == []
    result = runner.invoke(app, ["pretrain", str(config), "-o", str(tmp_path / "cli"), "--training.max_steps", "1",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert calls == [1]


def test_cli_pretrain_evaluate_and_embed(tmp_path, corpus, dev_corpus):
    config = write_config(tmp_path, corpus)
    out = tmp_path / "out"
    result = runner.invoke(app, ["pretrain", str(config), "-o", str(out), "--training.max_steps", "5",
                                 "--softmax.type", "sampled", "--no-progress"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["steps"] == 5 and meta["softmax"]["type"] == "sampled"  # the overrides took effect
    result = runner.invoke(app, ["pretrain", str(config), "-o", str(out), "--training.max_stepz", "5"])
    assert result.exit_code == 1 and "max_stepz" in printed(result)
    report = tmp_path / "ppl.json"
    result = runner.invoke(app, ["evaluate", str(out / "model"), str(dev_corpus), "-o", str(report), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "forward perplexity" in printed(result) and "backward perplexity" in printed(result)
    numbers = json.loads(report.read_text())
    assert numbers["ppl"] == pytest.approx((numbers["fwd_ppl"] + numbers["bwd_ppl"]) / 2)
    assert 1 < numbers["fwd_ppl"] < meta["vocab_size"] * 3 and numbers["sentences"] == 40
    bare = tmp_path / "bare"  # options.json + weights.hdf5 only, like the released AllenNLP models
    bare.mkdir()
    for name in ("options.json", "weights.hdf5"):
        (bare / name).write_bytes((out / "model" / name).read_bytes())
    result = runner.invoke(app, ["evaluate", str(bare), str(dev_corpus), "--no-progress"])
    assert result.exit_code == 1 and "no softmax" in printed(result)
    # The `embed` command loads the model directory directly.
    (tmp_path / "in.txt").write_text("the cat sees a dog .\n")
    result = runner.invoke(app, ["embed", str(tmp_path / "in.txt"), str(tmp_path / "e.hdf5"), "--model", str(out / "model")])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "e.hdf5") as f:
        assert f["0"].shape == (3, 6, 32)
    result = runner.invoke(app, ["pretrain", "--help"])
    assert result.exit_code == 0 and "--paths.train" in result.output and "--resume" in result.output


def test_perplexity_is_exact(tmp_path, tiny_options):
    torch.manual_seed(0)
    bilm = BiLM(tiny_options).eval()
    sentences = [["a", "b", "c"], ["d"], ["b", "a", "zzz", "c", "a", "b", "d"], ["c", "c"]]
    (tmp_path / "dev.txt").write_text("\n".join(" ".join(s) for s in sentences) + "\n")
    vocab = Vocab(["<S>", "</S>", "<UNK>", "a", "b", "c", "d"])
    softmax = FullSoftmax(len(vocab), tiny_options.lstm.projection_dim).eval()
    result = evaluate_perplexity(bilm, softmax, vocab, [tmp_path / "dev.txt"], str.split, batch_tokens=20)
    # One sentence at a time, by hand: forward predicts w1..wn </S>, backward wn..w1 <S>.
    fwd = bwd = 0.0
    with torch.no_grad():
        for s in sentences:
            ids = torch.tensor([0, *vocab.encode(s), 1])
            chars, lengths = add_sentence_boundaries(batch_to_ids([s]))
            outputs, _ = bilm.lstm(bilm.char_encoder(chars), lengths)
            logp = torch.log_softmax(outputs[-1][:, 0] @ softmax.weight.T + softmax.bias, -1)  # (2, n+2, V)
            fwd -= logp[0, :-1].gather(1, ids[1:, None]).sum().item()
            bwd -= logp[1, 1:].gather(1, ids[:-1, None]).sum().item()
    n = sum(len(s) + 1 for s in sentences)
    assert result.predictions == n and result.sentences == 4
    assert result.fwd_nll == pytest.approx(fwd / n, rel=1e-5)
    assert result.bwd_nll == pytest.approx(bwd / n, rel=1e-5)
    assert result.oov_rate == pytest.approx(1 / 13)
    # A uniform softmax has perplexity = vocabulary size, whatever the model.
    with torch.no_grad():
        softmax.weight.zero_()
        softmax.bias.zero_()
    uniform = evaluate_perplexity(bilm, softmax, vocab, [tmp_path / "dev.txt"], str.split)
    assert uniform.fwd_ppl == pytest.approx(7, rel=1e-5) and uniform.bwd_ppl == pytest.approx(7, rel=1e-5)


def test_init_from_starts_from_the_given_model(tmp_path, corpus):
    config = write_config(tmp_path, corpus)
    base = train(config, tmp_path / "base", training__max_steps=5)
    tuned = train(config, tmp_path / "tuned", training__max_steps=2, training__learning_rate=1e-12,
                  training__dropout=0.0, paths__init_from=str(base))
    a, b = load_language_model(base), load_language_model(tuned)
    assert b.vocab.tokens == a.vocab.tokens  # the model's vocabulary, so its softmax carries over
    for name, value in a.bilm.state_dict().items():
        assert torch.allclose(value, b.bilm.state_dict()[name], atol=1e-6), name
    assert torch.allclose(a.softmax.weight, b.softmax.weight, atol=1e-6)
    assert json.loads((tuned / "meta.json").read_text())["init_from"] == str(base)
    # Not vacuous: a run that ignored --init-from would start from the same seed's initial weights,
    # which the base model's training has moved away from.
    torch.manual_seed(0)
    initial = BiLM(ElmoOptions.from_file(base / "options.json")).state_dict()
    assert any(not torch.allclose(initial[k], b.bilm.state_dict()[k], atol=1e-3) for k in initial)


def test_pretraining_caps_onednn_kernel_cache_unless_the_user_did(monkeypatch):
    from spacy_elmo.bilm.kernel_cache import ONEDNN_CACHE_ENV, PRETRAIN_CACHE_CAPACITY, bound_onednn_cache

    monkeypatch.delenv(ONEDNN_CACHE_ENV, raising=False)
    assert bound_onednn_cache() is True
    assert os.environ[ONEDNN_CACHE_ENV] == str(PRETRAIN_CACHE_CAPACITY)
    monkeypatch.setenv(ONEDNN_CACHE_ENV, "64")
    assert bound_onednn_cache() is False and os.environ[ONEDNN_CACHE_ENV] == "64"
