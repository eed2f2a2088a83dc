"""The pretraining text as a declared mixture of sources (configs/corpus_en.cfg).

    prepare_mixture("configs/corpus_en.cfg", "corpus/pretrain_mix.txt", data_dir="../shared/data")

Each source is a list of text files (gzip accepted, one paragraph or sentence per line) and a
weight: every line of the source is used `weight` times (2.5 = twice, plus a seeded half of the
lines once more; 0.2 = a seeded fifth). Before weighting, the text is cleaned (blanks and WikiText
headings dropped), deduplicated against itself (exact lines, across all sources: the first
occurrence in declaration order is kept), and every line that shares a word 8-gram with a
protected evaluation text is dropped, as the contamination check of ../shared/data/PROVENANCE.md
does (lower-cased word tokens: runs of letters and digits, so tokenization does not matter). The
result is shuffled at line level with the seed and written atomically; `<output>.meta.json`
records the words of every source at every stage, which the model card and the report show.

The same declaration, data and seed give the same bytes on any machine: nothing here depends on
hash seeds, spaCy's version or the order files are listed in a folder.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from thinc.api import Config
from tqdm import tqdm

from ._io import write_json
from .ner import read_conll
from .pretrain_corpus import _open_text, clean_lines, meta_path, write_lines

# Runs of letters and digits: "well @-@ known" (WikiText), "well-known" and "well - known" all give
# the same words, so the check does not depend on how each text was tokenized.
_WORD = re.compile(r"\w+")
_UNK = "<unk>"


class MixtureError(ValueError):
    """The mixture declaration is invalid, or one of its files is missing."""


@dataclass(frozen=True)
class Source:
    name: str
    files: tuple[str, ...]
    weight: float


@dataclass(frozen=True)
class Exclusion:
    """Texts the corpus must not contain: any line sharing an `ngram`-gram with one of their
    sentences (or paragraphs) of at least `min_tokens` words is dropped."""

    files: tuple[str, ...]
    ngram: int = 8
    min_tokens: int = 10


@dataclass(frozen=True)
class Mixture:
    sources: tuple[Source, ...]
    exclude: Exclusion | None
    seed: int = 0
    dedup: bool = True

    @classmethod
    def from_file(cls, path: str | Path) -> "Mixture":
        path = Path(path)
        if not path.is_file():
            raise MixtureError(f"{path}: mixture declaration not found")
        try:
            config = Config().from_str(path.read_text(encoding="utf-8"))
        except Exception as err:  # noqa: BLE001 - confection raises several kinds
            raise MixtureError(f"{path}: not a valid config file ({err})") from None
        return cls.from_config(config, source=str(path))

    @classmethod
    def from_config(cls, config: dict, source: str = "mixture") -> "Mixture":
        mix = dict(config.get("mixture", {}))
        declared = mix.get("sources") or {}
        if not declared:
            raise MixtureError(f"{source}: [mixture.sources.NAME] sections declare the sources; none found")
        sources = []
        for name, spec in declared.items():
            files = spec.get("files")
            weight = spec.get("weight", 1.0)
            if isinstance(files, str):
                files = [files]
            if not files or not all(isinstance(f, str) and f for f in files):
                raise MixtureError(f"{source}: mixture.sources.{name}.files must be a list of file paths")
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise MixtureError(f"{source}: mixture.sources.{name}.weight must be a number >= 0, got {weight!r}")
            sources.append(Source(name, tuple(files), float(weight)))
        exclude = None
        if config.get("exclude"):
            spec = dict(config["exclude"])
            files = spec.get("files") or []
            ngram, min_tokens = spec.get("ngram", 8), spec.get("min_tokens", 10)
            if not isinstance(ngram, int) or ngram < 1 or not isinstance(min_tokens, int) or min_tokens < ngram:
                raise MixtureError(f"{source}: exclude.ngram must be >= 1 and exclude.min_tokens >= ngram")
            exclude = Exclusion(tuple(files), ngram, min_tokens)
        seed = mix.get("seed", 0)
        if not isinstance(seed, int):
            raise MixtureError(f"{source}: mixture.seed must be an integer")
        return cls(tuple(sources), exclude, seed, bool(mix.get("dedup", True)))


# ---- the protected n-grams ---------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits), the unit of the contamination check."""
    return _WORD.findall(text.lower())


def ngram_keys(tokens: Sequence[str], n: int) -> Iterator[bytes]:
    """A stable 8-byte key per n-gram (stable across processes, unlike hash())."""
    for i in range(len(tokens) - n + 1):
        yield hashlib.blake2b(" ".join(tokens[i : i + n]).encode("utf-8"), digest_size=8).digest()


def protected_texts(path: Path) -> Iterator[list[str]]:
    """The sentences or paragraphs of an evaluation file, as word lists: CoNLL files (4 columns,
    -DOCSTART- lines) by sentence, anything else (WikiText) by line, with <unk> breaking the text:
    the word it hides is unknown, so no n-gram spans it."""
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(4096)
    if head.lstrip().startswith("-DOCSTART-"):
        for doc in read_conll(path):
            for sentence in doc:
                yield words(" ".join(sentence.words))
        return
    with _open_text(path, "") as f:
        for line in clean_lines(f):
            for part in line.split(_UNK):
                yield words(part)


