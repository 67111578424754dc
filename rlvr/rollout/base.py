"""The rollout-engine contract: `generate(prompts, n, sampling)` returns n Completions per prompt with token ids,
per-token sampling logprobs and finish reasons; `sync_weights(model)` loads the learner's current weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from rlvr.types import Completion


@dataclass
class Sampling:
    """How to sample: temperature 0 means greedy; top_k 0 and top_p 1 disable those filters."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"invalid sampling settings: {self}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Engine(Protocol):
    def generate(self, prompts: list[str], n: int, sampling: Sampling) -> list[list[Completion]]: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...
