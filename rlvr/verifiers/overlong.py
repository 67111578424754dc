"""The `overlong` verifier: DAPO's soft overlong punishment on the completion length in tokens, or, instead,
masking truncated completions out of the loss. It judges length, not the answer, so its verdict is always
`correct`; in a composition the first verifier decides correctness."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.registry import register


def overlong_penalty(length: int, max_length: int, cache_length: int) -> float:
    """DAPO eq. 13: 0 up to `max_length - cache_length` tokens, linear down to -1 at `max_length`, -1 beyond."""
    soft_start = max_length - cache_length
    if length <= soft_start:
        return 0.0
    if length <= max_length:
        return (soft_start - length) / cache_length
    return -1.0


@lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Any:
    """A Hugging Face tokenizer by hub name or local path, loaded once per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def count_tokens(tokenizer: Any, text: str) -> int:
    """Token count of `text` without special tokens, for any object with `.encode(text)`."""
    if "add_special_tokens" in inspect.signature(tokenizer.encode).parameters:
        return len(tokenizer.encode(text, add_special_tokens=False))
    return len(tokenizer.encode(text))


@register("overlong")
@dataclass
class OverlongPenalty:
    """Reward `overlong_penalty(len(tokens), max_length, cache_length)` (DAPO: 20480 and 4096). With
    `mask_truncated`, the reward is 0 and completions cut off by the length limit get `mask=True` instead.
    Lengths come from `Completion.token_ids`, else from `tokenizer` (a name/path, or an object with `.encode`)."""

    max_length: int = 20480
    cache_length: int = 4096
    mask_truncated: bool = False
    tokenizer: Any = None
    name: ClassVar[str] = "overlong"

    def __post_init__(self) -> None:
        if self.max_length <= 0:
            raise ValueError(f"overlong: max_length must be > 0, got {self.max_length}")
        if not 0 <= self.cache_length <= self.max_length:
            raise ValueError(f"overlong: cache_length must be in [0, max_length={self.max_length}], "
                             f"got {self.cache_length}")
        if self.tokenizer is not None and not isinstance(self.tokenizer, str) and not hasattr(self.tokenizer, "encode"):
            raise TypeError(f"overlong: tokenizer must be a name/path or have .encode, got {type(self.tokenizer)}")

    def length(self, completion: Completion) -> int:
        """Completion length in tokens."""
        if completion.token_ids is not None:
            return completion.num_sampled  # the model's tokens (an env's in a multi-turn episode do not count)
        if self.tokenizer is None:
            raise ValueError("overlong: the completion has no token_ids and no tokenizer was given; pass "
                             "tokenizer=<hub name, local path, or an object with .encode>")
        tokenizer = load_tokenizer(self.tokenizer) if isinstance(self.tokenizer, str) else self.tokenizer
        return count_tokens(tokenizer, completion.text)

    def __call__(self, problem: Problem, completion: Completion | str) -> Verdict:
        completion = Completion.coerce(completion)
        if self.mask_truncated:
            return Verdict(0.0, True, mask=completion.truncated)
        return Verdict(overlong_penalty(self.length(completion), self.max_length, self.cache_length), True)
