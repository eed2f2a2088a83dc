"""Issue 22's evidence: text classification splits, nested learning-curve subsets, static vectors
from the pretraining text (floret -> spacy init vectors), the arms of the training grid, and the
report rows that read n/a until their step has run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_tasks_helpers import REVIEW_WORDS, TOPIC_WORDS, tiny_model_dir, write_bbc_news, write_conll, write_movie_reviews  # noqa: F401 (fixture)

from spacy_elmo.tasks.grid import (
    Arm, arm_overrides, nested_subsets, run_grid, static_vector_overrides, subset_plan, summarize, write_subsets,
)
from spacy_elmo.tasks.textcat import read_labelled_tsv, split_labelled_tsv, stratified_split

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


# ---- text classification splits -----------------------------------------------------------------


def test_stratified_split_is_deterministic_disjoint_complete_and_stratified():
    labels = ["pos"] * 100 + ["neg"] * 60 + ["odd"] * 10
    split = stratified_split(labels, dev=0.1, test=0.2, seed=7)
    assert split == stratified_split(labels, dev=0.1, test=0.2, seed=7)
    assert split != stratified_split(labels, dev=0.1, test=0.2, seed=8)
    sets = {name: set(indices) for name, indices in split.items()}
    assert not (sets["train"] & sets["dev"]) and not (sets["train"] & sets["test"]) and not (sets["dev"] & sets["test"])
    assert sets["train"] | sets["dev"] | sets["test"] == set(range(len(labels)))
    for name, share in (("test", 0.2), ("dev", 0.1)):
        counts = Counter(labels[i] for i in split[name])
        assert counts == {"pos": round(100 * share), "neg": round(60 * share), "odd": round(10 * share)}, name


def test_split_labelled_tsv_writes_docbins_with_exclusive_cats(tmp_path):
    import spacy
    from spacy.tokens import DocBin

    meta = split_labelled_tsv(write_movie_reviews(tmp_path / "reviews.tsv", per_label=10), tmp_path / "out", seed=0)
    assert meta["labels"] == ["neg", "pos"]
    assert {s: info["docs"] for s, info in meta["splits"].items()} == {"train": 16, "dev": 2, "test": 2}
    nlp = spacy.blank("en")
    texts = {}
    for split in ("train", "dev", "test"):
        docs = list(DocBin().from_disk(tmp_path / "out" / f"{split}.spacy").get_docs(nlp.vocab))
        assert all(sorted(doc.cats.values()) == [0.0, 1.0] for doc in docs)
        assert Counter(max(doc.cats, key=doc.cats.get) for doc in docs) == meta["splits"][split]["labels"]
        texts[split] = {doc.text for doc in docs}
    assert not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]
    # The file id column is not part of the text.
    assert all(text.startswith(tuple(REVIEW_WORDS.values())) for text in texts["train"])


def test_split_with_limit_is_a_stratified_subset(tmp_path):
    meta = split_labelled_tsv(write_bbc_news(tmp_path / "bbc.tsv", per_label=6), tmp_path / "out", seed=0, limit=10)
    totals = Counter()
    for info in meta["splits"].values():
        totals.update(info["labels"])
    assert totals == {topic: 2 for topic in TOPIC_WORDS}


def test_bad_tsv_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("pos\tfine text\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: expected 'label<TAB>\[id<TAB>\]text'"):
        read_labelled_tsv(path)


# ---- learning-curve subsets ----------------------------------------------------------------------


def test_subsets_are_nested_seeded_and_sized():
    subsets = nested_subsets(1000, [0.25, 0.01, 0.05], seed=3)
    assert [len(subsets[f]) for f in (0.01, 0.05, 0.25)] == [10, 50, 250]
    assert set(subsets[0.01]) < set(subsets[0.05]) < set(subsets[0.25])
    assert subsets == nested_subsets(1000, [0.01, 0.05, 0.25], seed=3)
    assert subsets[0.05] != nested_subsets(1000, [0.05], seed=4)[0.05]
    assert len(nested_subsets(30, [0.01], seed=0)[0.01]) == 1  # never empty
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        nested_subsets(10, [0.0], seed=0)


def test_subset_plan_uses_every_seed_at_the_small_sizes_only():
    assert subset_plan([0.25, 0.01, 0.05], [0, 1, 2], all_seeds_up_to=0.05) == [
        (0.01, 0), (0.01, 1), (0.01, 2), (0.05, 0), (0.05, 1), (0.05, 2), (0.25, 0),
    ]


def test_write_subsets_writes_nested_docbins_and_a_manifest(tmp_path):
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from spacy_elmo.tasks.ner import conll_to_docbin

    train = tmp_path / "train.spacy"
    conll_to_docbin(write_conll(tmp_path / "train.txt"), train)
    manifest = write_subsets(train, tmp_path / "curve", [0.4, 0.8], [0, 1], all_seeds_up_to=0.4)
    assert manifest["total_docs"] == 5
    assert [(s["fraction"], s["seed"], s["docs"]) for s in manifest["subsets"]] == [(0.4, 0, 2), (0.4, 1, 2), (0.8, 0, 4)]
    assert json.loads((tmp_path / "curve" / "subsets.json").read_text()) == manifest

    def texts(subset):
        return {doc.text for doc in DocBin().from_disk(subset["path"]).get_docs(Vocab())}

    small, _, large = manifest["subsets"]
    assert texts(small) < texts(large)


def test_ner_subsets_script_refuses_odd_fractions_and_seeds_with_a_usage_error(tmp_path):
    import importlib.util

    import typer

    from spacy_elmo.tasks.ner import conll_to_docbin

    spec = importlib.util.spec_from_file_location("ner_subsets", ROOT / "scripts" / "ner_subsets.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    train = tmp_path / "train.spacy"
    conll_to_docbin(write_conll(tmp_path / "train.txt"), train)
    for fractions, seeds, message in (("0,0.5", "0", r"must be in \(0, 1\]"), ("1.5", "0", r"must be in \(0, 1\]"),
                                      ("0.5", "", "at least one seed")):
        with pytest.raises(typer.BadParameter, match=message):
            script.main(train, tmp_path / "curve", fractions=fractions, seeds=seeds, all_seeds_up_to=1.0)
    assert not (tmp_path / "curve" / "subsets.json").exists()


# ---- arms of the grid ----------------------------------------------------------------------------


@pytest.mark.parametrize("config, section", [
    ("ner_baseline.cfg", "components.ner.model.tok2vec.embed"),
    ("ner_elmo.cfg", "components.ner.model.tok2vec.embed.embed"),
    ("textcat_baseline.cfg", "components.textcat.model.tok2vec.embed"),
    ("textcat_elmo.cfg", "components.textcat.model.tok2vec.embed.embed"),
])
def test_vectors_arm_switches_on_the_static_vectors_of_the_same_config(config, section, tmp_path):
    from spacy.util import load_config

    assert static_vector_overrides(load_config(CONFIGS / config, interpolate=False)) == {f"{section}.include_static_vectors": True}
    overrides = arm_overrides(Arm.parse(f"v={CONFIGS / config}+vectors"), elmo_model=tmp_path / "bilm", vectors=tmp_path / "vec")
    assert overrides[f"{section}.include_static_vectors"] is True and overrides["paths.vectors"] == str(tmp_path / "vec")
    assert ("paths.elmo_model" in overrides) == ("elmo" in config)
    assert arm_overrides(Arm.parse(f"plain={CONFIGS / config}"), None, None) == {}


def test_arm_errors_say_what_to_fix(tmp_path):
    with pytest.raises(ValueError, match="NAME=CONFIG"):
        Arm.parse("configs/ner_baseline.cfg")
    with pytest.raises(ValueError, match="needs --vectors"):
        arm_overrides(Arm.parse(f"v={CONFIGS / 'ner_baseline.cfg'}+vectors"), None, None)
    with pytest.raises(FileNotFoundError, match="nope.cfg not found"):
        arm_overrides(Arm.parse("x=nope.cfg"), None, None)


def test_summarize_gives_mean_and_sd_over_seeds():
    runs = [
        {"arm": "elmo", "fraction": 0.01, "seed": s, "train_docs": 140, "scores": {"f": f}}
        for s, f in enumerate([0.5, 0.7, 0.6])
    ] + [{"arm": "elmo", "fraction": 0.25, "seed": 0, "train_docs": 3500, "scores": {"f": 0.8}}]
    (small, large) = summarize(runs)["elmo"]
    assert small["n_runs"] == 3 and small["mean"]["f"] == pytest.approx(0.6) and small["sd"]["f"] == pytest.approx(0.1)
    assert large["n_runs"] == 1 and large["sd"]["f"] is None


@pytest.mark.slow
def test_textcat_arms_train_a_few_steps_and_resume(tmp_path, tiny_model_dir, monkeypatch):
    """The plain baseline and ELMo + floret vectors (the two ends of the four arms; the smoke test
    runs all four) train, score on the test set, and a rerun reuses the finished runs."""
    from spacy_elmo.tasks import grid

    data = tmp_path / "topics"
    split_labelled_tsv(write_bbc_news(tmp_path / "bbc.tsv", per_label=4), data, seed=0, dev=0.25, test=0.25)
    vectors = make_vectors(tmp_path)
    arms = [Arm.parse(f"baseline={CONFIGS / 'textcat_baseline.cfg'}"), Arm.parse(f"elmo_vectors={CONFIGS / 'textcat_elmo.cfg'}+vectors")]
    args = (arms, data / "train.spacy", [0], tmp_path / "runs", data / "dev.spacy", data / "test.spacy", 2)
    result = run_grid(*args, elmo_model=tiny_model_dir, vectors=vectors)
    assert [r["arm"] for r in result["runs"]] == ["baseline", "elmo_vectors"]
    for run in result["runs"]:
        assert 0 <= run["scores"]["accuracy"] <= 1 and 0 <= run["scores"]["macro_f"] <= 1
    import spacy

    nlp = spacy.load(tmp_path / "runs" / "elmo_vectors" / "f1_s0" / "model-best")
    assert nlp.vocab.vectors.mode == "floret" and nlp.pipe_names == ["elmo", "textcat"]

    monkeypatch.setattr(grid, "train_and_evaluate", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert run_grid(*args, elmo_model=tiny_model_dir, vectors=vectors) == result


@pytest.mark.slow
def test_runs_trained_side_by_side_match_runs_trained_one_by_one(tmp_path):
    """jobs=2 trains two runs at once in their own processes (one thread each): the same figures,
    in the planned order, as one by one; each run's training log is in its folder."""
    data = tmp_path / "topics"
    split_labelled_tsv(write_bbc_news(tmp_path / "bbc.tsv", per_label=4), data, seed=0, dev=0.25, test=0.25)
    arms = [Arm.parse(f"baseline={CONFIGS / 'textcat_baseline.cfg'}")]
    args = (arms, data / "train.spacy", [0, 1], data / "dev.spacy", data / "test.spacy", 3)
    one_by_one = run_grid(*args[:3], tmp_path / "serial", *args[3:])
    side_by_side = run_grid(*args[:3], tmp_path / "parallel", *args[3:], jobs=2)
    assert [r["seed"] for r in side_by_side["runs"]] == [0, 1]
    assert [r["scores"] for r in side_by_side["runs"]] == [r["scores"] for r in one_by_one["runs"]]
    for seed in (0, 1):
        assert "textcat" in (tmp_path / "parallel" / "baseline" / f"f1_s{seed}" / "train.log").read_text()
    with pytest.raises(ValueError, match="CPU only"):
        run_grid(*args[:3], tmp_path / "gpu", *args[3:], gpu_id=0, jobs=2)


