"""MODEL_CARD.md for a downloaded model: the catalog's facts, with their sources."""

from __future__ import annotations

from typing import Any

from .catalog import CatalogEntry


def model_card(entry: CatalogEntry, meta: dict[str, Any]) -> str:
    published = f" (published: {entry.parameters_published})" if entry.parameters_published else ""
    licence = entry.licence or ("not stated" + (f" ({entry.licence_note})" if entry.licence_note else ""))
    rows = [
        ("name", f"`{entry.name}`"),
        ("language", entry.language),
        ("training corpus", entry.corpus),
        ("parameters", f"{meta['parameters']:,}{published}"),
        ("licence", licence),
        ("downloaded", meta["downloaded_at"]),
    ]
    lines = [f"# {entry.title}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    lines += ["", "## Files", "", "| file | url | bytes | sha256 |", "|---|---|---|---|"]
    for name, info in meta["files"].items():
        lines.append(f"| {name} | {info['url']} | {info['size']:,} | `{info['sha256']}` ({info['sha256_source']}) |")
    if entry.note:
        lines += ["", "## Notes", "", entry.note]
    if meta["sources"]:
        lines += ["", "## Sources", ""]
        lines += [f"- {text}" for text in meta["sources"].values()]
    pipeline = f" in a `spacy.blank(\"{meta['lang']}\")` pipeline" if meta.get("lang") else ""
    lines += ["", f"Use it with `nlp.add_pipe(\"elmo\", config={{\"model\": \"{entry.name}\"}})`{pipeline}.", ""]
    return "\n".join(lines)
