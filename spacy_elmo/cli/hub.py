"""`spacy-elmo download` and `spacy-elmo models`: the published ELMo models by name."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..hub import HOME_ENV, HubError, cache_home, cache_problem, cached_model_dir, download_model, load_catalog
from . import app
from ._common import exit_interrupted

CacheDirOpt = typer.Option(None, "--cache-dir", help=f"Model cache folder (default: ${HOME_ENV}, else the user cache folder).")


@app.command("download", short_help="Download a published ELMo model into the cache.")
def download_cli(
    name: str = typer.Argument(..., help="A model name from `spacy-elmo models`, e.g. allennlp:original or efml:de."),
    cache_dir: Optional[Path] = CacheDirOpt,
    force: bool = typer.Option(False, "--force", help="Download again even if the model is cached."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Download a published ELMo model into the cache (resumable; verified before use).

    Afterwards the name works everywhere a model directory does: config {"model": NAME},
    `spacy-elmo embed --model NAME`, `load_bilm(NAME)`.
    """
    name = name.strip()
    try:
        directory = download_model(name, cache_dir, force=force, progress=progress)
    except HubError as err:
        msg.fail(str(err), exits=1)
    except KeyboardInterrupt:
        exit_interrupted(
            f"Interrupted: what was downloaded of {name} is kept in {cache_home(cache_dir) / 'downloads'}; "
            f"run the same command again to resume"
        )
    msg.good(f"{name} is in {directory}")
    lang = _meta_lang(directory)
    print(
        f"Use it: {f'nlp = spacy.blank({lang!r}); ' if lang else ''}nlp.add_pipe('elmo', config={{'model': '{name}'}})\n"
        f"Offline machines: copy {directory} to <their cache>/models/{directory.parent.name}/{directory.name} "
        f"(their cache: `spacy-elmo models` prints it), or pass the folder's path as the model."
    )


def _meta_lang(directory: Path) -> str | None:
    """The spacy.blank() code a converted model's meta.json records (ELMoForManyLangs), if any."""
    try:
        lang = json.loads((directory / "meta.json").read_text(encoding="utf-8")).get("lang")
    except (OSError, ValueError, AttributeError):
        return None
    return lang if isinstance(lang, str) else None


@app.command("models", short_help="List the published models and which are cached.")
def models_cli(
    cache_dir: Optional[Path] = CacheDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """List the published models that `spacy-elmo download` knows (AllenNLP's, and ELMoForManyLangs'
    44 languages as efml:<code>), and which are cached here."""
    try:
        catalog = load_catalog()
    except HubError as err:
        msg.fail(str(err), exits=1)
    home = cache_home(cache_dir)
    listing = []
    for name, entry in sorted(catalog.models.items()):
        found = cached_model_dir(entry, home)
        damaged = None if found else cache_problem(entry, home)
        listing.append({
            "name": name,
            "title": entry.title,
            "language": entry.language,
            "spacy_lang": entry.spacy_lang or entry.language,
            "format": entry.family.format,
            "parameters": entry.parameters,
            "corpus": entry.corpus,
            "cached": str(found) if found else None,
            "damaged": damaged,  # a copy in the cache that is not used: `spacy-elmo download NAME` replaces it
        })
    if as_json:
        print(json.dumps({"cache": str(home), "models": listing}, indent=2))
        return
    msg.divider("Published ELMo models")
    msg.table(
        [
            (m["name"], m["language"], f"{m['parameters'] / 1e6:.1f}M" if m["parameters"] else "?", textwrap.shorten(m["title"], 44, placeholder=" ..."), "yes" if m["cached"] else "damaged" if m["damaged"] else "")
            for m in listing
        ],
        header=("name", "lang", "params", "model", "cached"),
    )
    print(f"Cache: {home}   (set {HOME_ENV} or --cache-dir to change; details and sources: docs/models.md)")