def test_a_worker_killed_mid_run_is_a_clear_error():
    from test_tasks_helpers import die_without_a_python_error

    from spacy_elmo.tasks.grid import _train_all

    with pytest.raises(RuntimeError, match="training process died.*rerun to continue"):
        list(_train_all({0: (), 1: ()}, jobs=2, worker=die_without_a_python_error))


# ---- static vectors ------------------------------------------------------------------------------


def make_vectors(tmp_path: Path) -> Path:
    """floret on a tiny corpus, then `spacy init vectors --mode floret`, as the workflow does."""
    import typer
    from spacy.cli import app

    from spacy_elmo.tasks.static_vectors import train_floret

    text = tmp_path / "pretrain.txt"
    lines = ["the bank raised its rates", "he sat on the bank of the river", "stocks fell sharply in tokyo"]
    text.write_text("\n".join(lines * 40) + "\n", encoding="utf-8")
    info = train_floret(text, tmp_path / "vectors.floret", dim=8, epochs=1, bucket=300, min_count=2)
    assert info["words_in_vocab"] > 5
    typer.main.get_command(app).main(
        args=["init", "vectors", "en", str(tmp_path / "vectors.floret"), str(tmp_path / "vectors"), "--mode", "floret"],
        standalone_mode=False,
    )
    return tmp_path / "vectors"


