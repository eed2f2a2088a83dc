"""Published models by name: catalog, cache, download (resume, verification, locks), and the name
accepted everywhere a model is. Every download goes to a local server on 127.0.0.1 (hub_server.py)
serving tiny models made here; no test touches the internet."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from typer.testing import CliRunner

from cli_output import printed
from hub_server import FileServer
from spacy_elmo import hub
from spacy_elmo.bilm import batch_to_ids, load_bilm, save_model_dir
from spacy_elmo.bilm.options import medium_options, original_options, small_options
from spacy_elmo.cli import app
from spacy_elmo.hub import fetch as fetch_module
from spacy_elmo.cli import hub as cli_hub
from spacy_elmo.hub import home as home_module
from spacy_elmo.hub import install as install_module
from spacy_elmo.hub.install import count_parameters

pytestmark = pytest.mark.usefixtures("single_thread")
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


class Hub:
    """A local server publishing tiny models, a catalog naming them, and an empty cache."""

    def __init__(self, server: FileServer, tmp_path: Path, monkeypatch, make_bilm) -> None:
        self.server, self.tmp, self.monkeypatch, self.make_bilm = server, tmp_path, monkeypatch, make_bilm
        self.cache = tmp_path / "cache"
        self.entries: dict[str, dict] = {}
        self.families = {"test": {"title": "test models", "format": "bilm-hdf5"}}
        self.n_catalogs = 0
        monkeypatch.setenv("SPACY_ELMO_HOME", str(self.cache))
        monkeypatch.delenv("SPACY_ELMO_ALLOW_DOWNLOAD", raising=False)

    def model_files(self, seed: int = 0, options=None) -> tuple[bytes, bytes]:
        folder = save_model_dir(self.make_bilm(options, seed=seed), self.tmp / f"src-{seed}-{id(options)}")
        return (folder / "options.json").read_bytes(), (folder / "weights.hdf5").read_bytes()

    def publish(self, name: str = "test:tiny", seed: int = 0, *, options_url=None, weights_url=None, size=None,
                sha256=None, parameters=None, files=None) -> tuple[bytes, bytes]:
        options, weights = files or self.model_files(seed)
        variant = name.split(":")[1]
        self.server.files[f"/{variant}/options.json"] = options
        self.server.files[f"/{variant}/weights.hdf5"] = weights
        self.entries[name] = {
            "title": f"tiny test model {variant}", "language": "en", "corpus": "none (random weights)",
            "parameters": parameters,
            "files": {
                "options": {"url": options_url or self.server.url(f"{variant}/options.json")},
                "weights": {"url": weights_url or self.server.url(f"{variant}/weights.hdf5"), "size": size, "sha256": sha256},
            },
            "sources": ["made-in-test"],
        }
        self.write_catalog()
        return options, weights

    def write_catalog(self) -> None:
        self.n_catalogs += 1  # a new file each time: the catalog reader caches by path
        path = self.tmp / f"catalog-{self.n_catalogs}.json"
        path.write_text(json.dumps({
            "families": self.families,
            "sources": {"made-in-test": "made by tests/test_hub.py"},
            "models": self.entries,
        }))
        self.monkeypatch.setenv("SPACY_ELMO_CATALOG", str(path))

    def installed(self, name: str = "test:tiny") -> Path:
        return self.cache / "models" / "test" / name.split(":")[1]

    def anything_installed(self) -> bool:
        """Any model directory (or a half-built one) in the cache's models/ folder."""
        return any((self.cache / "models").rglob("*.hdf5"))

    def download(self, name: str = "test:tiny", **options) -> Path:
        return hub.download_model(name, progress=False, backoff=0, **options)


@pytest.fixture
def local(tmp_path, monkeypatch, make_bilm):
    with FileServer() as server:
        yield Hub(server, tmp_path, monkeypatch, make_bilm)


def same_outputs(a, b) -> bool:
    ids = batch_to_ids([["The", "cat", "sat", "."]])
    with torch.no_grad():
        return all(torch.equal(x, y) for x, y in zip(a(ids).layers, b(ids).layers))


# ---- the shipped catalog --------------------------------------------------------------------------


