"""Output layers: top LSTM state (N, dim) + target word ids (N,) -> negative log-likelihoods (N,).

One head is shared by both directions (as in the paper and bilm-tf).

    full      exact softmax over the whole vocabulary; costs N x V per step.
    sampled   bilm-tf's sampled softmax: in training, the true word against `n_samples` words drawn
              from a log-uniform (Zipf) distribution, shared by the batch, with the logQ correction
              and accidental hits removed; cost N x n_samples. Same parameters as `full`, and exact
              (full) in eval mode, so held-out perplexities are real perplexities.
    adaptive  Grave et al.'s adaptive softmax (torch.nn.AdaptiveLogSoftmaxWithLoss): frequent words
              in a small head, rare ones in down-projected tail clusters. Exact, and cheap.

The vocabulary is sorted by frequency, which both the log-uniform sampler and the adaptive
clusters rely on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_path
from ..bilm.kernel_cache import padded_rows

SOFTMAX_FILE = "softmax.hdf5"


@dataclass(frozen=True)
class SoftmaxSettings:
    type: str = "sampled"  # "full" | "sampled" | "adaptive"
    n_samples: int = 8192  # sampled: negative words per step (bilm-tf: 8192)
    cutoffs: tuple[int, ...] = (20_000, 100_000)  # adaptive: cluster boundaries (ids); those >= V are dropped
    div_value: float = 4.0  # adaptive: each tail cluster's projection is this much narrower


class SoftmaxHead(nn.Module):
    kind = "?"

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss per position: (N, dim), (N,) -> (N,). May be an estimate (sampled)."""
        raise NotImplementedError

    def exact_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(target) under the full, normalised distribution: (N, dim), (N,) -> (N,)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What `load_softmax` needs to rebuild the head (saved as file metadata)."""
        raise NotImplementedError


class FullSoftmax(SoftmaxHead):
    kind = "full"

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.vocab_size, self.dim = vocab_size, dim
        # bilm-tf: softmax_W ~ N(0, 1/sqrt(dim)), softmax_b = 0.
        self.weight = nn.Parameter(torch.randn(vocab_size, dim) / math.sqrt(dim))  # (V, dim)
        self.bias = nn.Parameter(torch.zeros(vocab_size))  # (V,)

    def exact_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Logits in row blocks of ~16M entries, so a large vocabulary never needs a (N, V) tensor.
        rows = max(1, (1 << 24) // self.vocab_size)
        out = [
            F.cross_entropy(F.linear(h, self.weight, self.bias).float(), t, reduction="none")
            for h, t in zip(hidden.split(rows), targets.split(rows))
        ]
        return torch.cat(out) if out else hidden.new_zeros(0)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.exact_nll(hidden, targets)

    def describe(self) -> dict:
        return {"type": self.kind, "vocab_size": self.vocab_size, "dim": self.dim}


def log_uniform_log_prob(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """log P(id) under the log-uniform (Zipf) sampler: P(k) = log((k+2)/(k+1)) / log(V+1)."""
    k = ids.double()
    return (torch.log1p(1.0 / (k + 1.0)) / math.log(vocab_size + 1.0)).log()


def log_expected_count(ids: torch.Tensor, vocab_size: int, n_draws: int) -> torch.Tensor:
    """log of the probability that `id` is among the unique words of n_draws log-uniform draws."""
    log_p = log_uniform_log_prob(ids, vocab_size)
    # 1 - (1 - p)^n, computed stably
    return torch.log(-torch.expm1(n_draws * torch.log1p(-log_p.exp()))).float()


class SampledSoftmax(FullSoftmax):
    kind = "sampled"

    def __init__(self, vocab_size: int, dim: int, n_samples: int):
        super().__init__(vocab_size, dim)
        if n_samples < 1:
            raise ValueError("softmax.n_samples must be positive")
        self.n_samples = n_samples

    def sample(self, device: torch.device) -> torch.Tensor:
        """Unique word ids from n_samples log-uniform draws (uses the torch RNG, so it resumes)."""
        u = torch.rand(self.n_samples, device=device, dtype=torch.float64)
        draws = (torch.exp(u * math.log(self.vocab_size + 1.0)) - 1.0).long().clamp_(0, self.vocab_size - 1)
        return torch.unique(draws)  # (S,), S <= n_samples

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self.training or self.n_samples >= self.vocab_size:
            return self.exact_nll(hidden, targets)
        sampled = self.sample(hidden.device)  # (S,)
        n_rows, n_sampled = hidden.shape[0], sampled.shape[0]
        # Logits minus log Q (the chance a word is a candidate) make the estimate unbiased-ish.
        true_logits = (hidden * self.weight[targets]).sum(-1) + self.bias[targets]  # (N,)
        true_logits = true_logits.float() - log_expected_count(targets, self.vocab_size, self.n_samples)
        # The product's shape is fixed ((N', n_samples), N' from kernel_cache.py) so that oneDNN does not
        # build and keep a kernel for every step's (N, S); the padding is cut or masked off below.
        padded_hidden = F.pad(hidden, (0, 0, 0, padded_rows(n_rows) - n_rows))  # (N', dim)
        padded_sampled = F.pad(sampled, (0, self.n_samples - n_sampled))  # (n_samples,), pads are id 0
        sampled_logits = F.linear(padded_hidden, self.weight[padded_sampled], self.bias[padded_sampled])
        sampled_logits = sampled_logits[:n_rows].float()  # (N, n_samples)
        sampled_logits = sampled_logits - log_expected_count(padded_sampled, self.vocab_size, self.n_samples)
        # A sample that is the target itself is not a negative, and a pad is not a sample: remove both.
        hits = padded_sampled.unsqueeze(0) == targets.unsqueeze(1)  # (N, n_samples)
        hits[:, n_sampled:] = True
        sampled_logits = sampled_logits.masked_fill(hits, float("-inf"))
        logits = torch.cat([true_logits.unsqueeze(1), sampled_logits], dim=1)  # (N, 1 + S)
        return torch.logsumexp(logits, dim=1) - true_logits

    def describe(self) -> dict:
        return {**super().describe(), "n_samples": self.n_samples}


class AdaptiveSoftmax(SoftmaxHead):
    kind = "adaptive"

    def __init__(self, vocab_size: int, dim: int, cutoffs: tuple[int, ...], div_value: float):
        super().__init__()
        kept = sorted({int(c) for c in cutoffs if 0 < int(c) < vocab_size})
        if not kept:
            raise ValueError(
                f"softmax.cutoffs {list(cutoffs)} leave no cluster for a vocabulary of {vocab_size}: "
                "give at least one cutoff below the vocabulary size (or use the full softmax)"
            )
        self.vocab_size, self.dim, self.cutoffs, self.div_value = vocab_size, dim, tuple(kept), div_value
        self.asm = nn.AdaptiveLogSoftmaxWithLoss(dim, vocab_size, list(kept), div_value=div_value, head_bias=True)

    def exact_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if hidden.shape[0] == 0:
            return hidden.new_zeros(0)
        return -self.asm(hidden, targets).output.float()

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.exact_nll(hidden, targets)

    def describe(self) -> dict:
        return {"type": self.kind, "vocab_size": self.vocab_size, "dim": self.dim,
                "cutoffs": list(self.cutoffs), "div_value": self.div_value}


def build_softmax(settings: SoftmaxSettings, vocab_size: int, dim: int) -> SoftmaxHead:
    if settings.type == "full":
        return FullSoftmax(vocab_size, dim)
    if settings.type == "sampled":
        return SampledSoftmax(vocab_size, dim, settings.n_samples)
    if settings.type == "adaptive":
        return AdaptiveSoftmax(vocab_size, dim, settings.cutoffs, settings.div_value)
    raise ValueError(f"softmax.type must be 'full', 'sampled' or 'adaptive', got {settings.type!r}")


def _from_description(info: dict) -> SoftmaxHead:
    """The head a file's description names (ValueError, naming the field, for one a file from
    someone else may hold but no softmax has: checked here, not left to torch)."""
    from ..bilm.options import MAX_VOCABULARY_SIZE

    def whole(key: str, value: object, largest: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= largest:
            raise ValueError(f"{key} must be a whole number from 1 to {largest:,}, got {value!r}")
        return value

    if not isinstance(info, dict):
        raise ValueError("the description must be a JSON object")
    missing = [key for key in ("type", "vocab_size", "dim") if key not in info]
    if missing:
        raise ValueError(f"the description has no {', '.join(missing)}")
    vocab_size = whole("vocab_size", info["vocab_size"], MAX_VOCABULARY_SIZE)
    dim = whole("dim", info["dim"], 1 << 16)
    cutoffs = info.get("cutoffs", [])
    if not isinstance(cutoffs, list) or len(cutoffs) > 16:
        raise ValueError(f"cutoffs must be a list of at most 16 numbers, got {cutoffs!r}")
    div_value = info.get("div_value", 4.0)
    if isinstance(div_value, bool) or not isinstance(div_value, (int, float)) or not 0 < div_value <= 1e3:
        raise ValueError(f"div_value must be a number above 0 and at most 1,000, got {div_value!r}")
    settings = SoftmaxSettings(
        type=info["type"],
        n_samples=whole("n_samples", info.get("n_samples", 1), MAX_VOCABULARY_SIZE),
        cutoffs=tuple(whole("cutoffs", c, vocab_size) for c in cutoffs),
        div_value=float(div_value),
    )
    return build_softmax(settings, vocab_size, dim)


def save_softmax(head: SoftmaxHead, path: str | Path) -> None:
    """HDF5 file (h5py is already a dependency): one dataset per parameter, the description as an
    attribute. Written atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["spacy_elmo_softmax"] = json.dumps(head.describe())
        for name, value in head.state_dict().items():
            f.create_dataset(name, data=value.detach().to("cpu", torch.float32).numpy())