def test_floret_vectors_from_a_tiny_corpus_load_in_spacy(tmp_path):
    import numpy as np
    import spacy

    nlp = spacy.load(make_vectors(tmp_path))
    assert nlp.vocab.vectors.mode == "floret" and nlp.vocab.vectors.shape == (300, 8)
    bank, unseen = nlp("bank"), nlp("bankers")
    assert bank[0].has_vector and bank.vector.shape == (8,) and np.abs(bank.vector).sum() > 0
    assert unseen[0].has_vector  # subwords: no word is out of vocabulary
    with pytest.raises(FileNotFoundError, match="run the step that writes the pretraining text"):
        from spacy_elmo.tasks.static_vectors import train_floret

        train_floret(tmp_path / "missing.txt", tmp_path / "x.floret")


# ---- report rows ---------------------------------------------------------------------------------


def _evidence_rows(report: dict) -> list[dict]:
    evidence = ("static vectors", "Sentiment", "Topics", "NER learning curve")
    return [r for r in report["table"] if any(word in r["task"] + r["metric"] for word in evidence)]


def test_evidence_rows_read_na_when_their_steps_have_not_run(tmp_path):
    from spacy_elmo.tasks.report import ReportInputs, make_report

    report = make_report(ReportInputs(sentiment=tmp_path / "missing.json", ner_curve=tmp_path / "nope.json"), tmp_path, plots=True)
    rows = _evidence_rows(report)
    # NER + vectors, NER vectors alone vs ELMo alone over seeds; accuracy/macro F1 with and without
    # vectors per set, and the mean over seeds per set; the curve
    assert len(rows) == 2 + 2 * (4 + 1) + 1
    for row in rows:
        assert row["cells"] == {"Baseline": "n/a", "+ELMo (mix)": "n/a"}, row
    assert report["inputs"]["sentiment"]["status"].startswith("missing")
    assert report["plots"]["learning_curve.png"].startswith("not made")
    assert not (tmp_path / "learning_curve.png").exists()


def test_evidence_rows_show_the_grid_figures(tmp_path):
    from spacy_elmo.tasks.report import ReportInputs, make_report

    def grid_json(path, runs, total=None):
        path.write_text(json.dumps({"total_docs": total, "runs": runs, "summary": summarize(runs)}))
        return path

    sentiment = grid_json(tmp_path / "s.json", [
        {"arm": arm, "fraction": 1.0, "seed": 0, "train_docs": None, "scores": {"accuracy": acc, "macro_f": acc - 0.01}}
        for arm, acc in (("baseline", 0.8), ("elmo", 0.85), ("vectors", 0.82))])
    curve = grid_json(tmp_path / "c.json", [
        {"arm": arm, "fraction": 0.01, "seed": s, "train_docs": 140, "scores": {"f": f + s / 100}}
        for arm, f in (("baseline", 0.5), ("elmo", 0.6)) for s in range(3)], total=14041)
    ner_baseline = tmp_path / "nb.json"
    ner_baseline.write_text(json.dumps({"overall": {"f": 0.9, "p": 0.9, "r": 0.9}}))
    report = make_report(ReportInputs(sentiment=sentiment, ner_curve=curve, ner_baseline=ner_baseline), tmp_path)
    cells = {(r["task"], r["metric"]): r["cells"] for r in _evidence_rows(report)}
    assert cells[("Sentiment (movie reviews)", "accuracy %")] == {"Baseline": "80.00", "+ELMo (mix)": "85.00"}
    with_vectors = cells[("Sentiment (movie reviews)", "accuracy %, + static vectors (floret, same text)")]
    assert with_vectors == {"Baseline": "82.00", "+ELMo (mix)": "n/a"}  # no elmo_vectors run
    assert cells[("NER learning curve", "F1, 1% of train, 140 sentences, mean ± sd of 3 seeds")] == {
        "Baseline": "51.00 ± 1.00", "+ELMo (mix)": "61.00 ± 1.00"}
    # The main baseline run is the curve's 100% point; the ELMo arm has none (n/a, not invented).
    assert cells[("NER learning curve", "F1, 100% of train, 14,041 sentences")] == {"Baseline": "90.00", "+ELMo (mix)": "n/a"}
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "NER learning curve" in (tmp_path / "report.md").read_text()


