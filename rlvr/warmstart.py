"""An optional short supervised warm-start: teach a from-scratch model the answer format on the training split
(prompt -> " " + gold answer + EOS), so that RL starts from a policy that sometimes succeeds."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from rlvr.batch import build_batch, token_logprobs
from rlvr.envs.prompt_env import PromptEnv
from rlvr.types import Completion


def supervised_warmstart(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, env: PromptEnv, steps: int,
                         batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 1.0,
                         answer_template: str = " {answer}", seed: int = 0) -> list[float]:
    """`steps` AdamW steps of next-token cross-entropy on gold answers; returns the loss curve. Strong weight
    decay makes a small model generalise to held-out problems far sooner than it memorises the training ones."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    model.train()
    for _ in range(steps):
        problems = [env.source.sample(rng) for _ in range(batch_size)]
        targets = []
        for p in problems:
            if p.answer is None:
                raise ValueError(f"problem {p.id!r} has no gold answer to warm-start on")
            ids = tokenizer(answer_template.format(answer=p.answer), add_special_tokens=False)["input_ids"]
            targets.append(Completion(text=p.answer, token_ids=ids + [tokenizer.eos_token_id]))
        batch = build_batch(tokenizer, [env.format_prompt(p) for p in problems], targets)
        logp, _ = token_logprobs(model, batch)
        loss = -(logp.sum() / batch.completion_mask.sum())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
