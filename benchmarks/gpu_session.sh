#!/usr/bin/env bash
# Every GPU check and benchmark of the project in ONE call on a lent H100/H200, sized for a few
# minutes (the device budget is 15 minutes in all). From the repo root on the GPU machine:
#
#   bash benchmarks/gpu_session.sh            # logs and tables under $OUT (or ./gpu_out)
#
# The GPU image has torch/torchvision but not `datasets`: carry its wheels in .whl/ (see
# BENCHMARKS.md: datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19, Python 3.12 manylinux) and they
# are installed into /tmp/site first. QUICK=1 shrinks every step (a dry run of this script on CPU).
# Copy the printed tables into BENCHMARKS.md with the card's name and the date.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export SEMANTIC_PAIRS_CACHE=/tmp/sp_cache
if [ "${QUICK:-0}" = 1 ]; then
    steps=3; methods=simclr; big="--backbone resnet18 --resolution 32 --batch-size 32 --rows 256 --reference-steps 3"
else
    steps=60; methods=simclr,byol,dino,vicreg,mocov2,simsiam,barlow_twins,swav; big=""
fi
step() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }

step "environment" | tee "$OUT/session.log"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, torchvision, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee -a "$OUT/session.log"

step "GPU-only tests (graph step == eager step, cache on the GPU, bf16)" | tee -a "$OUT/session.log"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/training/test_gpu.py 2>&1 | tail -15 | tee -a "$OUT/session.log"

step "training throughput, ImageNet stem, all methods (goal SimCLR >= 20k pairs/s)" | tee -a "$OUT/session.log"
timeout 300 python3 benchmarks/train_throughput.py --methods "$methods" --steps "$steps" $big 2>&1 | tee "$OUT/train_throughput.txt" | tail -25 >> "$OUT/session.log"

step "training throughput, small-image stem, SimCLR (goal >= 3k pairs/s)" | tee -a "$OUT/session.log"
timeout 120 python3 benchmarks/train_throughput.py --methods simclr --stem small --steps "$steps" $big 2>&1 | tee "$OUT/train_throughput_small.txt" | tail -12 >> "$OUT/session.log"

step "evaluation throughput (bundled CIFAR-10 sample)" | tee -a "$OUT/session.log"
timeout 120 python3 benchmarks/eval_throughput.py 2>&1 | tee "$OUT/eval_throughput.txt" | tail -15 >> "$OUT/session.log"

step "reproduce figure4, SimCLR only, sample-built SP/AP, short schedule" | tee -a "$OUT/session.log"
device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
timeout 240 python3 -m semantic_pairs_cli reproduce figure4 --smoke --device "$device" --only SimCLR \
    --runs /tmp/sp_runs --out "$OUT" 2>&1 | tail -20 | tee -a "$OUT/session.log"
step "done" | tee -a "$OUT/session.log"
