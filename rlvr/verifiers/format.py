"""The `format` verifier: rewards the structure of a completion (by default `<think>...</think>` followed by
`<answer>...</answer>`, or any list of regexes) with partial credit, one share per check passed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.registry import register


def think_answer_checks(text: str, think: str = "think", answer: str | None = "answer") -> dict[str, bool]:
    """The structural checks of a reasoning completion, by name: one thinking block opening the text and
    closed, then (after the first closing tag, so that templates that put `<think>` in the prompt still earn
    these) a non-empty answer, in `<answer>` tags unless `answer` is None, and nothing after it."""
    open_tag, close_tag = f"<{think}>", f"</{think}>"
    closed = text.count(open_tag) == 1 and text.count(close_tag) == 1 and text.find(open_tag) < text.find(close_tag)
    after = text.split(close_tag, 1)[1] if close_tag in text else ""
    checks = {
        f"starts with {open_tag}": text.lstrip().startswith(open_tag),
        f"one closed {open_tag} block": closed,
    }
    if answer is None:
        checks[f"answer after {close_tag}"] = bool(after.strip())
        return checks
    tag = re.escape(answer)
    match = re.fullmatch(rf"\s*<{tag}>(.*?)</{tag}>(.*)", after, re.DOTALL)
    checks[f"<{answer}> after {close_tag}"] = bool(match and match.group(1).strip())
    checks[f"nothing after </{answer}>"] = bool(match and not match.group(2).strip())
    return checks


@register("format")
@dataclass
class FormatVerifier:
    """Reward = share of checks passed (or 1/0 when `partial_credit` is off); `correct` when all pass. With
    `patterns`, each regex must be found in the text (re.search, DOTALL) and the think/answer checks are off."""

    think_tag: str = "think"
    answer_tag: str | None = "answer"
    patterns: tuple[str, ...] = ()
    partial_credit: bool = True
    name: ClassVar[str] = "format"

    def __post_init__(self) -> None:
        self.patterns = (self.patterns,) if isinstance(self.patterns, str) else tuple(self.patterns)
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"format: invalid regex {pattern!r}: {exc}") from exc

    def checks(self, text: str) -> dict[str, bool]:
        if self.patterns:
            return {f"matches {p!r}": re.search(p, text, re.DOTALL) is not None for p in self.patterns}
        return think_answer_checks(text, self.think_tag, self.answer_tag)

    def __call__(self, problem: Problem, completion: Completion | str) -> Verdict:
        checks = self.checks(Completion.coerce(completion).text)
        passed = sum(checks.values())
        correct = passed == len(checks)
        reward = passed / len(checks) if self.partial_credit else float(correct)
        failed = [name for name, ok in checks.items() if not ok]
        return Verdict(reward, correct, error=f"format: failed {'; '.join(failed)}" if failed else None)
