"""The rollout-engine contract: `generate(prompts, n, sampling)` returns n Completions per prompt with token ids,
per-token sampling logprobs and finish reasons; `sync_weights(model)` loads the learner's current weights."""

from __future__ import annotations

from typing import Protocol

import torch

from rlvr.sampling import Sampling
from rlvr.types import Completion


class Engine(Protocol):
    def generate(self, prompts: list[str], n: int, sampling: Sampling) -> list[list[Completion]]: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...
