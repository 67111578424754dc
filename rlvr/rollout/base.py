"""The rollout-engine contract: `generate(prompts, n, sampling)` returns n Completions per prompt with token ids,
per-token sampling logprobs and finish reasons; `sync_weights(model)` loads the learner's current weights. A prompt
is text, or token ids (a multi-turn episode's history, exactly as sampled and rendered: never re-tokenized)."""

from __future__ import annotations

from typing import Protocol, Union

import torch
from transformers import PreTrainedTokenizerBase

from rlvr.sampling import Sampling
from rlvr.types import Completion


EnginePrompt = Union[str, list[int]]


class Engine(Protocol):
    def generate(self, prompts: list[EnginePrompt], n: int, sampling: Sampling) -> list[list[Completion]]: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompts: list[EnginePrompt],
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
