"""Engine choice in one place: `make_engine(name, policy, tokenizer, ...)` builds the `hf`, `vllm`, `ray-hf` or
`ray-vllm` engine over a policy. Engines with a model of their own (vLLM, Ray actors) load it from where the policy
came from, or, for the built-in model and for a LoRA policy (merged), from a copy saved first."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from rlvr.lora import is_peft_model
from rlvr.models import save_policy
from rlvr.rollout.base import Engine

ENGINES = ("hf", "vllm", "ray-hf", "ray-vllm")


def make_engine(name: str, policy: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *, model: str,
                save_dir: Path, add_special_tokens: bool = True, seed: int = 0, batch_tokens: int = 65536,
                autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                workers: int = 2, gpus: float = 0.0, vllm_kwargs: dict[str, Any] | None = None,
                dummy_weights: bool = False) -> Engine:
    """The engine `name` over `policy`, loaded from `model` ("tiny", a directory or a hub id). `add_special_tokens`
    says how prompts are tokenized (False for chat-templated ones); `batch_tokens` and `autocast` are the hf
    engine's, `workers` and `gpus` the Ray engines', `vllm_kwargs` go to `vllm.LLM`. With `dummy_weights` a vLLM
    engine holds random weights of the policy's shape and reads none (one that never generates)."""
    if name == "hf":
        from rlvr.rollout.hf import HFEngine

        return HFEngine(policy, tokenizer, batch_tokens=batch_tokens, add_special_tokens=add_special_tokens,
                        autocast=autocast)
    if name == "vllm":
        from rlvr.rollout.vllm import VLLMEngine

        extra = {"load_format": "dummy"} if dummy_weights else {}
        return VLLMEngine(model_dir(policy, tokenizer, model, save_dir, weights=not dummy_weights), tokenizer,
                          seed=seed, add_special_tokens=add_special_tokens, **{**(vllm_kwargs or {}), **extra})
    if name in ("ray-hf", "ray-vllm"):
        from rlvr.rollout.ray_engine import RayEngine

        ray_kwargs = dict(num_workers=workers, num_gpus=gpus, add_special_tokens=add_special_tokens)
        if name == "ray-hf":
            return RayEngine.hf(model, policy, **ray_kwargs)
        return RayEngine.vllm(model_dir(policy, tokenizer, model, save_dir), policy, vllm_kwargs=vllm_kwargs,
                              **ray_kwargs)
    raise ValueError(f"engine must be one of {', '.join(repr(e) for e in ENGINES)}, got {name!r}")


def model_dir(policy: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, model: str, save_to: Path,
              weights: bool = True) -> str:
    """Where an engine of its own loads the policy from: `model` itself, or the policy saved to `save_to` when no
    directory or hub id holds it (the built-in model; a LoRA policy, merged). Without `weights`, only the config
    and tokenizer are saved."""
    if model != "tiny" and not is_peft_model(policy):
        return model
    if weights:
        save_policy(policy, tokenizer, save_to, merged=True)
    else:
        policy.config.save_pretrained(save_to)
        tokenizer.save_pretrained(save_to)
    return str(save_to)
