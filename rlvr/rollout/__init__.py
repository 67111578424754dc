"""Rollout engines: `hf` (transformers generate, CPU or GPU) and `vllm` (GPU, optional extra)."""

from rlvr.rollout.base import Engine, Sampling

__all__ = ["Engine", "Sampling"]
