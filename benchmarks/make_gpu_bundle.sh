#!/usr/bin/env bash
# Packs what benchmarks/gpu_check.sh needs on a GPU machine that has Python 3.12 and PyTorch but
# neither spaCy nor a network: the spaCy stack as Linux x86-64 / CPython 3.12 wheels, unpacked and
# xz-compressed (~33 MB: the zipped wheels are ~58 MB, too much to travel beside the repository's
# 22 MB), plus the prepared corpora (xz, below). Runs here, with the project's virtualenv active
# (its versions are the ones packed); writes .gpu_bundle/ (git-ignored).
#   bash benchmarks/make_gpu_bundle.sh && bash benchmarks/gpu_check.sh   # the second on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.gpu_bundle
PY_VERSION=${PY_VERSION:-3.12}
# What PyTorch images usually lack; numpy, h5py, tqdm, matplotlib, jinja2, requests, setuptools
# and wheel are taken from the machine.
PACKAGES="spacy thinc blis cymem preshed murmurhash srsly wasabi weasel catalogue confection spacy-legacy
spacy-loggers smart_open cloudpathlib pydantic pydantic_core annotated-types typing-inspection typing_extensions
typer click annotated-doc"
pins=$(python - "$PACKAGES" <<'EOF'
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1].split()))
EOF
)
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/wheels" "$BUNDLE/site"
python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$BUNDLE/wheels" $pins
for wheel in "$BUNDLE"/wheels/*.whl; do python -m zipfile -e "$wheel" "$BUNDLE/site"; done
# Sources, headers and the libraries' own test suites are not needed to run.
rm -rf "$BUNDLE"/site/spacy/tests "$BUNDLE"/site/thinc/tests
find "$BUNDLE/site" \( -name "*.pyx" -o -name "*.pxd" -o -name "*.cpp" -o -name "*.c" -o -name "*.h" \) -delete
tar -cf - -C "$BUNDLE" site | xz -9 -T0 > "$BUNDLE/site.tar.xz"
rm -rf "$BUNDLE/wheels" "$BUNDLE/site"
# The prepared corpora of the workflow (corpus-pretrain and corpus-ner must have run here) and the
# WikiText-103 held-out text, for scripts/gpu_pretrain.sh (and the pretraining timings); gpu_env.sh
# unpacks them into corpus/ and gpu_data/ (both git-ignored).
DATA_FILES=(corpus/pretrain_train.txt corpus/pretrain_train.txt.meta.json corpus/conll_train.txt corpus/conll_dev.txt)
WIKITEXT=${DATA_DIR:-../shared/data}/wikitext103
if [ -f "${DATA_FILES[0]}" ] && [ -f "$WIKITEXT/wiki.valid.tokens" ]; then
    mkdir -p "$BUNDLE/gpu_data/wikitext103"
    cp "$WIKITEXT/wiki.valid.tokens" "$WIKITEXT/wiki.test.tokens" "$BUNDLE/gpu_data/wikitext103/"
    present=()
    for f in "${DATA_FILES[@]}"; do [ -f "$f" ] && present+=("$f"); done
    tar -cf - "${present[@]}" -C "$BUNDLE" gpu_data | xz -9 -T0 > "$BUNDLE/data.tar.xz"
    rm -rf "$BUNDLE/gpu_data"
else
    echo "no data.tar.xz: run the corpus-pretrain and corpus-ner steps first (and have ../shared/data)" >&2
fi
du -sh "$BUNDLE"/* "$BUNDLE"
