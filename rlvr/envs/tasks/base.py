"""Task sources: seeded iterables of Problems with random access by id, procedural (infinite) or file-backed."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from rlvr.types import Problem

Split = Literal["train", "test", "all"]


def in_heldout(key: str, fraction: float) -> bool:
    """Stable split by content: the same key lands in the same split in every process and Python version."""
    digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return digest < fraction * 2**64


def check_split(split: str) -> Split:
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    return split  # type: ignore[return-value]


class TaskSource(ABC):
    """What an env draws problems from. `sample(rng)` draws one, `get(id)` finds one, iteration is seeded."""

    name: str = "task"
    default_verifier: Any = "math"  # a registered verifier's name, or a verifier

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Problem:
        """Draw one problem of this source's split."""

    @abstractmethod
    def get(self, problem_id: str) -> Problem:
        """The problem with this id; KeyError naming the id when there is none."""

    @abstractmethod
    def __iter__(self) -> Iterator[Problem]:
        """Problems in an order fixed by the source's seed."""

    def content_key(self, problem: Problem) -> str:
        """What makes two problems the same problem (the id here; procedural sources compare prompts)."""
        return problem.id

    def distinct(self, limit: int) -> list[Problem]:
        """Up to `limit` distinct problems in iteration order, looking at most 50 x `limit` deep (a small split,
        like one-digit sums, has fewer): the held-out set an evaluation poses."""
        seen: dict[str, Problem] = {}
        for _, problem in zip(range(50 * limit), self):
            seen.setdefault(self.content_key(problem), problem)
            if len(seen) == limit:
                break
        return list(seen.values())


class ProceduralSource(TaskSource):
    """An infinite source that generates a problem from an integer key; the held-out split is a stable hash of
    the problem's content, so train and test never share a problem."""

    def __init__(self, *, split: Split = "train", heldout_fraction: float = 0.1, seed: int = 0) -> None:
        self.split = check_split(split)
        if not 0.0 < heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
        self.heldout_fraction = heldout_fraction
        self.seed = seed

    @abstractmethod
    def generate(self, key: int) -> Problem:
        """The problem for integer `key`; its id must let `get` rebuild it."""

    @abstractmethod
    def key_of(self, problem_id: str) -> int:
        """Inverse of the id scheme used by `generate`."""

    def content_key(self, problem: Problem) -> str:
        return str(problem.prompt)

    def in_split(self, problem: Problem) -> bool:
        if self.split == "all":
            return True
        return in_heldout(self.content_key(problem), self.heldout_fraction) == (self.split == "test")

    def sample(self, rng: np.random.Generator) -> Problem:
        for _ in range(10_000):
            problem = self.generate(int(rng.integers(2**62)))
            if self.in_split(problem):
                return problem
        raise RuntimeError(f"{self.name}: no problem of split {self.split!r} found in 10000 draws")

    def get(self, problem_id: str) -> Problem:
        try:
            return self.generate(self.key_of(problem_id))
        except (ValueError, IndexError) as exc:
            raise KeyError(f"{self.name}: malformed problem id {problem_id!r}") from exc

    def __iter__(self) -> Iterator[Problem]:
        rng = np.random.default_rng(self.seed)
        while True:
            yield self.sample(rng)


class ListSource(TaskSource):
    """A finite source over loaded problems (a file or a data set). `heldout_fraction` > 0 carves a stable
    test split by problem id; iteration is a seeded shuffle."""

    def __init__(self, problems: Sequence[Problem], *, name: str, split: Split = "all",
                 heldout_fraction: float = 0.0, seed: int = 0) -> None:
        self.name = name
        self.split = check_split(split)
        if split != "all" and not 0.0 < heldout_fraction < 1.0:
            raise ValueError(f"{name}: split {split!r} needs heldout_fraction in (0, 1), got {heldout_fraction}")
        self.seed = seed
        keep = [p for p in problems
                if split == "all" or in_heldout(p.id, heldout_fraction) == (split == "test")]
        if not keep:
            raise ValueError(f"{name}: split {split!r} is empty ({len(problems)} problems loaded)")
        self.problems = keep
        self._by_id = {p.id: p for p in keep}
        if len(self._by_id) != len(keep):
            raise ValueError(f"{name}: problem ids are not unique")

    def sample(self, rng: np.random.Generator) -> Problem:
        return self.problems[int(rng.integers(len(self.problems)))]

    def get(self, problem_id: str) -> Problem:
        if problem_id not in self._by_id:
            raise KeyError(f"{self.name}: no problem with id {problem_id!r}")
        return self._by_id[problem_id]

    def __iter__(self) -> Iterator[Problem]:
        order = np.random.default_rng(self.seed).permutation(len(self.problems))
        return (self.problems[i] for i in order)

    def __len__(self) -> int:
        return len(self.problems)
