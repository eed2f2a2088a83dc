# Sourced by benchmarks/gpu_check.sh and scripts/gpu_pretrain.sh on a GPU machine: makes spaCy and
# this package importable (from .gpu_bundle/site.tar.xz when spaCy is missing; see
# benchmarks/make_gpu_bundle.sh), puts the `spacy-elmo` command on PATH, and unpacks
# .gpu_bundle/data.tar.xz (the prepared corpora) into the repository when it is there.
SITE=/tmp/spacy_elmo_gpu_site
mkdir -p "$SITE"
if ! python3 -c "import spacy" 2>/dev/null; then
    if [ ! -f .gpu_bundle/site.tar.xz ]; then
        echo "spaCy is missing and .gpu_bundle/site.tar.xz is absent: run benchmarks/make_gpu_bundle.sh first" >&2
        return 2
    fi
    python3 -c "import tarfile; tarfile.open('.gpu_bundle/site.tar.xz').extractall('$SITE', filter='data')"
    export PYTHONPATH="$SITE/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# Installed (not only importable) so that spaCy finds the `elmo` factory through its entry point.
python3 -m pip install --quiet --upgrade --no-deps --no-index --no-build-isolation --target "$SITE/pkg" . 2>&1 | tail -3
export PYTHONPATH="$SITE/pkg${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/pkg/bin:$PATH"
if [ -f .gpu_bundle/data.tar.xz ]; then
    python3 -c "import tarfile; tarfile.open('.gpu_bundle/data.tar.xz').extractall('.', filter='data')"
fi
