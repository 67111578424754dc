"""Rollouts with a transformers model and a decode loop of rlvr's own: batched, left-padded, a KV cache, stopping at
EOS. Each step runs the LM head on the last position only (in float32, `rlvr.lm_head`), samples from the sampling
distribution (`rlvr.sampling`, the definition the learner trains under) and keeps the sampled token's log-prob, so
no [N, T, V] scores are ever held; finished rows leave the batch. A prompt sampled G times is prefilled once: its KV
cache is computed for the distinct prompts and gathered to every row. Prompts go in engine batches by a token
budget (`batch_tokens`: rows x (prompt width + max_new_tokens)), not a fixed row count."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlvr.batch import cache_name, prefill_once, prompt_token_ids
from rlvr.lm_head import FloatHead, check_output_head, final_hidden_states
from rlvr.rollout.base import EnginePrompt
from rlvr.sampling import Sampling, sample
from rlvr.types import Completion


class HFEngine:
    """Generates with the learner's own model object, so `sync_weights` has nothing to copy."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_tokens: int = 65536,
                 add_special_tokens: bool = True,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> None:
        if tokenizer.padding_side != "left":
            raise ValueError("HFEngine needs a tokenizer with padding_side='left'")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        check_output_head(model)
        self.model, self.tokenizer = model, tokenizer
        self.batch_tokens, self.add_special_tokens = batch_tokens, add_special_tokens
        self.autocast = autocast  # the learner's mixed precision, so that both compute the same distribution
        self.stop_ids = stop_token_ids(model, tokenizer)

    def sync_weights(self, model: torch.nn.Module) -> None:
        if model is not self.model:
            self.load_state(model.state_dict())

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """The policy's weights as a state dict (how a Ray actor's engine receives them)."""
        self.model.load_state_dict(state)

    @torch.no_grad()
    def generate(self, prompts: list[EnginePrompt], n: int, sampling: Sampling) -> list[list[Completion]]:
        ids = prompt_token_ids(self.tokenizer, prompts, self.add_special_tokens)
        flat = [p for p in ids for _ in range(n)]
        out: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with self.autocast():
                for rows in token_budget_batches([len(p) for p in flat], sampling.max_new_tokens, self.batch_tokens):
                    out.extend(self._decode([flat[i] for i in rows], sampling))
        finally:
            self.model.train(was_training)
        return [out[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _decode(self, prompt_ids: list[list[int]], sampling: Sampling) -> list[Completion]:
        """Sample up to `max_new_tokens` after each prompt; rows leave the batch at a stop token."""
        model, device = self.model, self.model.device
        width = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, p in enumerate(prompt_ids):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        lengths = torch.tensor([len(p) for p in prompt_ids])
        ids, mask = ids.to(device), (torch.arange(width) >= width - lengths.unsqueeze(1)).long().to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden, cache = self._prefill(ids, mask, positions)
        head = FloatHead.of(model, torch.promote_types(model.dtype, torch.float32))
        active = torch.arange(len(prompt_ids), device=device)  # the rows still generating
        tokens: list[list[int]] = [[] for _ in prompt_ids]
        logprobs: list[list[float]] = [[] for _ in prompt_ids]
        stop = torch.tensor(sorted(self.stop_ids), device=device)
        position = positions[:, -1]
        for step in range(sampling.max_new_tokens):
            token, logprob = sample(head.logits(hidden, sampling), sampling)
            for row, t, lp in zip(active.tolist(), token.tolist(), logprob.tolist()):
                tokens[row].append(t)
                logprobs[row].append(lp)
            going = ~torch.isin(token, stop)
            if sampling.stop:  # a row whose text now holds a stop string (the end of a tool call) ends too
                hit = [self._stop_string(tokens[row], sampling.stop) for row in active.tolist()]
                going &= ~torch.tensor(hit, device=device)
            if step == sampling.max_new_tokens - 1 or not going.any():
                break
            if not going.all():  # finished rows leave the batch and its cache
                keep = going.nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                active, token, mask, position = active[keep], token[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], 1)
            position = position + 1
            with final_hidden_states(model) as captured:
                model(input_ids=token.unsqueeze(1), attention_mask=mask, position_ids=position.unsqueeze(1),
                      use_cache=True, **{cache_name(model): cache})
            hidden = captured[0][:, -1]
        return [self._completion(t, lp, sampling) for t, lp in zip(tokens, logprobs)]

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(the last prompt position's hidden state per row [B, H], the KV cache of the prompts): each distinct
        prompt runs once and its cache is gathered to its rows, or all rows run when none repeats."""
        shared = prefill_once(self.model, ids, mask, positions)
        if shared is not None:
            hidden, cache, row_of = shared
            return hidden[row_of, -1], cache
        with final_hidden_states(self.model) as captured:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        return captured[0][:, -1], getattr(out, cache_name(self.model))

    def _stop_string(self, ids: list[int], stops: tuple[str, ...]) -> bool:
        """Whether the last tokens of `ids` hold one of `stops` (each token decodes to at least one character, and
        a row stops at its first one, so an occurrence in that window is new)."""
        return any(s in self.tokenizer.decode(ids[-max(map(len, stops)):]) for s in stops)

    def _completion(self, ids: list[int], logprobs: list[float], sampling: Sampling) -> Completion:
        by_string = bool(sampling.stop) and self._stop_string(ids, sampling.stop)
        stopped = bool(ids) and (ids[-1] in self.stop_ids or by_string)
        reason = "stop" if stopped else "length"  # the stop token is kept: the policy learns to stop
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Completion(text=text, token_ids=ids, logprobs=logprobs, finish_reason=reason)


def stop_token_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The tokenizer's EOS and those of the model's generation config (chat models list their end-of-turn token)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    config = getattr(model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    ids.update([extra] if isinstance(extra, int) else extra or [])
    if not ids:
        raise ValueError("the tokenizer has no EOS token and the model's generation config names none")
    return ids


def token_budget_batches(prompt_lengths: list[int], max_new_tokens: int, budget: int) -> list[range]:
    """Consecutive rows in batches of at most `budget` padded tokens (rows x (widest prompt + max_new_tokens));
    a row longer than the budget goes alone. Consecutive rows keep a group together, so its prompt is shared."""
    batches, start, widest = [], 0, 0
    for i, length in enumerate(prompt_lengths):
        widest_with = max(widest, length)
        if i > start and (i - start + 1) * (widest_with + max_new_tokens) > budget:
            batches.append(range(start, i))
            start, widest_with = i, length
        widest = widest_with
    if prompt_lengths:
        batches.append(range(start, len(prompt_lengths)))
    return batches
