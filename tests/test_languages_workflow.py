"""The `languages` workflow of project.yml: its steps chain, and its scripts work on tiny data
(a few French lines, the tiny test biLM and the converted ELMoForManyLangs fixture; no training)."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

from spacy_elmo.bilm.efml import convert_efml

ROOT = Path(__file__).resolve().parents[1]
DATA_VAR = "DATA_DIR_PLACEHOLDER"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_languages_workflow_chains():
    from weasel.util import load_project_config

    project = load_project_config(ROOT, overrides={"vars.data_dir": DATA_VAR})
    commands = {c["name"]: c for c in project["commands"]}
    made: set[str] = set()
    for step in project["workflows"]["languages"]:
        cmd = commands[step]
        assert cmd.get("outputs"), step
        for dep in cmd.get("deps", []):
            if not dep.startswith(DATA_VAR + "/"):
                assert dep in made or (ROOT / dep).exists(), f"{step}: {dep} is neither made earlier nor in the repo"
        for arg in (a for line in cmd["script"] for a in shlex.split(line)):
            if arg.startswith("scripts/"):
                assert arg in cmd["deps"], f"{step}: {arg} is not a dependency"
            if arg.startswith(DATA_VAR + "/"):
                # Data a step reads is a dependency: changed data reruns the step, and missing data
                # stops it with weasel's "Missing dependency" naming the file.
                assert arg in cmd["deps"], f"{step}: reads {arg}, not a dependency"
        made.update(cmd["outputs"])
    pretrain = " ".join(commands["languages-pretrain"]["script"])
    assert "--paths.train corpus/languages/fr_train.txt" in pretrain and "wiki_summaries.fr.txt" in commands["languages-corpus"]["script"][0]


def test_the_scripts_run_on_tiny_data(shared_dir, model_dir, tmp_path):
    efml_fixture = shared_dir / "fixtures" / "elmoformanylangs"
    if not efml_fixture.is_dir():
        pytest.skip("../shared/fixtures/elmoformanylangs is absent")
    source = tmp_path / "fr.txt"
    source.write_text("L'avocat plaide.\n\nLe client a appelé son avocat.\nJ'ai mangé un avocat.\n", encoding="utf-8")
    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    script("prepare_lang_corpus").main(train, dev, source, lang="fr", dev_lines=1, max_words=0)
    assert train.read_text(encoding="utf-8").splitlines() == ["L' avocat plaide .", "Le client a appelé son avocat ."]
    assert dev.read_text(encoding="utf-8") == "J' ai mangé un avocat .\n"

    efml = convert_efml(efml_fixture, tmp_path / "efml")
    output, saved = tmp_path / "pipeline.json", tmp_path / "pipeline_fr"
    script("language_pipeline").main(output, lang="fr", model=Path(model_dir), efml_model=efml, save=saved)
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["model"]["lang"] == "fr" and report["model"]["tokens"][0] == 9  # "L'" split off
    assert report["efml_model"]["tokens"][0] == 8  # spacy.blank("xx") keeps "L'avocat" whole
    assert report["efml_model"]["width"] == 32 and report["efml_model"]["lang"] == "xx"
    assert -1 <= report["model"]["cosine_same_sense"] <= 1 and (saved / "elmo" / "model" / "options.json").is_file()
