"""The packaged pair installs where this repository is not: the spacy-elmo wheel and a pipeline
package built with `spacy package`, installed together into a fresh virtualenv, load and run.

No internet: the new virtualenv sees this test environment's site-packages (spaCy, torch, ...)
through a path entry, and pip installs only the two wheels built here (--no-index --no-deps).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
import spacy

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, cwd: Path, timeout: int = 300, checkout: bool = True) -> str:
    """Run a command; checkout=False hides this checkout (PYTHONPATH) from it."""
    env = {k: v for k, v in os.environ.items() if checkout or k != "PYTHONPATH"}
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, argv))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_and_pipeline_package_install_into_a_fresh_venv(tmp_path, model_dir):
    pytest.importorskip("build", reason="building wheels needs `build`: pip install -e '.[test]'")
    # The spacy-elmo wheel, as the workflow's package step builds it.
    wheels = tmp_path / "wheels"
    run(sys.executable, ROOT / "scripts" / "build_wheel.py", wheels, "--source", ROOT, cwd=tmp_path)

    # A pipeline that uses the component, packaged as spacy package makes it, then built the same way.
    nlp = spacy.blank("en")
    nlp.add_pipe("elmo", config={"model": model_dir})
    expected = nlp("The bank raised its rates .")._.elmo
    nlp.to_disk(tmp_path / "pipeline")
    (tmp_path / "packages").mkdir()
    run(sys.executable, "-m", "spacy", "package", tmp_path / "pipeline", tmp_path / "packages", "--name", "elmo_test",
        "--version", "0.0.1", "--build", "none", "--force", cwd=tmp_path)
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", wheels,
        tmp_path / "packages" / "en_elmo_test-0.0.1", cwd=tmp_path)
    assert sorted(p.name.split("-")[0] for p in wheels.glob("*.whl")) == ["en_elmo_test", "spacy_elmo"]

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path,
                    checkout=False).strip())
    # A plain path entry: the test environment's .pth files (its editable spacy-elmo) are not read.
    (site / "test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index", "--no-deps",
        "--ignore-installed", "--find-links", wheels, "spacy-elmo", "en-elmo-test", cwd=tmp_path, checkout=False)

    code = textwrap.dedent(
        """
        import numpy as np, spacy, spacy_elmo
        print(spacy_elmo.__file__)
        nlp = spacy.load("en_elmo_test")
        np.save("vectors.npy", nlp("The bank raised its rates .")._.elmo)
        """
    )
    printed = run(python, "-c", code, cwd=tmp_path, checkout=False)
    assert printed.strip().startswith(str(site))  # the wheel's copy, not the checkout's
    np.testing.assert_allclose(np.load(tmp_path / "vectors.npy"), expected, atol=1e-6)
