"""Streaming plain-text corpora: a file or a folder of files, gzip or not, one sentence or paragraph
per line. Nothing here ever holds the corpus in memory.

    LineReader   raw byte lines of a list of files, with an exact, resumable position
    TextStream   -> decoded, cleaned, tokenized lines of one process's share of the corpus

Real corpora are dirty. A line that is not valid UTF-8 is decoded with U+FFFD replacements and
counted; a line that is mostly control or undecodable characters (binary garbage) is skipped and
counted; a line longer than `max_line_bytes` is cut at a space (so one can never exhaust memory)
and a line of more than `max_line_tokens` tokens is split into pieces; every such event is counted
in `CorpusStats`, which training reports. A byte-order mark starting a line (a file saved with one)
is dropped, not read as part of the first word.
"""

from __future__ import annotations

import gzip
import re
import stat
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO, Sequence

from .tokenizers import Tokenizer

GZIP_MAGIC = b"\x1f\x8b"
# Characters that do not occur in text: C0/C1 controls (tab, newline, carriage return excepted),
# DEL, and U+FFFD (what undecodable bytes became).
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


class CorpusError(ValueError):
    """The corpus is missing, empty, unreadable, or has no usable text."""


@dataclass(frozen=True)
class CorpusSettings:
    tokenizer: str = "whitespace"  # "whitespace" | "spacy-blank:<lang>"
    max_line_bytes: int = 1_000_000  # longer lines are cut (at a space when there is one)
    max_line_tokens: int = 1000  # longer lines are split into pieces, each its own <S> ... </S>
    max_binary_fraction: float = 0.3  # lines with more non-text characters than this are skipped


@dataclass
class CorpusStats:
    """What reading the corpus met. `lines` counts non-blank lines read (kept or not)."""

    lines: int = 0
    empty: int = 0  # blank lines: skipped, not an error
    bad_encoding: int = 0  # not valid UTF-8: decoded with replacement characters, kept
    binary: int = 0  # mostly control / undecodable characters: skipped
    long: int = 0  # over max_line_bytes or max_line_tokens: cut into pieces, kept
    pieces: int = 0  # sentences emitted (lines, plus the extra pieces of long lines)
    tokens: int = 0  # tokens emitted, without the sentence markers

    @property
    def bad_lines(self) -> int:
        return self.bad_encoding + self.binary

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CorpusStats":
        return cls(**{f.name: int(data.get(f.name, 0)) for f in fields(cls)})

    def __add__(self, other: "CorpusStats") -> "CorpusStats":
        return CorpusStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def summary(self) -> str:
        return (
            f"{self.lines:,} lines, {self.tokens:,} tokens; bad lines: {self.bad_lines:,} "
            f"({self.bad_encoding:,} not UTF-8, {self.binary:,} binary skipped); "
            f"{self.long:,} long lines split, {self.empty:,} blank"
        )