def test_ner_vector_arms_show_f1_per_entity_type(tmp_path):
    """The grid keeps each NER run's F1 per type; the report shows them for the vector arms."""
    from spacy_elmo.tasks.grid import headline
    from spacy_elmo.tasks.report import ReportInputs, make_report

    scores = {"ents_f": 0.84, "ents_p": 0.83, "ents_r": 0.85,
              "ents_per_type": {"PER": {"p": 0.9, "r": 0.9, "f": 0.88}, "LOC": {"p": 0.9, "r": 0.87, "f": 0.885}}}
    assert headline(scores) == {"f": 0.84, "p": 0.83, "r": 0.85, "f_LOC": 0.885, "f_PER": 0.88}
    runs = [{"arm": "vectors", "fraction": 1.0, "seed": 0, "train_docs": None, "scores": headline(scores)}]
    grid = tmp_path / "v.json"
    grid.write_text(json.dumps({"runs": runs, "summary": summarize(runs)}))
    report = make_report(ReportInputs(ner_vectors=grid), tmp_path, plots=False)
    cells = {r["metric"]: r["cells"] for r in report["table"] if "static vectors" in r["metric"]}
    assert cells["F1 LOC, + static vectors (floret, same text)"] == {"Baseline": "88.50", "+ELMo (mix)": "n/a"}
    assert cells["F1 PER, + static vectors (floret, same text)"] == {"Baseline": "88.00", "+ELMo (mix)": "n/a"}


@pytest.mark.shared
@pytest.mark.parametrize("path, n_items, n_labels", [
    ("movie_reviews/movie_reviews.tsv", 2000, 2), ("bbc_news/bbc_news.labels.tsv", 2225, 5),
])
def test_real_text_classification_sets_split_80_10_10(shared_dir, path, n_items, n_labels):
    """The workflow's split of the real files (read only; the DocBins are the workflow's job)."""
    source = shared_dir / "data" / path
    if not source.is_file():
        pytest.skip(f"../shared/data/{path} is absent: the text classification data sets are not on this machine")
    labels = [label for label, _ in read_labelled_tsv(source)]
    assert len(labels) == n_items and len(set(labels)) == n_labels
    split = stratified_split(labels, dev=0.1, test=0.1, seed=0)
    assert sum(map(len, split.values())) == n_items
    for name in ("dev", "test"):
        assert abs(len(split[name]) - n_items / 10) <= n_labels


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    from spacy_elmo.tasks._io import write_json
    from spacy_elmo.tasks.grid import finished_scores, run_settings

    config = tmp_path / "a.cfg"
    config.write_text("[x]\ny = 1\n")
    settings = {"system.seed": 0, "training.max_steps": 100, "paths.train": "t.spacy", "x.include_static_vectors": True}
    assert finished_scores(tmp_path, config, tmp_path / "test.spacy", settings) is None  # never run
    write_json(tmp_path / "run.json", run_settings(config, tmp_path / "test.spacy", settings))
    assert finished_scores(tmp_path, config, tmp_path / "test.spacy", settings) is None  # killed before scoring
    write_json(tmp_path / "test_scores.json", {"ents_f": 0.5})
    assert finished_scores(tmp_path, config, tmp_path / "test.spacy", settings) == {"ents_f": 0.5}
    assert finished_scores(tmp_path, config, tmp_path / "test.spacy", {**settings, "training.max_steps": 200}) is None
    config.write_text("[x]\ny = 2\n")
    assert finished_scores(tmp_path, config, tmp_path / "test.spacy", settings) is None


def test_a_recorded_run_is_reused_only_with_the_same_package_versions_whatever_the_cpu(tmp_path, monkeypatch):
    from spacy_elmo.tasks import grid
    from spacy_elmo.tasks._io import write_json

    config = tmp_path / "a.cfg"
    config.write_text("[x]\ny = 1\n")
    settings = {"system.seed": 0, "training.max_steps": 100}
    test = tmp_path / "test.spacy"
    here = {"cpu": "CPU A", "versions": {"spacy": "3.8.0", "thinc": "8.3.0", "torch": "2.13.0", "numpy": "2.0", "blis": "1.0"}}
    monkeypatch.setattr(grid, "package_versions", lambda: here["versions"])
    write_json(tmp_path / "test_scores.json", {"ents_f": 0.5})
    for cpu, thinc, reused in [("CPU A", "8.3.0", True), ("CPU B", "8.3.0", True), ("CPU A", "8.3.1", False)]:
        made = {"cpu": cpu, "versions": {**here["versions"], "thinc": thinc}}
        write_json(tmp_path / "run.json", {**grid.run_settings(config, test, settings), "environment": made})
        assert (grid.finished_scores(tmp_path, config, test, settings) is not None) is reused, (cpu, thinc)
        assert grid.recorded_environment(tmp_path) == made
    # A run.json from before environments were recorded is matched on its settings alone.
    write_json(tmp_path / "run.json", grid.run_settings(config, test, settings))
    assert grid.finished_scores(tmp_path, config, test, settings) == {"ents_f": 0.5}
    assert grid.recorded_environment(tmp_path) is None


