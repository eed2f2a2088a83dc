"""The cache folder and its layout.

    <home>/models/<family>/<variant>/    finished model directories (options.json, weights.hdf5, ...)
    <home>/downloads/<family>/<variant>/ files being downloaded (*.part, resumable)
    <home>/locks/<family>/<variant>.lock one download of a model at a time
    <home>/hashes.json                   sha256 recorded at first download when none is published

<home> is --cache-dir, else $SPACY_ELMO_HOME, else the platform's user cache folder
(platformdirs: ~/.cache/spacy-elmo on Linux). A finished model directory appears in one rename, so
its presence means it is complete; copying it into another machine's <home>/models/ works too.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import platformdirs

from .catalog import CatalogEntry
from .errors import CacheError

HOME_ENV = "SPACY_ELMO_HOME"


def cache_home(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("spacy-elmo", appauthor=False))


def model_dir(entry: CatalogEntry, home: Path) -> Path:
    return home / "models" / entry.folder


def download_dir(entry: CatalogEntry, home: Path) -> Path:
    return home / "downloads" / entry.folder


def lock_path(entry: CatalogEntry, home: Path) -> Path:
    return (home / "locks" / entry.folder).with_suffix(".lock")


def hashes_path(home: Path) -> Path:
    return home / "hashes.json"


def cached_model_dir(entry: CatalogEntry, home: Path) -> Path | None:
    """The finished model directory, or None when the model is not in this cache (or its copy there
    is damaged: cache_problem says how)."""
    directory = model_dir(entry, home)
    if directory.is_dir() and cache_problem(entry, home) is None:
        return directory
    return None


def cache_problem(entry: CatalogEntry, home: Path) -> str | None:
    """Why the model's directory in the cache cannot be used as it is: a file missing, or not the
    size it had when installed (meta.json's "model_files"). None when it is fine, or not there at
    all. A few stat calls: the bytes are not read (loading checks the HDF5 layout and shapes)."""
    directory = model_dir(entry, home)
    if not directory.is_dir():
        return None
    sizes = {"options.json": None, "weights.hdf5": None, **_installed_sizes(directory)}
    for name, size in sizes.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if size is not None and path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, {size:,} when it was installed"
    return None


def _installed_sizes(directory: Path) -> dict[str, int]:
    """name -> bytes of each file of the model directory, as meta.json records them at install
    (downloads made before "model_files" was recorded: the sizes of the files fetched as they are)."""
    from ..bilm.weights import read_meta  # on use, as catalog.py does: size-capped, checked JSON

    try:
        meta = read_meta(directory)
    except ValueError:  # unreadable: loading the model says so, with the file named
        return {}
    recorded = meta.get("model_files")
    if not isinstance(recorded, dict):
        files = meta.get("files") if isinstance(meta.get("files"), dict) else {}
        recorded = {name: info.get("size") for name, info in files.items()
                    if name in ("options.json", "weights.hdf5") and isinstance(info, dict)}
    return {
        name: size for name, size in recorded.items()
        if isinstance(name, str) and "/" not in name and "\\" not in name and name not in ("", ".", "..")
        and isinstance(size, int) and not isinstance(size, bool)
    }


def ensure_writable(home: Path) -> None:
    """Make the cache's folders, or say in one line why the cache cannot be written."""
    try:
        for sub in ("models", "downloads", "locks"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=home)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise cache_error(home, err) from None


def cache_error(home: Path, err: OSError) -> CacheError:
    if err.errno == errno.ENOSPC:
        return CacheError(
            f"{home}: the disk is full ({err.strerror}). Free some space, or download into another "
            f"folder with --cache-dir DIR (or {HOME_ENV}=DIR)"
        )
    return CacheError(
        f"{home}: the model cache cannot be written ({err.strerror or err}; read-only?). Models already "
        f"in it are still used; to download, pass --cache-dir DIR or set {HOME_ENV}=DIR to a writable folder"
    )