def test_shipped_catalog_names_every_required_model_with_sources():
    catalog = hub.load_catalog()
    for name in ("allennlp:small", "allennlp:medium", "allennlp:original", "allennlp:original-5.5b", "allennlp:pubmed"):
        entry = catalog.get(name)
        assert set(entry.files) == {"options", "weights"}
        assert all(f.url.startswith("https://") for f in entry.files.values())
        assert entry.sources and all(key in catalog.sources for key in entry.sources)
        assert entry.corpus and entry.language == "en"
    # The parameter counts follow from the architectures and round to AllenNLP's published millions.
    for name, options, published in (("small", small_options(), 13.6), ("medium", medium_options(), 28.0), ("original", original_options(), 93.6)):
        entry = catalog.get(f"allennlp:{name}")
        assert entry.parameters == count_parameters(options)
        assert round(entry.parameters / 1e6, 1) == published == float(entry.parameters_published[:-1])


def test_names_and_paths_are_told_apart(local):
    assert hub.resolve_model_name("path/to/model") is None
    assert hub.resolve_model_name("C:\\models\\elmo") is None
    assert hub.resolve_model_name("c:models") is None  # a drive letter is not a family
    assert hub.resolve_model_name("nofamily:small") is None  # unknown family: treated as a path
    with pytest.raises(hub.UnknownModelError, match="allennlp:original.*allennlp:small"):
        hub.resolve_model_name("allennlp:smal")


def test_names_with_spaces_other_case_or_a_typo(local, monkeypatch):
    local.publish()
    directory = local.download(" test:tiny\n")
    assert hub.resolve_model_name("test:tiny ") == directory  # spaces around a name (a config value)
    assert load_bilm(" test:tiny").options == local.make_bilm().options
    for typo, meant in (
        ("Test:tiny", "test:tiny"), ("test:TINY", "test:tiny"), ("tset:tiny", "test:tiny"), ("test:tin", "test:tiny"),
        ("allennlp:Original", "allennlp:original"), ("allennlp:5.5b", "allennlp:original-5.5b"),
        ("efml:DE", "efml:de"), ("efml:german", "efml:de"), ("allennlp:japanese", "allennlp:ja"),
        ("allennlp:large", "allennlp:original-5.5b"),  # flair's name for it
    ):
        with pytest.raises(hub.UnknownModelError, match=f"unknown model name '{typo}'. Did you mean {meant}[ ?]"):
            hub.resolve_model_name(typo)
    with pytest.raises(hub.UnknownModelError, match="Known test names: test:tiny"):
        hub.resolve_model_name("test:")
    for vague in ("allennlp:elmo", "allennlp:s"):  # a word of every title, or one letter: no guess
        with pytest.raises(hub.UnknownModelError) as error:
            hub.resolve_model_name(vague)
        assert "Did you mean" not in str(error.value)
    assert hub.resolve_model_name("nofamily:small") is None  # nothing like a name: a path
    monkeypatch.chdir(local.tmp)
    (local.tmp / "Test:tiny").mkdir()
    assert hub.resolve_model_name("Test:tiny") is None  # a folder that is there is a path
    result = runner.invoke(app, ["download", "allennlp:smal"])
    assert result.exit_code == 1 and "Did you mean allennlp:small?" in printed(result)


def test_unknown_name_in_the_cli_lists_the_names(local):
    result = runner.invoke(app, ["download", "allennlp:huge", "--cache-dir", str(local.cache)])
    assert result.exit_code == 1
    assert "unknown model name 'allennlp:huge'" in printed(result)
    assert "allennlp:original-5.5b" in printed(result)
    assert not local.server.log


# ---- download and install -------------------------------------------------------------------------


