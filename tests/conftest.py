"""Shared test fixtures: data paths and the kwargs that file-backed envs need."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# File-backed envs take their data as `path`; every other built-in env needs no kwargs.
ENV_KWARGS = {
    "rlvr/GSM8K-v0": {"path": str(DATA / "gsm8k_sample.jsonl")},
    "rlvr/MATH-v0": {"path": str(DATA / "math_sample.jsonl")},
    "rlvr/HumanEval-v0": {"path": str(DATA / "humaneval_mini.jsonl")},
}


@pytest.fixture
def data_dir() -> Path:
    return DATA
