"""Published ELMo models by name ("allennlp:original"): a catalog, a cache, and a downloader.

    from spacy_elmo.hub import download_model, resolve_model_name
    download_model("allennlp:small")          # -> the cached model directory (downloads once)
    resolve_model_name("allennlp:small")      # -> the cached directory; never downloads unless allowed
    resolve_model_name("path/to/dir")         # -> None: not a name

No spaCy import. The network code (requests) loads only when something is downloaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .catalog import Catalog, CatalogEntry, RemoteFile, load_catalog
from .errors import (
    CacheError,
    CatalogError,
    DownloadError,
    HubError,
    ModelNotDownloadedError,
    UnknownModelError,
    VerificationError,
)
from .home import HOME_ENV, cache_home, cache_problem, cached_model_dir, model_dir

ALLOW_DOWNLOAD_ENV = "SPACY_ELMO_ALLOW_DOWNLOAD"


def download_model(name: str, cache_dir: str | Path | None = None, **options) -> Path:
    """The named model's directory, downloaded first when it is not cached (see install.py)."""
    from .install import download_model as download  # requests and the builders load here

    return download(name, cache_dir, **options)


def resolve_model_name(
    model: str | Path, *, allow_download: bool | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """A model name -> its cached directory; None when `model` is not a name (a path).

    A model that is not cached is downloaded only when allowed (allow_download, else the
    SPACY_ELMO_ALLOW_DOWNLOAD=1 environment variable); otherwise ModelNotDownloadedError says what
    to run.
    """
    text = str(model).strip()  # spaces around a name in a config are not part of it
    if ":" not in text:
        return None
    catalog = load_catalog()
    if not catalog.is_name(text):
        _check_not_misspelled(catalog, text, model)
        return None
    entry = catalog.get(text)
    home = cache_home(cache_dir)
    found = cached_model_dir(entry, home)
    if found is not None:
        return found
    if allow_download is None:
        allow_download = os.environ.get(ALLOW_DOWNLOAD_ENV, "").lower() in ("1", "true", "yes")
    if not allow_download:
        problem = cache_problem(entry, home)
        raise ModelNotDownloadedError(
            damaged_message(entry, home, problem) if problem else not_downloaded_message(entry, home)
        )
    return download_model(text, cache_dir)


def _check_not_misspelled(catalog: Catalog, text: str, model: str | Path) -> None:
    """A path that does not exist but is spelled almost like a name ("Allennlp:small", "allenlp:small",
    "allennlp:") was meant as one: say which, rather than "not a model directory"."""
    if not re.fullmatch(r"[A-Za-z][\w-]+:[\w.-]*", text) or Path(model).exists():
        return
    if catalog.close_names(text) or text.split(":", 1)[0].lower() in catalog.families:
        raise UnknownModelError(catalog.unknown_message(text))


def damaged_message(entry: CatalogEntry, home: Path, problem: str) -> str:
    return (
        f"{entry.name}: the copy in the cache is damaged ({model_dir(entry, home)}: {problem}). Run "
        f"`spacy-elmo download {entry.name}` to download it again, or allow downloading on first use: "
        f"allow_download = true in the elmo component's config, or {ALLOW_DOWNLOAD_ENV}=1"
    )


def not_downloaded_message(entry: CatalogEntry, home: Path) -> str:
    target = model_dir(entry, home)
    return (
        f"{entry.name} is not downloaded (looked in {target}). Run `spacy-elmo download {entry.name}` "
        f"(without internet here: run it on a machine with internet and copy the folder it prints to {target}, "
        f"or pass that folder's path as the model), or allow downloading on first use: allow_download = true "
        f"in the elmo component's config, or {ALLOW_DOWNLOAD_ENV}=1"
    )


__all__ = [
    "ALLOW_DOWNLOAD_ENV", "HOME_ENV", "CacheError", "Catalog", "CatalogEntry", "CatalogError", "DownloadError",
    "HubError", "ModelNotDownloadedError", "RemoteFile", "UnknownModelError", "VerificationError",
    "cache_home", "cache_problem", "cached_model_dir", "download_model", "load_catalog", "model_dir", "resolve_model_name",
]
