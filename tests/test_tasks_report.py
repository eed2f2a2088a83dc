"""The report: hand-made metrics files in, exact table cells, JSON numbers and PNGs out."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from test_tasks_helpers import tiny_model_dir  # noqa: F401  (fixture)

from spacy_elmo.tasks.report import ReportInputs, collect, make_report, perplexity_figures
from spacy_elmo.tasks.table import NA, README_END, README_START, rows, update_readme

ROOT = Path(__file__).resolve().parents[1]


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def metrics(tmp_path):
    m = tmp_path / "metrics"
    return {
        "perplexity": _write(m / "perplexity.json", {"model": "x", "fwd_ppl": 100.0, "bwd_ppl": 120.0, "ppl": 110.0, "predictions": 5000}),
        "task_perplexity_general": _write(m / "conll_dev_general.json", {"fwd_ppl": 700.0, "bwd_ppl": 580.0, "ppl": 640.0}),
        # a fine-tuning run's model/meta.json: its own 'perplexity' is not the figure to show
        "task_perplexity_finetuned": _write(m / "bilm_conll" / "meta.json", {
            "perplexity": 999.0, "dev_perplexity": {"fwd": 130.0, "bwd": 110.0, "oov_rate": 0.1},
        }),
        "ner_baseline": _write(m / "ner_baseline.json", {
            "overall": {"p": 0.80, "r": 0.70, "f": 0.7467}, "words_per_second": 20000.0,
            "per_type": {"PER": {"p": 0.9, "r": 0.8, "f": 0.847}, "LOC": {"p": 0.7, "r": 0.6, "f": 0.646}},
        }),
        "ner_elmo": _write(m / "ner_elmo.json", {
            "overall": {"p": 0.85, "r": 0.80, "f": 0.8242}, "words_per_second": 900.0,
            "per_type": {"PER": {"p": 0.95, "r": 0.9, "f": 0.9243}, "LOC": {"p": 0.8, "r": 0.7, "f": 0.7467}},
        }),
        "stsb": _write(m / "stsb.json", {
            "n_layers": 3, "words_per_second": 4321.0,
            "splits": {
                "test": {"n_pairs": 10, "spearman": {"layer_0": 0.40, "layer_1": 0.55, "layer_2": 0.5, "mix": 0.6}},
                "dev": {"n_pairs": 10, "spearman": {"layer_0": 0.41, "layer_1": 0.56, "layer_2": None, "mix": 0.61}},
            },
        }),
        "wic": _write(m / "wic.json", {
            "n_layers": 3, "words_per_second": 5000.0, "majority_baseline": {"train": 0.5, "dev": 0.5, "test": None},
            "layers": {
                v: {"threshold": 0.5 + k / 10, "train": 0.6 + k / 100, "dev": 0.55 + k / 100, "test": None if v == "mix" else 0.54}
                for k, v in enumerate(["layer_0", "layer_1", "layer_2", "mix"])
            },
        }),
        "pretrain_log": _write(m / "metrics.jsonl", "\n".join(json.dumps(r) for r in [
            {"event": "train", "step": 10, "words": 1000, "elapsed_s": 2.0, "loss": 6.0, "ppl": 400.0, "fwd_ppl": 390.0, "bwd_ppl": 410.0},
            {"event": "eval", "split": "dev", "step": 10, "ppl": 380.0, "fwd_ppl": 370.0, "bwd_ppl": 390.0},
            {"event": "train", "step": 20, "words": 3000, "elapsed_s": 4.0, "loss": 5.0, "ppl": 150.0, "fwd_ppl": 140.0, "bwd_ppl": 160.0},
        ]) + "\n{\"cut short"),
    }


def _cells(table, task, metric, split):
    (row,) = [r for r in table if r["task"] == task and r["metric"] == metric and r["split"] == split]
    return row["cells"]


def test_table_cells_from_hand_made_metrics(metrics):
    fig = collect(ReportInputs(**metrics))
    table = rows(fig)
    assert _cells(table, "biLM", "perplexity (mean of fwd/bwd)", "held-out") == {"+ELMo (mix)": "110.0"}
    assert _cells(table, "biLM", "perplexity forward / backward", "held-out") == {"+ELMo (mix)": "100.0 / 120.0"}
    general = _cells(table, "biLM", "perplexity on NER text, general biLM", "CoNLL dev")
    assert general == {"+ELMo (mix)": "640.0"}
    finetuned = _cells(table, "biLM", "perplexity on NER text, biLM fine-tuned on the train text", "CoNLL dev")
    assert finetuned == {"+ELMo (mix)": "120.0"}  # mean of fwd/bwd when the file has no mean
    assert _cells(table, "NER (CoNLL-2003)", "F1 overall", "test") == {"Baseline": "74.67", "+ELMo (mix)": "82.42"}
    assert _cells(table, "NER (CoNLL-2003)", "F1 PER", "test") == {"Baseline": "84.70", "+ELMo (mix)": "92.43"}
    assert _cells(table, "NER (CoNLL-2003)", "F1 LOC", "test") == {"Baseline": "64.60", "+ELMo (mix)": "74.67"}
    sts = _cells(table, "STS-B", "Spearman x100", "test")
    assert sts == {"Baseline": "40.00", "+ELMo (mix)": "60.00", "ELMo layer 0": "40.00", "ELMo layer 1": "55.00", "ELMo layer 2": "50.00"}
    assert _cells(table, "STS-B", "Spearman x100", "dev")["ELMo layer 2"] == NA  # null stays n/a
    wic_test = _cells(table, "WiC", "accuracy %", "test")
    assert wic_test["ELMo layer 1"] == "54.00" and wic_test["+ELMo (mix)"] == NA
    assert _cells(table, "WiC", "accuracy %", "train (threshold fit)")["ELMo layer 2"] == "62.00"
    assert _cells(table, "Speed", "words/s, biLM pretraining", "train") == {"+ELMo (mix)": "750"}  # 3000 / 4.0
    assert _cells(table, "Speed", "words/s, biLM inference (STS-B)", "dev, test") == {"+ELMo (mix)": "4321"}
    assert _cells(table, "Speed", "words/s, NER pipeline (spacy evaluate)", "test") == {"Baseline": "20000", "+ELMo (mix)": "900"}
    # Splits come in train, dev, test order whatever the file order.
    assert [r["split"] for r in table if r["task"] == "STS-B"] == ["dev", "test"]


def test_fitted_layer_weights_get_their_own_rows(metrics, tmp_path):
    """With weights fitted on train, STS-B and WiC get a row per split: layer 0 against the fitted
    mix, the weights in the metric's name; without them there is no such row."""
    assert not [r for r in rows(collect(ReportInputs(**metrics))) if "fitted" in r["metric"]]
    stsb = json.loads(metrics["stsb"].read_text())
    stsb["fitted_mix"] = {"weights": [0.7, 0.2, 0.1], "fitted_on": "train"}
    for split in ("dev", "test"):
        stsb["splits"][split]["spearman"]["fitted_mix"] = 0.45 if split == "test" else 0.47
    wic = json.loads(metrics["wic"].read_text())
    wic["fitted_mix"] = {"weights": [0.0, 0.25, 0.75], "fitted_on": "train"}
    wic["layers"]["fitted_mix"] = {"threshold": 0.7, "train": 0.66, "dev": 0.58, "test": 0.57}
    inputs = {**metrics, "stsb": _write(tmp_path / "fitted" / "stsb.json", stsb), "wic": _write(tmp_path / "fitted" / "wic.json", wic)}
    table = rows(collect(ReportInputs(**inputs)))
    assert _cells(table, "STS-B", "Spearman x100, layer weights fitted on train (0.70 / 0.20 / 0.10)", "test") == {
        "Baseline": "40.00", "+ELMo (mix)": "45.00"}
    assert _cells(table, "WiC", "accuracy %, layer weights fitted on train (0.00 / 0.25 / 0.75)", "test") == {
        "Baseline": "54.00", "+ELMo (mix)": "57.00"}
    assert [r["split"] for r in table if r["task"] == "WiC" and "fitted" in r["metric"]] == ["dev", "test"]
    # The equal-weight rows are unchanged.
    assert _cells(table, "STS-B", "Spearman x100", "test")["+ELMo (mix)"] == "60.00"