def test_the_environment_names_the_cpu_and_the_versions_of_the_training_stack():
    import spacy
    import torch

    from spacy_elmo.tasks.grid import ENVIRONMENT_PACKAGES, run_environment

    environment = run_environment()
    assert isinstance(environment["cpu"], str) and environment["cpu"]
    assert set(environment["versions"]) == set(ENVIRONMENT_PACKAGES)
    assert environment["versions"]["spacy"] == spacy.__version__
    assert environment["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]


def test_the_report_says_which_machines_made_the_runs():
    from spacy_elmo.tasks.evidence import NOT_RECORDED, run_machines

    def grid_file(*cpus):
        return {"runs": [{"arm": "baseline", "environment": None if cpu is None else {"cpu": cpu}} for cpu in cpus]}

    loaded = {"ner_seeds": grid_file("AMD EPYC", "AMD EPYC", None), "sentiment": grid_file("Xeon"),
              "ner_precision": {"f1": {"int8": 0.8}}, "topics": None}
    assert run_machines(loaded) == {"AMD EPYC": 2, NOT_RECORDED: 1, "Xeon": 1}
    assert run_machines({"ner_seeds": None}) == {}
    # The main NER pair counts too, an arm without a score (its step has not run) does not.
    ner = {"baseline": {"overall": {"f": 0.8}, "environment": {"cpu": "Xeon"}},
           "elmo": {"overall": {"f": 0.82}, "environment": None}}
    assert run_machines(loaded, ner) == {"AMD EPYC": 2, "Xeon": 2, NOT_RECORDED: 2}
    ner["elmo"]["overall"]["f"] = None
    assert run_machines({}, ner) == {"Xeon": 1}


def _fake_training(calls: list):
    """train_and_evaluate without spaCy: writes what the real one writes (run.json, then the scores)
    and a score that names the run, so a test can tell which runs were trained."""
    from spacy_elmo.tasks import grid
    from spacy_elmo.tasks._io import write_json

    def train(config, output, test, overrides, gpu_id=-1, inputs=None):
        calls.append(output.name)
        assert inputs == grid.input_fingerprints(overrides)  # the arm's fingerprints, hashed once by run_grid
        output.mkdir(parents=True, exist_ok=True)
        write_json(output / "run.json", grid.run_record(config, test, overrides, inputs))
        scores = {"ents_f": 0.5 + overrides["system.seed"] / 10, "ents_p": 0.5, "ents_r": 0.5}
        write_json(output / "test_scores.json", scores)
        return scores

    return train


def test_the_record_carries_finished_runs_to_a_fresh_machine(tmp_path, monkeypatch):
    """With a record folder, each finished run's settings and scores are kept there; when the
    training folder is gone, a rerun reads them instead of training, and a biLM whose weights
    changed under the same path trains again."""
    from spacy_elmo.tasks import grid

    elmo = tmp_path / "bilm"
    elmo.mkdir()
    (elmo / "options.json").write_text("{}")
    (elmo / "weights.hdf5").write_bytes(b"weights of the first biLM")
    (elmo / "meta.json").write_text('{"training_seconds": 1}')
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}.spacy").write_bytes(b"")
    arms = [Arm.parse(f"baseline={CONFIGS / 'ner_baseline.cfg'}"), Arm.parse(f"elmo={CONFIGS / 'ner_elmo.cfg'}")]
    args = (arms, tmp_path / "train.spacy", [0, 1], tmp_path / "runs", tmp_path / "dev.spacy", tmp_path / "test.spacy", 10)
    calls = []
    monkeypatch.setattr(grid, "train_and_evaluate", _fake_training(calls))
    first = run_grid(*args, elmo_model=elmo, record_dir=tmp_path / "record")
    assert sorted(calls) == ["f1_s0", "f1_s0", "f1_s1", "f1_s1"]
    assert {r["source"] for r in first["runs"]} == {"trained"}
    for arm in ("baseline", "elmo"):
        for seed in (0, 1):
            kept = tmp_path / "record" / arm / f"f1_s{seed}"
            assert json.loads((kept / "test_scores.json").read_text())["ents_f"] == pytest.approx(0.5 + seed / 10)
            assert json.loads((kept / "run.json").read_text()) == json.loads((tmp_path / "runs" / arm / f"f1_s{seed}" / "run.json").read_text())

    import shutil

    shutil.rmtree(tmp_path / "runs")  # a fresh machine: the training folders are gone, the record is committed
    (elmo / "meta.json").write_text('{"training_seconds": 2}')  # rewritten by a rerun: not what the features are made of
    calls.clear()
    again = run_grid(*args, elmo_model=elmo, record_dir=tmp_path / "record")
    assert calls == []
    assert [r["scores"] for r in again["runs"]] == [r["scores"] for r in first["runs"]]
    assert {r["source"] for r in again["runs"]} == {"record"} and {r["model"] for r in again["runs"]} == {None}
    assert all(r["environment"] == grid.run_environment() for r in first["runs"] + again["runs"])  # the machine, for the report

    (elmo / "weights.hdf5").write_bytes(b"weights of a retrained biLM")
    retrained = run_grid(*args, elmo_model=elmo, record_dir=tmp_path / "record")
    assert sorted(calls) == ["f1_s0", "f1_s1"]  # the ELMo arm only: the baseline reads no biLM
    assert [r["source"] for r in retrained["runs"]] == ["record", "trained", "record", "trained"]

    calls.clear()
    without_record = run_grid(*args[:3], tmp_path / "elsewhere", *args[4:], elmo_model=elmo)
    assert len(calls) == 4 and not (tmp_path / "elsewhere" / "record").exists()
    assert [r["scores"] for r in without_record["runs"]] == [r["scores"] for r in retrained["runs"]]


