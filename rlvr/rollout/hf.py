"""Rollouts with transformers' `generate`: batched, left-padded, stopping at EOS, with the per-token logprobs
of the distribution actually sampled from (after temperature, top-k and top-p). A prompt sampled G times is
prefilled once: its KV cache is computed for the distinct prompts and gathered to every row before `generate`."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.batch import cache_name, prefill_once
from rlvr.rollout.base import Sampling
from rlvr.types import Completion


class HFEngine:
    """Generates with the learner's own model object, so `sync_weights` has nothing to copy."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 256,
                 add_special_tokens: bool = True) -> None:
        if tokenizer.padding_side != "left":
            raise ValueError("HFEngine needs a tokenizer with padding_side='left'")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.add_special_tokens = batch_size, add_special_tokens

    def sync_weights(self, model: torch.nn.Module) -> None:
        if model is not self.model:
            self.load_state(model.state_dict())

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """The policy's weights as a state dict (how a Ray actor's engine receives them)."""
        self.model.load_state_dict(state)

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, sampling: Sampling) -> list[list[Completion]]:
        flat = [p for p in prompts for _ in range(n)]
        out: list[Completion] = []
        for i in range(0, len(flat), self.batch_size):
            out.extend(self._generate_batch(flat[i:i + self.batch_size], sampling))
        return [out[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _generate_batch(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        tok, model = self.tokenizer, self.model
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        was_training = model.training
        model.eval()
        out = model.generate(
            **enc, **self._shared_prefix(enc), max_new_tokens=sampling.max_new_tokens, do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            top_k=sampling.top_k if not sampling.greedy else None,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            return_dict_in_generate=True, output_scores=True,
        )
        model.train(was_training)
        new_tokens = out.sequences[:, enc["input_ids"].shape[1]:]
        # scores are the processed logits each token was sampled from
        logprobs = torch.stack(out.scores, dim=1).float().log_softmax(-1)
        token_logprobs = logprobs.gather(-1, new_tokens[:, :logprobs.shape[1]].unsqueeze(-1)).squeeze(-1)
        return [self._completion(ids, lps) for ids, lps in zip(new_tokens.tolist(), token_logprobs.tolist())]

    def _shared_prefix(self, enc: dict[str, torch.Tensor]) -> dict[str, object]:
        """{cache argument: the KV cache of every prompt but its last token, computed once per distinct prefix and
        gathered to each row}, with which `generate` prefills only the last token; {} when no prefix repeats."""
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if ids.shape[1] < 2:
            return {}
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        shared = prefill_once(self.model, ids[:, :-1], mask[:, :-1], positions[:, :-1])
        return {} if shared is None else {cache_name(self.model): shared[1]}

    def _completion(self, ids: list[int], logprobs: list[float]) -> Completion:
        eos = self.tokenizer.eos_token_id
        if eos in ids:  # keep the EOS token: the policy learns to stop
            end = ids.index(eos) + 1
            ids, logprobs, reason = ids[:end], logprobs[:end], "stop"
        else:
            reason = "length"
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Completion(text=text, token_ids=ids, logprobs=logprobs, finish_reason=reason)
