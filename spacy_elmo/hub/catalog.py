"""The catalog of published models: data in catalog.json, read into small typed records.

A name is "family:variant" (e.g. "allennlp:original"). A family says how its files become a model
directory (`format`: "bilm-hdf5" = an options JSON + an HDF5 weight file used as they are; a
family whose models come as an archive names another format, handled by its own builder in
hub/install.py). Extra catalogs (a mirror, or the test server) are JSON files of the same layout
listed in SPACY_ELMO_CATALOG (separated by os.pathsep); their entries add to or replace the shipped
ones.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import CatalogError, UnknownModelError

CATALOG_PATH = Path(__file__).with_name("catalog.json")
CATALOG_ENV = "SPACY_ELMO_CATALOG"
# family: at least two characters, so that a Windows drive ("C:\\models") is never a name.
NAME_PATTERN = re.compile(r"^(?P<family>[a-z][a-z0-9_-]+):(?P<variant>[A-Za-z0-9][A-Za-z0-9_.-]*)$")


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch. size / sha256 are None when the publisher gives none."""

    url: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    format: str
    homepage: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    family: Family
    title: str
    language: str
    corpus: str
    files: dict[str, RemoteFile]  # role ("options", "weights", "archive", ...) -> file
    parameters: int | None = None
    parameters_published: str | None = None
    architecture: dict[str, int] | None = None  # lstm_dim, projection_dim, n_highway
    licence: str | None = None
    licence_note: str | None = None
    sources: tuple[str, ...] = ()  # keys into Catalog.sources
    note: str | None = None

    @property
    def folder(self) -> Path:
        """Where the model lives under the cache's models/ folder (no ':' in file names)."""
        family, variant = self.name.split(":", 1)
        return Path(family) / variant


@dataclass(frozen=True)
class Catalog:
    families: dict[str, Family]
    models: dict[str, CatalogEntry]
    sources: dict[str, str]

    def get(self, name: str) -> CatalogEntry:
        entry = self.models.get(name)
        if entry is None:
            raise UnknownModelError(
                f"unknown model name '{name}'. Known names: {', '.join(sorted(self.models))} "
                f"(spacy-elmo models lists them)"
            )
        return entry

    def is_name(self, text: str) -> bool:
        """True when `text` is spelled like a name of a family this catalog knows."""
        match = NAME_PATTERN.match(text)
        return bool(match) and match["family"] in self.families


def _fail(where: str, problem: str) -> CatalogError:
    return CatalogError(f"{where}: {problem}")


def _remote_file(data: Any, where: str) -> RemoteFile:
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise _fail(where, "each file needs a 'url' string")
    size, sha256 = data.get("size"), data.get("sha256")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise _fail(where, f"'size' must be a positive integer or null, got {size!r}")
    if sha256 is not None and not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)):
        raise _fail(where, f"'sha256' must be 64 lowercase hex digits or null, got {sha256!r}")
    return RemoteFile(data["url"], size, sha256)


def _parse(data: Any, where: str) -> Catalog:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise _fail(where, "expected a JSON object with 'models' (see spacy_elmo/hub/catalog.json)")
    families = {
        name: Family(name, f.get("title", name), f.get("format", ""), f.get("homepage"), f.get("note"))
        for name, f in data.get("families", {}).items()
    }
    models: dict[str, CatalogEntry] = {}
    for name, m in data["models"].items():
        match = NAME_PATTERN.match(name)
        if not match:
            raise _fail(where, f"'{name}' is not a valid name (family:variant)")
        if match["family"] not in families:
            raise _fail(where, f"'{name}': family '{match['family']}' is not in 'families'")
        if not isinstance(m.get("files"), dict) or not m["files"]:
            raise _fail(where, f"'{name}' has no 'files'")
        models[name] = CatalogEntry(
            name=name,
            family=families[match["family"]],
            title=m.get("title", name),
            language=m.get("language", "?"),
            corpus=m.get("corpus", "not stated"),
            files={role: _remote_file(f, f"{where}: {name}.files.{role}") for role, f in m["files"].items()},
            parameters=m.get("parameters"),
            parameters_published=m.get("parameters_published"),
            architecture=m.get("architecture"),
            licence=m.get("licence"),
            licence_note=m.get("licence_note"),
            sources=tuple(m.get("sources", ())),
            note=m.get("note"),
        )
    return Catalog(families, models, dict(data.get("sources", {})))


def _read(path: Path) -> Catalog:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CatalogError(f"{path}: cannot read the model catalog ({err})") from None
    return _parse(data, str(path))


@lru_cache(maxsize=8)
def _load(extra: str) -> Catalog:
    catalog = _read(CATALOG_PATH)
    for item in filter(None, extra.split(os.pathsep)):
        more = _read(Path(item))
        catalog = Catalog(
            {**catalog.families, **more.families},
            {**catalog.models, **more.models},
            {**catalog.sources, **more.sources},
        )
    return catalog


def load_catalog() -> Catalog:
    """The shipped catalog plus any listed in SPACY_ELMO_CATALOG."""
    return _load(os.environ.get(CATALOG_ENV, ""))
