"""Rollout engines: `hf` (transformers generate, CPU or GPU), `vllm` (GPU, optional extra) and `ray-hf` (hf engines
on Ray actors, optional extra: `rlvr.rollout.ray_engine`)."""

from rlvr.rollout.base import Engine, Sampling

__all__ = ["Engine", "Sampling"]
