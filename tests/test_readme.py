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
