#!/usr/bin/env bash
# The workflow's biLM steps on a GPU machine lent for a few minutes: pretrain, evaluate-perplexity
# and finetune-bilm of project.yml, on the corpora prepared here (corpus-pretrain, corpus-ner) and
# carried in .gpu_bundle/data.tar.xz (benchmarks/make_gpu_bundle.sh). The NER, STS-B and WiC steps
# then run here, on the CPU, on what comes back. Settings (environment):
#   GPU_PRETRAIN_MINUTES  time limit of the pretraining (default 5; the project var pretrain_max_minutes)
#   GPU_PRETRAIN_EPOCHS   epoch limit (default 20; whichever limit comes first ends the run)
#   GPU_MODEL_SIZE        configs/pretrain_<size>.cfg (default small: its weights come back, 21 MB)
#   GPU_FINETUNE_EPOCHS   epochs on the CoNLL-2003 train words (default 3, the project's finetune_epochs)
#   GPU_DEVICE            cuda:0 (cpu for a dry run of the script)
# What comes back ($OUT, or ./gpu_out): gpu_pretrain.log and gpu_models.tar in parts of 15 MB
# (gpu_models.tar.part-aa, -ab, ...; the device tool returns files of at most 16 MB). Here:
#   cat gpu_models.tar.part-* | tar -xf -      # -> training/bilm, training/bilm_conll
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_pretrain.log"
export PYTHONUNBUFFERED=1
MINUTES=${GPU_PRETRAIN_MINUTES:-5}
EPOCHS=${GPU_PRETRAIN_EPOCHS:-20}
SIZE=${GPU_MODEL_SIZE:-small}
DEVICE=${GPU_DEVICE:-cuda:0}
FINETUNE_EPOCHS=${GPU_FINETUNE_EPOCHS:-3}
source benchmarks/gpu_env.sh || exit 2
[ -f corpus/pretrain_train.txt ] || { echo "corpus/pretrain_train.txt is missing: see benchmarks/make_gpu_bundle.sh" | tee "$LOG"; exit 2; }
# Never on top of an earlier run (pretrain refuses to; finetune-bilm starts over by itself).
rm -rf training/bilm training/bilm_conll
VARS=(--vars.data_dir gpu_data --vars.bilm_dir training/bilm --vars.model_size "$SIZE" --vars.device "$DEVICE" --vars.pretrain_epochs "$EPOCHS"
      --vars.pretrain_max_minutes "$MINUTES" --vars.finetune_epochs "$FINETUNE_EPOCHS")
{
    date -u
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    for step in pretrain evaluate-perplexity finetune-bilm; do
        echo "=== $step ($(date -u +%H:%M:%S))"
        python3 -m spacy project run "$step" . "${VARS[@]}" || { echo "=== $step failed"; exit 1; }
    done
    echo "=== done ($(date -u +%H:%M:%S))"
} 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
FILES=()
for dir in training/bilm training/bilm_conll; do
    for f in model/options.json model/weights.hdf5 model/meta.json metrics.jsonl curves.png perplexity_test.json \
             perplexity_conll_dev_general.json; do
        [ -f "$dir/$f" ] && FILES+=("$dir/$f")
    done
done
if [ ${#FILES[@]} -gt 0 ]; then
    tar -cf - "${FILES[@]}" | split -b 15M - "$OUT/gpu_models.tar.part-"
fi
ls -la "$OUT" | tee -a "$LOG"
exit "$rc"
