"""Learner-side tensors: prompt + completion token ids packed into one padded batch, and the per-token
log-probabilities (and entropies) of the completion tokens under a model."""

from __future__ import annotations

from dataclasses import dataclass

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
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | q, o_<t) for every completion position [N, T] (0 on padding), and optionally the entropy of
    pi(. | q, o_<t) at each position."""
    device = next(model.parameters()).device
    logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                   position_ids=batch.position_ids.to(device)).logits
    logits = logits[:, batch.prompt_width - 1:-1].float()  # position t predicts token t + 1
    logprobs = logits.log_softmax(-1)
    targets = batch.input_ids[:, batch.prompt_width:].to(device)
    mask = batch.completion_mask.to(device)
    logp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logprobs.exp() * logprobs).sum(-1) * mask
    return logp, entropy
