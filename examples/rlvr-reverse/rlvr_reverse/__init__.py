"""Reverse a word: a complete rlvr plugin with an env, a verifier and an algorithm."""

from __future__ import annotations

import random
from dataclasses import dataclass

from torch import Tensor

import rlvr
from rlvr.algorithms.reinforce import Reinforce
from rlvr.envs.tasks.base import ProceduralSource
from rlvr.types import Completion, Problem, Verdict

WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "forest", "candle", "rocket"]


@dataclass
class ExactMatch:
    """Reward 1 when the stripped completion equals the gold answer exactly."""

    name: str = "exact"

    def __call__(self, problem: Problem, completion: Completion) -> Verdict:
        text = Completion.coerce(completion).text.strip()
        ok = text == problem.answer
        return Verdict(float(ok), ok, extracted=text, error=None if ok else f"expected {problem.answer!r}")


class ReverseWords(ProceduralSource):
    """Reverse a word from a small vocabulary; ids are `reverse-{key}`."""

    name = "reverse"
    default_verifier = "exact"

    def generate(self, key: int) -> Problem:
        word = random.Random(key).choice(WORDS)
        return Problem(id=f"reverse-{key}", prompt=f"Reverse the word: {word}", answer=word[::-1])

    def key_of(self, problem_id: str) -> int:
        return int(problem_id.removeprefix("reverse-"))


@dataclass
class ReinforceNoBaseline(Reinforce):
    """REINFORCE without a baseline: A_hat_i = r_i (unbiased, higher variance)."""

    def advantages(self, rewards: Tensor) -> Tensor:
        return rewards.clone()


def make_reverse_env(**kwargs) -> rlvr.PromptEnv:
    """Reverse a word; reward 1 for the exact reversed word."""
    return rlvr.PromptEnv(ReverseWords(heldout_fraction=0.2, seed=kwargs.pop("seed", 0)), **kwargs)


def register_envs() -> None:
    rlvr.register("reverse/Reverse-v0", make_reverse_env)
