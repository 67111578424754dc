"""Learner-side tensors: prompt + completion token ids packed into one padded batch, and the per-token
log-probabilities (and entropies) of the completion tokens under the sampling distribution of a model."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from rlvr.lm_head import final_hidden_states, sampled_logprobs, unwrap
from rlvr.sampling import Sampling
from rlvr.types import Completion


@dataclass
class PolicyBatch:
    """N sequences: left-padded prompts of width P, then right-padded completions of width T."""

    input_ids: torch.Tensor  # [N, P + T]
    attention_mask: torch.Tensor  # [N, P + T]
    position_ids: torch.Tensor  # [N, P + T], counted from each sequence's first real token
    completion_mask: torch.Tensor  # [N, T], 1.0 on the completion tokens the model sampled (the loss's tokens)
    prompt_width: int

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: slice | torch.Tensor) -> PolicyBatch:
        """The rows `index`, without the columns that are padding in all of them (a micro-batch of short rows is
        short)."""
        attention, width = self.attention_mask[index], self.prompt_width
        start = int(attention[:, :width].any(0).int().argmax())  # the first column with a prompt token
        end = width + max(1, int(attention[:, width:].sum(-1).max()) if len(attention) else 1)
        columns = slice(start, end)
        return PolicyBatch(self.input_ids[index][:, columns], attention[:, columns],
                           self.position_ids[index][:, columns], self.completion_mask[index][:, :end - width],
                           width - start)

    def engine_logprobs(self, completions: list[Completion]) -> torch.Tensor:
        """The engine's log-probs of this batch's `completions`, laid out like `completion_mask` [N, T] (0 where
        an engine gave none)."""
        out = torch.zeros(self.completion_mask.shape)
        for i, c in enumerate(completions):
            row = (c.logprobs or [])[:out.shape[1]]
            out[i, :len(row)] = torch.tensor(row)
        return out


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompts: list[str | list[int]],
                     add_special_tokens: bool = True) -> list[list[int]]:
    """Each prompt's token ids: ids as given, text tokenized as the learner's batch tokenizes it."""
    texts = [p for p in prompts if isinstance(p, str)]
    encoded = iter(tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"] if texts else [])
    out = []
    for p in prompts:
        if isinstance(p, str):
            out.append(list(next(encoded)))
        elif isinstance(p, (list, tuple)) and p and all(isinstance(t, int) for t in p):
            out.append(list(p))
        else:
            raise TypeError(f"a prompt is text or a non-empty list of token ids, got {type(p).__name__} {p!r:.60}")
    return out


def build_batch(tokenizer: PreTrainedTokenizerBase, prompts: list[str | list[int]], completions: list[Completion],
                add_special_tokens: bool = True) -> PolicyBatch:
    """Pack each prompt (text, or token ids as the engine got them) with its completion's `token_ids` (which every
    engine returns). `completion_mask` is 1 on
    the tokens the model sampled: every completion token, except where a multi-turn completion's `loss_mask` marks
    tokens the environment wrote (they stay in the sequence as context, and out of the loss)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if any(c.token_ids is None for c in completions):
        raise ValueError("every completion needs token_ids to be trained on")
    for i, c in enumerate(completions):
        if c.loss_mask is not None and (len(c.loss_mask) != len(c.token_ids) or set(c.loss_mask) - {0, 1}):
            raise ValueError(f"completion {i}: loss_mask must hold one 0 or 1 per token id "
                             f"({len(c.loss_mask)} entries for {len(c.token_ids)} token ids)")
    prompt_ids = prompt_token_ids(tokenizer, prompts, add_special_tokens)
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
    for i, c in enumerate(completions):
        if c.loss_mask is not None:
            completion_mask[i, :len(c.loss_mask)] = torch.tensor(c.loss_mask, dtype=torch.float32)
    return PolicyBatch(input_ids, attention, position_ids, completion_mask, width_p)