def test_download_makes_an_ordinary_model_directory(local):
    options, weights = local.publish()
    directory = local.download()
    assert directory == local.installed()
    assert sorted(p.name for p in directory.iterdir()) == ["MODEL_CARD.md", "meta.json", "options.json", "weights.hdf5"]
    assert (directory / "weights.hdf5").read_bytes() == weights
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["name"] == "test:tiny"
    assert meta["files"]["weights.hdf5"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert meta["files"]["weights.hdf5"]["sha256_source"] == "recorded at first download"
    assert meta["parameters"] == count_parameters(local.make_bilm().options)
    assert meta["sources"] == {"made-in-test": "made by tests/test_hub.py"}
    recorded = json.loads((local.cache / "hashes.json").read_text())
    assert recorded[local.server.url("tiny/weights.hdf5")]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert "tiny test model" in (directory / "MODEL_CARD.md").read_text()
    assert not (local.cache / "downloads" / "test" / "tiny").exists()
    # The name now loads like the directory, without asking the server again.
    n_requests = len(local.server.log)
    assert same_outputs(load_bilm("test:tiny"), local.make_bilm())
    assert local.download() == directory
    assert len(local.server.log) == n_requests


def test_a_missing_model_is_not_downloaded_unless_allowed(local, monkeypatch):
    local.publish()
    with pytest.raises(hub.ModelNotDownloadedError) as info:
        load_bilm("test:tiny")
    message = str(info.value)
    assert "spacy-elmo download test:tiny" in message and str(local.installed()) in message
    assert "allow_download" in message and "\n" not in message
    assert not local.server.log
    monkeypatch.setenv("SPACY_ELMO_ALLOW_DOWNLOAD", "1")
    assert same_outputs(load_bilm("test:tiny"), local.make_bilm())


def test_dead_url_and_404_and_server_error(local):
    local.publish("test:gone", weights_url=local.server.url("nowhere/weights.hdf5"))
    with pytest.raises(hub.DownloadError, match="not found \\(HTTP 404\\)"):
        local.download("test:gone")
    local.publish("test:dead", options_url="http://127.0.0.1:9/options.json")  # nothing listens on port 9
    with pytest.raises(hub.DownloadError, match="cannot connect"):
        local.download("test:dead", retries=1)
    local.publish("test:typo", options_url="htps://127.0.0.1/options.json")
    with pytest.raises(hub.DownloadError, match="htps://127.0.0.1/options.json: No connection adapters"):
        local.download("test:typo")
    local.publish("test:broken")
    local.server.faults["/broken/options.json"] = ["500"] * 4
    with pytest.raises(hub.DownloadError, match="after 4 tries \\(the server answered HTTP 500.*Try again later"):
        local.download("test:broken")
    local.server.faults["/broken/weights.hdf5"] = ["403"]
    with pytest.raises(hub.DownloadError, match="HTTP 403 Forbidden. The file may have moved"):
        local.download("test:broken")
    assert not local.anything_installed()
    local.server.faults["/broken/weights.hdf5"] = ["503"]  # a passing server error is retried
    local.download("test:broken")
    assert len(local.server.gets("broken/weights.hdf5")) == 3


def test_a_cut_connection_resumes_with_a_range_request(local):
    _, weights = local.publish()
    half = len(weights) // 2
    local.server.faults["/tiny/weights.hdf5"] = [f"cut:{half}", "cut:100"]
    directory = local.download()
    assert local.server.gets("tiny/weights.hdf5") == [None, f"bytes={half}-", f"bytes={half + 100}-"]
    assert (directory / "weights.hdf5").read_bytes() == weights


def test_an_interrupted_download_resumes_in_the_next_run(local):
    _, weights = local.publish()
    local.server.faults["/tiny/weights.hdf5"] = ["cut:5000"]
    with pytest.raises(hub.DownloadError, match="after 1 try \\(the connection was cut after 5,000 of [\\d,]+ bytes\\).*resumes from the 5,000 bytes"):
        local.download(retries=0)
    assert not local.installed().exists()  # nothing half-written is used
    with pytest.raises(hub.ModelNotDownloadedError):
        load_bilm("test:tiny")
    local.download()
    assert local.server.gets("tiny/weights.hdf5")[-1] == "bytes=5000-"
    assert (local.installed() / "weights.hdf5").read_bytes() == weights


def test_a_server_that_stops_sending_times_out_with_a_plain_message(local):
    local.publish()
    local.server.faults["/tiny/weights.hdf5"] = ["hold"]  # half the file, then nothing
    with pytest.raises(hub.DownloadError, match=r"the server sent nothing for 0.5 s, after [\d,]+ bytes\)\. Check the connection"):
        local.download(retries=0, timeout=0.5)
    local.server.release.set()
    assert local.download().is_dir()


def test_a_file_larger_than_allowed_is_refused_before_a_byte_is_written(local):
    local.server.files["/big.hdf5"] = b"x" * 5000
    with pytest.raises(hub.VerificationError, match="announces 5,000 bytes, more than the 1,000 allowed"):
        fetch_module.fetch(local.server.url("big.hdf5"), local.tmp / "big.hdf5", max_size=1000, progress=False)
    assert not list(local.tmp.glob("big.hdf5*"))
    # Announced by nobody (no Content-Length): stopped at the cap, and the part is not kept.
    local.server.faults["/big.hdf5"] = ["no-length"]
    with pytest.raises(hub.VerificationError, match="sent more than the 1,000 bytes expected"):
        fetch_module.fetch(local.server.url("big.hdf5"), local.tmp / "big.hdf5", max_size=1000, progress=False)
    assert not list(local.tmp.glob("big.hdf5*"))


def test_a_run_stopped_after_the_download_uses_the_downloaded_files(local, monkeypatch):
    _, weights = local.publish()

    def stop(*args, **kwargs):  # Ctrl-C while the downloaded files are checked
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(install_module, "check_bilm_files", stop)
        with pytest.raises(KeyboardInterrupt):
            local.download()
    assert (local.download() / "weights.hdf5").read_bytes() == weights
    assert len(local.server.gets("tiny/weights.hdf5")) == len(local.server.gets("tiny/options.json")) == 1
    # A downloaded file that changed before the next run is fetched again, not used.
    shutil.rmtree(local.installed())
    with monkeypatch.context() as patch:
        patch.setattr(install_module, "check_bilm_files", stop)
        with pytest.raises(KeyboardInterrupt):
            local.download()
    downloaded = local.cache / "downloads" / "test" / "tiny" / "weights.hdf5"
    downloaded.write_bytes(b"\0" * len(weights))
    assert (local.download() / "weights.hdf5").read_bytes() == weights
    assert len(local.server.gets("tiny/weights.hdf5")) == 3


def test_ctrl_c_in_the_download_command_says_what_is_kept(local, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_hub, "download_model", interrupted)
    result = runner.invoke(app, ["download", "allennlp:small"])
    assert result.exit_code == 130
    assert "Interrupted" in printed(result) and "run the same command again to resume" in printed(result)
    assert "Traceback" not in result.output


def test_a_server_that_ignores_the_range_starts_over(local):
    _, weights = local.publish()
    local.server.faults["/tiny/weights.hdf5"] = ["cut:3000", "ignore-range"]
    assert (local.download() / "weights.hdf5").read_bytes() == weights


def test_wrong_size_or_checksum_is_refused(local):
    _, weights = local.publish("test:big", size=len(_weights(local)) + 1)
    with pytest.raises(hub.VerificationError, match="the catalog says"):
        local.download("test:big")
    local.publish("test:bad", sha256="0" * 64)
    with pytest.raises(hub.VerificationError, match="differs from the published sha256"):
        local.download("test:bad")
    assert not (local.cache / "downloads" / "test" / "bad" / "weights.hdf5.part").exists()
    assert not local.anything_installed()


def _weights(local) -> bytes:
    return local.model_files()[1]


def test_a_changed_file_fails_the_checksum_recorded_at_first_download(local):
    local.publish()
    local.download()
    shutil.rmtree(local.installed())
    local.publish(seed=1)  # same URL, other bytes
    with pytest.raises(hub.VerificationError, match="recorded at first download"):
        local.download()
    assert not local.installed().exists()


def test_html_error_pages_are_refused(local):
    local.publish()
    local.server.faults["/tiny/weights.hdf5"] = ["html"]
    with pytest.raises(hub.VerificationError, match="HTML page"):
        local.download()
    # The same page served as if it were the file: caught by the HDF5 signature check.
    options, _ = local.model_files()
    local.publish("test:html", files=(options, b"<!DOCTYPE html><html><body>Error 403</body></html>"))
    with pytest.raises(hub.VerificationError, match="weights are an HTML page"):
        local.download("test:html")
    assert not local.anything_installed()
    assert not (local.cache / "downloads" / "test" / "html").exists()


def test_weights_that_do_not_fit_the_options_are_refused(local, tiny_options):
    other = dataclasses.replace(tiny_options, lstm=dataclasses.replace(tiny_options.lstm, dim=24))
    options, _ = local.model_files()
    _, weights = local.model_files(options=other)
    local.publish("test:mixed", files=(options, weights))
    with pytest.raises(hub.VerificationError, match="do not belong together|does not fit"):
        local.download("test:mixed")
    local.publish("test:count", parameters=123)
    with pytest.raises(hub.VerificationError, match="the catalog says 123"):
        local.download("test:count")


def test_a_full_disk_is_a_clear_error_and_the_download_resumes_later(local, monkeypatch):
    _, weights = local.publish()

    class Usage:
        free = 10

    with monkeypatch.context() as patch:
        patch.setattr(fetch_module.shutil, "disk_usage", lambda path: Usage)
        with pytest.raises(hub.CacheError, match="not enough free disk space"):
            local.download()
    written = []

    def write_until_full(out, chunk):  # the disk fills up after the first piece of the weights
        if out.name.endswith("weights.hdf5.part"):
            if written:
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(len(chunk))
        out.write(chunk)

    monkeypatch.setattr(fetch_module, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(fetch_module, "_write", write_until_full)
    with pytest.raises(hub.CacheError, match="the disk is full"):
        local.download()
    assert not local.installed().exists()
    monkeypatch.setattr(fetch_module, "_write", lambda out, chunk: out.write(chunk))
    assert (local.download() / "weights.hdf5").read_bytes() == weights
    assert local.server.gets("tiny/weights.hdf5")[-1] == f"bytes={written[0]}-"


def test_a_damaged_cached_model_is_not_used_and_download_replaces_it(local):
    _, weights = local.publish()
    directory = local.download()
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["model_files"] == {"options.json": (directory / "options.json").stat().st_size, "weights.hdf5": len(weights)}
    with open(directory / "weights.hdf5", "r+b") as f:  # cut short after the download (a copy that stopped half-way)
        f.truncate(1000)
    with pytest.raises(hub.ModelNotDownloadedError, match=rf"the copy in the cache is damaged .*weights.hdf5 has 1,000 bytes, {len(weights):,} when it was installed.*spacy-elmo download test:tiny"):
        load_bilm("test:tiny")
    listing = {m["name"]: m for m in json.loads(runner.invoke(app, ["models", "--json"]).output)["models"]}
    assert listing["test:tiny"]["cached"] is None and "1,000 bytes" in listing["test:tiny"]["damaged"]
    assert local.download() == directory  # downloads it again, in place
    assert (directory / "weights.hdf5").read_bytes() == weights
    assert len(local.server.gets("tiny/weights.hdf5")) == 2
    (directory / "options.json").unlink()
    with pytest.raises(hub.ModelNotDownloadedError, match="damaged .*options.json is missing"):
        hub.resolve_model_name("test:tiny")


def test_a_read_only_cache(local, monkeypatch):
    local.publish()
    local.publish("test:other", seed=1)
    local.download()
    for path in [local.cache, *local.cache.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        if os.geteuid() == 0:  # root writes anyway: make the cache's write probe fail as it would
            def refuse(*args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied")

            monkeypatch.setattr(home_module.tempfile, "mkstemp", refuse)
        with pytest.raises(hub.CacheError, match="cannot be written.*--cache-dir"):
            local.download("test:other")
        assert same_outputs(load_bilm("test:tiny"), local.make_bilm())  # what is there is still used
    finally:
        for path in [local.cache, *local.cache.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


DOWNLOAD_SCRIPT = """
from spacy_elmo.hub import download_model
print("DIR", download_model("test:tiny", progress=False))
"""


def test_two_processes_downloading_the_same_model(local):
    _, weights = local.publish()
    local.server.faults["/tiny/weights.hdf5"] = ["hold"]  # the first download stops half-way ...
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", DOWNLOAD_SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start()
    deadline = time.monotonic() + 60
    while not local.server.gets("tiny/weights.hdf5") and time.monotonic() < deadline:
        time.sleep(0.05)
    second = start()  # ... while a second process asks for the same model
    waiting = ""
    for line in second.stderr:
        waiting += line
        if "Waiting for another process downloading test:tiny" in line:
            break
    assert "Waiting for another process" in waiting
    assert not local.installed().exists()
    local.server.release.set()
    for run in (first, second):
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert f"DIR {local.installed()}" in out
    assert len(local.server.gets("tiny/weights.hdf5")) == 1  # the second waited, then found it complete
    assert (local.installed() / "weights.hdf5").read_bytes() == weights


# ---- the name everywhere a model is accepted -------------------------------------------------------


def test_cli_download_then_models_then_embed(local, tmp_path):
    local.publish()
    result = runner.invoke(app, ["download", "test:tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert str(local.installed()) in printed(result)
    listing = runner.invoke(app, ["models", "--json"])
    models = {m["name"]: m for m in json.loads(listing.output)["models"]}
    assert models["test:tiny"]["cached"] == str(local.installed())
    assert models["allennlp:original"]["cached"] is None
    info = runner.invoke(app, ["info", "--model", "test:tiny"])
    assert info.exit_code == 0 and "none (random weights)" in printed(info)  # the catalog's corpus
    text = tmp_path / "in.txt"
    text.write_text("The cat sat .\n")
    out = tmp_path / "out.hdf5"
    result = runner.invoke(app, ["embed", str(text), str(out), "--model", "test:tiny", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_embed_with_a_name_that_is_not_downloaded_says_what_to_run(local, tmp_path):
    local.publish()
    text = tmp_path / "in.txt"
    text.write_text("The cat sat .\n")
    result = runner.invoke(app, ["embed", str(text), str(tmp_path / "out.hdf5"), "--model", "test:tiny"])
    assert result.exit_code == 1
    assert "spacy-elmo download test:tiny" in printed(result)


def test_component_uses_a_named_model_and_the_pipeline_carries_the_weights(local, tmp_path, monkeypatch):
    local.publish()
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="spacy-elmo download test:tiny"):
        nlp.add_pipe("elmo", config={"model": "test:tiny"})
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": "test:tiny", "allow_download": True})
    assert local.installed().is_dir()
    expected = nlp("The cat sat .")._.elmo
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "elmo" / "model" / "weights.hdf5").is_file()
    shutil.rmtree(local.cache)  # the saved pipeline needs neither the cache nor the network,
    monkeypatch.setenv("SPACY_ELMO_ALLOW_DOWNLOAD", "1")  # even where downloading is allowed
    n_requests = len(local.server.log)
    loaded = spacy.load(tmp_path / "pipeline")
    np.testing.assert_array_equal(loaded("The cat sat .")._.elmo, expected)
    assert len(local.server.log) == n_requests
    assert loaded.config["components"]["elmo"]["model"] == "test:tiny"


def test_ner_config_accepts_a_name(local):
    local.publish()
    local.download()
    for name in ("ner_elmo.cfg", "textcat_elmo.cfg"):
        config = spacy.util.load_config(REPO / "configs" / name, overrides={"paths.elmo_model": "test:tiny"}, interpolate=False)
        nlp = spacy.util.load_model_from_config(config, auto_fill=True)
        assert nlp.get_pipe("elmo")._files.directory == local.installed()
    assert len(local.server.gets("tiny/weights.hdf5")) == 1


def test_spacy_package_of_a_named_model_carries_the_weights(local, tmp_path):
    local.publish()
    local.download()
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": "test:tiny"})
    expected = nlp("The cat sat .")._.elmo
    nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "packages").mkdir()
    package = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(tmp_path / "pipeline"), str(tmp_path / "packages"),
         "--name", "named_test", "--version", "0.0.1", "--build", "none", "--force"],
        capture_output=True, text=True, timeout=300,
    )
    assert package.returncode == 0, package.stdout[-3000:] + package.stderr[-3000:]
    (weights,) = (tmp_path / "packages").rglob("elmo/model/weights.hdf5")
    shutil.rmtree(local.cache)
    loaded = spacy.load(weights.parents[2])  # the pipeline folder inside the package
    np.testing.assert_array_equal(loaded("The cat sat .")._.elmo, expected)
