"""`spacy-elmo pretrain`: train a biLM on plain text (see spacy_elmo/pretrain/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app

HELP = """Train ELMo's forward and backward language models jointly on plain text.

CONFIG_PATH is a training config in spaCy's config format (configs/pretrain_demo.cfg, pretrain_small.cfg, pretrain_original.cfg); keys it leaves out take the defaults in spacy_elmo/pretrain/config.py. Any key can be overridden on the command line as with `spacy train`: --section.key value. The main ones:

\b
  --paths.train PATH          training text: file or folder, gzip ok (required)
  --paths.dev PATH            held-out text: perplexity during/after training
  --paths.vocab FILE          use this vocabulary (bilm-tf format)
  --vocab.max_size N          softmax vocabulary size (the rest is <UNK>)
  --softmax.type T            full | sampled (bilm-tf) | adaptive
  --training.max_steps N      stop after N steps (0: no step limit)
  --training.max_epochs E     stop after E passes over the corpus (0: none)
  --training.max_minutes M    stop after M minutes of training time (0: none), checked every log_every steps
  --training.batch_size B     rows per process; tokens/step = B x unroll_steps
  --training.optimizer O      adagrad (bilm-tf, lr 0.2) | adam
  --training.checkpoint_every N   checkpoint every N steps
  --system.device D           auto | cpu | cuda | cuda:1
  --corpus.tokenizer T        whitespace | spacy-blank:en

OUTPUT receives config.cfg, vocab.txt, corpus_stats.json, checkpoints/last.pt, metrics.jsonl, curves.png and model/: options.json + weights.hdf5 (the AllenNLP format), meta.json, vocab.txt and softmax.hdf5. `spacy-elmo embed --model OUTPUT/model` and the elmo component load it directly. With training.eval_every > 0, model-best/ is the same kind of folder, holding the evaluated model of lowest held-out perplexity.

Several GPUs or machines: launch with torchrun, e.g. torchrun --nproc_per_node 4 -m spacy_elmo pretrain CONFIG -o OUT --paths.train corpus/
"""


@app.command(
    "pretrain",
    help=HELP,
    short_help="Pretrain a biLM on plain text.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def pretrain_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="Training config file (spaCy config format)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (checkpoints, curves, vocabulary, model/)."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue from OUTPUT/checkpoints/last.pt: same data order, optimizer state, step count and RNG "
             "states. Only max_steps/max_epochs/max_minutes, logging, evaluation and device settings, and the "
             "learning rate and its decay (training.learning_rate, lr_decay_*), may change.",
    ),
    leg: bool = typer.Option(
        False, "--leg",
        help="Run one leg of a long run: --resume when OUTPUT holds a checkpoint or a leg state (model/ + "
             "leg_state.json, as committed after the last leg), otherwise start. End each leg with --training.max_minutes.",
    ),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from",
        help="Start from this model directory instead of random weights (fine-tuning, as bilm-tf advises for "
             "corpora under ~10M words). Its architecture replaces the config's model section; its softmax is kept when it has one.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar (words/s, loss, perplexity)."),
) -> None:
    from spacy.cli._util import parse_config_overrides

    from ..bilm import OptionsError, WeightFileError
    from ..bilm.device import DeviceError
    from ..pretrain import CheckpointError, ConfigError, CorpusError, VocabError, load_config, pretrain
    from ..pretrain.lock import OutputFolderError
    from ..pretrain.memory import reuse_freed_memory
    from ..pretrain.tokenizers import TokenizerError
    from ._common import cleanup_on_sigterm, exit_interrupted

    from ..pretrain.checkpoint import CHECKPOINT_NAME, LEG_STATE_NAME

    overrides = parse_config_overrides(ctx.args, env_var=None)
    if leg and ((output / "checkpoints" / CHECKPOINT_NAME).exists() or (output / LEG_STATE_NAME).exists()):
        resume = True
    if init_from is not None:
        overrides["paths.init_from"] = str(init_from)
    try:
        config = load_config(config_path, overrides)
        reuse_freed_memory()  # this process is ours: keep the steps' buffers in the heap (pretrain/memory.py)
        with cleanup_on_sigterm():  # temporaries removed; the last checkpoint stays for --resume
            model_dir = pretrain(config, output, resume=resume, progress=progress)
    except (ConfigError, CorpusError, CheckpointError, VocabError, OptionsError, WeightFileError, TokenizerError,
            DeviceError, OutputFolderError) as err:
        msg.fail(str(err), exits=1)
    except OSError as err:  # e.g. a full disk while writing metrics or the model directory
        msg.fail(f"{output}: {err}. The last checkpoint is intact: fix the cause and run again with --resume", exits=1)
    except KeyboardInterrupt:
        exit_interrupted(_interrupted(output))
    except RuntimeError as err:
        lost = _lost_other_process(err)
        if lost is None:
            raise
        msg.fail(lost, exits=1)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one message, not one per process
        msg.good(f"Model directory: {model_dir}")


def _interrupted(output: Path) -> str:
    from ..pretrain.checkpoint import CHECKPOINT_NAME

    checkpoint = output / "checkpoints" / CHECKPOINT_NAME
    if checkpoint.is_file():
        return (f"Interrupted. {checkpoint} holds the last checkpoint (every training.checkpoint_every steps): "
                "run the same command with --resume to continue from it")
    return "Interrupted before the first checkpoint: run the same command again to start over"


# What a process of a torchrun launch sees when another one ended (its own error is printed by it):
# gloo's transport errors, nothing broader, so that a bug keeps its traceback.
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer")


def _lost_other_process(err: RuntimeError) -> Optional[str]:
    """One line for a process that lost the others of a several-process run, instead of torch's
    traceback; None for any other error (a bug: its traceback is wanted)."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    text = str(err)
    network = isinstance(err, getattr(dist, "DistNetworkError", ())) or any(phrase in text for phrase in _PEER_LOST)
    if world_size < 2 or not network:
        return None
    rank = os.environ.get("RANK", "?")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return (f"process {rank} of {world_size}: another process of the run ended ({first}); "
            "its own error is printed above. Fix it and run again (--resume continues from the last checkpoint)")
