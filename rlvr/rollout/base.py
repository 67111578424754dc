"""The rollout-engine contract: `generate(prompts, n, sampling)` returns n Completions per prompt with token ids,
per-token sampling logprobs and finish reasons; `sync_weights(model)` loads the learner's current weights. A prompt
is text, or token ids (a multi-turn episode's history, exactly as sampled and rendered: never re-tokenized)."""

from __future__ import annotations

from typing import Protocol, Union

import torch

from rlvr.sampling import Sampling
from rlvr.types import Completion

EnginePrompt = Union[str, list[int]]


class Engine(Protocol):
    def generate(self, prompts: list[EnginePrompt], n: int, sampling: Sampling) -> list[list[Completion]]: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...

