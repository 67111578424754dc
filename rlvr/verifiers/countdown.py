"""The Countdown verifier: the expression in <answer> tags (else the last line) must use each given number
exactly once (or at most once) and evaluate exactly to the target; it is parsed, never `eval`ed."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from rlvr.safe_eval import evaluate, literals
from rlvr.types import Completion, Problem, Verdict
from rlvr.verifiers.registry import register

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_expression(text: str) -> str | None:
    """The last <answer>...</answer> content, else the last non-empty line; drops a trailing `= target`."""
    tagged = ANSWER_TAG.findall(text)
    candidate = tagged[-1] if tagged else next((ln for ln in reversed(text.splitlines()) if ln.strip()), None)
    if candidate is None:
        return None
    return candidate.split("=")[0].strip() or None


@register("countdown")
@dataclass
class CountdownVerifier:
    """Reward 1.0 for a valid expression that reaches `meta["target"]` with `meta["numbers"]`, else 0.0."""

    use_all: bool = True
    name: str = "countdown"

    def __call__(self, problem: Problem, completion: Completion) -> Verdict:
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        expression = extract_expression(Completion.coerce(completion).text)
        if expression is None:
            return Verdict(0.0, False, error="no expression found")
        try:
            value = evaluate(expression)
            used = Counter(literals(expression))
        except (ValueError, SyntaxError, ZeroDivisionError, RecursionError) as exc:
            return Verdict(0.0, False, extracted=expression, error=f"invalid expression: {exc}")
        available = Counter(numbers)
        if used - available:
            return Verdict(0.0, False, extracted=expression,
                           error=f"uses numbers not given: {sorted((used - available).elements())}")
        if self.use_all and used != available:
            return Verdict(0.0, False, extracted=expression,
                           error=f"does not use every number: {sorted((available - used).elements())} unused")
        if value != target:
            return Verdict(0.0, False, extracted=expression, error=f"evaluates to {value}, not {target}")
        return Verdict(1.0, True, extracted=expression)