def load_softmax(path: str | Path) -> SoftmaxHead:
    """Read a softmax written by `save_softmax`, with the weight files' checks (bilm/safe_hdf5.py):
    shapes are compared with the description before any tensor is allocated."""
    from ..bilm import WeightFileError
    from ..bilm.options import MAX_PARAMETERS, parse_json
    from ..bilm.safe_hdf5 import get_dataset, open_hdf5, read_float32

    path = Path(path)
    with open_hdf5(path, WeightFileError, "softmax file") as f:
        try:
            if f.attrs.get_id("spacy_elmo_softmax").get_storage_size() > 1 << 20:  # a description is ~100 bytes
                raise ValueError("the description attribute is over 1 MiB")
            info = parse_json(f.attrs["spacy_elmo_softmax"])
            with torch.device("meta"):  # shapes only: nothing is allocated yet
                head = _from_description(info)
        except KeyError:
            raise WeightFileError(f"{path}: not a spacy-elmo softmax file (no 'spacy_elmo_softmax' attribute)") from None
        except (ValueError, TypeError, OSError, RuntimeError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WeightFileError(f"{path}: unreadable softmax description ({first_line})") from None
        expected = head.state_dict()
        size = sum(value.numel() for value in expected.values())
        if size > MAX_PARAMETERS:
            raise WeightFileError(f"{path}: a softmax of {size:,} parameters is above the supported maximum {MAX_PARAMETERS:,}")
        state = {}
        for name, value in expected.items():
            dset = get_dataset(path, f, name, WeightFileError)
            if dset is None or tuple(dset.shape) != tuple(value.shape):
                raise WeightFileError(f"{path}: '{name}' is missing or has the wrong shape")
            state[name] = torch.from_numpy(read_float32(path, name, dset, WeightFileError))
    head = head.to_empty(device="cpu")
    head.load_state_dict(state)
    return head
