"""ELMoForManyLangs models by name (`efml:fr`): listed from efml_catalog.tsv, downloaded as a zip
with the hub's fetch (resume, checksums, HTML refusal), converted and installed like any model.

The zip is made here from ../shared/fixtures/elmoformanylangs/ (a random-weight model in the
released format) and served by the local 127.0.0.1 server (hub_server.py); no test touches the
internet. A catalog in SPACY_ELMO_CATALOG points `efml:fr` at that server, as a mirror would.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import spacy
from typer.testing import CliRunner

from cli_output import printed
from hub_server import FileServer
from test_hub import Hub
from spacy_elmo import hub
from spacy_elmo.bilm import convert_efml, efml_catalog, load_bilm
from spacy_elmo.bilm.embedder import Embedder
from spacy_elmo.cli import app

pytestmark = pytest.mark.usefixtures("single_thread")
runner = CliRunner()
ZIP_PATH = "repository/11/150.zip"


def zip_of(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The folder zipped as NLPL ships a model: its files inside one folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"150/{path.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def efml_zip(efml_dir) -> bytes:
    return zip_of(efml_dir)


@pytest.fixture(scope="module")
def reference(efml_dir, tmp_path_factory) -> Path:
    """The fixture converted directly (convert_efml on the folder)."""
    return convert_efml(efml_dir, tmp_path_factory.mktemp("efml-ref") / "model")


@pytest.fixture(scope="module")
def sentences(efml_dir) -> list[list[str]]:
    return [line.split() for line in (efml_dir / "sentences.txt").read_text(encoding="utf-8").splitlines()]


class EfmlHub(Hub):
    def publish_zip(self, data: bytes, name: str = "efml:fr", path: str = ZIP_PATH, **entry) -> str:
        """Serve `data` at `path` and list it in the extra catalog as `name`; returns its URL."""
        self.families["efml"] = {"title": "ELMoForManyLangs (test mirror)", "format": "efml-zip"}
        self.server.files["/" + path] = data
        url = self.server.url(path)
        self.entries[name] = {
            "title": f"ELMoForManyLangs {name} (test mirror)", "language": name.split(":")[1],
            "files": {"archive": {"url": url, "size": None, "sha256": None}}, **entry,
        }
        self.write_catalog()
        return url

    def efml_installed(self, name: str = "efml:fr") -> Path:
        return self.cache / "models" / "efml" / name.split(":")[1]

    def nothing_left(self, name: str = "efml:fr") -> bool:
        """No model, no half-built one, no download, no recorded checksum."""
        models = self.cache / "models" / "efml"
        leftovers = list(models.iterdir()) if models.exists() else []
        downloads = self.cache / "downloads" / "efml" / name.split(":")[1]
        hashes = self.cache / "hashes.json"
        return not leftovers and not downloads.exists() and not (hashes.exists() and json.loads(hashes.read_text()))


@pytest.fixture
def local(tmp_path, monkeypatch, make_bilm):
    with FileServer() as server:
        yield EfmlHub(server, tmp_path, monkeypatch, make_bilm)


def embed(model, sentences) -> list[np.ndarray]:
    return Embedder(load_bilm(model)).embed_sentences(sentences)


def assert_same_vectors(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ---- the catalog ---------------------------------------------------------------------------------


def test_the_hub_catalog_lists_the_44_efml_models_from_the_one_tsv():
    catalog = hub.load_catalog()
    efml = {name: entry for name, entry in catalog.models.items() if name.startswith("efml:")}
    assert len(efml) == 44
    for e in efml_catalog().values():
        entry = efml[e.name]
        assert entry.family.format == "efml-zip" and set(entry.files) == {"archive"}
        assert entry.files["archive"].url == e.url and entry.language == e.code
        assert entry.spacy_lang == e.spacy_lang and e.language in entry.title
        assert entry.sources and all(key in catalog.sources for key in entry.sources)


def test_unknown_efml_name_lists_the_codes(local):
    with pytest.raises(hub.UnknownModelError) as info:
        local.download("efml:xx")
    message = str(info.value)
    assert "unknown model name 'efml:xx'" in message and "efml:de" in message and "efml:zh" in message
    assert "allennlp:" not in message  # the family's names only
    result = runner.invoke(app, ["download", "efml:xx", "--cache-dir", str(local.cache)])
    assert result.exit_code == 1 and "efml:grc" in printed(result)
    assert not local.server.log


def test_models_lists_the_efml_entries_with_their_language(local):
    listing = runner.invoke(app, ["models", "--json"])
    assert listing.exit_code == 0, listing.output
    models = {m["name"]: m for m in json.loads(listing.output)["models"]}
    assert sum(name.startswith("efml:") for name in models) == 44
    assert models["efml:de"]["language"] == "de" and models["efml:de"]["title"] == "ELMoForManyLangs German"
    assert models["efml:cu"]["spacy_lang"] == "xx" and models["efml:de"]["format"] == "efml-zip"
    table = printed(runner.invoke(app, ["models"]))
    assert "efml:zh" in table and "ELMoForManyLangs Chinese" in table


def test_a_missing_efml_model_says_what_to_run(local):
    with pytest.raises(hub.ModelNotDownloadedError) as info:
        load_bilm("efml:fr")
    assert "spacy-elmo download efml:fr" in str(info.value) and str(local.efml_installed()) in str(info.value)
    with pytest.raises(ValueError, match="spacy-elmo download efml:fr"):
        spacy.blank("fr").add_pipe("elmo", config={"model": "efml:fr"})
    assert not local.server.log


# ---- download, convert, install ------------------------------------------------------------------


def test_download_converts_the_zip_into_a_model_directory(local, efml_zip, reference, sentences):
    url = local.publish_zip(efml_zip)
    directory = local.download("efml:fr")
    assert directory == local.efml_installed()
    assert sorted(p.name for p in directory.iterdir()) == [
        "MODEL_CARD.md", "chars.json", "meta.json", "options.json", "weights.hdf5", "words.json"
    ]
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["name"] == "efml:fr" and meta["lang"] == "fr" and meta["language"] == "French"
    assert meta["format"] == "elmoformanylangs" and meta["source_url"] == url
    assert meta["files"]["model.zip"]["sha256_source"] == "recorded at first download"
    assert meta["parameters"] > 0
    assert 'spacy.blank("fr")' in (directory / "MODEL_CARD.md").read_text()
    assert json.loads((local.cache / "hashes.json").read_text())[url]["sha256"] == meta["files"]["model.zip"]["sha256"]
    assert not (local.cache / "downloads" / "efml" / "fr").exists()
    # The same vectors as converting the fixture folder directly; the name loads without the network.
    n_requests = len(local.server.log)
    assert_same_vectors(embed("efml:fr", sentences), embed(reference, sentences))
    nlp = spacy.blank(meta["lang"])
    nlp.add_pipe("elmo", config={"model": "efml:fr"})
    by_path = spacy.blank("fr")
    by_path.add_pipe("elmo", config={"model": str(reference)})
    text = " ".join(sentences[0])
    np.testing.assert_array_equal(nlp(text)._.elmo, by_path(text)._.elmo)
    assert local.download("efml:fr") == directory
    assert len(local.server.log) == n_requests
    models = {m["name"]: m for m in json.loads(runner.invoke(app, ["models", "--json"]).output)["models"]}
    assert models["efml:fr"]["cached"] == str(directory)


def test_the_cli_downloads_an_efml_model(local, efml_zip):
    local.publish_zip(efml_zip)
    result = runner.invoke(app, ["download", "efml:fr", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert str(local.efml_installed()) in printed(result)
    assert "nlp = spacy.blank('fr'); nlp.add_pipe('elmo', config={'model': 'efml:fr'})" in printed(result)


def test_a_model_only_a_mirror_lists_gets_its_language_from_the_entry(local, efml_zip):
    local.publish_zip(efml_zip, name="efml:fr-mirror", path="mirror/fr.zip", spacy_lang="fr")
    meta = json.loads((local.download("efml:fr-mirror") / "meta.json").read_text())
    assert meta["name"] == "efml:fr-mirror" and meta["lang"] == "fr"
    assert meta["source_url"] == local.server.url("mirror/fr.zip")


def test_a_connection_cut_mid_zip_resumes(local, efml_zip, reference, sentences):
    local.publish_zip(efml_zip)
    half = len(efml_zip) // 2
    local.server.faults["/" + ZIP_PATH] = [f"cut:{half}"]
    directory = local.download("efml:fr")
    assert local.server.gets(ZIP_PATH) == [None, f"bytes={half}-"]
    assert_same_vectors(embed(directory, sentences[:2]), embed(reference, sentences[:2]))


def test_an_interrupted_zip_download_resumes_in_the_next_run(local, efml_zip):
    local.publish_zip(efml_zip)
    local.server.faults["/" + ZIP_PATH] = ["cut:5000"]
    with pytest.raises(hub.DownloadError, match="resumes from the 5,000 bytes"):
        local.download("efml:fr", retries=0)
    assert not local.efml_installed().exists()
    local.download("efml:fr")
    assert local.server.gets(ZIP_PATH)[-1] == "bytes=5000-"


def corrupted(data: bytes) -> bytes:
    """Bytes flipped inside the stored members: the CRC check on unpacking fails."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize(
    "damage,problem",
    [
        (corrupted, "damaged zip|not a plain torch state dict|not a readable zip"),
        (lambda data: data[: len(data) - 100], "not a readable zip|expected one model folder"),  # truncated
        (lambda data: b"<!DOCTYPE html><html><body>Error 403</body></html>", "not a readable zip"),
    ],
    ids=["corrupted", "truncated", "html-as-file"],
)
def test_a_bad_zip_is_refused_and_nothing_is_left(local, efml_zip, damage, problem):
    local.publish_zip(damage(efml_zip))
    with pytest.raises(hub.VerificationError, match=f"efml:fr: the downloaded zip is not a usable ELMoForManyLangs model: .*({problem})"):
        local.download("efml:fr")
    assert local.nothing_left()
    with pytest.raises(hub.ModelNotDownloadedError):
        load_bilm("efml:fr")
    # Its checksum was not recorded: the good zip at the same URL installs.
    local.server.files["/" + ZIP_PATH] = efml_zip
    assert local.download("efml:fr") == local.efml_installed()