def token_logprobs(model: torch.nn.Module, batch: PolicyBatch, with_entropy: bool = False,
                   share_prompts: bool = False, sampling: Sampling | None = None,
                   chunk_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for every completion position [N, T] (0 on padding), and optionally the entropy of
    pi(. | q, o_<t) at each position, pi the distribution the engine samples from under `sampling` (temperature,
    top-k, top-p; None: the model's own softmax). Only completion positions go through the LM head, a chunk of
    tokens at a time (`rlvr.lm_head`), so no [N, T, V] tensor exists. With `share_prompts`, rows with the same prompt
    (a group's G completions) run the prompt through the model once and continue from its KV cache."""
    device = next(model.parameters()).device
    hidden = completion_hidden_states(model, batch, device, share_prompts)  # [N, T, H]
    mask = batch.completion_mask.to(device)
    real = mask.bool()
    targets = batch.input_ids[:, batch.prompt_width:].to(device)
    logp_real, entropy_real = sampled_logprobs(model, hidden[real], targets[real], sampling, with_entropy,
                                               chunk_tokens)
    logp = torch.zeros(mask.shape, dtype=logp_real.dtype, device=device).index_put((real,), logp_real)
    entropy = torch.zeros_like(logp).index_put_((real,), entropy_real) if with_entropy else None
    return logp, entropy


def completion_hidden_states(model: torch.nn.Module, batch: PolicyBatch, device: torch.device,
                             share_prompts: bool) -> torch.Tensor:
    """The last hidden states [N, T, H] at the positions that predict each completion token (position t predicts
    token t + 1), from the shared-prompt forward where it applies, else from one full forward."""
    if share_prompts and not _checkpointing_grads(model):
        hidden = shared_prompt_hidden_states(model, batch, device)
        if hidden is not None:
            return hidden
    with final_hidden_states(model) as captured:
        model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
              position_ids=batch.position_ids.to(device))
    return captured[0][:, batch.prompt_width - 1:-1]


def _checkpointing_grads(model: torch.nn.Module) -> bool:
    """Gradient checkpointing drops the KV cache of a forward that records gradients (transformers' layers set
    cache=None; some versions also turn use_cache off for the whole model, where `prefill_once` then finds no cache),
    so such a forward cannot continue from a shared prompt's cache."""
    inner = unwrap(model)
    return torch.is_grad_enabled() and inner.training and any(
        getattr(m, "gradient_checkpointing", False) for m in inner.modules())


def shared_prompt_hidden_states(model: torch.nn.Module, batch: PolicyBatch,
                                device: torch.device) -> torch.Tensor | None:
    """`completion_hidden_states`, computing each distinct prompt once: the distinct prompts run with a KV cache,
    the cache is gathered to one copy per row (gradients flow back through the gather into the shared prompt), and
    the completions run on top of it. Equal to the full forward up to floating-point summation order; with G
    completions per prompt it saves (G - 1) / G of the prompt tokens. None when no prompt repeats, or when the
    model's cache cannot be gathered (the caller runs the full forward)."""
    width = batch.prompt_width
    input_ids, attention = batch.input_ids.to(device), batch.attention_mask.to(device)
    positions = batch.position_ids.to(device)
    shared = prefill_once(model, input_ids[:, :width], attention[:, :width], positions[:, :width])
    if shared is None:
        return None
    prompt_hidden, cache, row_of = shared
    first = prompt_hidden[row_of, -1:]  # the last prompt position predicts the first completion token
    if input_ids.shape[1] - width == 1:
        return first
    with final_hidden_states(model) as captured:
        model(input_ids=input_ids[:, width:-1], attention_mask=attention[:, :-1], position_ids=positions[:, width:-1],
              **{cache_name(model): cache})
    return torch.cat([first, captured[0]], 1)


def prefill_once(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 ) -> tuple[torch.Tensor, Any, torch.Tensor] | None:
    """Run each distinct row of `ids` through `model` once with a KV cache, and gather the cache to every row:
    (the distinct rows' last hidden states [D, L, H], the gathered cache, each row's index among the distinct ones).
    None when no row repeats, or when the model's cache cannot be gathered. Shared by the learner and the hf
    engine's prefill."""
    distinct, row_of, first = distinct_rows(ids)
    if len(distinct) == len(ids):
        return None
    with final_hidden_states(model) as captured:
        out = model(input_ids=distinct, attention_mask=mask[first], position_ids=positions[first], use_cache=True)
    cache = getattr(out, cache_name(model), None)
    if not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(row_of)
    return captured[0], cache, row_of


def distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the distinct rows, each row's index among them, one row index holding each distinct row)."""
    distinct, row_of = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.empty(len(distinct), dtype=torch.long, device=rows.device).scatter_(
        0, row_of, torch.arange(len(row_of), device=rows.device))
    return distinct, row_of, first


def cache_name(model: torch.nn.Module) -> str:
    """What transformers calls the KV cache (argument and output): `cache` from 5.x, `past_key_values` before."""
    inner = unwrap(model)  # through a DDP wrapper, and a peft model's to the transformers model
    forward = inner.get_base_model().forward if hasattr(inner, "get_base_model") else inner.forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def micro_batches(batch: PolicyBatch, rows: torch.Tensor, max_rows: int = 0, max_tokens: int = 0,
                  ) -> list[torch.Tensor]:
    """`rows` (indices into `batch`) split for forward passes. With `max_tokens`, rows are sorted by length and
    packed while a micro-batch holds at most that many tokens, padding included (rows x (widest prompt + longest
    completion), as `PolicyBatch.select` trims it), so padding is small; a sequence longer than `max_tokens` is an
    error. Else `max_rows` consecutive rows at a time (0: all of them at once)."""
    if not max_tokens:
        step = max_rows or max(1, len(rows))
        return [rows[i:i + step] for i in range(0, len(rows), step)]
    width = batch.prompt_width
    prompt_len = batch.attention_mask[rows, :width].sum(-1).tolist()
    completion_len = batch.attention_mask[rows, width:].sum(-1).clamp(min=1).tolist()
    order = sorted(range(len(rows)), key=lambda i: prompt_len[i] + completion_len[i], reverse=True)
    packs: list[list[int]] = []
    widest_prompt = longest_completion = 0
    for i in order:
        if prompt_len[i] + completion_len[i] > max_tokens:
            raise ValueError(f"micro_batch_tokens={max_tokens} is smaller than one sequence of the batch "
                             f"({prompt_len[i]} prompt + {completion_len[i]} completion tokens)")
        p, c = max(widest_prompt, prompt_len[i]), max(longest_completion, completion_len[i])
        if not packs or (len(packs[-1]) + 1) * (p + c) > max_tokens:
            packs.append([])
            p, c = prompt_len[i], completion_len[i]
        packs[-1].append(i)
        widest_prompt, longest_completion = p, c
    return [rows[torch.tensor(pack)] for pack in packs]