def test_a_record_killed_between_its_two_files_is_not_reused(tmp_path, monkeypatch):
    """keep_record writes run.json, then test_scores.json. Killed in between, over an older record
    of other settings, the record must not pair the new settings with the old scores."""
    from spacy_elmo.tasks import grid
    from spacy_elmo.tasks._io import write_json

    config = tmp_path / "a.cfg"
    config.write_text("[x]\ny = 1\n")
    old, new = {"system.seed": 0, "training.max_steps": 100}, {"system.seed": 0, "training.max_steps": 200}
    run, record = tmp_path / "run", tmp_path / "record"
    write_json(record / "run.json", grid.run_record(config, tmp_path / "test.spacy", old))
    write_json(record / "test_scores.json", {"ents_f": 0.1})  # the old settings' scores
    write_json(run / "run.json", grid.run_record(config, tmp_path / "test.spacy", new))
    write_json(run / "test_scores.json", {"ents_f": 0.9})

    def killed_after_run_json(path, data):
        if Path(path).name == "test_scores.json":
            raise KeyboardInterrupt
        return write_json(path, data)

    monkeypatch.setattr(grid, "write_json", killed_after_run_json)
    with pytest.raises(KeyboardInterrupt):
        grid.keep_record(run, record)
    assert grid.finished_scores(record, config, tmp_path / "test.spacy", new) is None


def test_an_arm_name_or_seed_given_twice_is_refused(tmp_path):
    """Two arms of one name (or one seed twice) would train into one run folder and be averaged as
    one arm: refused before anything trains."""
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}.spacy").write_bytes(b"")
    base, elmo = CONFIGS / "ner_baseline.cfg", CONFIGS / "ner_elmo.cfg"
    args = (tmp_path / "train.spacy",)
    with pytest.raises(ValueError, match="arm name given more than once: a"):
        run_grid([Arm.parse(f"a={base}"), Arm.parse(f"a={elmo}")], *args, [0], tmp_path / "runs", tmp_path / "dev.spacy",
                 tmp_path / "test.spacy", 10)
    with pytest.raises(ValueError, match="seed given more than once: 1"):
        run_grid([Arm.parse(f"a={base}")], *args, [1, 1], tmp_path / "runs", tmp_path / "dev.spacy", tmp_path / "test.spacy", 10)
    assert not (tmp_path / "runs").exists()


def test_train_grid_script_refuses_odd_arguments_with_a_usage_error(tmp_path):
    """A missing --train, an arm name or a seed given twice: typer's usage error (no traceback),
    before anything is written."""
    import importlib.util

    import typer

    spec = importlib.util.spec_from_file_location("train_grid", ROOT / "scripts" / "train_grid.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in ("dev", "test"):
        (tmp_path / f"{name}.spacy").write_bytes(b"")
    base, elmo = f"a={CONFIGS / 'ner_baseline.cfg'}", f"a={CONFIGS / 'ner_elmo.cfg'}"
    common = {"output": tmp_path / "m.json", "runs": tmp_path / "runs", "dev": tmp_path / "dev.spacy",
              "test": tmp_path / "test.spacy", "max_steps": 1, "elmo_model": None, "vectors": None, "task": "",
              "gpu_id": -1, "jobs": 1, "record": None}
    cases = [
        ({"train": tmp_path / "missing.spacy", "arm": [base], "seeds": "0"}, "missing.spacy not found"),
        ({"train": tmp_path / "dev.spacy", "arm": [base, elmo], "seeds": "0"}, "each value once"),
        ({"train": tmp_path / "dev.spacy", "arm": [base], "seeds": "1,2,1"}, "each value once"),
    ]
    for given, message in cases:
        with pytest.raises(typer.BadParameter, match=message):
            script.main(**common, **given)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "runs").exists()


def test_train_grid_script_interrupted_says_what_is_kept(tmp_path, monkeypatch, capsys):
    """Ctrl-C during a grid: exit 130 with a line on what is kept and how to continue (it used to
    end without a word), and no metrics file."""
    import importlib.util

    import typer

    spec = importlib.util.spec_from_file_location("train_grid", ROOT / "scripts" / "train_grid.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}.spacy").write_bytes(b"")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "run_grid", interrupted)
    with pytest.raises(typer.Exit) as stop:
        script.main(tmp_path / "m.json", runs=tmp_path / "runs", train=tmp_path / "train.spacy", dev=tmp_path / "dev.spacy",
                    test=tmp_path / "test.spacy", arm=[f"a={CONFIGS / 'ner_baseline.cfg'}"], max_steps=1, seeds="0",
                    elmo_model=None, vectors=None, task="", gpu_id=-1, jobs=1, record=tmp_path / "record")
    assert stop.value.exit_code == 130
    err = capsys.readouterr().err
    assert "Interrupted" in err and "rerun the same command" in err and str(tmp_path / "record") in err
    assert not (tmp_path / "m.json").exists()


