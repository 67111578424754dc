"""Learner-side tensors: prompt + completion token ids packed into one padded batch, and the per-token
log-probabilities (and entropies) of the completion tokens under the sampling distribution of a model."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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
                   share_prompts: bool = False, sampling: Sampling | None = None, chunk_tokens: int = 0,
                   buckets: int = 1, dedupe: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for every completion position [N, T] (0 on padding), and optionally the entropy of
    pi(. | q, o_<t) at each position, pi the distribution the engine samples from under `sampling` (temperature,
    top-k, top-p; None: the model's own softmax). Only completion positions go through the LM head, a chunk of
    tokens at a time (`rlvr.lm_head`), so no [N, T, V] tensor exists.

    How rows go through the model changes nothing but floating-point summation order: with `dedupe`, identical rows
    (a group's repeated answers) run once and their log-probs are gathered to every copy, so each copy's gradient
    flows back through the one forward; with `share_prompts`, rows with the same prompt (a group's G completions)
    run the prompt once and continue from its KV cache; `buckets` > 1 runs rows in that many groups of similar
    completion length, each padded only to its own longest (`length_buckets`)."""
    if dedupe:
        key = torch.cat([batch.input_ids, batch.completion_mask.to(batch.input_ids.dtype)], 1)
        distinct, row_of, first = distinct_rows(key)
        if len(distinct) < len(batch):
            logp, entropy = token_logprobs(model, batch.select(first), with_entropy, share_prompts, sampling,
                                           chunk_tokens, buckets)
            pad = (0, batch.completion_mask.shape[1] - logp.shape[1])  # `select` trimmed the distinct rows' width
            index = row_of.to(logp.device)
            return F.pad(logp, pad)[index], None if entropy is None else F.pad(entropy, pad)[index]
    device = next(model.parameters()).device
    hidden = completion_hidden_states(model, batch, device, share_prompts, buckets)  # [N, T, H]
    mask = batch.completion_mask.to(device)
    real = mask.bool()
    targets = batch.input_ids[:, batch.prompt_width:].to(device)
    logp_real, entropy_real = sampled_logprobs(model, hidden[real], targets[real], sampling, with_entropy,
                                               chunk_tokens)
    logp = torch.zeros(mask.shape, dtype=logp_real.dtype, device=device).index_put((real,), logp_real)
    entropy = torch.zeros_like(logp).index_put_((real,), entropy_real) if with_entropy else None
    return logp, entropy


def completion_hidden_states(model: torch.nn.Module, batch: PolicyBatch, device: torch.device,
                             share_prompts: bool, buckets: int = 1) -> torch.Tensor:
    """The last hidden states [N, T, H] at the positions that predict each completion token (position t predicts
    token t + 1), 0 past each row's end. Rows go through the model in up to `buckets` groups of similar completion
    length, each as wide as its longest row, so the padding of short completions costs little; with
    `share_prompts`, each distinct prompt runs once and every bucket continues from its KV cache."""
    lengths = batch.attention_mask[:, batch.prompt_width:].sum(-1)
    groups = length_buckets(lengths, buckets)
    if share_prompts and not _checkpointing_grads(model):
        hidden = shared_prompt_hidden_states(model, batch, device, groups)
        if hidden is not None:
            return hidden
    parts = []
    for rows in groups:
        part = batch.select(rows)  # the bucket's own width
        with final_hidden_states(model) as captured:
            model(input_ids=part.input_ids.to(device), attention_mask=part.attention_mask.to(device),
                  position_ids=part.position_ids.to(device))
        parts.append(captured[0][:, part.prompt_width - 1:-1])
    return gather_buckets(parts, groups, batch.completion_mask.shape[1])