def protected_ngrams(exclusion: Exclusion, data_dir: Path | None) -> set[bytes]:
    keys: set[bytes] = set()
    for name in exclusion.files:
        path = _resolve(name, data_dir)
        for tokens in protected_texts(path):
            if len(tokens) >= exclusion.min_tokens:
                keys.update(ngram_keys(tokens, exclusion.ngram))
    return keys


# ---- the mixture -------------------------------------------------------------------------------


def _resolve(name: str, data_dir: Path | None) -> Path:
    path = Path(data_dir) / name if data_dir is not None else Path(name)
    if not path.is_file():
        raise MixtureError(f"{path}: file of the mixture not found (is --data-dir right?)")
    return path


def _line_key(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8"), digest_size=16).digest()


def weighted(lines: list[str], weight: float, rng: random.Random) -> list[str]:
    """Every line int(weight) times, plus a seeded sample of round(frac * n) lines once more."""
    whole, frac = int(weight), weight - int(weight)
    out = lines * whole
    extra = round(frac * len(lines))
    if extra:
        out += [lines[i] for i in sorted(rng.sample(range(len(lines)), extra))]
    return out


def prepare_mixture(
    declaration: str | Path | Mixture,
    output: str | Path,
    data_dir: str | Path | None = None,
    max_words: int = 0,
    progress: bool = True,
) -> dict:
    """Write the mixture to `output` (one line per paragraph) and return / write its meta data.

    max_words: keep only the first lines of the shuffled mixture up to about this many words
    (0: all): a smaller run of the same mixture, for demos and tests."""
    mixture = declaration if isinstance(declaration, Mixture) else Mixture.from_file(declaration)
    data_dir = Path(data_dir) if data_dir is not None else None
    files = {s.name: [_resolve(f, data_dir) for f in s.files] for s in mixture.sources}  # fail early
    protected = protected_ngrams(mixture.exclude, data_dir) if mixture.exclude else set()
    n = mixture.exclude.ngram if mixture.exclude else 0
    seen: set[bytes] = set()
    rng = random.Random(mixture.seed)
    per_source: dict[str, dict] = {}
    mixed: list[tuple[str, str]] = []  # (source, line)
    for source in mixture.sources:
        stats = {"files": [str(f) for f in files[source.name]], "weight": source.weight,
                 "lines_read": 0, "words_read": 0, "duplicate_lines": 0, "duplicate_words": 0,
                 "excluded_lines": 0, "excluded_words": 0}
        kept: list[str] = []
        for line in _progress(_source_lines(files[source.name]), progress, source.name):
            count = len(line.split())
            stats["lines_read"] += 1
            stats["words_read"] += count
            if mixture.dedup:
                key = _line_key(line)
                if key in seen:
                    stats["duplicate_lines"] += 1
                    stats["duplicate_words"] += count
                    continue
                seen.add(key)
            if protected and any(k in protected for k in ngram_keys(words(line), n)):
                stats["excluded_lines"] += 1
                stats["excluded_words"] += count
                continue
            kept.append(line)
        stats["unique_words"] = stats["words_read"] - stats["duplicate_words"] - stats["excluded_words"]
        lines = weighted(kept, source.weight, rng)
        stats["lines_in_mixture"] = len(lines)
        stats["words_in_mixture"] = sum(len(line.split()) for line in lines)
        per_source[source.name] = stats
        mixed.extend((source.name, line) for line in lines)
    rng.shuffle(mixed)

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    n_lines, n_words, written = write_lines(mixed, output, max_words)
    for name in per_source:
        per_source[name]["words_written"] = written.get(name, 0)
    meta = {
        "kind": "mixture",
        "source": " + ".join(f"{s.name} x{s.weight:g}" for s in mixture.sources),
        "sources": per_source,
        "files": {name: stats["words_written"] for name, stats in per_source.items()},
        "seed": mixture.seed,
        "dedup": mixture.dedup,
        "exclude": None if mixture.exclude is None else {
            "files": list(mixture.exclude.files), "ngram": mixture.exclude.ngram,
            "min_tokens": mixture.exclude.min_tokens, "protected_ngrams": len(protected),
        },
        "fallback_used": False,
        "lines": n_lines,
        "words": n_words,
        "max_words": max_words,
        "tokenized": "as in the sources (pretraining tokenizes with spaCy's rules)",
        "shuffle_seed": mixture.seed,
    }
    write_json(meta_path(output), meta)
    return meta


def _source_lines(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        with _open_text(path, "") as f:
            yield from clean_lines(f)


def _progress(lines: Iterator[str], enabled: bool, name: str) -> Iterator[str]:
    return tqdm(lines, desc=name, unit=" lines", disable=not enabled, mininterval=2.0)
