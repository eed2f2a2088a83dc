"""Download a catalog model and turn its files into an ordinary model directory.

One process at a time per model (a file lock; a second one waits, then finds the model there).
The directory is assembled in a staging folder beside its final place and appears in one rename,
so nothing half-written is ever used. How files become a directory depends on the family's
format: BUILDERS maps a format to its builder ("bilm-hdf5": the files as they are; "efml-zip": an
ELMoForManyLangs zip, converted by spacy_elmo.bilm.efml).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock

from .. import __version__
from ..atomic import atomic_path, fsync_dir
from ..bilm.options import ElmoOptions, OptionsError
from ..bilm.weights import META_NAME, OPTIONS_NAME, WEIGHTS_NAME, WeightFileError, expected_shapes, read_weight_arrays
from .card import model_card
from .catalog import CatalogEntry, load_catalog
from .errors import CacheError, HubError, VerificationError
from .fetch import Fetched, check_free_space, fetch
from .home import cache_error, cache_home, cache_problem, cached_model_dir, download_dir, ensure_writable, hashes_path, lock_path, model_dir

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
OPTIONS_MAX_BYTES = 1 << 20
WEIGHTS_MAX_BYTES = 4 << 30  # when the parameter count is unknown: larger than any published ELMo
ARCHIVE_NAME = "model.zip"
ARCHIVE_MAX_BYTES = 2 << 30  # an ELMoForManyLangs zip is a few hundred MB
CONVERTED_NAME = "converted"
PUBLISHED = "published"
RECORDED = "recorded at first download"

Builder = Callable[..., Path]


def download_model(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> Path:
    """Make sure the named model is in the cache and return its directory (downloads when missing)."""
    entry = load_catalog().get(name)
    home = cache_home(cache_dir)
    found = cached_model_dir(entry, home)
    if found is not None and not force:
        return found
    problem = None if force else cache_problem(entry, home)
    if problem and progress:
        print(f"The cached copy of {entry.name} is damaged ({problem}): downloading it again", file=sys.stderr, flush=True)
    builder = BUILDERS.get(entry.family.format)
    if builder is None:
        raise HubError(f"{name}: this version of spacy-elmo cannot install models of format '{entry.family.format}'")
    ensure_writable(home)
    with _locked(entry, home):
        found = cached_model_dir(entry, home)
        if found is not None and not force:
            return found  # another process finished it while we waited
        fetch_options = dict(progress=progress, retries=retries, backoff=backoff, timeout=timeout)
        try:
            return builder(entry, home, fetch_options)
        except OSError as err:  # a full disk or a folder turned read-only mid-way
            raise cache_error(home, err) from None


@contextmanager
def _locked(entry: CatalogEntry, home: Path) -> Iterator[None]:
    """Hold the model's download lock; a second process waits (and says so) until the first is done."""
    path = lock_path(entry, home)
    lock = filelock.FileLock(str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=1)
        except filelock.Timeout:
            print(f"Waiting for another process downloading {entry.name} ({path})", file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as err:
        raise cache_error(home, err) from None
    try:
        yield
    finally:
        lock.release()


# ---- the bilm-tf / AllenNLP format: options JSON + HDF5 weights, used as they are ---------------


def build_bilm_hdf5(entry: CatalogEntry, home: Path, fetch_options: dict[str, Any]) -> Path:
    fetched = fetch_files(
        entry, home, [("options", OPTIONS_NAME, OPTIONS_MAX_BYTES), ("weights", WEIGHTS_NAME, _weights_cap(entry))], fetch_options
    )
    folder = download_dir(entry, home)
    try:
        options = check_bilm_files(entry, folder / OPTIONS_NAME, folder / WEIGHTS_NAME)
    except VerificationError:
        shutil.rmtree(folder, ignore_errors=True)  # bad files: the next try downloads afresh
        raise
    model_files = {OPTIONS_NAME: folder / OPTIONS_NAME, WEIGHTS_NAME: folder / WEIGHTS_NAME}
    return finish_install(entry, home, fetched, model_files, parameters=count_parameters(options))


def check_bilm_files(entry: CatalogEntry, options_file: Path, weight_file: Path) -> ElmoOptions:
    """Accept the pair only if it is what the catalog describes and the weights fit the options."""
    head = options_file.read_bytes()[:512].lstrip().lower()
    if head.startswith(b"<"):
        raise VerificationError(f"{entry.files['options'].url}: the server sent an HTML page, not an options JSON file")
    try:
        options = ElmoOptions.from_file(options_file)
    except OptionsError as err:
        raise VerificationError(f"{entry.name}: the downloaded options file is not valid ({err})") from None
    arch = entry.architecture or {}
    found = {"lstm_dim": options.lstm.dim, "projection_dim": options.lstm.projection_dim, "n_highway": options.char_cnn.n_highway}
    for key, want in arch.items():
        if found.get(key) != want:
            raise VerificationError(f"{entry.name}: the downloaded options have {key} = {found.get(key)}, the catalog says {want}")
    parameters = count_parameters(options)
    if entry.parameters is not None and parameters != entry.parameters:
        raise VerificationError(f"{entry.name}: the options describe {parameters:,} parameters, the catalog says {entry.parameters:,}")
    with open(weight_file, "rb") as f:
        signature = f.read(len(HDF5_SIGNATURE))
    if signature != HDF5_SIGNATURE:
        what = "an HTML page" if signature.lstrip().startswith(b"<") else "not an HDF5 file"
        raise VerificationError(f"{entry.files['weights'].url}: the downloaded weights are {what}")
    try:
        read_weight_arrays(weight_file, options)
    except WeightFileError as err:
        raise VerificationError(f"{entry.name}: {err}") from None
    return options


def count_parameters(options: ElmoOptions) -> int:
    return sum(math.prod(shape) for shape in expected_shapes(options).values())


def _weights_cap(entry: CatalogEntry) -> int:
    if entry.parameters is None:
        return WEIGHTS_MAX_BYTES
    return 4 * entry.parameters + (16 << 20)  # float32 values + generous room for HDF5's own structures


# ---- ELMoForManyLangs: one zip per language, converted into an ordinary model directory -----------


def build_efml_zip(entry: CatalogEntry, home: Path, fetch_options: dict[str, Any]) -> Path:
    from ..bilm.efml import EfmlError, convert_efml, unpacked_size

    fetched = fetch_files(entry, home, [("archive", ARCHIVE_NAME, ARCHIVE_MAX_BYTES)], fetch_options)
    folder = download_dir(entry, home)
    converted = folder / CONVERTED_NAME
    shutil.rmtree(converted, ignore_errors=True)  # left by a killed run (we hold the lock)
    if fetch_options.get("progress"):
        print(f"Converting {entry.name} (ELMoForManyLangs) into a model directory", file=sys.stderr, flush=True)
    try:
        # The zip is unpacked beside it (its members checked first), then converted: room for both.
        check_free_space(folder, 2 * unpacked_size(folder / ARCHIVE_NAME))
        convert_efml(folder / ARCHIVE_NAME, converted, meta=efml_meta(entry), work_dir=folder)
        options = ElmoOptions.from_file(converted / OPTIONS_NAME)
    except (EfmlError, OptionsError) as err:
        shutil.rmtree(folder, ignore_errors=True)  # a bad zip: the next try downloads afresh
        raise VerificationError(f"{entry.name}: the downloaded zip is not a usable ELMoForManyLangs model: {err}") from None
    converter_meta = json.loads((converted / META_NAME).read_text(encoding="utf-8"))
    model_files = {path.name: path for path in converted.iterdir() if path.name != META_NAME}
    return finish_install(entry, home, fetched, model_files, parameters=count_parameters(options), extra_meta=converter_meta)


def efml_meta(entry: CatalogEntry) -> dict[str, Any]:
    """What the converter writes into meta.json (language, `lang` for spacy.blank(), source URL,
    licence): the efml catalog's entry, with the URL actually downloaded (a mirror's)."""
    from ..bilm.efml_catalog import EfmlEntry, efml_catalog

    url = entry.files["archive"].url
    known = efml_catalog().get(entry.name)
    if known is None:  # a model that only an extra catalog lists
        lang = entry.spacy_lang or entry.language
        known = EfmlEntry(entry.name, entry.folder.name, entry.language, "", url, lang, entry.licence or "not stated")
    return dataclasses.replace(known, url=url).meta()


# ---- shared by every format -----------------------------------------------------------------------

FetchedFile = tuple[str, Fetched, str]  # (catalog role, the file, where the sha256 it matched came from)


def fetch_files(
    entry: CatalogEntry, home: Path, wanted: list[tuple[str, str, int]], fetch_options: dict[str, Any]
) -> dict[str, FetchedFile]:
    """Fetch each (role, file name, most bytes) of `entry` into its downloads folder.

    A published sha256 must match; otherwise one recorded at an earlier download of the same URL
    must (trust on first use; finish_install records it).
    """
    folder = download_dir(entry, home)
    folder.mkdir(parents=True, exist_ok=True)
    recorded = _read_hashes(home)
    fetched: dict[str, FetchedFile] = {}
    for role, filename, max_size in wanted:
        remote = entry.files[role]
        expected, source = (remote.sha256, PUBLISHED) if remote.sha256 else (recorded.get(remote.url), RECORDED)
        got = fetch(
            remote.url, folder / filename, max_size=max_size, size=remote.size, sha256=expected, sha256_source=source,
            desc=f"{entry.name} {filename}", **fetch_options,
        )
        fetched[filename] = (role, got, source)
    return fetched


def finish_install(
    entry: CatalogEntry,
    home: Path,
    fetched: dict[str, FetchedFile],
    model_files: dict[str, Path],
    parameters: int,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """Record the checksums, then move `model_files` (name in the directory -> file) and meta.json +
    MODEL_CARD.md into the model's directory in one rename; clear the downloads folder.
    extra_meta: a converter's meta.json entries, added to (and overriding) the catalog's."""
    _record_hashes(home, {entry.files[role].url: got.sha256 for role, got, _ in fetched.values()})
    directory = _install(entry, home, model_files, {**_meta(entry, parameters, fetched), **(extra_meta or {})})
    shutil.rmtree(download_dir(entry, home), ignore_errors=True)
    return directory


def _install(entry: CatalogEntry, home: Path, files: dict[str, Path], meta: dict[str, Any]) -> Path:
    """Assemble the model directory beside its final place, then move it there in one rename."""
    final = model_dir(entry, home)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".staging-{final.name}-"
    for stale in final.parent.glob(prefix + "*"):  # left by a killed run (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    try:
        for name, source in files.items():
            shutil.move(str(source), staging / name)
        # Each file's size as installed: a cached model whose files changed since is not used (home.cache_problem).
        meta = {**meta, "model_files": {name: (staging / name).stat().st_size for name in files if (staging / name).is_file()}}
        (staging / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (staging / "MODEL_CARD.md").write_text(model_card(entry, meta), encoding="utf-8")
        staging.chmod(0o755)
        old = None
        if final.exists():  # --force: keep the old one until the new one is in place
            old = final.with_name(f".old-{final.name}-{datetime.now(timezone.utc).strftime('%Y%m%d%H%M%S%f')}")
            final.rename(old)
        staging.rename(final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _meta(entry: CatalogEntry, parameters: int, files: dict[str, FetchedFile]) -> dict[str, Any]:
    catalog = load_catalog()
    return {
        "name": entry.name,
        "title": entry.title,
        "family": entry.family.name,
        "language": entry.language,
        "corpus": entry.corpus,
        "parameters": parameters,
        "parameters_published": entry.parameters_published,
        "licence": entry.licence,
        "licence_note": entry.licence_note,
        "note": entry.note,
        "sources": {key: catalog.sources.get(key, key) for key in entry.sources},
        "files": {
            name: {"url": entry.files[role].url, "size": got.size, "sha256": got.sha256, "sha256_source": source}
            for name, (role, got, source) in files.items()
        },
        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spacy_elmo_version": __version__,
    }


def _read_hashes(home: Path) -> dict[str, str]:
    try:
        data = json.loads(hashes_path(home).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise CacheError(f"{hashes_path(home)}: unreadable ({err}); delete it to record the checksums again") from None
    return {url: h["sha256"] for url, h in data.items() if isinstance(h, dict) and "sha256" in h}


def _record_hashes(home: Path, hashes: dict[str, str]) -> None:
    """Trust on first use: a later download of the same URL must give the same bytes."""
    path = hashes_path(home)
    with filelock.FileLock(str(home / "locks" / "hashes.lock")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for url, digest in hashes.items():
            data.setdefault(url, {"sha256": digest, "recorded_at": now})
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# format -> builder(entry, home, fetch_options) -> model directory: fetch_files, check or convert,
# finish_install.
BUILDERS: dict[str, Builder] = {"bilm-hdf5": build_bilm_hdf5, "efml-zip": build_efml_zip}
