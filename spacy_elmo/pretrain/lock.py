"""One `spacy-elmo pretrain` per output folder.

Two runs on the same `-o` would both train, interleave their metrics lines and overwrite each
other's checkpoints. The main process holds an OS file lock (`filelock`: flock on POSIX, msvcrt on
Windows) on OUTPUT/.pretrain.lock while it runs; the operating system releases it when the process
ends however it ends, SIGKILL included, so `--resume` after a kill never finds a stale lock.

A run that fails its checks before training calls `OutputFolder.discard_new()`: the files and
folders it created go (the lock file last, still held), what was there before stays.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..atomic import output_dir_problem

LOCK_NAME = ".pretrain.lock"


class OutputFolderError(ValueError):
    """The output folder is a file, cannot be written, or another run is using it."""


class OutputFolder:
    """The output folder and what was in it before this run."""

    def __init__(self, path: Path):
        self.path = path
        self.new_folders = [p for p in (path, *path.parents) if not p.exists()]  # innermost first
        self.old_names = set(os.listdir(path)) if path.is_dir() else set()
        self.discarded = False

    def discard_new(self) -> None:
        """Remove the files this run added, the lock file last; the folders it created go, if
        empty, once the lock is released."""
        self.discarded = True
        added = sorted(set(os.listdir(self.path)) - self.old_names, key=lambda name: name == LOCK_NAME)
        for name in added:
            # Unlinking the held lock file (POSIX) lets only a run started in this very instant
            # lock a new one; on Windows it fails while open, and filelock's release removes it.
            with suppress(OSError):
                if not (self.path / name).is_dir():
                    (self.path / name).unlink()

    def _remove_new_folders(self) -> None:
        for folder in self.new_folders:
            try:
                folder.rmdir()
            except OSError:  # not empty: someone else's files
                break


@contextmanager
def output_folder_lock(output: str | Path) -> Iterator[OutputFolder]:
    """Check that `output` can be the output folder, create it, and hold its lock within the block."""
    output = Path(output)
    problem = output_dir_problem(output)
    if problem is not None:
        raise OutputFolderError(problem)
    folder = OutputFolder(output)
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
        yield folder
    finally:
        lock.release()
        if folder.discarded:
            folder._remove_new_folders()
