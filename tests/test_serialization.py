"""The weights travel with the pipeline: to_disk/from_disk, to_bytes/from_bytes, DocBin, spacy package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_elmo import default_model
from spacy_elmo.bilm import save_model_dir

pytestmark = pytest.mark.usefixtures("single_thread")

TEXTS = ["The bank of the river .", "She paid the bank .", "", "东京 🎉 !"]


@pytest.fixture
def random_model(make_bilm):
    """random_model(path, seed): write conftest's tiny biLM with weights from `seed` to a model dir."""

    def make(path: Path, seed: int) -> str:
        return str(save_model_dir(make_bilm(seed=seed), path, meta={"seed": seed}))

    return make


def build_nlp(model_dir: str) -> spacy.Language:
    """elmo (a fixed mix, all layers kept) + a textcat whose listener has its own mix."""
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir, "output": "mix", "mix_weights": [0.3, -0.2, 1.0], "gamma": 0.5, "all_layers": True})
    nlp.add_pipe("textcat", config={"model": {
        "@architectures": "spacy.TextCatEnsemble.v2", "nO": None,
        "tok2vec": {"@architectures": "spacy-elmo.ElmoListener.v1", "mix_weights": [1.0, 0.0, -1.0], "gamma": 2.0},
        "linear_model": {"@architectures": "spacy.TextCatBOW.v3", "exclusive_classes": True, "ngram_size": 1, "no_output_layer": False, "nO": None},
    }})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"A": float(i % 2), "B": float(1 - i % 2)}}) for i, t in enumerate(TEXTS[:2])]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):  # moves the textcat weights (and its mix) off their initial values
        nlp.update(examples, sgd=optimizer)
    return nlp


def assert_same_outputs(nlp_a: spacy.Language, nlp_b: spacy.Language) -> None:
    for a, b in zip(nlp_a.pipe(TEXTS), nlp_b.pipe(TEXTS)):
        np.testing.assert_array_equal(a._.elmo, b._.elmo)
        np.testing.assert_array_equal(a._.elmo_layers, b._.elmo_layers)
        assert a.cats == pytest.approx(b.cats, abs=1e-7)


def test_to_disk_from_disk_no_longer_needs_the_original_weights(tmp_path, random_model):
    model_dir = random_model(tmp_path / "weights", seed=1)
    nlp = build_nlp(model_dir)
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline/elmo/model/weights.hdf5").is_file()
    assert (tmp_path / "pipeline/elmo/model/options.json").is_file()
    shutil.rmtree(model_dir)
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe_config("elmo")["model"] == model_dir  # still in the config, gone from disk
    assert_same_outputs(nlp, loaded)
    assert loaded.get_pipe("elmo")._meta == {"seed": 1}  # the model's meta.json travels too
    # ...and a pipeline loaded that way saves and loads again.
    loaded.to_disk(tmp_path / "again")
    assert_same_outputs(nlp, spacy.load(tmp_path / "again"))


def test_a_pipeline_built_on_the_default_model_loads_without_it(tmp_path, monkeypatch, random_model):
    model_dir = random_model(tmp_path / "default_model", seed=2)
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_DIR", Path(model_dir))
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    nlp.to_disk(tmp_path / "pipeline")
    monkeypatch.setattr(default_model, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    loaded = spacy.load(tmp_path / "pipeline")
    np.testing.assert_array_equal(loaded("Default weights .")._.elmo, nlp("Default weights .")._.elmo)


def test_to_bytes_from_bytes(tmp_path, random_model):
    model_dir = random_model(tmp_path / "weights", seed=3)
    nlp = build_nlp(model_dir)
    data = nlp.to_bytes()
    rebuilt = spacy.util.load_model_from_config(nlp.config)  # reads nothing yet: weights load lazily
    random_model(Path(model_dir), seed=4)  # the config's files now hold other weights
    rebuilt.from_bytes(data)
    assert_same_outputs(nlp, rebuilt)
    # The component alone, too.
    elmo = spacy.blank("en").add_pipe("elmo", config={"model": model_dir, "output": "mix", "mix_weights": [0.3, -0.2, 1.0], "gamma": 0.5})
    elmo.from_bytes(nlp.get_pipe("elmo").to_bytes())
    np.testing.assert_array_equal(elmo(nlp.make_doc(TEXTS[0]))._.elmo, nlp(TEXTS[0])._.elmo)


def test_docbin_keeps_the_vectors(tmp_path, random_model):
    nlp = build_nlp(random_model(tmp_path / "weights", seed=5))
    docs = list(nlp.pipe(TEXTS))
    restored = list(DocBin(docs=docs, store_user_data=True).from_bytes(
        DocBin(docs=docs, store_user_data=True).to_bytes()).get_docs(nlp.vocab))
    for doc, back in zip(docs, restored):
        assert back._.elmo.dtype == np.float32
        np.testing.assert_array_equal(back._.elmo, doc._.elmo)
        np.testing.assert_array_equal(back._.elmo_layers, doc._.elmo_layers)
        np.testing.assert_array_equal(back[0:2]._.elmo if len(back) else 0, doc[0:2]._.elmo if len(doc) else 0)
    # spaCy does not serialise hooks; reading doc._.elmo (above) put them back.
    assert "similarity" in restored[0].user_hooks
    assert restored[0].similarity(restored[1]) == pytest.approx(docs[0].similarity(docs[1]), abs=1e-7)
    assert restored[0][1].similarity(restored[1][3]) == pytest.approx(docs[0][1].similarity(docs[1][3]), abs=1e-7)


@pytest.mark.slow
def test_spacy_package_builds_an_installable_pipeline_with_the_weights(tmp_path, random_model):
    model_dir = random_model(tmp_path / "weights", seed=6)
    nlp = build_nlp(model_dir)
    expected = nlp(TEXTS[0])
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(model_dir)
    (tmp_path / "packages").mkdir()
    package = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(tmp_path / "pipeline"), str(tmp_path / "packages"),
         "--name", "elmo_test", "--version", "0.0.1", "--build", "sdist", "--force"],
        capture_output=True, text=True, timeout=300,
    )
    assert package.returncode == 0, package.stdout[-3000:] + package.stderr[-3000:]
    (sdist,) = (tmp_path / "packages").rglob("en_elmo_test-0.0.1.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("elmo/model/weights.hdf5") for n in names)
    (meta,) = (tmp_path / "packages").glob("*/meta.json")
    assert any(r.startswith("spacy-elmo") for r in json.loads(meta.read_text())["requirements"])
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(tmp_path / "site"), str(sdist)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    code = textwrap.dedent(
        f"""
        import sys, spacy
        sys.path.insert(0, {str(tmp_path / "site")!r})
        nlp = spacy.load("en_elmo_test")
        doc = nlp({TEXTS[0]!r})
        print(doc._.elmo.tolist(), doc.cats)
        """
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    vectors, cats = loaded.stdout.strip().split("] {", 1)
    np.testing.assert_allclose(np.array(eval(vectors + "]")), expected._.elmo, atol=1e-6)
    assert eval("{" + cats) == pytest.approx(expected.cats, abs=1e-6)
