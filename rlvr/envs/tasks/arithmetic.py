"""Procedural arithmetic, from one-digit sums (level 1) to multi-step expressions with parentheses (level 6) and
products a small model cannot do in its head (level 7, the calculator task's):
an infinite task that a tiny model can learn from scratch, with a held-out split disjoint by content."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from rlvr.envs.tasks.base import ProceduralSource, Split
from rlvr.safe_eval import evaluate
from rlvr.types import Problem

LEVELS = {
    1: "a + b with one-digit operands",
    2: "a + b or a - b with a two-digit a and a one-digit b",
    3: "a + b or a - b with operands below 100",
    4: "a * b with a one-digit and a two-digit operand, or a +/- b",
    5: "three operands with + - *, precedence matters",
    6: "four operands with parentheses, e.g. (a + b) * c - d",
    7: "a * b with a three-digit and a two-digit operand, or a * b +/- c * d with two-digit operands",
}


def _expression(level: int, rnd: random.Random) -> str:
    """A random expression of the given difficulty."""
    if level == 1:
        return f"{rnd.randint(0, 9)} + {rnd.randint(0, 9)}"
    if level == 2:
        return f"{rnd.randint(10, 99)} {rnd.choice('+-')} {rnd.randint(0, 9)}"
    if level == 3:
        return f"{rnd.randint(0, 99)} {rnd.choice('+-')} {rnd.randint(0, 99)}"
    if level == 4:
        if rnd.random() < 0.5:
            return f"{rnd.randint(2, 9)} * {rnd.randint(10, 99)}"
        return f"{rnd.randint(0, 99)} {rnd.choice('+-')} {rnd.randint(0, 99)}"
    if level == 5:
        a, b, c = rnd.randint(1, 20), rnd.randint(1, 20), rnd.randint(1, 9)
        op1, op2 = rnd.choice("+-*"), rnd.choice("+-*")
        return f"{a} {op1} {b} {op2} {c}"
    if level == 6:
        a, b, c, d = (rnd.randint(1, 20) for _ in range(4))
        return f"({a} {rnd.choice('+-')} {b}) * {c} {rnd.choice('+-')} {d}"
    if rnd.random() < 0.5:
        return f"{rnd.randint(100, 999)} * {rnd.randint(10, 99)}"
    a, b, c, d = (rnd.randint(10, 99) for _ in range(4))
    return f"{a} * {b} {rnd.choice('+-')} {c} * {d}"


class Arithmetic(ProceduralSource):
    """Integer arithmetic problems; the answer is the exact integer value. `level` is one level or a list of them
    (mixed difficulty: problem `key` is of level `levels[key % len(levels)]`, so draws are uniform over them and a
    curriculum can ask for one, `sample_level`).

    Problem ids are `arith-L{level}-{key}` so any problem can be rebuilt from its id."""

    name = "arithmetic"
    default_verifier = "math"

    def __init__(self, level: int | Sequence[int] = 1, *, split: Split = "train", heldout_fraction: float = 0.1,
                 seed: int = 0) -> None:
        self.levels = [level] if isinstance(level, int) else list(level)
        if not self.levels or any(lv not in LEVELS for lv in self.levels) or len(set(self.levels)) < len(self.levels):
            raise ValueError(f"Arithmetic level must be one of {sorted(LEVELS)} or a list of distinct ones, "
                             f"got {level!r}")
        super().__init__(split=split, heldout_fraction=heldout_fraction, seed=seed)
        self.level = level

    def generate(self, key: int) -> Problem:
        level = self.levels[key % len(self.levels)]
        expression = _expression(level, random.Random(key))
        return Problem(id=f"arith-L{level}-{key}", prompt=expression, answer=str(int(evaluate(expression))),
                       meta={"level": level, "expression": expression})

    def key_of(self, problem_id: str) -> int:
        level, key = problem_id.removeprefix("arith-L").split("-", 1)
        if not problem_id.startswith("arith-L") or self.levels[int(key) % len(self.levels)] != int(level):
            raise ValueError(problem_id)
        return int(key)

    def sample_level(self, rng: np.random.Generator, level: int) -> Problem:
        """Draw one problem of `level` (one of `levels`) from this source's split."""
        span, offset = len(self.levels), self.levels.index(level)
        for _ in range(10_000):
            problem = self.generate(int(rng.integers(2**62 // span)) * span + offset)
            if self.in_split(problem):
                return problem
        raise RuntimeError(f"{self.name}: no level-{level} problem of split {self.split!r} in 10000 draws")