def test_missing_inputs_are_na_never_invented(tmp_path):
    fig = collect(ReportInputs(stsb=tmp_path / "absent.json"))
    assert fig["inputs"]["stsb"]["status"].startswith("missing")
    assert fig["inputs"]["perplexity"]["status"] == "not given"
    table = rows(fig)
    filled = [v for r in table for v in r["cells"].values() if v not in ("", NA)]
    assert filled == []  # nothing but n/a
    assert _cells(table, "NER (CoNLL-2003)", "F1 overall", "test") == {"Baseline": NA, "+ELMo (mix)": NA}


def test_unreadable_input_is_reported(tmp_path):
    bad = _write(tmp_path / "wic.json", "{not json")
    fig = collect(ReportInputs(wic=bad))
    assert fig["inputs"]["wic"]["status"].startswith("unreadable")
    assert fig["wic"]["accuracy"] == {}


def test_perplexity_figures_fallbacks():
    assert perplexity_figures({"forward_perplexity": 10.0, "backward_perplexity": 30.0})["perplexity"] == 20.0
    assert perplexity_figures({"test": {"ppl": 5.0}})["perplexity"] == 5.0
    assert perplexity_figures(None)["perplexity"] is None
    assert perplexity_figures({"ppl": float("nan")})["perplexity"] is None


