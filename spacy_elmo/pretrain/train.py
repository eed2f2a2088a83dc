"""The pretraining loop: `pretrain(config, output_dir)`.

    corpus --TextStream (this process's lines)--> WindowBatcher (B rows x T tokens, both directions)
      --BidirectionalLM (shared char CNN + softmax), DDP when several processes--> loss
      --backward, clip, Adagrad/Adam--> step; LSTM states carried to the next window

Output folder:
    config.cfg            the resolved config (file + overrides)
    vocab.txt             the softmax vocabulary
    corpus_stats.json     what the vocabulary pass found in the corpus (bad lines, tokens, ...)
    checkpoints/last.pt   everything needed to resume exactly (every checkpoint_every steps, at the end)
    leg_state.json        at the end: where the run is, for resuming model/ on another machine (see below)
    metrics.jsonl         training curves as data;  curves.png  the same as a plot
    model/                the trained model directory (see export.py)
    model-best/           with eval_every > 0: the evaluated model of lowest held-out perplexity

Long runs go in legs (training.max_minutes). `--resume` continues from checkpoints/last.pt exactly;
where that is gone (a fresh machine, with only what was committed: config.cfg, vocab.txt,
corpus_stats.json, metrics.jsonl, model/ and leg_state.json) it continues from model/ (weights and
softmax) at leg_state.json's step and data position. Lost there: the optimizer's moments (the
learning rate ramps up again over training.restart_warmup_steps), the RNG streams (reseeded from the
seed and the step) and the LSTM state carried across windows (zeros, as at every chunk start).
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from thinc.api import Config
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .. import __version__
from ..bilm import BiLM, ElmoOptions
from ..bilm.kernel_cache import bound_onednn_cache
from ..bilm.precision import native_bf16
from ..bilm.vocab import TokenIds
from .batches import WindowBatcher
from .checkpoint import (
    CHECKPOINT_NAME, LEG_STATE_NAME, CheckpointError, get_rng_state, load_checkpoint, load_leg_state, save_checkpoint,
    save_leg_state, set_rng_state,
)
from .config import RESUMABLE_CHANGES, ConfigError, PretrainSettings, config_differences
from .corpus import CorpusError, CorpusStats, TextStream, corpus_fingerprint, find_corpus_files
from .distributed import DistInfo, all_gather, all_reduce_sum, barrier, init_distributed, shutdown
from .evaluate import PerplexityResult, evaluate_perplexity
from .export import VOCAB_NAME, load_language_model, write_model_dir
from .lock import output_folder_lock
from .memory import release_free_memory, resident_mb
from .metrics import MetricsLog, perplexity, plot_curves
from .model import BidirectionalLM, detach_states, reset_backward
from .softmax import build_softmax
from .tokenizers import make_tokenizer
from .vocab import Vocab, build_vocab, count_tokens


def log(info: DistInfo, message: str) -> None:
    if info.is_main:
        tqdm.write(message)


def pretrain(config: Config, output_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train (or, with resume=True, continue training) and return the model directory."""
    bound_onednn_cache()  # else memory grows by gigabytes over a long run (bilm/kernel_cache.py)
    settings = PretrainSettings.from_config(config)
    info = init_distributed(settings.system.device)
    try:
        # One run per output folder: a second one fails here instead of mixing its files in.
        with output_folder_lock(output_dir) if info.is_main else nullcontext() as folder:
            try:
                trainer = Trainer(settings, config, Path(output_dir), info, resume=resume, progress=progress)
            except BaseException:
                if folder is not None:  # failed its checks: nothing to resume, leave no trace
                    folder.discard_new()
                raise
            return trainer.train()
    finally:
        shutdown(info)


