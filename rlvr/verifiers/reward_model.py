"""The `reward_model` verifier: a learned reward where no rule exists. Any local `AutoModelForSequenceClassification`
directory scores (prompt, completion) pairs, rendered as a chat with the reward model's own template when it has one,
in batches on a chosen device. Combine it with rule verifiers by weight (`[{"name": "math"}, {"name":
"reward_model", "weight": 0.5, "path": ...}]`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.base import Item
from rlvr.verifiers.registry import register


@functools.lru_cache(maxsize=4)
def load_reward_model(path: str, device: str, dtype: str) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode), once per process: a verifier worker loads its own."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    if tokenizer.pad_token_id is None:  # batches pad; a sequence-classification model finds each row's last token
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def prompt_messages(problem: Problem) -> list[dict[str, str]]:
    """The problem as chat messages (a plain prompt becomes one user message)."""
    return [{"role": "user", "content": problem.prompt}] if isinstance(problem.prompt, str) else list(problem.prompt)


@register("reward_model")
@dataclass
class RewardModelVerifier:
    """Reward: the classifier's logit `label` for (prompt, completion), through a sigmoid (`squash`, so rewards lie in
    [0, 1] like the rule verifiers') or raw; `correct` when the reward reaches `threshold`. Scored `batch_size` pairs
    at a time, at most `max_length` tokens each (longer pairs keep their end: the completion). A non-finite score
    is an error verdict, never a reward."""

    path: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 16
    max_length: int = 4096
    label: int = 0
    squash: bool = True
    threshold: float = 0.5
    name: ClassVar[str] = "reward_model"

    def __post_init__(self) -> None:
        if not self.path or not (Path(self.path) / "config.json").exists():
            raise ValueError(f"reward_model: path must be a local AutoModelForSequenceClassification directory, "
                             f"got {self.path!r}")
        if self.batch_size < 1 or self.max_length < 1:
            raise ValueError(f"reward_model: batch_size and max_length must be >= 1, got {self.batch_size}, "
                             f"{self.max_length}")

    def __call__(self, problem: Problem, completion: Completion | str) -> Verdict:
        return self.batch([(problem, Completion.coerce(completion))])[0]

    def render(self, tokenizer: Any, problem: Problem, completion: Completion) -> str:
        messages = [*prompt_messages(problem), {"role": "assistant", "content": completion.text}]
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n\n".join(m["content"] for m in messages)

    def scores(self, items: Sequence[Item]) -> list[float]:
        """The raw logits of `items`, in order."""
        import torch

        tokenizer, model = load_reward_model(self.path, self.device, self.dtype)
        texts = [self.render(tokenizer, p, Completion.coerce(c)) for p, c in items]
        tokenizer.truncation_side = "left"  # keep the completion
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt").to(self.device)
                out += model(**batch).logits[:, self.label].float().tolist()
        return out

    def batch(self, items: Sequence[Item]) -> list[Verdict]:
        """Score many pairs at once (the serial executor and `Compose` call this)."""
        verdicts = []
        for score in self.scores(items):
            if not math.isfinite(score):
                verdicts.append(Verdict(0.0, False, error=f"reward model gave a non-finite score ({score})"))
                continue
            reward = 0.5 * (1 + math.tanh(score / 2)) if self.squash else score  # sigmoid, without overflow
            verdicts.append(Verdict(reward, reward >= self.threshold, extracted=f"{score:.4g}"))
        return verdicts
