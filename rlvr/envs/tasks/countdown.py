"""Countdown: combine the given numbers with + - * / to reach a target. Every generated problem is solvable:
the target is the value of a random expression over the numbers."""

from __future__ import annotations

import random

from rlvr.envs.tasks.base import ProceduralSource, Split
from rlvr.safe_eval import evaluate
from rlvr.types import Problem

PROMPT = ("Using the numbers {numbers}, write an arithmetic expression that equals {target}. Use each number "
          "exactly once, with + - * / and parentheses. Put the expression in <answer></answer> tags.")


def _solution(numbers: list[int], rnd: random.Random) -> str:
    """A random expression that uses every number once and has a positive integer value."""
    for _ in range(1000):
        order = rnd.sample(numbers, len(numbers))
        expression = str(order[0])
        for n in order[1:]:
            op = rnd.choice("+-*/")
            candidate = f"({expression} {op} {n})"
            value = evaluate(candidate) if not (op == "/" and n == 0) else None
            if value is not None and value.denominator == 1 and value > 0:
                expression = candidate
            else:
                expression = f"({expression} + {n})"
        if evaluate(expression) > 0:
            return expression
    raise RuntimeError(f"no positive solution found for {numbers}")


class Countdown(ProceduralSource):
    """`num_numbers` numbers in `1..max_number`; ids are `countdown-{num_numbers}-{max_number}-{key}`. `prompt`
    formats `{numbers}` and `{target}` (a short one suits a small model trained from scratch)."""

    name = "countdown"
    default_verifier = "countdown"

    def __init__(self, num_numbers: int = 3, max_number: int = 25, *, split: Split = "train",
                 heldout_fraction: float = 0.1, seed: int = 0, prompt: str = PROMPT) -> None:
        if not 2 <= num_numbers <= 6:
            raise ValueError(f"Countdown num_numbers must be in 2..6, got {num_numbers}")
        if max_number < 2:
            raise ValueError(f"Countdown max_number must be >= 2, got {max_number}")
        if "{numbers}" not in prompt or "{target}" not in prompt:
            raise ValueError(f"Countdown prompt must contain {{numbers}} and {{target}}, got {prompt!r}")
        super().__init__(split=split, heldout_fraction=heldout_fraction, seed=seed)
        self.num_numbers, self.max_number, self.prompt = num_numbers, max_number, prompt

    def generate(self, key: int) -> Problem:
        rnd = random.Random(key)
        numbers = [rnd.randint(1, self.max_number) for _ in range(self.num_numbers)]
        solution = _solution(numbers, rnd)
        target = int(evaluate(solution))
        return Problem(id=f"countdown-{self.num_numbers}-{self.max_number}-{key}",
                       prompt=self.prompt.format(numbers=numbers, target=target), answer=str(target),
                       meta={"numbers": numbers, "target": target, "solution": solution})

    def key_of(self, problem_id: str) -> int:
        prefix = f"countdown-{self.num_numbers}-{self.max_number}-"
        if not problem_id.startswith(prefix):
            raise ValueError(problem_id)
        return int(problem_id[len(prefix):])
