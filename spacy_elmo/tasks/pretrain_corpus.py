"""The pretraining text: WikiText-103 (raw) when its archive is there, else a named local fallback.

    prepare_corpus([wikitext-103-raw-v1.zip, reuters21578.en.txt], corpus/pretrain_train.txt)

The first source that exists is used, and the choice is written next to the output
(`<output>.meta.json`) so the report can say which corpus the biLM saw. A source may be several
files joined by "+" (`reuters.txt+wiki.txt`): it is used, concatenated, when all of them exist. A `.zip` source is read
as the WikiText archive (member `*/wiki.train.raw`, streamed, never unpacked to disk); any
other file as plain text (gzip accepted), one paragraph or sentence per line. WikiText section
headings (` = Title = `) and blank lines are dropped. With tokenize=True each line is split with
spaCy's English rules and written space-separated, so the biLM is pretrained on the same word
split that NER (CoNLL tokens) and STS-B (the same rules) give it, and pretraining itself can use
the fast whitespace tokenizer on every epoch.
"""

from __future__ import annotations

import gzip
import io
import random
import re
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

from ..atomic import atomic_path
from ._io import write_json

WIKITEXT_MEMBER = "wiki.train.raw"
_HEADING = re.compile(r"^\s*(=\s+)+\S.*?(\s+=)+\s*$")


def _open_text(path: Path, member: str) -> TextIO:
    if path.suffix == ".zip":
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if n.endswith("/" + member) or n == member]
        if not names:
            raise ValueError(f"{path}: no {member} in the archive")
        return io.TextIOWrapper(archive.open(names[0]), encoding="utf-8", errors="replace")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def clean_lines(lines: Iterator[str]) -> Iterator[str]:
    """Stripped lines, without blanks and WikiText headings."""
    for line in lines:
        line = line.strip()
        if line and not _HEADING.match(line):
            yield line


def source_files(source: str | Path, data_dir: str | Path | None = None) -> list[Path]:
    """The files of one source: a path, or several joined by "+", relative to data_dir if given."""
    parts = [part for part in str(source).split("+") if part.strip()]
    if not parts:
        raise ValueError(f"empty pretraining source: {source!r}")
    return [Path(data_dir) / part if data_dir is not None else Path(part) for part in parts]


def choose_source(
    sources: Sequence[str | Path], data_dir: str | Path | None = None
) -> tuple[list[Path], bool]:
    """(files of the first source whose files all exist, whether it is a fallback, i.e. not the
    first listed)."""
    for k, source in enumerate(sources):
        files = source_files(source, data_dir)
        if all(f.is_file() for f in files):
            return files, k > 0
    raise FileNotFoundError("none of the pretraining sources exists: " + ", ".join(map(str, sources)))


def prepare_corpus(
    sources: Sequence[str | Path],
    output: str | Path,
    max_words: int = 0,
    tokenize: bool = False,
    member: str = WIKITEXT_MEMBER,
    data_dir: str | Path | None = None,
    shuffle_seed: int | None = None,
) -> dict:
    """Write the cleaned text of the first existing source to `output` (at most `max_words`
    words when > 0, whole lines only). Returns and writes the meta data.

    shuffle_seed: shuffle the lines (of all the source's files together) with this seed before
    the word budget is applied. Pretraining streams its text in order, so without it a biLM reads
    one file after the other and ends on the last; shuffling holds the whole text in memory."""
    files, fallback = choose_source(sources, data_dir)
    split = _spacy_split() if tokenize else None
    output = Path(output)
    source = _source_lines(files, member, split)
    lines: Iterable[tuple[str, str]] = source
    if shuffle_seed is not None:
        lines = list(source)
        random.Random(shuffle_seed).shuffle(lines)
    # closing(): a word budget that stops early closes the source file now, not at garbage collection
    with closing(source):
        n_lines, n_words, words_per_file = write_lines(lines, output, max_words)  # words per file written from
    meta = {
        "source": " + ".join(str(path) for path in files),
        "files": words_per_file,
        "preferred": str(sources[0]),
        "fallback_used": fallback,
        "lines": n_lines,
        "words": n_words,
        "max_words": max_words,
        "tokenized": "spacy English rules" if tokenize else "as in the source",
        "shuffle_seed": shuffle_seed,
    }
    write_json(meta_path(output), meta)
    return meta


def write_lines(lines: Iterable[tuple[str, str]], output: Path, max_words: int = 0) -> tuple[int, int, dict[str, int]]:
    """Write (origin, line) pairs' lines to `output` atomically, whole lines only, stopping before
    the line that would pass `max_words` (0: all). Returns (lines, words, words per origin)."""
    n_lines = n_words = 0
    words_per_origin: dict[str, int] = {}
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for origin, line in lines:
            words = len(line.split())
            if max_words and n_words + words > max_words and n_lines:
                break
            out.write(line + "\n")
            n_lines += 1
            n_words += words
            words_per_origin[origin] = words_per_origin.get(origin, 0) + words
    return n_lines, n_words, words_per_origin


def _source_lines(files: Sequence[Path], member: str, split) -> Iterator[tuple[str, str]]:
    """(file, cleaned and optionally word-split line) for every line of the files, in order."""
    for path in files:
        with _open_text(path, member) as f:
            for line in clean_lines(f):
                yield str(path), split(line) if split is not None else line


def _spacy_split():
    from .tokens import english_tokenizer

    tokenizer = english_tokenizer()
    return lambda line: " ".join(t.text for t in tokenizer(line) if t.text.strip())


def meta_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".meta.json")


def describe_corpus(meta: dict) -> str:
    """One line for a report or a model card: which text, how many words of each source."""
    if meta.get("kind") == "mixture":
        parts = [f"{name} {stats['words_written']:,} (x{stats['weight']:g})" for name, stats in meta["sources"].items()]
        note = "lines deduplicated" if meta.get("dedup") else ""
        if meta.get("exclude"):
            kept_out = ", ".join(meta["exclude"]["files"])
            note += f"{'; ' if note else ''}lines sharing a word {meta['exclude']['ngram']}-gram with {kept_out} removed"
        return f"mixture of {' + '.join(parts)} = {meta['words']:,} words" + (f" ({note})" if note else "")
    fallback = " (fallback: preferred source absent)" if meta.get("fallback_used") else ""
    names = " + ".join(Path(path).name for path in meta.get("files") or [meta["source"]])
    words = f"{meta['words']:,}" if isinstance(meta.get("words"), int) else "n/a"
    return f"{names}, {words} words{fallback}"

