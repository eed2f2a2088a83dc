"""One `spacy-elmo pretrain` per output folder.

Two runs on the same `-o` would both train, interleave their metrics lines and overwrite each
other's checkpoints. The main process holds an OS file lock (`filelock`: flock on POSIX, msvcrt on
Windows) on OUTPUT/.pretrain.lock while it runs; the operating system releases it when the process
ends however it ends, SIGKILL included, so `--resume` after a kill never finds a stale lock.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..atomic import output_dir_problem

LOCK_NAME = ".pretrain.lock"


class OutputFolderError(ValueError):
    """The output folder is a file, cannot be written, or another run is using it."""


@contextmanager
def output_folder_lock(output: str | Path) -> Iterator[Path]:
    """Check that `output` can be the output folder, create it, and hold its lock within the block."""
    output = Path(output)
    problem = output_dir_problem(output)
    if problem is not None:
        raise OutputFolderError(problem)
    output.mkdir(parents=True, exist_ok=True)
    lock = FileLock(output / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputFolderError(
            f"{output}: another `spacy-elmo pretrain` is running on this output folder (it holds "
            f"{output / LOCK_NAME}); wait for it to end, or choose another output folder"
        ) from None
    try:
        yield output
    finally:
        lock.release()
