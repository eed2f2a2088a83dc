#!/usr/bin/env bash
# Every GPU check in one run (~5 minutes on one H100, by estimate), for a machine with a CUDA GPU,
# Python 3.12 and PyTorch: sets up spaCy and this package (benchmarks/gpu_env.sh), then
#   1. tests/test_gpu.py: the component, listeners and `spacy train --gpu-id 0` on the GPU,
#      embed/evaluate --device cuda, pretraining in float32/bf16/fp16, exact resume, NCCL (2 GPUs);
#   2. the inference benchmark on the GPU (ours vs the per-time-step baseline, outputs compared);
#   3. the pretraining benchmark on the GPU: the small and original configs, bf16 and float32;
#   4. the whole test suite, for this machine's PyTorch and NumPy versions.
# Everything goes to $OUT/gpu_check.log (./gpu_check.log without $OUT); exits non-zero if a step failed.
# A dry run of the script itself on a machine without a GPU:
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_PRETRAIN_SIZES=demo bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.}
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run, log, remember a failure, go on
    echo "=== $1 ($(date -u +%H:%M:%S))" | tee -a "$LOG"
    shift
    "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== rc=$rc" | tee -a "$LOG"
    [ "$rc" -eq 0 ] || status=1
}
: > "$LOG"
DEVICE=${GPU_CHECK_DEVICE:-cuda}
read -r -a SIZES <<< "${GPU_CHECK_PRETRAIN_SIZES:-small original}"
source benchmarks/gpu_env.sh || exit 2
step "machine" bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; python3 -c \
'import sys, torch, numpy, spacy, thinc, spacy_elmo; print(sys.version.split()[0], \"torch\", torch.__version__, \
\"cuda\", torch.version.cuda, \"numpy\", numpy.__version__, \"spacy\", spacy.__version__, \"thinc\", thinc.__version__, \
\"gpus\", torch.cuda.device_count(), spacy_elmo.__file__)'"
step "tests/test_gpu.py" env SPACY_ELMO_TEST_DEVICE="$DEVICE" timeout 600 python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py
step "inference benchmark" timeout 300 python3 benchmarks/bench_inference.py --device "$DEVICE" --sizes original fixture \
    --sentences 1024 --batch-size 128 --tolerance 1e-4
CORPUS=()  # the pretraining text, when .gpu_bundle/data.tar.xz brought it
[ -f corpus/pretrain_train.txt ] && CORPUS=(--corpus corpus/pretrain_train.txt)
step "pretraining benchmark, bf16" timeout 400 python3 benchmarks/bench_pretrain.py --device "$DEVICE" --precision bf16 \
    --sizes "${SIZES[@]}" --steps 40 "${CORPUS[@]}"
step "pretraining benchmark, float32" timeout 300 python3 benchmarks/bench_pretrain.py --device "$DEVICE" --precision no \
    --sizes "${SIZES[0]}" --steps 40 "${CORPUS[@]}"
step "whole test suite (test_gpu.py ran above)" timeout 600 python3 -m pytest -q -p no:cacheprovider -x --ignore tests/test_gpu.py
echo "=== gpu_check status=$status" | tee -a "$LOG"
exit $status
