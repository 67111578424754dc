"""A text space for real prompts and completions: Gymnasium's `Text` defaults to an alphanumeric charset, which
rejects spaces, punctuation, LaTeX and any non-ASCII character, so every real prompt would fall outside it."""

from __future__ import annotations

import string
from typing import Any

from gymnasium.spaces import Text

# What `sample()` draws from: printable ASCII, which covers arithmetic, LaTeX and code.
PRINTABLE = frozenset(string.printable)


class UnicodeText(Text):
    """Any Python string of `min_length..max_length` characters without NUL or lone surrogates.

    `sample()` draws printable ASCII; `contains()` accepts all of Unicode, since prompts and completions may
    hold any character (`½`, `≤`, CJK, emoji)."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None) -> None:
        super().__init__(max_length=max_length, min_length=min_length, charset=PRINTABLE, seed=seed)

    def contains(self, x: Any) -> bool:
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length:
            return False
        return "\x00" not in x and not any("\ud800" <= c <= "\udfff" for c in x)

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, UnicodeText) and self.min_length == other.min_length
                and self.max_length == other.max_length)
