"""Learner-side tensors: prompt + completion token ids packed into one padded batch, and the per-token
log-probabilities (and entropies) of the completion tokens under a model."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from rlvr.types import Completion


@dataclass
class PolicyBatch:
    """N sequences: left-padded prompts of width P, then right-padded completions of width T."""

    input_ids: torch.Tensor  # [N, P + T]
    attention_mask: torch.Tensor  # [N, P + T]
    position_ids: torch.Tensor  # [N, P + T], counted from each sequence's first real token
    completion_mask: torch.Tensor  # [N, T], 1.0 on completion tokens
    prompt_width: int

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: slice | torch.Tensor) -> PolicyBatch:
        return PolicyBatch(self.input_ids[index], self.attention_mask[index], self.position_ids[index],
                           self.completion_mask[index], self.prompt_width)


def build_batch(tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[Completion],
                add_special_tokens: bool = True) -> PolicyBatch:
    """Pack each prompt with its completion's `token_ids` (which every engine returns)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if any(c.token_ids is None for c in completions):
        raise ValueError("every completion needs token_ids to be trained on")
    prompt_ids = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
    width_p = max(len(p) for p in prompt_ids)
    width_t = max(1, max(len(c.token_ids) for c in completions))
    pad = tokenizer.pad_token_id
    n = len(prompts)
    input_ids = torch.full((n, width_p + width_t), pad, dtype=torch.long)
    attention = torch.zeros((n, width_p + width_t), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completions)):
        input_ids[i, width_p - len(p):width_p] = torch.tensor(p, dtype=torch.long)
        input_ids[i, width_p:width_p + len(c.token_ids)] = torch.tensor(c.token_ids, dtype=torch.long)
        attention[i, width_p - len(p):width_p + len(c.token_ids)] = 1
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    completion_mask = attention[:, width_p:].float()
    return PolicyBatch(input_ids, attention, position_ids, completion_mask, width_p)


def token_logprobs(model: torch.nn.Module, batch: PolicyBatch, with_entropy: bool = False,
                   share_prompts: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for every completion position [N, T] (0 on padding), and optionally the entropy of
    pi(. | q, o_<t) at each position. With `share_prompts`, rows with the same prompt (a group's G completions)
    run the prompt through the model once and continue from its KV cache (`shared_prompt_logits`)."""
    device = next(model.parameters()).device
    logits = shared_prompt_logits(model, batch, device) if share_prompts else None
    if logits is None:
        logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                       position_ids=batch.position_ids.to(device)).logits[:, batch.prompt_width - 1:-1]
    # position t predicts token t + 1; half precision is upcast, float64 kept
    logprobs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    targets = batch.input_ids[:, batch.prompt_width:].to(device)
    mask = batch.completion_mask.to(device)
    logp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logprobs.exp() * logprobs).sum(-1) * mask
    return logp, entropy


def shared_prompt_logits(model: torch.nn.Module, batch: PolicyBatch, device: torch.device) -> torch.Tensor | None:
    """The logits that predict each completion token [N, T, V], computing each distinct prompt once: the distinct
    prompts run with a KV cache, the cache is gathered to one copy per row (gradients flow back through the
    gather into the shared prompt), and the completions run on top of it. Equal to the full forward up to
    floating-point summation order; with G completions per prompt it saves (G - 1) / G of the prompt tokens.
    None when no prompt repeats, or when the model's cache cannot be gathered (the caller runs the full forward)."""
    width = batch.prompt_width
    input_ids, attention = batch.input_ids.to(device), batch.attention_mask.to(device)
    positions = batch.position_ids.to(device)
    shared = prefill_once(model, input_ids[:, :width], attention[:, :width], positions[:, :width])
    if shared is None:
        return None
    prompt_logits, cache, row_of = shared
    first_logits = prompt_logits[row_of, -1:]  # the last prompt position predicts the first completion token
    if input_ids.shape[1] - width == 1:
        return first_logits
    rest = model(input_ids=input_ids[:, width:-1], attention_mask=attention[:, :-1],
                 position_ids=positions[:, width:-1], **{cache_name(model): cache}).logits
    return torch.cat([first_logits, rest], 1)


def prefill_once(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 ) -> tuple[torch.Tensor, Any, torch.Tensor] | None:
    """Run each distinct row of `ids` through `model` once with a KV cache, and gather the cache to every row:
    (the distinct rows' logits, the gathered cache, each row's index among the distinct ones). None when no row
    repeats, or when the model's cache cannot be gathered. Shared by the learner and the hf engine's prefill."""
    distinct, row_of, first = distinct_rows(ids)
    if len(distinct) == len(ids):
        return None
    out = model(input_ids=distinct, attention_mask=mask[first], position_ids=positions[first], use_cache=True)
    cache = getattr(out, cache_name(model), None)
    if not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(row_of)
    return out.logits, cache, row_of


def distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the distinct rows, each row's index among them, one row index holding each distinct row)."""
    distinct, row_of = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.empty(len(distinct), dtype=torch.long, device=rows.device).scatter_(
        0, row_of, torch.arange(len(row_of), device=rows.device))
    return distinct, row_of, first


def cache_name(model: torch.nn.Module) -> str:
    """What transformers calls the KV cache (argument and output): `cache` from 5.x, `past_key_values` before."""
    forward = getattr(model, "module", model).forward  # through a DDP wrapper
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
