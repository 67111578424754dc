"""Rollouts on Ray actors (optional extra `rlvr[ray]`): one engine (hf or vllm) per actor, on any node of the
cluster. Prompts are split into contiguous shards, one per actor, and the completions come back in prompt order;
`sync_weights` puts the learner's state dict in Ray's object store once and every actor loads it from there."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlvr.cluster import connect
from rlvr.models import policy_state_dict
from rlvr.rollout.base import Engine, EnginePrompt, Sampling
from rlvr.types import Completion


class _EngineActor:
    """Body of one Ray actor: builds its engine (which must have `load_state(state_dict)`) and generates with the
    seed it is given, seeding torch, whose generators both engines sample from."""

    def __init__(self, make_engine: Callable[[], Engine], threads: int) -> None:
        torch.set_num_threads(threads)
        self.engine = make_engine()

    def generate(self, prompts: list[EnginePrompt], n: int, sampling: Sampling, seed: int) -> list[list[Completion]]:
        torch.manual_seed(seed)
        return self.engine.generate(prompts, n, sampling)

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.engine.load_state(state)  # type: ignore[attr-defined]


def hf_engine(model: str, device: str = "cpu", add_special_tokens: bool = True, batch_tokens: int = 65536) -> Engine:
    """An HFEngine on a freshly loaded copy of `model` ("tiny", a directory or a hub id), for use in an actor."""
    from rlvr.models import load_policy
    from rlvr.rollout.hf import HFEngine

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("this Ray worker was given a GPU but torch sees none")
    policy, tokenizer = load_policy(model, device=device)
    return HFEngine(policy, tokenizer, batch_tokens=batch_tokens, add_special_tokens=add_special_tokens)


def vllm_engine(model: str, add_special_tokens: bool = True, **llm_kwargs: Any) -> Engine:
    """A VLLMEngine on `model` (a directory or a hub id), for use in an actor (on the GPU Ray gave it, or the CPU)."""
    from rlvr.rollout.vllm import VLLMEngine

    return VLLMEngine(model, add_special_tokens=add_special_tokens, **llm_kwargs)


class RayEngine:
    """`num_workers` Ray actors, each running the engine `make_engine()` builds in it (with `num_cpus` CPUs and
    `num_gpus` GPUs), then holding `policy`'s weights when it is given. Each `generate` draws one seed from this
    process's torch generator and actor i samples with that seed + i: what the actors sample follows the caller's
    random stream, which checkpoints save, so a resumed run samples what an unbroken one does."""

    def __init__(self, make_engine: Callable[[], Engine], num_workers: int = 2, num_cpus: float = 1,
                 num_gpus: float = 0, address: str | None = None,
                 policy: torch.nn.Module | None = None) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self._ray = connect(address)
        actor = self._ray.remote(_EngineActor).options(num_cpus=num_cpus, num_gpus=num_gpus)
        self.actors = [actor.remote(make_engine, max(1, int(num_cpus))) for _ in range(num_workers)]
        if policy is not None:
            self.sync_weights(policy)

    @classmethod
    def hf(cls, model: str, policy: torch.nn.Module | None = None, num_workers: int = 2, num_gpus: float = 0,
           add_special_tokens: bool = True, **kwargs: Any) -> RayEngine:
        """HF engines loading `model` in every actor, then holding `policy`'s weights when it is given."""
        device = "cuda" if num_gpus > 0 else "cpu"
        make = functools.partial(hf_engine, model, device, add_special_tokens)
        return cls(make, num_workers=num_workers, num_gpus=num_gpus, policy=policy, **kwargs)

    @classmethod
    def vllm(cls, model: str, policy: torch.nn.Module | None = None, num_workers: int = 2, num_gpus: float = 0,
             add_special_tokens: bool = True, vllm_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> RayEngine:
        """vLLM engines loading `model` in every actor, then holding `policy`'s weights when it is given."""
        make = functools.partial(vllm_engine, model, add_special_tokens, **(vllm_kwargs or {}))
        return cls(make, num_workers=num_workers, num_gpus=num_gpus, policy=policy, **kwargs)

    def generate(self, prompts: list[EnginePrompt], n: int, sampling: Sampling) -> list[list[Completion]]:
        shards = [s for s in np.array_split(np.arange(len(prompts)), len(self.actors)) if len(s)]
        seed = int(torch.randint(2**62, ()))  # from the caller's stream
        refs = [a.generate.remote([prompts[i] for i in s], n, sampling, seed + i)
                for i, (a, s) in enumerate(zip(self.actors, shards))]
        return [group for shard in self._ray.get(refs) for group in shard]

    def sync_weights(self, model: torch.nn.Module) -> None:
        state = self._ray.put({k: v.detach().cpu() for k, v in policy_state_dict(model).items()})
        self._ray.get([a.load_state.remote(state) for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
