"""Atomic file writes: write a temporary file beside the target, fsync it, rename it over the
target, fsync the folder. A reader (or a run killed at any moment) sees the old file or the new
one, never half of one.

The temporary file is removed on every exit path: errors and Ctrl-C by `finally`, SIGTERM by the
commands' handler (cli/_common.py), which removes every temporary this process is writing (they
are registered in `_LIVE`) before it exits. Its name, `.NAME.PID.XXXXXXXX.tmp`, carries
the writer's process id, so the next run removes what a SIGKILLed writer left without touching
the temporary file of a writer still alive.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


_LIVE: set[Path] = set()  # temporary files and folders this process is writing right now


@contextmanager
def live_temporary(path: Path) -> Iterator[Path]:
    """Register `path` (a temporary file or folder) for removal by `remove_live_temporaries`."""
    _LIVE.add(path)
    try:
        yield path
    finally:
        _LIVE.discard(path)


def remove_live_temporaries() -> None:
    """Delete every temporary this process is writing (for a signal handler about to exit)."""
    for path in list(_LIVE):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces `path` durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)  # what SIGKILLed writers of this file left
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    _LIVE.add(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
        _LIVE.discard(tmp)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files that killed runs left beside `path` (not those of live writers).
    Returns what was removed."""
    path = Path(path)
    removed = []
    for stale in path.parent.glob(glob.escape(f".{path.name}.") + "*.tmp"):
        pid = stale.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would terminate the process
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, but belongs to someone else (or we cannot tell): leave its file
    return True


# ---- output paths, checked before the work: hours of work never end in a traceback ----------------


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _parent_problem(path: Path) -> str | None:
    """Why `path` could not be created: the nearest existing folder above it must be writable."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{path}: {parent} is a file, not a folder; choose another output"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path}: no permission to write in {parent}; choose another output"
    return None


def output_file_problem(path: Path, inputs: Iterable[Path] = (), replace: bool = True) -> str | None:
    """Why `path` cannot receive an output file (None if it can). Missing parent folders are fine:
    they are created."""
    if path.is_dir():
        return f"{path}: is a folder; give the output file's name"
    for source in inputs:
        if _same(path, source):
            return f"{path}: is the input {source}; writing there would destroy it: choose another output"
    if path.exists() and not replace:
        return f"{path}: already exists; remove it or choose another output"
    if path.exists() and not path.is_file():
        return f"{path}: exists and is not a regular file; choose another output"
    return _parent_problem(path)


def output_dir_problem(path: Path, inputs: Iterable[Path] = ()) -> str | None:
    """Why `path` cannot be an output folder (None if it can: missing folders are created)."""
    if path.exists() and not path.is_dir():
        return f"{path}: is a file; give a folder for the output"
    for source in inputs:
        if _same(path, source):
            return f"{path}: is the input {source}; writing there would overwrite it: choose another folder"
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        return f"{path}: no permission to write in it; choose another folder"
    return None if path.is_dir() else _parent_problem(path)
