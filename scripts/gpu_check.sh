#!/usr/bin/env bash
# The checks that need a GPU, as one prepared run on a lent machine (the device tool), in a few minutes: the
# GPU-marked tests (tests/test_gpu.py), then bench/memory.py's rlvr sides on CUDA in bfloat16 with gradient
# checkpointing and LoRA. Results land in $OUT (the device tool's folder; gpu_check/ when run by hand).
#
# That machine has torch, transformers, peft and accelerate but none of rlvr's other dependencies and no registry:
#   here:  bash scripts/gpu_check.sh --fetch-wheels      (pure-Python wheels into .whl/, ignored by git)
#   there: run command="bash scripts/gpu_check.sh" carry=[".whl"] timeout_s=480
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(gymnasium==1.4.0 farama-notifications==0.0.6 math-verify==0.9.0 latex2sympy2_extended==1.11.0
        antlr4-python3-runtime==4.13.2)

if [ "${1:-}" = "--fetch-wheels" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
    ls .whl
    exit 0
fi

OUT="${OUT:-gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check: no wheels in .whl (run with --fetch-wheels first)"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD:$PWD/tests"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"

status=0
timeout 150 python3 -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/tests.log" || status=1
# the memory benchmark on CUDA: bfloat16 weights, gradient checkpointing, LoRA r=16; 4 layers at hidden 896
timeout 270 python3 bench/memory.py --device cuda --dtype bfloat16 --gradient-checkpointing --lora-r 16 \
    --layers 4 --lengths 1024 4096 --sides rlvr rlvr-full --step-tokens 1024 --out "$OUT/memory" 2>&1 \
    | tee "$OUT/memory.log" || status=1
exit $status
