"""Held-out perplexity, exact (full softmax), sentence by sentence.

Every line is scored as the `elmo` component will use the model: on its own, framed as
`<S> w1 ... wn </S>`, from a zero LSTM state. The forward LM predicts w1 ... wn </S>, the
backward LM wn ... w1 <S>; perplexity = exp(mean negative log-likelihood) per direction, and
`ppl` is their average, as reported in the paper. Words outside the vocabulary are scored as
`<UNK>` (the usual convention; `oov_rate` says how often that happened).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from tqdm import tqdm

from ..bilm import BiLM
from ..bilm.model import add_sentence_boundaries
from .corpus import CorpusError, CorpusSettings, CorpusStats, TextStream
from .metrics import perplexity
from .softmax import SoftmaxHead
from .tokenizers import Tokenizer
from .vocab import BOS_ID, EOS_ID, UNK_ID, Vocab


@dataclass
class PerplexityResult:
    fwd_ppl: float
    bwd_ppl: float
    ppl: float  # average of the two directions
    fwd_nll: float  # mean negative log-likelihood per prediction (nats)
    bwd_nll: float
    predictions: int  # per direction: words + 1 per sentence
    sentences: int
    oov_rate: float  # share of words scored as <UNK>
    stats: CorpusStats

    def to_dict(self) -> dict:
        out = asdict(self)
        out["stats"] = self.stats.to_dict()
        return out


def sentence_batches(stream: TextStream, batch_tokens: int, max_sentences: int = 0, block: int = 4096) -> Iterator[list[list[str]]]:
    """Sentences in length-sorted batches of at most `batch_tokens` tokens (padding included).

    Reads `block` sentences at a time, so memory stays bounded whatever the file size."""
    seen = 0
    done = False
    while not done:
        sentences: list[list[str]] = []
        while len(sentences) < block:
            if max_sentences and seen >= max_sentences:
                done = True
                break
            line = stream.next_line()
            if line is None:
                done = True
                break
            for piece in line:
                if max_sentences and seen >= max_sentences:
                    break
                sentences.append(piece)
                seen += 1
        sentences.sort(key=len)
        batch: list[list[str]] = []
        for sentence in sentences:  # ascending length: the newest one is the longest
            if batch and (len(batch) + 1) * (len(sentence) + 2) > batch_tokens:
                yield batch
                batch = []
            batch.append(sentence)
        if batch:
            yield batch


@torch.no_grad()
def score_batch(bilm: BiLM, softmax: SoftmaxHead, vocab: Vocab, sentences: Sequence[Sequence[str]], device: torch.device):
    """Sums of -log p and prediction counts, per direction, and the number of <UNK> words."""
    # The model's own ids (UTF-8 bytes, or its char/word vocabulary), framed by its marker rows.
    char_ids, lengths = add_sentence_boundaries(bilm.batch_to_ids(sentences), *bilm.marker_rows)  # (B, L, ids), (B,)
    B, L = lengths.shape[0], char_ids.shape[1]
    ids = torch.full((B, L), -1, dtype=torch.long)
    for i, sentence in enumerate(sentences):
        ids[i, : len(sentence) + 2] = torch.tensor([BOS_ID, *vocab.encode(sentence), EOS_ID])
    tokens = bilm.char_encoder(char_ids.to(device))  # (B, L, proj)
    outputs, _ = bilm.lstm(tokens, lengths)  # each (2, B, L, proj), both in reading order
    top = outputs[-1]
    ids = ids.to(device)
    # Position p of the forward LM predicts token p+1; position p+1 of the backward LM token p.
    valid = torch.arange(L - 1, device=device).unsqueeze(0) < (lengths.to(device) - 1).unsqueeze(1)  # (B, L-1)
    fwd = softmax.exact_nll(top[0, :, :-1][valid], ids[:, 1:][valid])
    bwd = softmax.exact_nll(top[1, :, 1:][valid], ids[:, :-1][valid])
    n_unk = int((ids == UNK_ID).sum())
    return float(fwd.double().sum()), float(bwd.double().sum()), int(valid.sum()), n_unk


def evaluate_perplexity(
    bilm: BiLM,
    softmax: SoftmaxHead,
    vocab: Vocab,
    files: Sequence[Path],
    tokenizer: Tokenizer,
    corpus: CorpusSettings = CorpusSettings(),
    batch_tokens: int = 4096,
    max_sentences: int = 0,
    progress: bool = False,
) -> PerplexityResult:
    device = next(bilm.parameters()).device
    was_training = bilm.training, softmax.training
    bilm.eval()
    softmax.eval()
    stream = TextStream(files, tokenizer, corpus, repeat=False)
    fwd_sum = bwd_sum = 0.0
    predictions = sentences = n_unk = 0
    try:
        with tqdm(desc="Perplexity", unit=" sentences", disable=not progress, leave=False) as bar:
            for batch in sentence_batches(stream, batch_tokens, max_sentences):
                f, b, n, u = score_batch(bilm, softmax, vocab, batch, device)
                fwd_sum, bwd_sum, predictions, n_unk = fwd_sum + f, bwd_sum + b, predictions + n, n_unk + u
                sentences += len(batch)
                bar.update(len(batch))
    finally:
        stream.close()
        bilm.train(was_training[0])
        softmax.train(was_training[1])
    if predictions == 0:
        raise CorpusError(f"no usable text to evaluate in {', '.join(map(str, files))}: {stream.stats.summary()}")
    fwd_nll, bwd_nll = fwd_sum / predictions, bwd_sum / predictions
    fwd_ppl, bwd_ppl = perplexity(fwd_nll), perplexity(bwd_nll)
    words = predictions - sentences
    return PerplexityResult(
        fwd_ppl=fwd_ppl, bwd_ppl=bwd_ppl, ppl=(fwd_ppl + bwd_ppl) / 2,
        fwd_nll=fwd_nll, bwd_nll=bwd_nll, predictions=predictions, sentences=sentences,
        oov_rate=n_unk / max(words, 1), stats=stream.stats,
    )
