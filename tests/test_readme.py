"""The README's promises that a test can check: its results table holds the report's figures, its
test command is the one CI runs, its links lead somewhere, and its first command writes nothing
into the checkout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]  # no header, no rule


def test_results_table_holds_the_reports_figures():
    report = json.loads((ROOT / "reports" / "report.json").read_text())
    by_key = {(r["task"], r["metric"], r["split"]): r["cells"] for r in report["table"]}
    rows = table_rows(section("Results"))
    assert len(rows) >= 4
    for task, metric, split, baseline, elmo in rows:
        cells = by_key[(task, metric, split)]  # KeyError: a row the report does not have
        assert baseline == cells.get("Baseline", ""), (task, metric)
        assert elmo == cells.get("+ELMo (mix)", ""), (task, metric)


def test_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'python -m pip install torch==2.13.0 -e ".[test]" && python -m pytest -q -p no:cacheprovider'
    assert command in README
    assert command.replace("install ", "install --quiet ", 1) in ci


@pytest.mark.parametrize("path", sorted(set(re.findall(r"\]\(((?:docs|reports)/[^)#]+)", README))))
def test_linked_files_exist(path):
    assert (ROOT / path).is_file(), path


def test_first_command_writes_into_a_temporary_folder():
    first = next(line for line in README.splitlines() if line.startswith("pip install torch==2.13.0 -e . &&"))
    assert "mktemp -d" in first and "> $d/demo.txt" in first and "$d/demo.hdf5" in first


def test_pretrained_models_section_points_to_docs_models():
    assert "docs/models.md" in section("Pretrained models")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_anchors_in_readme_and_docs_name_real_headings():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text(encoding="utf-8")):
            linked = ((page.parent / target) if target else page).resolve()
            if not linked.is_file():
                continue
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{page.name}: #{anchor} not in {linked.name}"
            checked += 1
    assert checked >= 10


def _cell(report: dict, metric: str, task: str, column: str) -> str:
    """One test-split cell of the report's table: the row named `metric`, else the one row it begins."""
    rows = [r for r in report["table"] if r["task"] == task and r["split"] == "test"]
    matches = [r["cells"].get(column, "") for r in rows if r["metric"] == metric] or [
        r["cells"].get(column, "") for r in rows if r["metric"].startswith(metric)]
    assert len(matches) == 1, (task, metric, matches)
    return matches[0]


def test_results_prose_quotes_the_reports_figures():
    """The sentences under the results table quote the report: each figure and each comparison
    they state is recomputed here from reports/report.json, so a new report cannot leave them stale."""
    report = json.loads((ROOT / "reports" / "report.json").read_text())
    prose = " ".join(section("Results").split("<!-- results:end -->")[1].split())  # line breaks as spaces
    limits = " ".join(section("Limitations").split())
    ner, sentiment, topics = "NER (CoNLL-2003)", "Sentiment (movie reviews)", "Topics (BBC News)"

    gain = _cell(report, "F1 gain of ELMo (same seed)", ner, "+ELMo (mix)")
    assert f"({gain})" in prose
    curve = report["evidence"]["learning_curve"]["arms"]
    for fraction, phrase in ((0.01, "+{:.1f} F1 at 1 %"), (0.05, "+{:.1f} at 5 %")):
        base, elmo = (next(p["f"] for p in curve[arm] if p["fraction"] == fraction) for arm in ("baseline", "elmo"))
        assert phrase.format(100 * (elmo - base)) in prose, fraction

    over_vectors = report["evidence"]["ner_vectors_against_elmo"]
    assert f"ahead by {_cell(report, 'F1 gain of ELMo over static vectors', ner, '+ELMo (mix)')} F1" in prose
    behind = sum(g < 0 for g in over_vectors["gain"].values())
    assert len(over_vectors["seeds"]) == 5 and "over the same five seeds" in prose
    assert f"behind on {['no', 'one', 'two'][behind]} seed of five" in prose
    assert 0 < over_vectors["gain_mean"] < 0.005  # "within half a point of it on NER" (Limitations)
    assert "within half a point of it on NER" in limits

    def number(text: str) -> float:
        return float(text.split()[0])

    for task, word in ((topics, "topics"), (sentiment, "sentiment")):
        vectors = _cell(report, "accuracy %, + static vectors", task, "Baseline")
        elmo = _cell(report, "accuracy %", task, "+ELMo (mix)")
        assert f"{word} ({vectors} vs {elmo} % accuracy)" in prose or f"{word} ({vectors} vs {elmo} %)" in prose
        both = _cell(report, "accuracy %, + static vectors", task, "+ELMo (mix)")
        assert number(both) > number(vectors), task  # "ELMo added on top of them still helps"
    assert "better than ELMo alone on topics" in prose
    assert number(_cell(report, "accuracy %, + static vectors", topics, "Baseline")) > number(
        _cell(report, "accuracy %", topics, "+ELMo (mix)"))
    ner_both = _cell(report, "F1 overall, + static vectors", ner, "+ELMo (mix)")
    assert number(ner_both) > number(_cell(report, "F1 overall, + static vectors", ner, "Baseline"))

    # Seed 0: ELMo raises topics, lands below the baseline on sentiment; three seeds: above on both.
    assert number(_cell(report, "accuracy %", topics, "+ELMo (mix)")) > number(_cell(report, "accuracy %", topics, "Baseline"))
    assert number(_cell(report, "accuracy %", sentiment, "+ELMo (mix)")) < number(
        _cell(report, "accuracy %", sentiment, "Baseline"))
    for task in (topics, sentiment):
        seeds = _cell(report, "accuracy %, mean ± sd of 3 seeds", task, "+ELMo (mix)")
        assert number(seeds) > number(_cell(report, "accuracy %, mean ± sd of 3 seeds", task, "Baseline")), task