@pytest.mark.parametrize("name", ["../evil.txt", "150/../../evil.txt", "/abs/evil.txt"])
def test_a_zip_with_a_path_outside_its_folder_is_refused(local, efml_dir, name):
    local.publish_zip(zip_of(efml_dir, {name: b"x"}))
    with pytest.raises(hub.VerificationError, match="outside the zip's folder"):
        local.download("efml:fr")
    assert local.nothing_left()
    assert not any(local.tmp.rglob("evil.txt")) and not (local.cache.parent / "evil.txt").exists()


def test_an_html_page_instead_of_the_zip_is_refused(local, efml_zip):
    local.publish_zip(efml_zip)
    local.server.faults["/" + ZIP_PATH] = ["html"]
    with pytest.raises(hub.VerificationError, match="HTML page"):
        local.download("efml:fr")
    assert not local.efml_installed().exists()


def test_no_room_to_unpack_is_a_cache_error(local, efml_zip, monkeypatch):
    from spacy_elmo.hub import fetch as fetch_module

    local.publish_zip(efml_zip)

    class Usage:  # room for the zip, not for unpacking it beside the zip
        free = len(efml_zip) + 1000

    with monkeypatch.context() as patch:
        patch.setattr(fetch_module.shutil, "disk_usage", lambda path: Usage)
        with pytest.raises(hub.CacheError, match="not enough free disk space"):
            local.download("efml:fr")
    assert not local.efml_installed().exists()
    # Room made: the zip already downloaded (and checked) is converted, not downloaded again.
    directory = local.download("efml:fr")
    assert len(local.server.gets(ZIP_PATH)) == 1
    # Every file of the converted model is checked against its installed size: one missing is a
    # damaged copy, which a download replaces.
    meta = json.loads((directory / "meta.json").read_text())
    assert set(meta["model_files"]) == {"chars.json", "options.json", "weights.hdf5", "words.json"}
    (directory / "words.json").unlink()
    with pytest.raises(hub.ModelNotDownloadedError, match="damaged .*words.json is missing"):
        load_bilm("efml:fr")
    assert local.download("efml:fr") == directory and (directory / "words.json").is_file()