def _same_shapes(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def architecture_state(bilm: BiLM) -> dict[str, Any]:
    """What a resume needs to rebuild the biLM whatever the config's [model] says (--init-from
    takes the given model's architecture): its options and, for a model with its own char/word
    vocabulary, those tables."""
    token_ids = bilm.token_ids
    return {
        "options": bilm.options.to_dict(),
        "chars": None if token_ids is None else token_ids.chars,
        "words": None if token_ids is None else token_ids.words,
    }


def architecture_from_state(state: dict[str, Any]) -> tuple[ElmoOptions, TokenIds | None]:
    try:
        options = ElmoOptions.from_dict(state["options"], source="the checkpoint's options")
        if not options.vocabulary_files:
            return options, None
        return options, TokenIds(options, state["chars"], state["words"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"the checkpoint's model architecture is unusable ({err})") from None


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """What training.mixed_precision means on this device: bf16 on a GPU, or on a CPU with native
    bf16 (AVX-512 BF16 / AMX: ~1.5x the words/s of float32 there); fp16 (with loss scaling) on a
    GPU only; otherwise None, i.e. float32."""
    if mixed_precision == "no":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    if mixed_precision == "bf16" and device.type == "cpu" and native_bf16(device):
        return torch.bfloat16
    return None


def decay_factor(step: int, start: int, end: int, final_fraction: float) -> float:
    """The learning rate's multiplier at `step`: 1 until `start`, falling linearly to
    `final_fraction` at `end`, then `final_fraction`; always 1 when start and end are both 0."""
    if start == 0 and end == 0:
        return 1.0
    progress = min(1.0, max(0.0, (step - start) / (end - start)))
    return 1.0 - progress * (1.0 - final_fraction)


# The step limit of a run that only max_minutes ends (a number, so that comparisons stay simple).
UNLIMITED_STEPS = 2**62


class Trainer:
    def __init__(self, settings: PretrainSettings, config: Config, output: Path, info: DistInfo, resume: bool, progress: bool):
        self.settings, self.config, self.output, self.info = settings, config, output, info
        self.progress = progress and info.is_main
        s, t = settings, settings.training
        if s.paths.train is None:
            raise ConfigError("no training corpus: set paths.train (e.g. --paths.train corpus/)")
        if s.system.threads > 0:
            torch.set_num_threads(s.system.threads)
        if s.system.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        self.device = info.device
        # The output folder may lie inside the corpus folder: its checkpoints and models are not text.
        self.files = find_corpus_files(s.paths.train, exclude=output)
        self.dev_files = find_corpus_files(s.paths.dev, exclude=output) if s.paths.dev else None
        self.tokenizer = make_tokenizer(s.corpus.tokenizer)
        if self.dev_files is not None:
            self._check_dev_text()
        self.ckpt_path = output / "checkpoints" / CHECKPOINT_NAME

        self.leg_path = output / LEG_STATE_NAME
        checkpoint = None
        if resume:
            if self.ckpt_path.exists() or not self.leg_path.exists():
                checkpoint = load_checkpoint(self.ckpt_path)
            else:
                checkpoint = self._load_leg(output)
            self._check_resumable(checkpoint)
        elif self.ckpt_path.exists() or self.leg_path.exists():
            raise CheckpointError(
                f"{output} already holds a checkpoint: pass --resume to continue it, or choose another output folder"
            )
        if info.is_main:
            output.mkdir(parents=True, exist_ok=True)  # made by pretrain()'s lock; for a Trainer used without it

        # ---- vocabulary and corpus statistics (main process; the others read its files) ---------
        init = load_language_model(s.paths.init_from) if s.paths.init_from and checkpoint is None else None
        if checkpoint is None and info.is_main:
            self._prepare_vocab(init)
        barrier(info)
        self.vocab = Vocab.from_file(output / VOCAB_NAME)
        stats_path = output / "corpus_stats.json"
        self.corpus_stats = CorpusStats.from_dict(json.loads(stats_path.read_text())) if stats_path.exists() else None
        if checkpoint is not None and checkpoint["vocab_fingerprint"] != self.vocab.fingerprint():
            raise CheckpointError(f"{output / VOCAB_NAME} is not the vocabulary the checkpoint was trained with")
        if info.is_main:  # after the checks: a failed --resume leaves the run's own config.cfg
            (output / "config.cfg").write_text(config.to_str(), encoding="utf-8")

        # ---- model, softmax, optimizer ---------------------------------------------------------
        torch.manual_seed(s.system.seed)
        options, token_ids = s.model, None
        if init is not None:
            if init.bilm.options != options:
                log(info, f"--init-from: using the architecture of {s.paths.init_from}, not the config's [model]")
            options, token_ids = init.bilm.options, init.bilm.token_ids
            if options.vocabulary_files:
                log(info, f"--init-from: keeping {s.paths.init_from}'s own char/word vocabulary ("
                          f"{', '.join(options.vocabulary_files)}); words not in it read as its unknown word")
        elif checkpoint is not None and checkpoint.get("architecture") is not None:
            options, token_ids = architecture_from_state(checkpoint["architecture"])
        self.options: ElmoOptions = options
        bilm = BiLM(options, dropout=t.dropout, token_ids=token_ids)
        if init is not None:
            bilm.load_state_dict(init.bilm.state_dict())
        softmax = build_softmax(s.softmax, len(self.vocab), options.lstm.projection_dim)
        if init is not None and init.softmax is not None and init.vocab is not None \
                and init.vocab.tokens == self.vocab.tokens and _same_shapes(init.softmax, softmax):
            softmax.load_state_dict(init.softmax.state_dict())  # full <-> sampled share parameters
            log(info, f"--init-from: continuing {s.paths.init_from}'s softmax too (same vocabulary)")
        self.lm = BidirectionalLM(bilm, softmax).to(self.device)
        self.optimizer = self._make_optimizer()
        self.autocast_dtype = self._autocast_dtype(t.mixed_precision)
        fp16 = self.autocast_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

        # ---- data: this process's share of the corpus ---------------------------------------------
        stream = TextStream(self.files, self.tokenizer, s.corpus, rank=info.rank, world_size=info.world_size)
        self.batcher = WindowBatcher(stream, self.vocab, t.batch_size, t.unroll_steps, t.chunk_windows,
                                     token_ids=bilm.token_ids)
        self.max_steps = self._max_steps()
        self.time_limit_reached = False

        # ---- state: fresh, or exactly where the checkpoint left off -------------------------------
        self.step, self.words, self.elapsed = 0, 0, 0.0
        self.last_train: dict[str, Any] = {}  # the latest training log line: meta.json's perplexity
        self.states = None
        self.warmup_start: int | None = None  # the step a resume without optimizer moments began at
        self.optimizer_resets: list[int] = []  # every such step of the whole run
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            torch.manual_seed(s.system.seed + 1000 * info.rank)  # different dropout/samples per process
        self.model: torch.nn.Module = self.lm
        if info.enabled:
            self.model = DistributedDataParallel(
                self.lm,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # The adaptive softmax leaves tail clusters unused when no target falls in them.
                find_unused_parameters=s.softmax.type == "adaptive",
            )
        self.metrics = None
        if info.is_main:
            self.metrics = MetricsLog(output / "metrics.jsonl", resume_step=self.step if checkpoint else None)
        self.best_dir = output / "model-best"
        self.best = self._read_best() if checkpoint is not None else None

    # ---- setup helpers ---------------------------------------------------------------------------

    def _check_resumable(self, checkpoint: dict) -> None:
        if checkpoint["world_size"] != self.info.world_size:
            raise CheckpointError(
                f"the checkpoint was written by {checkpoint['world_size']} process(es), this run has "
                f"{self.info.world_size}: resume with the same number (the data is sharded per process)"
            )
        saved = Config().from_str(checkpoint["config"])
        changed = [k for k in config_differences(saved, self.config) if k not in RESUMABLE_CHANGES]
        if changed:
            raise CheckpointError(
                "the config differs from the checkpoint's in " + ", ".join(changed)
                + f" (only {', '.join(sorted(RESUMABLE_CHANGES))} may change on --resume)"
            )
        if checkpoint["corpus"] != corpus_fingerprint(self.files):
            raise CheckpointError("the training corpus changed since the checkpoint (file names or sizes differ)")

    def _check_dev_text(self) -> None:
        """A held-out set without one usable line fails now, not at the first evaluation after hours
        of training (reads up to its first usable line)."""
        s = self.settings
        stream = TextStream(self.dev_files, self.tokenizer, s.corpus, repeat=False)
        try:
            if stream.next_line() is None:
                raise CorpusError(
                    f"{s.paths.dev}: no usable text in the held-out set (paths.dev): {stream.stats.summary()}"
                )
        finally:
            stream.close()

    def _prepare_vocab(self, init) -> None:
        s, out = self.settings, self.output
        need_stats = s.training.max_epochs > 0 or s.paths.vocab is None
        counts = None
        if need_stats:
            log(self.info, f"Reading the corpus ({len(self.files)} file(s)) to count words and check lines")
            stream = TextStream(self.files, self.tokenizer, s.corpus, repeat=False)
            counts = count_tokens(stream, progress=self.progress)
            stream.close()
            if stream.stats.pieces == 0:
                raise CorpusError(f"{s.paths.train}: no usable text in the corpus: {stream.stats.summary()}")
            (out / "corpus_stats.json").write_text(json.dumps(stream.stats.to_dict(), indent=2) + "\n")
            log(self.info, f"Corpus: {stream.stats.summary()}")
        if s.paths.vocab is not None:
            vocab = Vocab.from_file(s.paths.vocab)
            source = s.paths.vocab
        elif init is not None and init.vocab is not None and init.softmax is not None:
            vocab = init.vocab  # keep the model's softmax: fine-tuning continues the same LM
            source = f"{s.paths.init_from} (with its softmax)"
        else:
            vocab = build_vocab(counts, s.vocab)
            source = f"the corpus ({len(counts):,} distinct words, kept {len(vocab) - 3:,})"
        vocab.to_file(out / VOCAB_NAME)
        log(self.info, f"Vocabulary: {len(vocab):,} entries from {source}")

    def _autocast_dtype(self, mixed_precision: str) -> torch.dtype | None:
        dtype = autocast_dtype(mixed_precision, self.device)
        if dtype is not None and self.device.type == "cpu":
            log(self.info, "mixed precision: bf16 autocast on the CPU (it has native bf16)")
        elif dtype is None and mixed_precision != "no":
            why = "this CPU has no native bf16" if mixed_precision == "bf16" else "fp16 is for GPUs"
            log(self.info, f"mixed precision {mixed_precision!r}: {why}; training in float32")
        return dtype

    def _set_learning_rate(self) -> None:
        """The configured rate, decayed linearly over [lr_decay_start, lr_decay_end] when set, and
        ramped up linearly after a resume without optimizer moments."""
        t = self.settings.training
        rate = t.learning_rate * decay_factor(self.step, t.lr_decay_start, t.lr_decay_end, t.lr_final_fraction)
        if self.warmup_start is not None and t.restart_warmup_steps:
            rate *= min(1.0, (self.step - self.warmup_start + 1) / t.restart_warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.settings.training
        params = [p for p in self.lm.parameters() if p.requires_grad]
        if t.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=t.learning_rate, initial_accumulator_value=t.adagrad_initial_accumulator)
        return torch.optim.Adam(params, lr=t.learning_rate, betas=t.adam_betas, eps=t.adam_eps)

    def _max_steps(self) -> int:
        """The step limit; UNLIMITED_STEPS when only max_minutes ends the run."""
        t = self.settings.training
        steps = t.max_steps if t.max_steps > 0 else math.inf
        if t.max_epochs > 0:
            if self.corpus_stats is None:
                raise ConfigError("training.max_epochs needs the corpus statistics: set training.max_steps instead")
            stream_tokens = self.corpus_stats.tokens + 2 * self.corpus_stats.pieces  # with <S> and </S>
            per_step = t.batch_size * t.unroll_steps * self.info.world_size
            steps = min(steps, math.ceil(t.max_epochs * stream_tokens / per_step))
        return UNLIMITED_STEPS if steps == math.inf else int(steps)

    def _load_leg(self, output: Path) -> dict:
        """A checkpoint rebuilt from model/ and leg_state.pt, without the optimizer's moments."""
        state = load_leg_state(self.leg_path)
        model_dir = output / "model"
        try:
            lm = load_language_model(model_dir)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{model_dir}: cannot continue from it ({err})") from None
        if lm.softmax is None or lm.meta.get("steps") != state["step"]:
            raise CheckpointError(
                f"{model_dir} is not the model {self.leg_path} was written with (it needs its softmax and "
                f"step {state['step']:,}): restore both from the same commit"
            )
        return {**state, "model": lm.bilm.state_dict(), "softmax": lm.softmax.state_dict(), "optimizer": None,
                "architecture": architecture_state(lm.bilm)}

    def _restore(self, ckpt: dict) -> None:
        self.lm.bilm.load_state_dict(ckpt["model"])
        self.lm.softmax.load_state_dict(ckpt["softmax"])
        self.step, self.words, self.elapsed = int(ckpt["step"]), int(ckpt["words"]), float(ckpt["elapsed"])
        self.optimizer_resets = [int(s) for s in ckpt.get("optimizer_resets", [])]
        if ckpt["optimizer"] is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
            start = ckpt.get("warmup_start")
            self.warmup_start = None if start is None else int(start)
        else:
            self.warmup_start = self.step
            self.optimizer_resets.append(self.step)
            log(self.info, f"Resuming from {self.leg_path} and model/ (no checkpoints/{CHECKPOINT_NAME}): the optimizer's "
                           f"moments start over; learning rate ramped up over {self.settings.training.restart_warmup_steps:,} steps")
        # A run killed during the final export resumes with no step left to log: meta.json's
        # training perplexity comes from here.
        self.last_train = dict(ckpt.get("last_train") or {})
        mine = ckpt["ranks"][self.info.rank]
        self.batcher.load_state_dict(mine["data"])
        if mine.get("lstm_states") is not None:
            self.states = [(h.to(self.device), c.to(self.device)) for h, c in mine["lstm_states"]]
        if "rng" in mine:
            set_rng_state(mine["rng"])
        else:  # a leg state: fresh streams, different from the first leg's
            torch.manual_seed(self.settings.system.seed + 1000 * self.info.rank + self.step)
        log(self.info, f"Resumed at step {self.step:,}")

    def _read_best(self) -> dict | None:
        """The best evaluation so far, from model-best/meta.json (the files on disk are the truth:
        a run killed after writing model-best but before its next checkpoint replays the same
        steps to the same perplexity, which does not count as better)."""
        path = self.best_dir / "meta.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))["selected_by"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # ---- checkpoints and evaluation -------------------------------------------------------------

    def save(self) -> None:
        """Gather every process's data position, RNG and LSTM states; the main process writes."""
        mine = {
            "rng": get_rng_state(),
            "data": self.batcher.state_dict(),
            "lstm_states": None if self.states is None else [(h.cpu(), c.cpu()) for h, c in self.states],
        }
        self.ranks = all_gather(self.info, mine)
        if self.info.is_main:
            save_checkpoint(
                {
                    **self._position(),
                    "model": self.lm.bilm.state_dict(),
                    "softmax": self.lm.softmax.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "warmup_start": self.warmup_start,
                    "architecture": architecture_state(self.lm.bilm),
                },
                self.ckpt_path,
            )
        barrier(self.info)

    def _leg_position(self) -> dict[str, Any]:
        """The position as plain data: each process's data position only (no RNG, no LSTM states)."""
        return {**self._position(), "ranks": [{"data": rank["data"]} for rank in self.ranks]}

    def _position(self) -> dict[str, Any]:
        """What a checkpoint and a leg state share: where the run is, and what it must match."""
        return {
            "step": self.step, "words": self.words, "elapsed": self.elapsed,
            "world_size": self.info.world_size,
            "config": self.config.to_str(),
            "corpus": corpus_fingerprint(self.files),
            "vocab_fingerprint": self.vocab.fingerprint(),
            "optimizer_resets": self.optimizer_resets,
            "ranks": self.ranks,
            "last_train": self.last_train,
        }

    def evaluate(self, max_sentences: int) -> PerplexityResult | None:
        """Held-out perplexity on the main process (the others wait); a model better than every
        earlier evaluation on the same sentences is written to model-best/."""
        result = None
        if self.dev_files is not None and self.info.is_main:
            result = self._perplexity(max_sentences)
            self._report(result, keep_best=True)
        barrier(self.info)
        return result

    def final_evaluation(self) -> PerplexityResult | None:
        """The whole held-out set, for meta.json. With eval_every, the final model is a model-best
        candidate too, compared on eval_max_sentences sentences: one evaluation (one log line, one
        event) where those are the whole set."""
        t, dev = self.settings.training, None
        if self.dev_files is not None and self.info.is_main:
            self.metrics.forget("eval", self.step)  # a resume at its last step: logged before, same weights
            cap = t.eval_max_sentences if t.eval_every else 0
            if cap:  # compared with the earlier evaluations, on the same sentences
                dev = self._perplexity(cap)
                self._report(dev, keep_best=True)
            if dev is None or dev.sentences >= cap:  # not yet the whole held-out set
                dev = self._perplexity(0)
                self._report(dev, keep_best=not cap and bool(t.eval_every))
        barrier(self.info)
        return dev

    def _perplexity(self, max_sentences: int) -> PerplexityResult:
        with self._autocast():
            return evaluate_perplexity(
                self.lm.bilm, self.lm.softmax, self.vocab, self.dev_files, self.tokenizer, self.settings.corpus,
                batch_tokens=self.settings.training.eval_batch_tokens, max_sentences=max_sentences,
            )

    def _report(self, result: PerplexityResult, keep_best: bool) -> None:
        self.metrics.log({"event": "eval", "step": self.step, "split": "dev", "fwd_ppl": result.fwd_ppl,
                          "bwd_ppl": result.bwd_ppl, "ppl": result.ppl,
                          "loss": (result.fwd_nll + result.bwd_nll) / 2, "oov_rate": result.oov_rate,
                          "sentences": result.sentences})
        log(self.info, f"step {self.step:,}: held-out perplexity forward {result.fwd_ppl:.2f}, "
                       f"backward {result.bwd_ppl:.2f}, average {result.ppl:.2f}")
        if keep_best:
            self._keep_if_best(result)

    def _keep_if_best(self, result: PerplexityResult) -> None:
        """Perplexities of different sentence counts are not comparable: a changed
        eval_max_sentences (allowed on resume) starts the comparison over."""
        best = self.best
        if best is not None and best["sentences"] == result.sentences and best["ppl"] <= result.ppl:
            return
        self.best = {"rule": "lowest held-out perplexity among the evaluations on the same sentences",
                     "step": self.step, "ppl": result.ppl, "sentences": result.sentences}
        write_model_dir(self.lm.bilm, self.lm.softmax, self.vocab, self.best_dir,
                        {**self._meta(result, None, None), "selected_by": self.best})

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    # ---- the loop -------------------------------------------------------------------------------

    def train(self) -> Path:
        s, t, info = self.settings, self.settings.training, self.info
        params = [p for p in self.lm.parameters() if p.requires_grad]
        n_params = sum(p.numel() for p in self.lm.bilm.parameters())
        limit = f"{self.max_steps:,} steps" if self.max_steps != UNLIMITED_STEPS else "steps"
        if t.max_minutes:
            limit += f" (at most {t.max_minutes:g} minutes of training)"
        log(info, f"biLM {n_params / 1e6:.2f}M parameters, softmax {len(self.vocab):,} x {self.options.lstm.projection_dim} "
                  f"({s.softmax.type}); {info.world_size} process(es) on {self.device}; {limit} of "
                  f"{t.batch_size} x {t.unroll_steps} tokens per process")
        self.lm.train()
        window_nll = torch.zeros(2, dtype=torch.float64)
        window_n = torch.zeros(2, dtype=torch.float64)
        window_loss, window_steps, window_words = 0.0, 0, 0
        window_start = time.perf_counter()
        run_elapsed = 0.0  # max_minutes counts this run only: each leg gets its own budget
        last_train = self.last_train
        total = None if self.max_steps == UNLIMITED_STEPS else self.max_steps
        if self.step >= self.max_steps:
            log(info, f"Nothing to train: the run is at step {self.step:,}, its step limit is {self.max_steps:,}; "
                      f"writing the model of step {self.step:,} again")
        bar = tqdm(total=total, initial=self.step, unit="step", disable=not self.progress, dynamic_ncols=True)
        while self.step < self.max_steps:
            batch = self.batcher.next_batch()
            if batch.new_chunk and self.states is not None:
                self.states = reset_backward(self.states)
            char_ids, targets = batch.char_ids.to(self.device), batch.targets.to(self.device)
            with self._autocast():
                loss, nll_sums, counts, final_states = self.model(char_ids, targets, self.states)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {self.step + 1}: the loss is {loss.item()}; lower training.learning_rate")
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            self._set_learning_rate()
            max_norm = t.grad_clip if t.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.states = detach_states(final_states)
            self.step += 1
            self.words += batch.n_words * info.world_size
            window_nll += nll_sums.double().cpu()
            window_n += counts.double().cpu()
            window_loss += float(loss.detach())
            window_steps += 1
            window_words += batch.n_words * info.world_size

            if self.step % t.log_every == 0 or self.step == self.max_steps:
                now = time.perf_counter()
                self.elapsed += now - window_start
                run_elapsed += now - window_start
                loss_and_time = torch.tensor([window_loss, run_elapsed], dtype=torch.float64)
                totals = all_reduce_sum(info, torch.cat([window_nll, window_n, loss_and_time]))
                # This run's (this leg's) training time, the same on every process: they stop together.
                run_minutes = float(totals[5]) / info.world_size / 60
                nll = (totals[:2] / totals[2:4].clamp(min=1)).tolist()
                mean_loss = float(totals[4]) / (window_steps * info.world_size)
                fwd_ppl, bwd_ppl = perplexity(nll[0]), perplexity(nll[1])
                release_free_memory()  # before measuring it
                last_train = {
                    "event": "train", "step": self.step, "epoch": self.batcher.stream.epoch,
                    "words": self.words, "elapsed_s": round(self.elapsed, 2),
                    "words_per_s": window_words / max(now - window_start, 1e-9),
                    "loss": mean_loss, "fwd_ppl": fwd_ppl, "bwd_ppl": bwd_ppl,
                    "ppl": (fwd_ppl + bwd_ppl) / 2, "lr": self.optimizer.param_groups[0]["lr"],
                    "grad_norm": float(grad_norm), "softmax": s.softmax.type,
                    "rss_mb": resident_mb(),
                }
                self.last_train = last_train
                if self.metrics is not None:
                    self.metrics.log(last_train)
                bar.set_postfix_str(
                    f"{last_train['words_per_s']:,.0f} words/s  loss {last_train['loss']:.3f}  "
                    f"ppl {last_train['ppl']:.1f} (fwd {fwd_ppl:.1f} bwd {bwd_ppl:.1f})",
                    refresh=False,
                )
                window_nll.zero_()
                window_n.zero_()
                window_loss, window_steps, window_words = 0.0, 0, 0
                window_start = time.perf_counter()
                if t.max_minutes and run_minutes >= t.max_minutes and self.step < self.max_steps:
                    log(info, f"Stopping at step {self.step:,}: training.max_minutes = {t.max_minutes:g} reached")
                    self.max_steps = self.step  # this step is the last: checkpoint, evaluation and export follow
                    self.time_limit_reached = True
            bar.update(1)
            if t.checkpoint_every and self.step % t.checkpoint_every == 0 and self.step < self.max_steps:
                self.save()
                window_start = time.perf_counter()  # writing the checkpoint is not training time
            if t.eval_every and self.step % t.eval_every == 0 and self.step < self.max_steps:
                self.evaluate(t.eval_max_sentences)
                window_start = time.perf_counter()
        bar.close()
        self.save()
        return self.finish(last_train)

    def finish(self, last_train: dict[str, Any]) -> Path:
        """Write the model directory, the final held-out perplexity and the plot."""
        info = self.info
        stats = sum((CorpusStats.from_dict(d) for d in all_gather(info, self.batcher.stream.stats.to_dict())), CorpusStats())
        dev = self.final_evaluation()
        model_dir = self.output / "model"
        if info.is_main:
            train_ppl = {k: last_train[k] for k in ("fwd_ppl", "bwd_ppl", "ppl")} if last_train else None
            meta = self._meta(dev, train_ppl, stats.bad_lines)
            if self.best is not None:
                meta["best_step"] = self.best["step"]  # where model-best/ came from
            write_model_dir(self.lm.bilm, self.lm.softmax, self.vocab, model_dir, meta)
            save_leg_state(self._leg_position(), self.leg_path)  # after model/: the pair always matches
            plot_curves(self.output / "metrics.jsonl", self.output / "curves.png")
            log(info, f"Training read {stats.summary()}")
            files = self.options.vocabulary_files
            layout = ("options.json + weights.hdf5: the AllenNLP format" if not files else
                      f"options.json + weights.hdf5 + {' + '.join(files)}: the model's own vocabulary kept")
            log(info, f"Model written to {model_dir} ({layout})")
            if self.best is not None:
                log(info, f"Lowest held-out perplexity at step {self.best['step']:,} ({self.best['ppl']:.2f} on "
                          f"{self.best['sentences']:,} sentences): {self.best_dir}")
        barrier(info)
        return model_dir

    def _meta(self, dev: PerplexityResult | None, train_ppl: dict | None, bad_lines: int | None) -> dict[str, Any]:
        """meta.json of a model directory written now (bad_lines: None mid-run, where only the
        final model gathers every process's count)."""
        s = self.settings
        stream_tokens = None if self.corpus_stats is None else self.corpus_stats.tokens + 2 * self.corpus_stats.pieces
        return {
            "name": "elmo-pretrained",
            "spacy_elmo_version": __version__,
            "corpus": [str(f) for f in self.files],
            "corpus_stats": None if self.corpus_stats is None else self.corpus_stats.to_dict(),
            "bad_lines_seen_in_training": bad_lines,
            "steps": self.step,
            "words": self.words,
            "epochs": None if not stream_tokens else round(self.words / stream_tokens, 3),
            "vocab_size": len(self.vocab),
            "tokenizer": s.corpus.tokenizer,
            "softmax": self.lm.softmax.describe(),
            "perplexity": dev.ppl if dev is not None else (train_ppl or {}).get("ppl"),
            "perplexity_source": "dev (exact)" if dev is not None else f"training batches ({s.softmax.type} softmax)",
            "dev_perplexity": None if dev is None else {"fwd": dev.fwd_ppl, "bwd": dev.bwd_ppl, "avg": dev.ppl,
                                                        "oov_rate": dev.oov_rate, "predictions": dev.predictions,
                                                        "files": [str(f) for f in self.dev_files]},
            "train_perplexity": train_ppl,
            "init_from": s.paths.init_from,
            "world_size": self.info.world_size,
            "training_seconds": round(self.elapsed, 1),
            "time_limit_reached": self.time_limit_reached,  # training.max_minutes ended the run
            # steps where a resume from a leg state started the optimizer's moments over
            "optimizer_resets": list(self.optimizer_resets),
            # the last leg's settings (the rate may change between legs)
            "optimizer": {
                "name": s.training.optimizer,
                "learning_rate": s.training.learning_rate,
                "lr_decay": None if not s.training.lr_decay_end else {
                    "start": s.training.lr_decay_start, "end": s.training.lr_decay_end,
                    "final_fraction": s.training.lr_final_fraction,
                },
                "batch": {"sequences": s.training.batch_size, "unroll_steps": s.training.unroll_steps},
            },
        }
