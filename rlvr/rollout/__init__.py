"""Rollout engines: `hf` (a transformers model with rlvr's decode loop, CPU or GPU), `vllm` (optional extra; GPU, or vLLM's CPU build), and
`ray-hf` / `ray-vllm` (those engines on Ray actors, optional extra: `rlvr.rollout.ray_engine`)."""

from rlvr.rollout.base import Engine, Sampling

__all__ = ["Engine", "Sampling"]
