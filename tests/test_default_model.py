"""The English model shipped inside the package works out of the box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy
import typer

from spacy_elmo.bilm import load_bilm
from spacy_elmo.default_model import DEFAULT_MODEL_DIR, default_model_dir

pytestmark = pytest.mark.usefixtures("single_thread")


def test_default_model_is_shipped_with_its_card():
    path = default_model_dir()
    assert path == DEFAULT_MODEL_DIR
    bilm = load_bilm(path)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    card = (path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert meta["steps"] > 0 and meta["corpus"]
    assert f"{sum(p.numel() for p in bilm.parameters()):,}" in card
    assert bilm.output_dim == 2 * bilm.options.lstm.projection_dim


def test_add_pipe_without_config_uses_the_default_model_and_separates_senses():
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    river = nlp("They had a picnic on the bank of the river .")
    money1 = nlp("The bank raised its interest rates again .")
    money2 = nlp("The bank cut its interest rates again .")
    assert river._.elmo.shape == (len(river), load_bilm(default_model_dir()).output_dim)
    same_sense = money1[1].similarity(money2[1])
    other_sense = money1[1].similarity(river[6])
    assert river[6].text == money1[1].text == "bank"
    assert same_sense > other_sense
    # Same word, same context: identical vectors.
    again = nlp("The bank raised its interest rates again .")
    assert (again._.elmo == money1._.elmo).all()


def test_ship_script_writes_weights_card_and_portable_meta(tiny_bilm, tmp_path):
    """scripts/ship_default_model.py on a tiny run: the shipped copy loads and gives the same
    vectors, and the card and meta name files, not this machine's paths."""
    import importlib.util

    import torch
    from typer.testing import CliRunner

    from spacy_elmo.bilm.char_ids import batch_to_ids
    from spacy_elmo.bilm.weights import save_model_dir

    spec = importlib.util.spec_from_file_location("ship", Path(__file__).parents[1] / "scripts" / "ship_default_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)

    run = tmp_path / "run"
    meta = {"steps": 7, "epochs": 0.5, "words": 1234, "corpus": ["/somewhere/corpus.txt"],
            "dev_perplexity": {"fwd": 10.0, "bwd": 12.0, "avg": 11.0, "files": ["/data/wiki.valid.tokens"]}}
    save_model_dir(tiny_bilm, run / "model", meta=meta)
    ppl = tmp_path / "ppl.json"
    ppl.write_text(json.dumps({"fwd_ppl": 20.0, "bwd_ppl": 22.0, "ppl": 21.0, "data": "/data/wiki.test.tokens", "sentences": 5}))
    corpus_meta = tmp_path / "train.txt.meta.json"
    corpus_meta.write_text(json.dumps({"source": "/d/a.txt + /d/b.txt", "files": {"/d/a.txt": 3, "/d/b.txt": 4}}))
    into = tmp_path / "shipped"

    app = typer.Typer()
    app.command()(ship.main)
    result = CliRunner().invoke(app, [str(run), "--perplexity", str(ppl), "--corpus-meta", str(corpus_meta), "--into", str(into)])
    assert result.exit_code == 0, result.output

    shipped = load_bilm(into).eval()
    ids = batch_to_ids([["A", "shipped", "model", "."]])
    with torch.no_grad():
        expected, got = tiny_bilm.eval()(ids), shipped(ids)
    assert all(torch.equal(a, b) for a, b in zip(expected.layers, got.layers))

    written = json.loads((into / "meta.json").read_text())
    assert written["corpus_files"] == ["a.txt", "b.txt"]
    assert written["dev_perplexity"]["files"] == ["wiki.valid.tokens"]
    assert written["test_perplexity"]["ppl"] == 21.0
    card = (into / "MODEL_CARD.md").read_text()
    assert "a.txt + b.txt" in card and "21.0" in card and "7 steps (0.5 epochs)" in card
    assert "/somewhere" not in card and "/data/" not in card
    assert f"python scripts/ship_default_model.py {run} --perplexity {ppl} --corpus-meta {corpus_meta}" in card
    n_params = sum(p.numel() for p in tiny_bilm.parameters())
    assert f"asks {20 * n_params / 1e6:.0f}M tokens for this size" in card  # the size choice, from the run

    # A mixture's words per source reach the card and the meta; legs resumed elsewhere are named.
    mixture = {"kind": "mixture", "words": 7, "dedup": True, "exclude": None, "source": "a x2 + b x1",
               "sources": {"a": {"weight": 2.0, "words_written": 4}, "b": {"weight": 1.0, "words_written": 3}}}
    corpus_meta.write_text(json.dumps(mixture))
    optimizer = {"name": "adam", "learning_rate": 0.002, "lr_decay": {"start": 35000, "end": 60214, "final_fraction": 0.1},
                 "batch": {"sequences": 64, "unroll_steps": 20}}
    save_model_dir(tiny_bilm, run / "model", meta={**meta, "optimizer_resets": [5000], "optimizer": optimizer})
    result = CliRunner().invoke(app, [str(run), "--corpus-meta", str(corpus_meta), "--into", str(into)])
    assert result.exit_code == 0, result.output
    card = (into / "MODEL_CARD.md").read_text()
    assert "mixture of a 4 (x2) + b 3 (x1) = 7 words (lines deduplicated)" in card
    assert "adam, learning rate 0.002, falling linearly to 10% of it from step 35,000 to 60,214; batches of 64 x 20" in card
    assert "| optimizer | n/a |" not in card
    assert "restarting the optimizer's moments at step(s) 5,000" in card
    assert json.loads((into / "meta.json").read_text())["corpus_sources"]["a"] == {"weight": 2.0, "words": 4}


def _ship_app():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship", Path(__file__).parents[1] / "scripts" / "ship_default_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    app = typer.Typer()
    app.command()(ship.main)
    return app


def test_a_new_model_replaces_the_shipped_one_only_if_not_worse_on_dev(tiny_bilm, tmp_path):
    """Issue 17: the decision reads dev figures only (perplexity on the same dev file, STS-B and WiC
    dev of the mix); a worse figure refuses, --accept-worse ships and the card says so."""
    from typer.testing import CliRunner

    from spacy_elmo.bilm.weights import save_model_dir

    into = tmp_path / "shipped"
    old_meta = {"steps": 5, "dev_perplexity": {"avg": 370.0, "oov_rate": 0.087, "files": ["wiki.valid.tokens"]}}
    save_model_dir(tiny_bilm, into, meta=old_meta)
    before = (into / "meta.json").read_bytes()
    old_report = tmp_path / "report.json"
    old_report.write_text(json.dumps({"stsb": {"dev": {"spearman": {"mix": 0.488}}, "test": {"spearman": {"mix": 0.1}}},
                                      "wic": {"accuracy": {"dev": {"mix": 0.56}}}}))
    run = tmp_path / "run"
    new_meta = {"steps": 60214, "dev_perplexity": {"avg": 140.0, "oov_rate": 0.054, "files": ["/data/wiki.valid.tokens"]}}
    save_model_dir(tiny_bilm, run / "model", meta=new_meta)
    stsb, wic = tmp_path / "stsb.json", tmp_path / "wic.json"
    # Better test figures must not matter: only dev is read.
    stsb.write_text(json.dumps({"splits": {"dev": {"spearman": {"mix": 0.45}}, "test": {"spearman": {"mix": 0.9}}}}))
    wic.write_text(json.dumps({"layers": {"mix": {"dev": 0.57, "test": 0.4}}}))
    args = [str(run), "--into", str(into), "--stsb", str(stsb), "--wic", str(wic), "--shipped-report", str(old_report)]

    refused = CliRunner().invoke(_ship_app(), args)
    assert refused.exit_code == 1
    assert "STS-B dev Spearman (mix of all layers) 0.45 vs 0.488" in refused.output and "WiC" not in refused.output.split("Not shipped")[-1]
    assert (into / "meta.json").read_bytes() == before  # nothing replaced

    shipped = CliRunner().invoke(_ship_app(), args + ["--accept-worse", "stsb", "--note", "Within noise."])
    assert shipped.exit_code == 0, shipped.output
    card = (into / "MODEL_CARD.md").read_text()
    assert "| perplexity (mean of fwd/bwd) on wiki.valid.tokens | 370.0 | 140.0 | better |" in card
    assert "| STS-B dev Spearman (mix of all layers) | 48.80 | 45.00 | worse |" in card
    assert "| WiC dev accuracy (mix of all layers) | 56.00 | 57.00 | better |" in card
    assert "Decision: accepted worse: stsb." in card and "--accept-worse stsb" in card
    assert "8.7 % before, 5.4 % now" in card
    assert json.loads((into / "meta.json").read_text())["ship_decision"]["reason"] == "accepted worse: stsb"
    assert "Decision: accepted worse: stsb. Within noise." in card and "--note 'Within noise.'" in card

    # Shipping the same weights again (to add the report to the card) keeps the comparison that let
    # them in, instead of comparing them with themselves.
    report = tmp_path / "report.md"
    report.write_text("# Report\n\n| task | figure |\n|---|---|\n| NER | 1.0 |\n")
    again = CliRunner().invoke(_ship_app(), [str(run), "--into", str(into), "--report", str(report)])
    assert again.exit_code == 0, again.output
    card = (into / "MODEL_CARD.md").read_text()
    assert "| STS-B dev Spearman (mix of all layers) | 48.80 | 45.00 | worse |" in card
    assert "Decision: accepted worse: stsb. Within noise." in card and "| NER | 1.0 |" in card

    bad = CliRunner().invoke(_ship_app(), args + ["--accept-worse", "ner"])
    assert bad.exit_code != 0 and "not a figure" in bad.output


def test_dev_comparison_verdicts():
    from spacy_elmo.tasks.shipping import compare, decide

    old = {"perplexity": 370.0, "perplexity_file": "wiki.valid.tokens", "stsb": 0.49, "wic": None}
    same = compare(dict(old), dict(old))
    assert [r["verdict"] for r in same] == ["same", "same", "n/a"] and decide(same, set())[0]  # shipping it again
    other_file = compare({**old, "perplexity": 10.0, "perplexity_file": "wiki.test.tokens"}, old)
    assert other_file[0]["verdict"] == "n/a"  # different held-out text is not compared
    nothing = compare({"perplexity": None, "stsb": None, "wic": None}, old)
    ok, reason = decide(nothing, set())
    assert not ok and "no dev figure" in reason
