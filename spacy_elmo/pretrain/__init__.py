"""Pretraining a biLM on your own corpus (`spacy-elmo pretrain`, `spacy-elmo evaluate`).

One module per idea:
    tokenizers   raw text -> tokens
    corpus       streaming, resumable, dirt-tolerant reading of text files (gzip, folders)
    vocab        the softmax vocabulary (bilm-tf file convention)
    batches      token streams -> truncated-BPTT windows for both directions
    softmax      full, sampled (bilm-tf) and adaptive softmax heads
    model        the joint forward + backward LM objective
    atomic       write-to-temporary-then-rename file writes
    checkpoint   atomic, exact-resume checkpoints
    distributed  torchrun / DistributedDataParallel plumbing
    metrics      training curves (JSON lines + PNG)
    evaluate     held-out perplexity
    export       the model directory (AllenNLP options.json + HDF5, plus vocab and softmax)
    config       the config file and its command-line overrides
    train        the training loop
"""

from .checkpoint import CheckpointError
from .config import DEFAULT_CONFIG, ConfigError, PretrainSettings, load_config
from .corpus import CorpusError, CorpusSettings, CorpusStats, LineReader, TextStream, find_corpus_files
from .evaluate import PerplexityResult, evaluate_perplexity
from .export import LanguageModel, load_language_model, write_model_dir
from .softmax import AdaptiveSoftmax, FullSoftmax, SampledSoftmax, build_softmax
from .train import pretrain
from .vocab import Vocab, VocabError, build_vocab

__all__ = [
    "DEFAULT_CONFIG", "AdaptiveSoftmax", "CheckpointError", "ConfigError", "CorpusError", "CorpusSettings",
    "CorpusStats", "FullSoftmax", "LanguageModel", "LineReader", "PerplexityResult", "PretrainSettings",
    "SampledSoftmax", "TextStream", "Vocab", "VocabError", "build_softmax", "build_vocab", "evaluate_perplexity",
    "find_corpus_files", "load_config", "load_language_model", "pretrain", "write_model_dir",
]