def find_corpus_files(path: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """A text file, or every file under a folder (sorted; hidden files skipped, and those under
    `exclude`: the run's own output folder, when it lies inside the corpus folder)."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: corpus not found (expected a text file or a folder of text files)")
    if path.is_file():
        files = [path]
    elif not path.is_dir():
        raise CorpusError(f"{path}: {special_file_kind(path)}, not a text file or a folder of text files")
    else:
        skip = _relative_inside(Path(exclude), path) if exclude is not None else None
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and not (skip is not None and p.relative_to(path).parts[: len(skip)] == skip)
        )
        if not files:
            raise CorpusError(f"{path}: the corpus folder holds no files")
    if all(f.stat().st_size == 0 for f in files):
        raise CorpusError(f"{path}: the corpus is empty ({len(files)} file(s) of 0 bytes)")
    return files


def _relative_inside(inner: Path, folder: Path) -> tuple[str, ...] | None:
    """`inner`'s path parts below `folder`, or None when it is not inside it. `inner` being `folder`
    itself is refused: the run's checkpoints and models would be read as corpus."""
    try:
        parts = inner.resolve().relative_to(folder.resolve()).parts
    except (OSError, ValueError):
        return None
    if not parts:
        raise CorpusError(
            f"{folder}: the output folder is the corpus folder; write the run to another folder (its "
            f"checkpoints and models would be read as text)"
        )
    return parts


def special_file_kind(path: Path) -> str:
    mode = path.stat().st_mode
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def corpus_fingerprint(files: Sequence[Path]) -> list[list]:
    """Names and sizes: enough to notice that a resumed run is pointed at a different corpus."""
    return [[str(f), f.stat().st_size] for f in files]


def open_bytes(path: Path) -> BinaryIO:
    """Open a corpus file for binary reading, decompressing gzip (recognised by its magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


class LineReader:
    """Byte lines of `files`, in order, without the newline; position = (file index, byte offset).

    Reads fixed-size blocks, so a file without any newline costs at most `max_line_bytes` of
    memory: longer lines come out in pieces cut at the last space or tab (or, failing that, at a
    UTF-8 character boundary). The offset counts uncompressed bytes; a gzip file is re-opened and
    decompressed up to it on resume.
    """

    def __init__(self, files: Sequence[Path], max_line_bytes: int = 1_000_000, block_bytes: int = 1 << 20):
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.files = [Path(f) for f in files]
        self.max_line_bytes = max_line_bytes
        self.block_bytes = max(1, block_bytes)
        self.file_index = 0
        self.offset = 0  # bytes of files[file_index] consumed so far
        self._fh: BinaryIO | None = None
        self._buf = b""
        self._pos = 0  # bytes of _buf consumed

    # ---- position ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        return {"file_index": self.file_index, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.file_index, self.offset = int(state["file_index"]), int(state["offset"])

    def rewind(self) -> None:
        """Back to the start of the first file (the next epoch)."""
        self.close()
        self.file_index = self.offset = 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self._fh, self._buf, self._pos = None, b"", 0

    # ---- reading -------------------------------------------------------------------------------

    def _open(self) -> None:
        path = self.files[self.file_index]
        try:
            fh = open_bytes(path)
            if self.offset:
                fh.seek(self.offset)  # gzip: decompresses up to the offset (stops early at the end)
                too_short = not isinstance(fh, gzip.GzipFile) and path.stat().st_size < self.offset
                if too_short or fh.tell() != self.offset:
                    fh.close()
                    raise CorpusError(f"{path}: shorter than the saved reading position: the corpus changed")
        except (OSError, EOFError, zlib.error) as err:
            raise CorpusError(f"{path}: cannot read ({err})") from None
        self._fh, self._buf, self._pos = fh, b"", 0

    def _read_block(self) -> bytes:
        assert self._fh is not None
        try:
            return self._fh.read(self.block_bytes)
        except (OSError, EOFError, zlib.error) as err:  # truncated or corrupt gzip, I/O error
            raise CorpusError(f"{self.files[self.file_index]}: cannot read ({err})") from None

    def _take(self, n: int, skip: int) -> bytes:
        """Consume n bytes of line plus `skip` separator bytes."""
        line = self._buf[self._pos : self._pos + n]
        self._pos += n + skip
        self.offset += n + skip
        return line[:-1] if line.endswith(b"\r") else line

    def read_line(self) -> tuple[bytes, bool] | None:
        """(the next line, whether it was cut for length), or None after the last file."""
        while True:
            if self._fh is None:
                if self.file_index >= len(self.files):
                    return None
                self._open()
            buf, pos, limit = self._buf, self._pos, self.max_line_bytes
            newline = buf.find(b"\n", pos, pos + limit + 1)
            if newline >= 0:
                return self._take(newline - pos, 1), False
            if len(buf) - pos > limit:
                cut, skip = _cut_point(buf, pos, limit)
                return self._take(cut - pos, skip), True
            block = self._read_block()
            if block:
                self._buf, self._pos = buf[pos:] + block, 0
                continue
            if len(buf) > pos:  # last line without a newline
                return self._take(len(buf) - pos, 0), False
            self.close()
            self.file_index += 1
            self.offset = 0


def _cut_point(buf: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Where to cut an over-long line starting at `pos`: (cut index, separator bytes to skip)."""
    space = max(buf.rfind(b" ", pos + 1, pos + limit), buf.rfind(b"\t", pos + 1, pos + limit))
    if space > pos:
        return space, 1
    cut = pos + limit
    # Never split a UTF-8 sequence: back off over continuation bytes (0b10xxxxxx), at most 3.
    for _ in range(3):
        if cut > pos + 1 and 0x80 <= buf[cut] < 0xC0:
            cut -= 1
    return cut, 0


def decode_line(raw: bytes, stats: CorpusStats, max_binary_fraction: float) -> str | None:
    """Bytes -> text, or None for a line that is mostly binary. Updates `stats`."""
    try:
        text, replaced = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, replaced = raw.decode("utf-8", errors="replace"), True
    if text.startswith("\ufeff"):  # a byte-order mark (a file's, or one of several files put together)
        text = text[1:]
    n_bad = len(_NOT_TEXT.findall(text))
    if n_bad and n_bad > max_binary_fraction * len(text):
        stats.binary += 1
        return None
    if replaced:
        stats.bad_encoding += 1
    return text


class TextStream:
    """Tokenized lines of one process's share of the corpus, epoch after epoch.

    `next_line()` returns a line as a list of pieces (token lists; long lines give several), or
    None at the end of the corpus when `repeat` is off. Process `rank` of `world_size` keeps every
    world_size-th non-blank line, so processes read disjoint shares without coordinating.
    The position (`state_dict`) is exact: a resumed stream yields the very lines that would have
    come next.
    """

    def __init__(
        self,
        files: Sequence[Path],
        tokenizer: Tokenizer,
        settings: CorpusSettings = CorpusSettings(),
        rank: int = 0,
        world_size: int = 1,
        repeat: bool = True,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.reader = LineReader(files, settings.max_line_bytes)
        self.tokenizer = tokenizer
        self.settings = settings
        self.rank, self.world_size, self.repeat = rank, world_size, repeat
        self.epoch = 0
        self.n_nonblank = 0  # non-blank lines seen this epoch, all processes' shares together
        self.stats = CorpusStats()
        self._kept_this_epoch = 0

    def state_dict(self) -> dict:
        return {
            "reader": self.reader.state_dict(),
            "epoch": self.epoch,
            "n_nonblank": self.n_nonblank,
            "kept_this_epoch": self._kept_this_epoch,
            "stats": self.stats.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.reader.load_state_dict(state["reader"])
        self.epoch = int(state["epoch"])
        self.n_nonblank = int(state["n_nonblank"])
        self._kept_this_epoch = int(state["kept_this_epoch"])
        self.stats = CorpusStats.from_dict(state["stats"])

    def close(self) -> None:
        self.reader.close()

    def next_line(self) -> list[list[str]] | None:
        while True:
            item = self.reader.read_line()
            if item is None:
                if not self.repeat:
                    return None
                if self._kept_this_epoch == 0:
                    raise CorpusError(
                        f"no usable text in the corpus{self._share()}: {self.stats.summary()}"
                    )
                self.reader.rewind()
                self.epoch += 1
                self._kept_this_epoch = 0
                self.n_nonblank = 0  # same share of lines for each process every epoch
                continue
            raw, was_cut = item
            if not raw.strip():
                self.stats.empty += 1
                continue
            self.n_nonblank += 1
            if (self.n_nonblank - 1) % self.world_size != self.rank:
                continue  # another process's line: not even decoded
            pieces = self._process(raw, was_cut)
            if pieces:
                self._kept_this_epoch += 1
                return pieces

    def _share(self) -> str:
        return f" for process {self.rank} of {self.world_size}" if self.world_size > 1 else ""

    def _process(self, raw: bytes, was_cut: bool) -> list[list[str]]:
        stats = self.stats
        stats.lines += 1
        text = decode_line(raw, stats, self.settings.max_binary_fraction)
        if text is None:
            return []
        tokens = self.tokenizer(text)
        if not tokens:
            stats.empty += 1
            return []
        n = self.settings.max_line_tokens
        if was_cut or len(tokens) > n:
            stats.long += 1
        pieces = [tokens[i : i + n] for i in range(0, len(tokens), n)]
        stats.pieces += len(pieces)
        stats.tokens += len(tokens)
        return pieces
