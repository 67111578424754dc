"""Rollouts with vLLM on a GPU (optional extra `rlvr[vllm]`, imported only when this engine is built).

The engine runs in-process next to the learner (colocated, as TRL's `vllm_mode="colocate"`): after each
update `sync_weights` copies the learner's parameters into vLLM's model with the model's own `load_weights`."""

from __future__ import annotations

import os
from typing import Any

import torch

from rlvr.rollout.base import Sampling
from rlvr.types import Completion


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:  # the extra is optional; say how to get it
        raise ImportError("the vllm engine needs vLLM and a GPU: pip install 'rlvr[vllm]'") from exc
    return vllm


class VLLMEngine:
    """`generate` through `vllm.LLM` with `SamplingParams(n=G, logprobs=0)`: each token's sampling logprob."""

    def __init__(self, model: str, tokenizer: Any = None, gpu_memory_utilization: float = 0.3,
                 dtype: str = "auto", seed: int = 0, **llm_kwargs: Any) -> None:
        # in-process engine, so the learner can reach vLLM's model object to push weights
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        vllm = _import_vllm()
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, seed=seed,
                            enable_prefix_caching=True, **llm_kwargs)
        self.tokenizer = tokenizer or self.llm.get_tokenizer()

    def generate(self, prompts: list[str], n: int, sampling: Sampling) -> list[list[Completion]]:
        params = self._vllm.SamplingParams(
            n=n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1, max_tokens=sampling.max_new_tokens, logprobs=0,
        )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[self._completion(o) for o in request.outputs] for request in outputs]

    @staticmethod
    def _completion(output: Any) -> Completion:
        ids = list(output.token_ids)
        logprobs = [float(step[tok].logprob) for tok, step in zip(ids, output.logprobs or [])]
        reason = "length" if output.finish_reason == "length" else "stop"
        return Completion(text=output.text, token_ids=ids, logprobs=logprobs, finish_reason=reason)

    def _model(self) -> torch.nn.Module:
        """vLLM's own model object; its location moved between vLLM releases, so try the known paths."""
        executor = self.llm.llm_engine.model_executor
        for path in ("driver_worker.worker.model_runner.model", "driver_worker.model_runner.model"):
            obj: Any = executor
            try:
                for part in path.split("."):
                    obj = getattr(obj, part)
                return obj
            except AttributeError:
                continue
        raise RuntimeError("cannot reach vLLM's model to sync weights (is VLLM_ENABLE_V1_MULTIPROCESSING=0?)")

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        self._model().load_weights(model.state_dict().items())
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
