# The two Quickstart commands: `make demo` (a real training run on CPU) and `make test` (the test suite).
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/rlvr train --out-dir runs/demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python bench/verifiers.py
