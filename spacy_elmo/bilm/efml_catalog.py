"""The 44 ELMoForManyLangs models by name (`efml:de`, `efml:zh`, ...): data in efml_catalog.tsv.

    entry = efml_entry("efml:de")      # or "de"
    entry.url                          # the NLPL zip; after downloading and unpacking it:
    convert_efml(zip_or_folder, out_dir, meta=entry.meta())

The model catalog (spacy_elmo/hub) lists these same entries as its `efml` family, read from this
file: `spacy-elmo download efml:de` fetches, converts and caches one in a step.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("efml_catalog.tsv")
PREFIX = "efml:"


@dataclass(frozen=True)
class EfmlEntry:
    name: str  # efml:<code>
    code: str  # language code (ISO 639-1, or 639-3 where there is none: cu, grc)
    language: str
    nlpl_id: str  # id in the NLPL vectors repository
    url: str  # the model's zip
    spacy_lang: str  # for spacy.blank(); "xx" where spaCy has no class for the language
    licence: str

    def meta(self) -> dict[str, str]:
        """What the converted model's meta.json records about where it came from."""
        return {
            "name": self.name, "lang": self.spacy_lang, "language": self.language, "source_url": self.url,
            "licence": self.licence, "origin": "ELMoForManyLangs (HIT-SCIR), NLPL vectors repository",
        }


@lru_cache(maxsize=1)
def efml_catalog() -> dict[str, EfmlEntry]:
    """name -> entry, in the file's order."""
    with open(CATALOG_FILE, encoding="utf-8", newline="") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        entries = [EfmlEntry(**row) for row in rows]
    return {e.name: e for e in entries}


def efml_entry(name: str) -> EfmlEntry:
    """The entry for `efml:<code>` (or just `<code>`); a clear error listing the codes otherwise."""
    key = name if name.startswith(PREFIX) else PREFIX + name
    catalog = efml_catalog()
    if key not in catalog:
        codes = ", ".join(e.code for e in catalog.values())
        raise ValueError(f"no ELMoForManyLangs model {name!r}: use efml:<code> with one of {codes}")
    return catalog[key]