def length_buckets(lengths: torch.Tensor, most: int) -> list[torch.Tensor]:
    """Row indices in at most `most` groups of consecutive lengths, chosen so that padding every row to its group's
    longest adds the fewest tokens (one group: all rows, in order). Exact dynamic programming over the distinct
    lengths D (at most 256: longer ones are rounded up), O(most * D^2)."""
    if most <= 1 or len(lengths) <= 1:
        return [torch.arange(len(lengths))]
    step = max(1, -(-int(lengths.max()) // 256))  # lengths rounded up to multiples of `step`: D <= 256
    keys = (lengths + step - 1) // step
    order = torch.argsort(keys, stable=True)
    values, counts = torch.unique_consecutive(keys[order], return_counts=True)
    width = values.double().numpy() * step
    rows = np.concatenate([[0], np.cumsum(counts.numpy())])  # rows[j]: rows of the j shortest lengths
    d = len(width)
    # cost[i, j]: rows of lengths i..j-1 in one group, padded to width[j - 1] (inf unless i < j)
    cost = np.full((d + 1, d + 1), np.inf)
    i, j = np.triu_indices(d + 1, 1)
    cost[i, j] = (rows[j] - rows[i]) * width[j - 1]
    best, cuts = np.full(d + 1, np.inf), []
    best[0] = 0.0
    for _ in range(min(most, d)):  # best[j]: the least tokens for the j shortest lengths in one more group
        total = best[:, None] + cost  # splitting a group never adds padding: use every group allowed
        cuts.append(total.argmin(0))
        best = total.min(0)
    groups, j = [], d
    for cut in reversed(cuts):
        i = int(cut[j])
        groups.append(order[rows[i]:rows[j]])
        j = i
    return groups[::-1]


def gather_buckets(parts: list[torch.Tensor], groups: list[torch.Tensor], width: int) -> torch.Tensor:
    """Per-bucket hidden states [n_b, T_b, H], padded with zeros to `width` and put back in row order [N, T, H]."""
    if len(parts) == 1 and parts[0].shape[1] == width:  # one bucket holds every row in order (`length_buckets`)
        return parts[0]
    padded = torch.cat([F.pad(p, (0, 0, 0, width - p.shape[1])) for p in parts])
    inverse = torch.empty(len(padded), dtype=torch.long)
    inverse[torch.cat(groups)] = torch.arange(len(padded))
    return padded[inverse.to(padded.device)]


def _checkpointing_grads(model: torch.nn.Module) -> bool:
    """Gradient checkpointing drops the KV cache of a forward that records gradients (transformers' layers set
    cache=None; some versions also turn use_cache off for the whole model, where `prefill_once` then finds no cache),
    so such a forward cannot continue from a shared prompt's cache."""
    inner = unwrap(model)
    return torch.is_grad_enabled() and inner.training and any(
        getattr(m, "gradient_checkpointing", False) for m in inner.modules())


def shared_prompt_hidden_states(model: torch.nn.Module, batch: PolicyBatch, device: torch.device,
                                groups: list[torch.Tensor] | None = None) -> torch.Tensor | None:
    """`completion_hidden_states`, computing each distinct prompt once: the distinct prompts run with a KV cache,
    which each bucket of rows (`groups`; default all rows) gathers to one copy per row (gradients flow back through
    the gather into the shared prompt), and the completions run on top of it. Equal to the full forward up to
    floating-point summation order; with G completions per prompt it saves (G - 1) / G of the prompt tokens. None
    when no prompt repeats, or when the model's cache cannot be gathered (the caller runs the full forward)."""
    width = batch.prompt_width
    input_ids, attention = batch.input_ids.to(device), batch.attention_mask.to(device)
    positions = batch.position_ids.to(device)
    shared = prefill_distinct(model, input_ids[:, :width], attention[:, :width], positions[:, :width])
    if shared is None:
        return None
    prompt_hidden, cache, row_of = shared
    lengths = batch.attention_mask[:, width:].sum(-1)
    parts = []
    for rows in groups or [torch.arange(len(batch))]:
        rows_d = rows.to(device)
        first = prompt_hidden[row_of[rows_d], -1:]  # the last prompt position predicts the first completion token
        end = width + max(1, int(lengths[rows].max()))
        if end - width == 1:
            parts.append(first)
            continue
        with final_hidden_states(model) as captured:
            model(input_ids=input_ids[rows_d, width:end - 1], attention_mask=attention[rows_d, :end - 1],
                  position_ids=positions[rows_d, width:end - 1],
                  **{cache_name(model): select_cache(cache, row_of[rows_d])})
        parts.append(torch.cat([first, captured[0]], 1))
    return gather_buckets(parts, groups or [torch.arange(len(batch))], batch.completion_mask.shape[1])


def prefill_distinct(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                     ) -> tuple[torch.Tensor, Any, torch.Tensor] | None:
    """Run each distinct row of `ids` through `model` once with a KV cache: (the distinct rows' last hidden states
    [D, L, H], their cache, each row's index among the distinct ones). None when no row repeats, or when the
    model's cache cannot be gathered to rows (`select_cache`)."""
    distinct, row_of, first = distinct_rows(ids)
    if len(distinct) == len(ids):
        return None
    with final_hidden_states(model) as captured:
        out = model(input_ids=distinct, attention_mask=mask[first], position_ids=positions[first], use_cache=True)
    cache = getattr(out, cache_name(model), None)
    if not hasattr(cache, "batch_select_indices"):
        return None
    return captured[0], cache, row_of


def prefill_once(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 ) -> tuple[torch.Tensor, Any, torch.Tensor] | None:
    """`prefill_distinct` with the cache gathered to every row (the hf engine's prefill)."""
    shared = prefill_distinct(model, ids, mask, positions)
    if shared is not None:
        shared[1].batch_select_indices(shared[2])
    return shared


def select_cache(cache: Any, rows: torch.Tensor) -> Any:
    """A new KV cache of `rows` of `cache`, which stays as it is (so several buckets can gather from one prefill)."""
    part = copy.copy(cache)
    if hasattr(cache, "layers"):  # transformers >= 4.56: a list of layer objects holding keys and values
        part.layers = [copy.copy(layer) for layer in cache.layers]
    else:
        part.key_cache, part.value_cache = list(cache.key_cache), list(cache.value_cache)
    part.batch_select_indices(rows)
    return part


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
