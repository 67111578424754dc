"""Bitwise-repeatable steps, which an exact resume needs on any number of threads: torch's deterministic algorithms.
On CPU the backward of indexing (index_put with accumulation) otherwise sums duplicate indices in thread order, so
two runs of one seed part after a few steps; on CUDA cuBLAS also needs a fixed workspace."""

from __future__ import annotations

import os
from typing import Callable

import torch


def deterministic_algorithms(on: bool) -> Callable[[], None]:
    """Turn torch's deterministic algorithms on (when `on`; an op without a deterministic kernel then warns rather
    than fails) and return the function that gives the process its previous setting back."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS first starts
        torch.use_deterministic_algorithms(True, warn_only=True)
    return lambda: torch.use_deterministic_algorithms(before[0], warn_only=before[1])