def test_static_vectors_are_fingerprinted_by_their_tables(tmp_path):
    from spacy_elmo.tasks.grid import input_fingerprints

    vectors = tmp_path / "vectors"
    (vectors / "vocab").mkdir(parents=True)
    (vectors / "vocab" / "vectors").write_bytes(b"table one")
    (vectors / "meta.json").write_text("{}")
    first = input_fingerprints({"paths.vectors": str(vectors)})["vectors"]
    (vectors / "meta.json").write_text('{"x": 1}')
    assert input_fingerprints({"paths.vectors": str(vectors)})["vectors"] == first
    (vectors / "vocab" / "vectors").write_bytes(b"table two")
    assert input_fingerprints({"paths.vectors": str(vectors)})["vectors"] != first
    assert input_fingerprints({"paths.elmo_model": "allennlp:original"}) == {"elmo_model": "name:allennlp:original"}
    with pytest.raises(FileNotFoundError, match="static-vectors step"):
        input_fingerprints({"paths.vectors": str(tmp_path / "missing")})


def test_ner_over_seeds_pairs_the_main_runs_with_the_grid_seeds(tmp_path):
    """The five-seed NER rows: seed 0 from the main pair of runs, seeds 1.. from the grid; the
    gain is ELMo minus baseline of the same seed; n/a until the grid has run."""
    from spacy_elmo.tasks.report import ReportInputs, make_report

    main = {}
    for arm, f in (("baseline", 0.80), ("elmo", 0.83)):
        main[arm] = tmp_path / f"ner_{arm}.json"
        main[arm].write_text(json.dumps({"overall": {"f": f, "p": f, "r": f}}))
    runs = [{"arm": arm, "fraction": 1.0, "seed": seed, "train_docs": None, "scores": {"f": f}}
            for seed, (b, e) in {1: (0.81, 0.82), 2: (0.79, 0.84)}.items() for arm, f in (("baseline", b), ("elmo", e))]
    runs.append({"arm": "elmo", "fraction": 1.0, "seed": 3, "train_docs": None, "scores": {"f": 0.99}})  # no pair
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps({"runs": runs, "summary": summarize(runs)}))

    def seed_rows(**inputs):
        report = make_report(ReportInputs(ner_baseline=main["baseline"], ner_elmo=main["elmo"], **inputs), tmp_path / "r")
        return {r["metric"]: r["cells"] for r in report["table"]
                if "seed" in r["metric"] and r["task"].startswith("NER (") and "static vectors" not in r["metric"]}

    rows = seed_rows(ner_seeds=seeds)
    over = "mean ± sd of 3 seeds (0, 1, 2)"
    assert rows[f"F1 overall, {over}"] == {"Baseline": "80.00 ± 1.00", "+ELMo (mix)": "83.00 ± 1.00"}
    # gains 3, 1, 5 points: mean 3, sd 2
    assert rows[f"F1 gain of ELMo (same seed), {over}"] == {"Baseline": "", "+ELMo (mix)": "+3.00 ± 2.00"}
    assert seed_rows(ner_seeds=tmp_path / "missing.json") == {
        "F1 overall, mean ± sd over seeds": {"Baseline": "n/a", "+ELMo (mix)": "n/a"}}


def test_static_vectors_against_elmo_alone_seed_by_seed(tmp_path):
    """Is ELMo better than word vectors from the same text? The vector arm of train-ner-vectors
    (seed 0) and train-ner-vectors-seeds (1..) against ELMo alone of the same seeds (the main
    pair and train-ner-seeds); only seeds where both ran; n/a until there are two."""
    from spacy_elmo.tasks.report import ReportInputs, make_report

    main = {}
    for arm, f in (("baseline", 0.80), ("elmo", 0.85)):
        main[arm] = tmp_path / f"ner_{arm}.json"
        main[arm].write_text(json.dumps({"overall": {"f": f, "p": f, "r": f}}))

    def grid(name, figures):
        runs = [{"arm": arm, "fraction": 1.0, "seed": seed, "train_docs": None, "scores": {"f": f}} for (arm, seed), f in figures.items()]
        (tmp_path / name).write_text(json.dumps({"runs": runs, "summary": summarize(runs)}))
        return tmp_path / name

    seeds = grid("seeds.json", {("baseline", 1): 0.81, ("elmo", 1): 0.86, ("baseline", 2): 0.79, ("elmo", 2): 0.84})
    vectors = grid("vectors.json", {("vectors", 0): 0.84, ("elmo_vectors", 0): 0.86})
    more = grid("more.json", {("vectors", 1): 0.83, ("vectors", 2): 0.86, ("vectors", 3): 0.99})  # seed 3: no ELMo run

    def rows(**inputs):
        report = make_report(ReportInputs(ner_baseline=main["baseline"], ner_elmo=main["elmo"], ner_seeds=seeds, **inputs),
                             tmp_path / "r", plots=False)
        return {r["metric"]: r["cells"] for r in report["table"] if "vs ELMo alone" in r["metric"] or "over static" in r["metric"]}

    over = "mean ± sd of 3 seeds (0, 1, 2)"
    got = rows(ner_vectors=vectors, ner_vectors_seeds=more)
    assert got[f"F1 overall, static vectors alone (Baseline column) vs ELMo alone, {over}"] == {
        "Baseline": "84.33 ± 1.53", "+ELMo (mix)": "85.00 ± 1.00"}
    # gains +1, +3, -2: mean 0.67, sd 2.52
    assert got[f"F1 gain of ELMo over static vectors (same seed), {over}"] == {"Baseline": "", "+ELMo (mix)": "+0.67 ± 2.52"}
    # One seed is not a spread: n/a, and no gain row.
    assert rows(ner_vectors=vectors) == {
        "F1 overall, static vectors alone (Baseline column) vs ELMo alone, mean ± sd over seeds": {"Baseline": "n/a", "+ELMo (mix)": "n/a"}}


