"""The verifier contract: a picklable callable `(problem, completion) -> Verdict`, composition of several into
one reward, and the executor interface that scores a batch of (problem, completion) pairs."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from rlvr.types import Completion, Problem, Verdict

Item = tuple[Problem, Completion]
ProgressFn = Callable[[int, int], None]


@runtime_checkable
class Verifier(Protocol):
    """Scores one completion of one problem. Must be picklable (it is shipped to worker processes). One that scores
    many at once cheaper (a learned reward on a device) also has `batch(items) -> list[Verdict]`, which the serial
    executor and `Compose` use."""

    def __call__(self, problem: Problem, completion: Completion) -> Verdict: ...


def score_all(verifier: Verifier, items: Sequence[Item]) -> list[Verdict]:
    """Every item's verdict, in order: through the verifier's `batch` when it has one, else one call per item."""
    batch = getattr(verifier, "batch", None)
    return batch(items) if callable(batch) else [verifier(p, c) for p, c in items]


class Compose:
    """Weighted sum of verifiers, e.g. DAPO's `math + overlong`. The first verifier decides `correct` and the
    extracted answer; every verifier's reward is kept in `parts` under its name."""

    def __init__(self, verifiers: Sequence[Verifier], weights: Sequence[float] | None = None,
                 names: Sequence[str] | None = None) -> None:
        if not verifiers:
            raise ValueError("Compose needs at least one verifier")
        self.verifiers = list(verifiers)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.verifiers)
        if len(self.weights) != len(self.verifiers):
            raise ValueError(f"Compose got {len(self.verifiers)} verifiers but {len(self.weights)} weights")
        self.names = list(names) if names is not None else [verifier_name(v) for v in self.verifiers]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"Compose part names must be unique, got {self.names}")

    def __call__(self, problem: Problem, completion: Completion) -> Verdict:
        return self.combine([v(problem, completion) for v in self.verifiers])

    def batch(self, items: Sequence[Item]) -> list[Verdict]:
        """Each part scores all `items` (a learned one in batches), then each item's verdicts combine."""
        per_part = [score_all(v, items) for v in self.verifiers]
        return [self.combine(list(verdicts)) for verdicts in zip(*per_part)]

    def combine(self, verdicts: list[Verdict]) -> Verdict:
        """One item's verdict from its parts' (in the order of `verifiers`)."""
        first = verdicts[0]
        parts = {name: w * v.reward for name, w, v in zip(self.names, self.weights, verdicts)}
        errors = [f"{name}: {v.error}" for name, v in zip(self.names, verdicts) if v.error]
        return Verdict(
            reward=sum(parts.values()),
            correct=first.correct,
            parts=parts,
            extracted=first.extracted,
            error="; ".join(errors) or None,
            mask=any(v.mask for v in verdicts),
        )


def verifier_name(verifier: object) -> str:
    """A short name for a verifier: its `name` attribute, else its class name in lower case."""
    return getattr(verifier, "name", None) or type(verifier).__name__.lower()


def error_verdict(error: str) -> Verdict:
    """Reward 0, not correct, with the reason."""
    return Verdict(reward=0.0, correct=False, error=error)


def cpu_count() -> int:
    """CPU cores this process may run on: the default parallelism of the executors."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_executor_options(timeout: float, **counts: int | None) -> None:
    """A ValueError naming the option for a deadline that is not positive or a count (None: default) below 1."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")


class Executor(Protocol):
    """Scores many (problem, completion) pairs with one verifier and returns verdicts in input order."""

    def map(self, verifier: Verifier, items: Sequence[Item], progress: ProgressFn | None = None) -> list[Verdict]:
        ...

    def close(self) -> None: ...


class SerialExecutor:
    """Scores in the calling process, one item after another: the reference the parallel pools must match."""

    def map(self, verifier: Verifier, items: Sequence[Item], progress: ProgressFn | None = None) -> list[Verdict]:
        if callable(getattr(verifier, "batch", None)):  # scores many at once (a learned reward)
            verdicts = score_all(verifier, items)
            if progress:
                progress(len(items), len(items))
            return verdicts
        verdicts = []
        for i, (problem, completion) in enumerate(items):
            verdicts.append(verifier(problem, completion))
            if progress:
                progress(i + 1, len(items))
        return verdicts

    def close(self) -> None:
        pass
