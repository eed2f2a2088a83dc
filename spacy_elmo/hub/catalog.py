"""The catalog of published models: data in catalog.json, read into small typed records.

A name is "family:variant" (e.g. "allennlp:original"). A family says how its files become a model
directory (`format`: "bilm-hdf5" = an options JSON + an HDF5 weight file used as they are;
"efml-zip" = an ELMoForManyLangs zip, converted; each format has its builder in hub/install.py).
The "efml" family's 44 models are not listed in catalog.json: they are made at load time from
spacy_elmo/bilm/efml_catalog.tsv, their one source (the family's "corpus" and "sources" apply to
each). Extra catalogs (a mirror, or the test server) are JSON files of the same layout
listed in SPACY_ELMO_CATALOG (separated by os.pathsep); their entries add to or replace the shipped
ones.
"""

from __future__ import annotations

import difflib
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
    spacy_lang: str | None = None  # the code for spacy.blank() when it is not `language` ("xx": none)

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
        entry = self.models.get(name.strip())  # spaces around a name (a config value, a shell quote) are not part of it
        if entry is None:
            raise UnknownModelError(self.unknown_message(name))
        return entry

    def unknown_message(self, name: str) -> str:
        """One line: the closest names (other case, a typo, a language's English name), then the known names
        of the family the name spells (all names when it spells none)."""
        name = name.strip()
        family = name.split(":", 1)[0].lower()
        family = family if family in self.families else ""  # list that family's names only
        known = sorted(n for n in self.models if n.startswith(f"{family}:" if family else ""))
        close = self.close_names(name)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        return (
            f"unknown model name '{name}'.{hint} Known {family + ' ' if family else ''}names: {', '.join(known)} "
            f"(spacy-elmo models lists them)"
        )

    # Names other tools give these models (flair's ELMoEmbeddings("large") is the 5.5B model).
    OTHER_TOOLS_NAMES = {"allennlp:large": "allennlp:original-5.5b"}

    def close_names(self, text: str) -> list[str]:
        """Names `text` probably meant: the same name in other case, a near spelling of the family or
        the variant, or a variant that is a word of a model's title ("efml:german" -> efml:de) or a
        part of its name ("allennlp:5.5b" -> allennlp:original-5.5b)."""
        text = text.strip().lower()
        lowered = {name.lower(): name for name in self.models}
        if text in lowered:
            return [lowered[text]]
        if self.OTHER_TOOLS_NAMES.get(text) in self.models:
            return [self.OTHER_TOOLS_NAMES[text]]
        family, _, variant = text.partition(":")
        if family not in self.families:
            close = difflib.get_close_matches(family, list(self.families), n=1, cutoff=0.75)
            if not close:
                return []
            family = close[0]
            if f"{family}:{variant}" in lowered:
                return [lowered[f"{family}:{variant}"]]
        if not variant:
            return []
        variants = {name.split(":", 1)[1].lower(): name for name in self.models if name.startswith(family + ":")}
        words = {name: set(re.findall(r"[\w.]+", self.models[name].title.lower())) for name in variants.values()}
        everywhere = set.intersection(*words.values()) if words else set()  # "elmo": tells no model apart
        telling = len(variant) >= 3 and variant not in everywhere
        found = [
            name for v, name in variants.items()
            if (telling and variant in words[name]) or (len(variant) >= 2 and variant in v.split("-"))
        ]
        found += [variants[v] for v in difflib.get_close_matches(variant, list(variants), n=3, cutoff=0.6) if variants[v] not in found]
        return found[:3]

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
            spacy_lang=m.get("spacy_lang"),
        )
    return Catalog(families, models, dict(data.get("sources", {})))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CatalogError(f"{path}: cannot read the model catalog ({err})") from None


def _read(path: Path) -> Catalog:
    return _parse(_read_json(path), str(path))


def efml_models(family: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ELMoForManyLangs models in catalog.json's layout, from efml_catalog.tsv."""
    from ..bilm.efml_catalog import efml_catalog  # on use: reading the catalog needs no model code

    return {
        e.name: {
            "title": f"ELMoForManyLangs {e.language}",
            "language": e.code,
            "spacy_lang": e.spacy_lang,
            "corpus": family.get("corpus", "not stated"),
            "licence": None if e.licence == "not stated" else e.licence,
            "licence_note": "not stated by the publisher; see the model's entry in the NLPL repository",
            "files": {"archive": {"url": e.url, "size": None, "sha256": None}},
            "sources": family.get("sources", []),
            "note": f"{e.language} model {e.nlpl_id} of the NLPL vectors repository, converted on download; "
            f"use it in a spacy.blank(\"{e.spacy_lang}\") pipeline. Size and checksum are not published.",
        }
        for e in efml_catalog().values()
    }


@lru_cache(maxsize=8)
def _load(extra: str) -> Catalog:
    data = _read_json(CATALOG_PATH)
    if isinstance(data, dict) and isinstance(data.get("families", {}).get("efml"), dict):
        data["models"] = {**data.get("models", {}), **efml_models(data["families"]["efml"])}
    catalog = _parse(data, str(CATALOG_PATH))
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
