#!/usr/bin/env bash
# Every GPU check and benchmark of the project in ONE call of at most 10 minutes, on a machine with
# one CUDA GPU. From the repo root:
#
#   bash benchmarks/gpu_session.sh              # on the GPU machine; logs and tables under $OUT
#   bash benchmarks/gpu_session.sh --dry-run    # here, on CPU: the same steps, tiny sizes
#
# Steps, each cut to the time left before the deadline (DEADLINE seconds from the start, default
# 540, so the whole call ends inside 10 minutes even when a step hangs):
#   1. environment: GPU, driver, torch; the wheels in .whl/ installed into /tmp/site
#   2. GPU-only tests: the decode cache on the GPU, the CUDA-graph step equal to the eager step,
#      bf16 training (tests/training/test_gpu.py)
#   3. training throughput, all eight methods, ResNet-50 with the ImageNet stem, 64x64, batch 256
#   4. training throughput, SimCLR with the small-image stem
#   5. evaluation throughput at CIFAR-10's size (50,000 + 10,000 images made from the bundled
#      sample, served as uoft-cs/cifar10 by the loopback Hub)
#   6. `reproduce figure4 --smoke --only SimCLR` on the GPU, on the release built from the sample
#
# Wheels: the GPU image has torch, torchvision, pyarrow, pandas, fsspec, huggingface_hub,
# tensorboard, matplotlib, but not `datasets`. Prepare them once, here (ignored by git):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
# and name `.whl` in the call's `carry`. datasets 5.2 needs pyarrow >= 24 and fsspec <= 2026.9.0:
# step 1 prints both and stops if the image's do not fit (then carry those wheels too).
# Copy the printed tables into BENCHMARKS.md with the card's name and the date.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
LOG="$OUT/session.log"
: > "$LOG"
START=$(date +%s)
DEADLINE=${DEADLINE:-540}
export PYTHONUNBUFFERED=1 SEMANTIC_PAIRS_CACHE=/tmp/sp_cache MPLBACKEND=Agg
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}  # the checkout's venv where there is one

say() { echo "$*" | tee -a "$LOG"; }
step() { say ""; say "=== $1 ($(date -u +%H:%M:%S), $(( $(date +%s) - START )) s in)"; }
# within SECONDS FILE CMD...: run CMD with at most SECONDS (and never past the deadline), its
# output in FILE and its last lines in the log.
within() {
    local want=$1 file=$2; shift 2
    local left=$(( DEADLINE - ($(date +%s) - START) - 5 ))
    local limit=$(( want < left ? want : left ))
    if [ "$limit" -le 10 ]; then say "skipped: no time left before the ${DEADLINE} s deadline"; return 1; fi
    timeout "$limit" "$@" > "$OUT/$file" 2>&1
    local code=$?
    tail -n 25 "$OUT/$file" >> "$LOG"
    [ $code -eq 124 ] && say "stopped after ${limit} s (deadline)"
    [ $code -ne 0 ] && say "exit status $code"
    return $code
}

step "1. environment"
export PYTHONPATH=$PWD
if ! $PYTHON -c "import datasets" 2>/dev/null && compgen -G ".whl/*.whl" > /dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { say "could not install the wheels in .whl/"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PYTHON - <<'EOF'
import sys
import pyarrow, fsspec, torch, torchvision
print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
      "cuda", torch.cuda.is_available(), "pyarrow", pyarrow.__version__, "fsspec", fsspec.__version__)
import datasets
print("datasets", datasets.__version__)
EOF
} 2>&1 | tee -a "$LOG"
$PYTHON -c "import datasets" 2>/dev/null || { say "datasets cannot be imported: carry the wheels (see the top of this script)"; exit 1; }
if [ $DRY = 1 ]; then
    device=cpu
    train_sizes=(--backbone vit_tiny8 --resolution 32 --batch-size 32 --rows 256 --steps 3 --warmup 1 --reference-steps 2)
    eval_sizes=(--backbone resnet18 --resolution 32 --train-images 600 --test-images 300 --device cpu)
    methods=simclr,byol
else
    device=cuda
    $PYTHON -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || { say "no CUDA device: run with --dry-run on a CPU machine"; exit 1; }
    train_sizes=(--steps 60 --warmup 10 --reference-steps 30)
    eval_sizes=(--train-images 50000 --test-images 10000)
    methods=simclr,byol,dino,vicreg,mocov2,simsiam,barlow_twins,swav
fi

step "2. GPU-only tests (cache on the GPU, CUDA-graph step == eager step, bf16)"
within 150 gpu_tests.txt $PYTHON -m pytest -q -p no:cacheprovider tests/training/test_gpu.py -rs

step "3. training throughput, ImageNet stem, all methods (goal: SimCLR >= 20,000 pairs/s)"
within 240 train_throughput.txt $PYTHON benchmarks/train_throughput.py --methods "$methods" "${train_sizes[@]}"

step "4. training throughput, small-image stem, SimCLR (goal >= 3,000 pairs/s)"
within 60 train_small_stem.txt $PYTHON benchmarks/train_throughput.py --methods simclr --stem small "${train_sizes[@]}"

step "5. evaluation throughput at CIFAR-10's size, through the Hub path"
within 120 eval_throughput.txt $PYTHON benchmarks/eval_throughput.py --from-images sample_data/cifar10 "${eval_sizes[@]}"

step "6. reproduce figure4, SimCLR only, on the release built from the sample"
within 120 reproduce.txt $PYTHON -m semantic_pairs_cli reproduce figure4 --smoke --only SimCLR --device "$device" \
    --runs /tmp/sp_runs --out /tmp/sp_results && cp /tmp/sp_results/figure4.md "$OUT/figure4.md"

step "done"
