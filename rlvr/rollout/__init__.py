"""Rollout engines: `hf` (a transformers model with rlvr's decode loop, CPU or GPU), `vllm` (optional extra; GPU, or vLLM's CPU build), and
`ray-hf` / `ray-vllm` (those engines on Ray actors, optional extra: `rlvr.rollout.ray_engine`)."""

from rlvr.rollout.base import Engine, Sampling
from rlvr.rollout.factory import ENGINES, make_engine

__all__ = ["ENGINES", "Engine", "Sampling", "make_engine"]
