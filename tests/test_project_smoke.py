"""Smoke test of the `demo` workflow: every demo-* command of project.yml, exactly as written
there (vars substituted by weasel), run in-process on tiny data made in the test, with tiny
budgets. Before each command its deps must exist, after it its outputs; at the end the report's
files exist and its fields hold numbers.

In-process (not through `spacy project run`) so that spaCy and torch are imported once: the whole
workflow takes seconds. `python -m spacy X`, `spacy-elmo X` and `python scripts/X.py` lines are run
through the same CLI entry points the shell would use.
"""

from __future__ import annotations

import math
import runpy
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from test_tasks_helpers import CONLL_DOCS, WIC_ROWS, write_bbc_news, write_conll, write_movie_reviews, write_stsb, write_wic

ROOT = Path(__file__).resolve().parents[1]

# Tiny budgets: the workflow's shape, not its results, is under test here.
TINY = {
    "vars.demo.pretrain_max_words": 4000,
    "vars.demo.pretrain_max_steps": 3,
    "vars.demo.ppl_max_sentences": 10,
    "vars.demo.ner_train_sentences": 12,
    "vars.demo.ner_eval_sentences": 6,
    "vars.demo.ner_max_steps": 3,
    "vars.demo.stsb_pairs": 6,
    "vars.demo.wic_pairs": len(WIC_ROWS),
    "vars.demo.threads": 1,
    "vars.demo.model_size": "smoke",
    "vars.demo.textcat_docs": 16,
    "vars.demo.textcat_max_steps": 3,
    "vars.demo.curve_fractions": "0.25,0.5",
    "vars.demo.curve_seeds": "0,1",
    "vars.demo.curve_all_seeds_up_to": 0.25,
    "vars.demo.vectors_dim": 8,
    "vars.demo.vectors_bucket": 500,
}

# A pretraining config smaller than configs/pretrain_demo.cfg, made from it (same keys).
SMOKE_OVERRIDES = {
    "model.lstm.dim": 16,
    "model.lstm.projection_dim": 8,
    "model.char_cnn.filters": [[1, 4], [2, 4], [3, 8]],
    "model.char_cnn.embedding.dim": 4,
    "vocab.max_size": 200,
    "vocab.min_count": 1,
    "training.batch_size": 4,
    "training.unroll_steps": 5,
    "training.log_every": 1,
    "training.eval_every": 2,
    "training.eval_max_sentences": 5,
    "training.checkpoint_every": 2,
}

SENTENCES = [
    "The bank raised its rates .", "He sat on the bank of the river .", "Stocks fell sharply in Tokyo .",
    "The plant employs 200 workers .", "Water the plant twice a week .", "A crane lifted the beams .",
]


def make_data(data: Path) -> None:
    """Tiny stand-ins for every file the demo reads from data_dir."""
    wiki = data / "wikitext103"
    wiki.mkdir(parents=True)
    text = "".join(f" = Heading {k} = \n {s} \n" for k, s in enumerate(SENTENCES))
    (wiki / "wiki.valid.tokens").write_text(text, encoding="utf-8")
    (wiki / "wiki.test.tokens").write_text(text, encoding="utf-8")
    fallback = data / "reuters21578" / "reuters21578.en.txt"
    fallback.parent.mkdir(parents=True)
    fallback.write_text("\n".join(s.replace(" .", ".") for s in SENTENCES * 30) + "\n", encoding="utf-8")
    for name in ("abc_news_2006", "wsj_1989_sample", "nyt_ap_1998"):  # the demo mixture's news_extra
        news = data / "news_extra" / f"{name}.en.txt"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text("\n".join(f"{name}: {s}" for s in SENTENCES) + "\n", encoding="utf-8")
    summaries = data / "wiki_summaries" / "wiki_summaries.en.txt"
    summaries.parent.mkdir(parents=True)
    summaries.write_text("\n".join(s.replace(" .", ".") for s in SENTENCES) + "\n", encoding="utf-8")
    for split in ("train", "valid", "test"):
        write_conll(data / "conll2003" / f"{split}.txt")
    for split in ("train", "dev", "test"):
        write_stsb(data / "stsb" / f"sts-{split}.csv")
    write_wic(data / "wic")
    write_movie_reviews(data / "movie_reviews" / "movie_reviews.tsv")
    write_bbc_news(data / "bbc_news" / "bbc_news.labels.tsv")


PACKAGE_SOURCES = ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "spacy_elmo")


def make_project(project: Path) -> None:
    """A copy of the project's files (project.yml, scripts/, configs/) plus the smoke config."""
    from confection import Config

    project.mkdir()
    shutil.copy(ROOT / "project.yml", project / "project.yml")
    shutil.copytree(ROOT / "scripts", project / "scripts")
    shutil.copytree(ROOT / "configs", project / "configs")
    for name in PACKAGE_SOURCES:  # the package step builds the spacy-elmo wheel from them
        (project / name).symlink_to(ROOT / name)
    config = Config().from_disk(project / "configs" / "pretrain_demo.cfg")
    for dotted, value in SMOKE_OVERRIDES.items():
        *sections, key = dotted.split(".")
        node = config
        for section in sections:
            node = node[section]
        assert key in node, f"configs/pretrain_demo.cfg has no {dotted}"
        node[key] = value
    config.to_disk(project / "configs" / "pretrain_smoke.cfg")


