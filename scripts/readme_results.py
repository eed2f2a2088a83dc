"""Write the README's results table from a report.json (the headline rows: the figures the goals
name, Baseline and +ELMo columns), between <!-- results:start --> and <!-- results:end -->.

    python scripts/readme_results.py reports/report.json README.md

Run it after the shipped model's report is copied into reports/, so the README shows what the
workflow measured, never typed figures.
"""

from pathlib import Path

import typer

from spacy_elmo.tasks._io import read_json
from spacy_elmo.tasks.table import RESULTS_MARKERS, render_headlines, update_readme


def main(
    report: Path = typer.Argument(Path("reports/report.json"), help="report.json written by scripts/report.py."),
    readme: Path = typer.Argument(Path("README.md"), help="The file with the results markers."),
) -> None:
    if not report.is_file():
        raise typer.BadParameter(f"{report} not found; run the report step (and copy its output into reports/) first")
    block = render_headlines(read_json(report), report.as_posix())
    if not update_readme(readme, block, RESULTS_MARKERS):
        raise typer.BadParameter(f"{readme} has no {RESULTS_MARKERS[0]} ... {RESULTS_MARKERS[1]} markers")
    typer.echo(f"{readme}: results table from {report} ({block.count(chr(10)) - 4} rows)")


if __name__ == "__main__":
    typer.run(main)
