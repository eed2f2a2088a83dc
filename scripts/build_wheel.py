"""Build the spacy-elmo wheel into OUTPUT_DIR, offline, leaving the checkout as it was.

    python scripts/build_wheel.py packages/spacy-elmo          # from the repository root

The pipeline package that `spacy package` makes requires spacy-elmo, which is not on PyPI: this
wheel goes next to it, and `pip install PIPELINE_PACKAGE SPACY_ELMO_WHEEL` installs both. The
sources are copied to a temporary folder first, because setuptools writes build/ and *.egg-info
next to them; `--no-isolation` builds with the setuptools already installed (no download).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer
from wasabi import msg

SOURCES = ("setup.cfg", "setup.py", "pyproject.toml", "README.md", "spacy_elmo")


def main(
    output_dir: Path = typer.Argument(..., help="Folder for the wheel (created if missing)."),
    source: Path = typer.Option(Path("."), "--source", help="The repository root: setup.cfg, spacy_elmo/, ..."),
) -> None:
    missing = [name for name in SOURCES if not (source / name).exists()]
    if missing:
        msg.fail(f"{source}: not the spacy-elmo repository root (no {', '.join(missing)})", exits=1)
    try:
        import build  # noqa: F401
    except ImportError:
        msg.fail("Building the wheel needs `build`: pip install -e \".[package]\"", exits=1)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "spacy-elmo"
        copy.mkdir()
        for name in SOURCES:
            if (source / name).is_dir():
                shutil.copytree(source / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source / name, copy / name)
        argv = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(output_dir.resolve()), str(copy)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            msg.fail(f"python -m build failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}", exits=1)
    wheels = sorted(output_dir.glob("spacy_elmo-*.whl"))
    msg.good(f"Wrote {wheels[-1] if wheels else output_dir}")


if __name__ == "__main__":
    typer.run(main)