def _click(app, args: list[str]) -> None:
    import typer

    try:
        typer.main.get_command(app).main(args=args, standalone_mode=False)
    except SystemExit as stop:  # msg.fail(..., exits=1) and friends
        assert stop.code in (0, None), f"{args[0]} exited with {stop.code}"


def run_line(line: str, monkeypatch) -> None:
    argv = shlex.split(line)
    if argv[:2] == ["python", "-c"]:
        exec(compile(argv[2], "<project.yml>", "exec"), {})  # noqa: S102  (project.yml's own one-liners)
    elif argv[:3] == ["python", "-m", "spacy"]:
        from spacy.cli import app

        _click(app, argv[3:])
    elif argv[0] == "python" and argv[1].startswith("scripts/"):
        monkeypatch.setattr(sys, "argv", argv[1:])
        try:
            runpy.run_path(argv[1], run_name="__main__")
        except SystemExit as stop:
            assert stop.code in (0, None), f"{line} exited with {stop.code}"
    elif argv[0] == "spacy-elmo":
        from spacy_elmo.cli import app

        _click(app, argv[1:])
    else:
        raise AssertionError(f"the smoke test does not know how to run: {line}")


def _numbers(obj) -> list:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return [obj]


@pytest.mark.slow
def test_demo_workflow_on_tiny_data(tmp_path, monkeypatch):
    import json

    from weasel.util import load_project_config

    data, project_dir = tmp_path / "data", tmp_path / "project"
    make_data(data)
    make_project(project_dir)
    project = load_project_config(project_dir, overrides={"vars.data_dir": str(data), **TINY})
    commands = {c["name"]: c for c in project["commands"]}
    monkeypatch.chdir(project_dir)

    for step in project["workflows"]["demo"]:
        cmd = commands[step]
        for dep in cmd.get("deps", []):
            assert Path(dep).exists(), f"{step}: dependency {dep} missing before it runs"
        for line in cmd["script"]:
            run_line(line, monkeypatch)
        for output in cmd["outputs"]:
            assert Path(output).exists(), f"{step}: declared output {output} was not written"

    # Without the WikiText-103 archive, the pretraining text is the demo mixture, and says so.
    meta = json.loads(Path("corpus/demo/pretrain_train.txt.meta.json").read_text())
    assert meta["kind"] == "mixture" and meta["words"] > 0
    assert set(meta["sources"]) == {"wiki_summaries", "reuters", "news_extra"}
    assert sum(s["words_written"] for s in meta["sources"].values()) == meta["words"]

    # The fine-tuned copy started from the demo biLM and read the NER train words.
    tuned_meta = json.loads(Path("training/demo/bilm_conll/model/meta.json").read_text())
    assert tuned_meta["init_from"] == "training/demo/bilm/model" and tuned_meta["steps"] > 0
    assert Path("corpus/demo/conll_train.txt").read_text().splitlines()[0] == "EU rejects German call ."

    report = json.loads(Path("metrics/demo/report.json").read_text())
    assert all(v["status"] == "ok" for v in report["inputs"].values()), report["inputs"]
    figures = {
        "perplexity": report["perplexity"]["perplexity"],
        "NER dev text perplexity, general biLM": report["task_perplexity"]["general"]["perplexity"],
        "NER dev text perplexity, fine-tuned biLM": report["task_perplexity"]["finetuned"]["perplexity"],
        "NER dev text predictions, fine-tuned biLM": report["task_perplexity"]["finetuned"]["tokens"],
        "pretraining words/s": report["pretraining"]["words_per_second"],
        "NER baseline F1": report["ner"]["baseline"]["overall"]["f"],
        "NER +ELMo F1": report["ner"]["elmo"]["overall"]["f"],
        "NER baseline words/s": report["ner"]["baseline"]["words_per_second"],
        "NER +ELMo words/s": report["ner"]["elmo"]["words_per_second"],
        "biLM words/s": report["words_per_second"]["bilm_stsb"],
        "polysemy check words passed": report["polysemy_check"]["default"]["passed"],
        **{f"polysemy check {v} words passed": d["passed"] for v, d in report["polysemy_check"]["layers"].items()},
        **{f"STS-B {split} {v}": value for split, d in report["stsb"].items() for v, value in d["spearman"].items()},
        **{f"WiC {split} {v}": value for split, d in report["wic"]["accuracy"].items() for v, value in d.items()},
    }
    for name, value in figures.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{name}: {value!r}"
    assert set(report["stsb"]) == {"dev", "test"}
    assert set(report["wic"]["accuracy"]) == {"train", "dev", "test"}
    for variant in ("layer_0", "layer_1", "layer_2", "mix"):
        assert variant in report["stsb"]["test"]["spearman"] and variant in report["wic"]["accuracy"]["test"]
    # The trained ELMo pipeline's learned mix was found and plotted (not the fallback).
    (mix,) = report["scalar_mix"]["weights"].values()
    assert len(mix["weights"]) == 3 and sum(mix["weights"]) == pytest.approx(1.0)
    assert report["plots"]["scalar_mix.png"].startswith("learned")
    # The evidence steps: every arm of every grid ran and was scored; the curve has both arms at
    # each subset size (two seeds at 25%) and the main runs as its 100% point.
    evidence = report["evidence"]
    for task in ("sentiment", "topics"):
        assert set(evidence["textcat"][task]) == {"baseline", "vectors", "elmo", "elmo_vectors"}
        for arm, figures in evidence["textcat"][task].items():
            assert 0 <= figures["accuracy"] <= 1 and 0 <= figures["macro_f"] <= 1, (task, arm)
    assert all(0 <= evidence["ner_vectors"][arm]["f"] <= 1 for arm in ("vectors", "elmo_vectors"))
    # More NER seeds: the main pair (seed 0) and the grid's seed 1, trained side by side.
    seeds = evidence["ner_seeds"]
    assert seeds["seeds"] == [0, 1] and seeds["gain_sd"] is not None
    assert Path("training/demo/ner_seeds/elmo/f1_s1/train.log").is_file()
    # Static vectors alone against ELMo alone over the same two seeds (train-ner-vectors + -seeds).
    against = evidence["ner_vectors_against_elmo"]
    assert against["seeds"] == [0, 1] and against["gain_sd"] is not None
    assert against["elmo"] == seeds["elmo"]
    for task in ("sentiment", "topics"):  # the textcat seed step: seed 1 of baseline and ELMo beside the main grid's seed 0
        over = evidence["textcat_seeds"][task]["accuracy"]
        assert over["seeds"] == [0, 1] and over["gain_sd"] is not None, task
    # The ELMo pipeline in each precision the machine runs (float32 always).
    assert 0 <= evidence["ner_precision"]["f1"]["float32"] <= 100
    curve = evidence["learning_curve"]
    n_sentences = min(TINY["vars.demo.ner_train_sentences"], sum(map(len, CONLL_DOCS)))
    assert curve["total_docs"] == n_sentences
    for arm in ("baseline", "elmo"):
        points = {p["fraction"]: p for p in curve["arms"][arm]}
        assert sorted(points) == [0.25, 0.5, 1.0]
        assert [points[f]["n_runs"] for f in (0.25, 0.5)] == [2, 1] and points[0.25]["sd"] is not None
        assert [points[f]["train_docs"] for f in (0.25, 0.5, 1.0)] == [math.ceil(f * n_sentences) for f in (0.25, 0.5, 1.0)]
    subsets = json.loads(Path("corpus/demo/ner_curve/subsets.json").read_text())
    assert {(s["fraction"], s["seed"]) for s in subsets["subsets"]} == {(0.25, 0), (0.25, 1), (0.5, 0)}
    evidence_table = Path("metrics/demo/report.md").read_text().split("+ static vectors", 1)[1].split("| Speed", 1)[0]
    assert "NER learning curve" in evidence_table and "n/a" not in evidence_table
    for png in ("training_curves.png", "scalar_mix.png", "polysemy_pca.png", "learning_curve.png"):
        assert Path("metrics/demo", png).read_bytes()[:4] == b"\x89PNG"
    assert len(list(Path("packages/demo/spacy-elmo").glob("spacy_elmo-*.whl"))) == 1
    markdown = Path("metrics/demo/report.md").read_text()
    assert "| NER (CoNLL-2003) | F1 overall | test |" in markdown and "Missing inputs" not in markdown
    from spacy_elmo.tasks.grid import cpu_model_name

    # Every training run (the main pair's too) was made here and says so; the report names the machine.
    assert list(evidence["machines"]) == [cpu_model_name()]
    assert json.loads(Path("metrics/demo/ner_elmo.json").read_text())["environment"]["cpu"] == cpu_model_name()
    # ... and its budget and seed, which the report compares with the grids' (none left from other settings here).
    for arm in ("baseline", "elmo"):
        made = json.loads(Path(f"metrics/demo/ner_{arm}.json").read_text())["training"]
        assert made == {"max_steps": TINY["vars.demo.ner_max_steps"], "seed": project["vars"]["seed"]}, arm
    assert f"were made on: {cpu_model_name()} (" in markdown
    # The demo never wrote outside its */demo folders.
    for path in project_dir.rglob("*"):
        parts = path.relative_to(project_dir).parts
        if path.is_file() and parts[0] not in ("project.yml", "project.lock", "scripts", "configs", *PACKAGE_SOURCES):
            assert parts[1] == "demo", path