def test_a_model_meta_without_held_out_text_gives_no_perplexity():
    """A pretraining run without --paths.dev writes the perplexity of its training batches (a
    sampled softmax) as meta.json's 'perplexity': never a held-out figure in the report."""
    meta = {"perplexity": 42.0, "perplexity_source": "training batches (sampled softmax)", "dev_perplexity": None,
            "train_perplexity": {"ppl": 42.0, "fwd_ppl": 40.0, "bwd_ppl": 44.0}}
    assert perplexity_figures(meta) == {"perplexity": None, "forward": None, "backward": None, "tokens": None}
    with_dev = {**meta, "perplexity_source": "dev (exact)", "dev_perplexity": {"fwd": 100.0, "bwd": 120.0, "avg": 110.0}}
    assert perplexity_figures(with_dev)["perplexity"] == 110.0


def test_make_report_writes_everything(tmp_path, metrics, tiny_model_dir):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{README_START}\nold table\n{README_END}\n\nafter\n")
    data = make_report(ReportInputs(**metrics, model=tiny_model_dir), tmp_path / "out", readme=readme)
    out = tmp_path / "out"
    for name in ("report.md", "report.json", "training_curves.png", "scalar_mix.png", "polysemy_pca.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("training_curves.png", "scalar_mix.png", "polysemy_pca.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["ner"]["elmo"]["overall"]["f"] == pytest.approx(0.8242)
    assert on_disk["perplexity"]["perplexity"] == 110.0
    assert on_disk["task_perplexity"]["finetuned"]["forward"] == 130.0
    assert on_disk["pretraining"] == {"steps": 20.0, "words": 3000.0, "words_per_second": 750.0}
    assert on_disk["table"] == data["table"]
    assert "layer-wise" in on_disk["plots"]["scalar_mix.png"]  # no pipeline given: the fallback, said so
    markdown = (out / "report.md").read_text()
    assert "| NER (CoNLL-2003) | F1 overall | test | 74.67 | 82.42 |" in markdown
    text = readme.read_text()
    assert "old table" not in text and "| STS-B | Spearman x100 | test | 40.00 |" in text
    assert text.startswith("# Title\n\nintro\n\n" + README_START) and text.endswith(README_END + "\n\nafter\n")
    assert data["readme_updated"] is True


def test_readme_without_markers_is_untouched(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert update_readme(readme, "# x\n\n| a |\n") is False
    assert readme.read_text() == "no markers\n"


def test_report_without_model_or_log_says_why(tmp_path):
    data = make_report(ReportInputs(), tmp_path / "out")
    assert data["plots"]["training_curves.png"].startswith("not made")
    assert data["plots"]["polysemy_pca.png"].startswith("not made")
    assert (tmp_path / "out" / "scalar_mix.png").exists()  # the fallback plot, with its note


def test_scalar_mixes_read_the_thinc_mix_layer():
    """Known weights: w = (1, 0, -1), gamma 2 -> softmax(w) and 2.0 come back."""
    from spacy_elmo.layers import ElmoScalarMix
    from spacy_elmo.tasks.mixweights import scalar_mixes

    mix = ElmoScalarMix(initial_weights=[1.0, 0.0, -1.0], gamma=2.0)
    mix.initialize(X=[np.zeros((3, 2, 4), dtype="f")])
    nlp = SimpleNamespace(pipeline=[("ner", SimpleNamespace(model=mix)), ("other", SimpleNamespace())])
    found = scalar_mixes(nlp)
    expected = np.exp([1.0, 0.0, -1.0]) / np.exp([1.0, 0.0, -1.0]).sum()
    assert list(found) == ["ner"]
    assert found["ner"]["weights"] == pytest.approx(expected.tolist())
    assert found["ner"]["gamma"] == pytest.approx(2.0)


def test_scalar_mixes_read_torch_scalar_mix():
    import torch

    from spacy_elmo.bilm import ScalarMix
    from spacy_elmo.tasks.mixweights import scalar_mixes

    module = torch.nn.Sequential(ScalarMix(3, initial_weights=[0.0, 0.0, 2.0], gamma=0.5))
    nlp = SimpleNamespace(pipeline=[("elmo", SimpleNamespace(head=module))])
    (key, mix), = scalar_mixes(nlp).items()
    assert key == "elmo/head/0"
    expected = np.exp([0.0, 0.0, 2.0]) / np.exp([0.0, 0.0, 2.0]).sum()
    assert mix["weights"] == pytest.approx(expected.tolist()) and mix["gamma"] == pytest.approx(0.5)


def test_mix_plot_from_learned_weights(tmp_path):
    from spacy_elmo.tasks.plots import plot_mix_weights

    path = plot_mix_weights({"ner": {"weights": [0.2, 0.3, 0.5], "gamma": 1.5}}, tmp_path / "mix.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_demo_report_says_it_is_a_smoke_run(tmp_path, metrics):
    from spacy_elmo.tasks.table import SMOKE_RUN_NOTE

    demo = make_report(ReportInputs(**metrics, settings={"model": "demo"}), tmp_path / "demo", plots=False)
    full = make_report(ReportInputs(**metrics, settings={"model": "small"}), tmp_path / "full", plots=False)
    assert SMOKE_RUN_NOTE in (tmp_path / "demo" / "report.md").read_text()
    assert SMOKE_RUN_NOTE not in (tmp_path / "full" / "report.md").read_text()
    assert demo["table"] == full["table"]


def test_readme_results_are_the_headline_rows_of_the_report(tmp_path, metrics):
    """scripts/readme_results.py: the README's table is written from report.json (headline rows,
    Baseline and +ELMo columns), between its markers; without markers it refuses."""
    import importlib.util

    from typer.testing import CliRunner

    from spacy_elmo.tasks.table import RESULTS_MARKERS

    data = make_report(ReportInputs(**metrics, settings={"model": "small", "seed": "0"}), tmp_path / "out", plots=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n\n{RESULTS_MARKERS[0]}\ntyped figures\n{RESULTS_MARKERS[1]}\n\nafter\n")
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = typer.Typer()
    app.command()(module.main)
    result = CliRunner().invoke(app, [str(tmp_path / "out" / "report.json"), str(readme)])
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert "typed figures" not in text and text.endswith(RESULTS_MARKERS[1] + "\n\nafter\n")
    assert "| NER (CoNLL-2003) | F1 overall | test | 74.67 | 82.42 |" in text
    assert "| STS-B | Spearman x100 | test | 40.00 | 60.00 |" in text
    assert "| STS-B | Spearman x100 | dev |" not in text  # dev rows and per-layer columns stay in the report
    assert "F1 PER" not in text and "ELMo layer 1" not in text
    assert "model `small`" in text and "seed 0" in text
    assert [r["metric"] for r in data["table"] if r["task"] == "biLM"][0] == "perplexity (mean of fwd/bwd)"
    readme.write_text("no markers\n")
    refused = CliRunner().invoke(app, [str(tmp_path / "out" / "report.json"), str(readme)])
    assert refused.exit_code != 0 and "markers" in refused.output


def _grid(path, max_steps, runs):
    """A scripts/train_grid.py JSON: runs as (arm, seed, f)."""
    return _write(path, {"max_steps": max_steps, "total_docs": 100, "runs": [
        {"arm": arm, "fraction": 1.0, "seed": seed, "train_docs": None, "scores": {"f": f, "accuracy": f, "macro_f": f}}
        for arm, seed, f in runs]})


def test_inputs_made_with_other_settings_read_na_never_paired(metrics, tmp_path):
    """report-so-far reads whatever exists: a grid left from a run with another budget (or a main
    pair trained with another budget or seed) is not paired with the current runs. It reads n/a,
    and report.json says why; files that do not record their settings are used as before."""
    m = tmp_path / "metrics"
    ner = {k: json.loads(metrics[k].read_text()) for k in ("ner_baseline", "ner_elmo")}
    seeds = _grid(m / "ner_seeds.json", 4000, [("baseline", 1, 0.70), ("elmo", 1, 0.80)])
    sentiment = _grid(m / "sentiment.json", 1000, [("baseline", 0, 0.7), ("elmo", 0, 0.75)])
    sentiment_seeds = _grid(m / "sentiment_seeds.json", 50, [("baseline", 1, 0.6), ("elmo", 1, 0.9)])
    settings = {"seed": "0", "ner_max_steps": "20000"}
    inputs = dict(metrics, ner_seeds=seeds, sentiment=sentiment, sentiment_seeds=sentiment_seeds)

    fig = collect(ReportInputs(**inputs, settings=settings))
    assert fig["inputs"]["ner_seeds"]["status"].startswith("other settings")
    assert "max_steps 4000" in fig["inputs"]["ner_seeds"]["status"]
    assert "max_steps 50" in fig["inputs"]["sentiment_seeds"]["status"]
    assert fig["evidence"]["ner_seeds"]["seeds"] == [0]  # the main pair alone: no mean over mixed budgets
    assert fig["evidence"]["textcat_seeds"]["sentiment"]["accuracy"]["seeds"] == [0]
    table = rows(fig)
    assert _cells(table, "NER (CoNLL-2003)", "F1 overall, mean ± sd over seeds", "test") == {"Baseline": NA, "+ELMo (mix)": NA}
    assert _cells(table, "NER (CoNLL-2003)", "F1 overall", "test") == {"Baseline": "74.67", "+ELMo (mix)": "82.42"}

    # A learning curve of another budget is not plotted either, and the note says why.
    curve = _grid(m / "ner_curve.json", 4000, [("baseline", 0, 0.5), ("elmo", 0, 0.6)])
    data = make_report(ReportInputs(**inputs, ner_curve=curve, settings=settings), tmp_path / "out")
    assert "other settings" in data["plots"]["learning_curve.png"] and not (tmp_path / "out" / "learning_curve.png").exists()

    # The same budget: paired as before.
    _grid(seeds, 20000, [("baseline", 1, 0.70), ("elmo", 1, 0.80)])
    assert collect(ReportInputs(**inputs, settings=settings))["evidence"]["ner_seeds"]["seeds"] == [0, 1]
    # A main pair trained with another seed than the report's: its arm reads n/a.
    _write(metrics["ner_elmo"], {**ner["ner_elmo"], "training": {"max_steps": 20000, "seed": 3}})
    _write(metrics["ner_baseline"], {**ner["ner_baseline"], "training": {"max_steps": 20000, "seed": 0}})
    fig = collect(ReportInputs(**inputs, settings=settings))
    assert "seed 3" in fig["inputs"]["ner_elmo"]["status"] and fig["inputs"]["ner_baseline"]["status"] == "ok"
    assert _cells(rows(fig), "NER (CoNLL-2003)", "F1 overall", "test") == {"Baseline": "74.67", "+ELMo (mix)": NA}
    # Without the settings to compare against, the NER files are used (the two text classification
    # grids are compared with each other, not with a setting).
    status = {k: v["status"] for k, v in collect(ReportInputs(**inputs))["inputs"].items()}
    assert status["ner_elmo"] == status["ner_seeds"] == "ok" and status["sentiment_seeds"] != "ok"


def test_precision_rows_of_another_ner_run_read_na():
    """metrics/ner_precision.json comes from ner_elmo's pipeline: made with another budget or seed
    than the report's, its rows are not shown beside the current pair."""
    from spacy_elmo.tasks.evidence import mismatched_inputs

    settings = {"seed": "0", "ner_max_steps": "20000"}
    stale = {"ner_precision": {"f1": {"float32": 80.0}, "training": {"max_steps": 4000, "seed": 0}}}
    assert "max_steps 4000" in mismatched_inputs(stale, settings)["ner_precision"]
    current = {"ner_precision": {"f1": {"float32": 80.0}, "training": {"max_steps": 20000, "seed": 0}}}
    assert mismatched_inputs(current, settings) == {}
    assert mismatched_inputs({"ner_precision": {"f1": {}}}, settings) == {}  # an older file: not compared


def test_report_script_updates_the_tracked_table_only_from_a_complete_report(tmp_path, metrics, monkeypatch):
    """report-so-far runs the report's command on whatever exists: a partial report must not
    replace the table in docs/experiments.md (tracked) with n/a rows; a complete one does."""
    import runpy
    import sys

    readme = tmp_path / "experiments.md"
    before = f"# Experiments\n\n{README_START}\nthe last complete table\n{README_END}\n"
    readme.write_text(before)

    def run(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["report.py", str(tmp_path / "out"), *args, "--readme", str(readme)])
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "report.py"), run_name="__main__")
        assert stop.value.code in (0, None)

    run("--stsb", str(metrics["stsb"]))  # most inputs missing
    assert readme.read_text() == before
    assert json.loads((tmp_path / "out" / "report.json").read_text())["inputs"]["stsb"]["status"] == "ok"

    from spacy_elmo.tasks import report as report_module
    monkeypatch.setattr(report_module, "collect", _all_inputs_ok(report_module.collect))
    run("--stsb", str(metrics["stsb"]))
    assert "the last complete table" not in readme.read_text() and "| STS-B | Spearman x100 | test |" in readme.read_text()


def _all_inputs_ok(collect):
    """collect() as if every input had been given (the figures themselves are the ones given)."""
    def wrapped(inputs):
        fig = collect(inputs)
        fig["inputs"] = {name: {**entry, "status": "ok"} for name, entry in fig["inputs"].items()}
        return fig
    return wrapped