def test_textcat_over_seeds_pairs_the_main_grid_with_the_seed_grid(tmp_path):
    """Text classification over seeds: seed 0 of the baseline and ELMo arms from the main grid
    (whose vector arms stay out of these rows), seeds 1.. from train-textcat-seeds; a seed the
    main grid already has keeps the main grid's figure; n/a rows until the seed grid has run."""
    from spacy_elmo.tasks.report import ReportInputs, make_report

    def grid(path, figures):
        runs = [{"arm": arm, "fraction": 1.0, "seed": seed, "train_docs": None, "scores": {"accuracy": acc, "macro_f": acc - 0.01}}
                for (arm, seed), acc in figures.items()]
        path.write_text(json.dumps({"runs": runs, "summary": summarize(runs)}))
        return path

    main = grid(tmp_path / "main.json", {("baseline", 0): 0.79, ("elmo", 0): 0.745, ("vectors", 0): 0.715, ("elmo_vectors", 0): 0.805})
    more = grid(tmp_path / "more.json", {("baseline", 1): 0.66, ("elmo", 1): 0.74, ("baseline", 2): 0.70, ("elmo", 2): 0.75,
                                         ("elmo", 0): 0.10})  # not the main grid's run: ignored

    def seed_rows(**inputs):
        report = make_report(ReportInputs(sentiment=main, **inputs), tmp_path / "r")
        return {r["metric"]: r["cells"] for r in report["table"] if "seed" in r["metric"] and r["task"].startswith("Sentiment")}

    rows = seed_rows(sentiment_seeds=more)
    over = "mean ± sd of 3 seeds (0, 1, 2)"
    assert rows[f"accuracy %, {over}"] == {"Baseline": "71.67 ± 6.66", "+ELMo (mix)": "74.50 ± 0.50"}
    assert rows[f"macro F1 x100, {over}"] == {"Baseline": "70.67 ± 6.66", "+ELMo (mix)": "73.50 ± 0.50"}
    # gains -4.5, +8, +5 points: mean 2.83, sd 6.53
    assert rows[f"accuracy gain of ELMo (same seed), {over}"] == {"Baseline": "", "+ELMo (mix)": "+2.83 ± 6.53"}
    assert len(rows) == 3
    assert seed_rows(sentiment_seeds=tmp_path / "missing.json") == {
        "accuracy %, mean ± sd over seeds": {"Baseline": "n/a", "+ELMo (mix)": "n/a"}}
    # The topics rows read n/a while neither of their grids exists.
    report = make_report(ReportInputs(sentiment=main, sentiment_seeds=more), tmp_path / "r")
    topics = {r["metric"]: r["cells"] for r in report["table"] if "seed" in r["metric"] and r["task"].startswith("Topics")}
    assert topics == {"accuracy %, mean ± sd over seeds": {"Baseline": "n/a", "+ELMo (mix)": "n/a"}}
    assert report["inputs"]["sentiment_seeds"]["status"] == "ok"


def test_ner_precision_rows_show_each_mode_against_float32(tmp_path):
    from spacy_elmo.tasks.report import ReportInputs, make_report

    def rows(path):
        report = make_report(ReportInputs(ner_precision=path), tmp_path / "r")
        return {r["metric"]: r["cells"]["+ELMo (mix)"] for r in report["table"] if "run in" in r["metric"]}

    data = tmp_path / "p.json"
    data.write_text(json.dumps({"f1": {"float32": 82.5, "bfloat16": 82.6, "int8": 82.25}, "notes": {}}))
    assert rows(data) == {"F1 overall, the ELMo pipeline run in bfloat16 (vs float32)": "82.60 (+0.10)",
                          "F1 overall, the ELMo pipeline run in int8 (vs float32)": "82.25 (-0.25)"}
    data.write_text(json.dumps({"f1": {"float32": 82.5, "bfloat16": None, "int8": 82.5}, "notes": {"bfloat16": "no native bf16"}}))
    assert list(rows(data).values()) == ["n/a", "82.50 (+0.00)"]
    assert set(rows(tmp_path / "missing.json").values()) == {"n/a"}


def test_learning_curve_plot_has_a_log_axis_error_bars_and_both_arms(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    from spacy_elmo.tasks.plots import plot_learning_curve

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at
    curve = {"arms": {
        "baseline": [{"train_docs": 1000, "f": 0.80, "sd": None}, {"train_docs": 10, "f": 0.40, "sd": 0.02}],
        "elmo": [{"train_docs": 10, "f": 0.50, "sd": 0.01}, {"train_docs": 1000, "f": 0.85, "sd": None}],
    }}
    out = plot_learning_curve(curve, tmp_path / "curve.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    (ax,) = figures[0].axes
    assert ax.get_xscale() == "log"
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert sorted(c.get_label() for c in bars) == ["+ELMo", "baseline"]
    for container in bars:
        xs, ys = container.lines[0].get_data()
        assert list(xs) == [10, 1000]  # sorted by training sentences
        segments = container.lines[2][0].get_segments()  # the vertical error bars, one per point
        half_heights = [abs(seg[1][1] - seg[0][1]) / 2 for seg in segments]
        expected = [2.0, 0.0] if container.get_label() == "baseline" else [1.0, 0.0]
        assert half_heights == pytest.approx(expected)
    monkeypatch.undo()
    plt.close(figures[0])
